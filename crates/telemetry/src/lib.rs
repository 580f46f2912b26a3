//! The Prometheus recorder every role (gateway, shop node, worker) installs
//! for its `/metrics`.
//!
//! The `metrics` facade has one global recorder per process, so there is one
//! installation here for all roles: the first role to ask installs it, with
//! the buckets of its latency histogram, and every later caller (a second
//! role or node in the same process, as in tests) gets the same handle, and
//! so sees every role's metrics on its `/metrics`.

use std::sync::OnceLock;

pub use metrics_exporter_prometheus::PrometheusHandle;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Installs the process-wide recorder, if none is yet, with `buckets` (in
/// seconds) for the histogram named `histogram`; returns its handle.
pub fn install(histogram: &str, buckets: &[f64]) -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(histogram.to_owned()), buckets)
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
        let first = install("test_seconds", &[0.1, 1.0]);
        let second = install("other_seconds", &[1.0]);
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
