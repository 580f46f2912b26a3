//! The worker's admin listener: `/metrics` for Prometheus (job outcomes and
//! durations by kind, queue depths by queue and state) and `/healthz`.
//!
//! A small axum app of its own: issue 9 brings one admin listener shared by
//! every role; until then the worker's is this one.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use stampede_jobs::admin;
use stampede_store::Db;
use tokio::net::TcpListener;

/// Buckets of `stampede_worker_job_seconds`: from a no-op to a slow payment.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// How often queue depths are read into gauges.
const DEPTH_EVERY: Duration = Duration::from_secs(5);

/// Installs the Prometheus recorder once per process and returns its handle.
fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            let recorder = builder
                .set_buckets_for_metric(
                    Matcher::Full("stampede_worker_job_seconds".into()),
                    &BUCKETS,
                )
                .map(|b| b.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Binds `addr` and serves the admin routes, and keeps the depth gauges
/// current, until the returned tasks are aborted.
pub(crate) async fn serve(
    addr: SocketAddr,
    db: Db,
) -> std::io::Result<(SocketAddr, [tokio::task::JoinHandle<()>; 2])> {
    let handle = recorder();
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(move || std::future::ready(handle.render())))
        .route("/healthz", get(|| std::future::ready("ok")));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let depths = tokio::spawn(depth_gauges(db));
    Ok((bound, [server, depths]))
}

async fn depth_gauges(db: Db) {
    let mut every = tokio::time::interval(DEPTH_EVERY);
    // Every (queue, state) ever reported: one that empties is set to 0
    // rather than left at its last count.
    let mut seen: HashSet<(String, String)> = HashSet::new();
    loop {
        every.tick().await;
        match admin::depths(&db).await {
            Ok(depths) => {
                let mut now: HashSet<(String, String)> = HashSet::new();
                for d in depths {
                    gauge(&d.queue, &d.state, d.jobs);
                    now.insert((d.queue, d.state));
                }
                for (queue, state) in seen.difference(&now) {
                    gauge(queue, state, 0);
                }
                seen.extend(now);
            }
            Err(error) => tracing::warn!(%error, "reading queue depths failed"),
        }
    }
}

fn gauge(queue: &str, state: &str, jobs: i64) {
    let labels = [("queue", queue.to_owned()), ("state", state.to_owned())];
    metrics::gauge!("stampede_jobs", &labels).set(jobs as f64);
}
