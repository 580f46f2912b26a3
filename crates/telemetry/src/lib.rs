//! What every role (gateway, shop node, worker) reports, set up once per
//! process: the Prometheus recorder for its `/metrics` (here), and
//! optional error reports to Sentry ([`sentry`]).
//!
//! The `metrics` facade has one global recorder per process, so there is one
//! installation here for all roles: the first role to ask installs it, and
//! every later caller (a second role or node in the same process, as in
//! tests) gets the same handle, and so sees every role's metrics on its
//! `/metrics`.
//!
//! Every duration is a histogram whose name ends in `_seconds`, and they
//! all share [`LATENCY_BUCKETS`], so that any role's histograms get
//! buckets whichever role installed the recorder.

use std::sync::OnceLock;

pub mod sentry;

pub use metrics_exporter_prometheus::PrometheusHandle;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// The buckets of every `*_seconds` histogram: from a cached answer or an
/// idle pool's connection to a checkout stuck behind a full pool.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the process-wide recorder, if none is yet; returns its handle.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
                .map(|b| b.build_recorder())
                // Only empty buckets are refused: then plain summaries.
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Fails only if a recorder from elsewhere was installed first;
            // that one then receives the metrics.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_recorder_serves_every_caller() {
        let first = install();
        let second = install();
        metrics::histogram!("test_seconds").record(0.5);
        metrics::counter!("test_total").increment(1);
        for rendered in [first.render(), second.render()] {
            assert!(
                rendered.contains("test_seconds_bucket{le=\"1\"} 1"),
                "{rendered}"
            );
            assert!(rendered.contains("test_total 1"), "{rendered}");
        }
    }
}
