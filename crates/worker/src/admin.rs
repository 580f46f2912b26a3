//! The worker's admin listener: `/metrics` for Prometheus (job outcomes,
//! waits and durations by queue and kind, recorded where jobs run, in
//! `run`; queue depths by queue and state; the sale's ledger) and
//! `/healthz`.
//!
//! Besides what it runs, the worker reports two things it reads from the
//! store in the background, being the role that already works there
//! rather than on the request path:
//!
//! - queue depths, every 5 s: `stampede_worker_queue_jobs{queue,state}`;
//! - the sale's ledger, every 15 s (a `GROUP BY` over the orders, too dear
//!   to run more often during a sale), per sku: the units put on sale,
//!   left, and held by orders by status, and the **drift**: initial stock
//!   minus stock left minus units held by live orders. Every write moves
//!   stock and orders in one transaction, and the ledger is read in one
//!   snapshot, so the drift is 0 unless something oversold or lost stock:
//!   the invariant `stampede storm` checks after a run, watched live.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use stampede_jobs::admin;
use stampede_store::stats::{self, SkuStats};
use stampede_store::{Db, OrderStatus};
use tokio::net::TcpListener;

/// How often queue depths are read into gauges.
const DEPTH_EVERY: Duration = Duration::from_secs(5);

/// How often the sale's ledger is read into gauges.
const LEDGER_EVERY: Duration = Duration::from_secs(15);

/// Jobs by `queue` and `state` (`ready`, `running`, `dead`, ...).
const QUEUE_JOBS: &str = "stampede_worker_queue_jobs";
/// Units put on sale, by `sku`.
const SALE_INITIAL: &str = "stampede_worker_sale_initial_units";
/// Units not held by a live order, by `sku`.
const SALE_LEFT: &str = "stampede_worker_sale_left_units";
/// Units held by orders, by `sku` and order `status`.
const SALE_ORDERED: &str = "stampede_worker_sale_ordered_units";
/// Initial minus left minus units of live orders, by `sku`: 0 unless stock
/// was oversold (negative) or lost (positive).
const SALE_DRIFT: &str = "stampede_worker_sale_drift_units";

/// Binds `addr` and serves the admin routes, and keeps the depth gauges
/// current, until the returned tasks are aborted.
pub(crate) async fn serve(
    addr: SocketAddr,
    db: Db,
) -> std::io::Result<(SocketAddr, [tokio::task::JoinHandle<()>; 3])> {
    let handle = stampede_telemetry::install();
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(move || std::future::ready(handle.render())))
        .route("/healthz", get(|| std::future::ready("ok")));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let depths = tokio::spawn(depth_gauges(db.clone()));
    let ledger = tokio::spawn(ledger_gauges(db));
    Ok((bound, [server, depths, ledger]))
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
    metrics::gauge!(QUEUE_JOBS, &labels).set(jobs as f64);
}

async fn ledger_gauges(db: Db) {
    let mut every = tokio::time::interval(LEDGER_EVERY);
    loop {
        every.tick().await;
        match stats::all(&db).await {
            Ok(skus) => skus.iter().for_each(ledger),
            Err(error) => tracing::warn!(%error, "reading the sale's ledger failed"),
        }
    }
}

/// One sku's ledger. Skus are never deleted, so no series goes stale.
fn ledger(stats: &SkuStats) {
    let sku = || ("sku", stats.sku.clone());
    metrics::gauge!(SALE_INITIAL, &[sku()]).set(stats.initial_stock as f64);
    metrics::gauge!(SALE_LEFT, &[sku()]).set(stats.stock_left as f64);
    let mut live = 0;
    for status in OrderStatus::ALL {
        let units = stats.quantity(status);
        if status.is_live() {
            live += units;
        }
        let labels = [sku(), ("status", status.as_str().to_owned())];
        metrics::gauge!(SALE_ORDERED, &labels).set(units as f64);
    }
    let drift = stats.initial_stock - stats.stock_left - live;
    metrics::gauge!(SALE_DRIFT, &[sku()]).set(drift as f64);
}
