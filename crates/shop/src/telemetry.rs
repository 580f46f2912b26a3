//! The shop node's Prometheus metrics: their names and labels, the
//! process's recorder, and the admin listener that serves them.
//!
//! Like the gateway's and the worker's, the admin listener is an address of
//! its own (`admin_listen`), never the public one: the gateway only proxies
//! the API, so `/metrics` is reachable by whoever can reach that address
//! and by no client.
//!
//! Handles are resolved once where the label values are few and known (a
//! route and method, a cache level) and kept; per request the hot path only
//! touches atomics. Without `admin_listen` no recorder is installed and
//! every handle is a no-op.
//!
//! Two kinds of value are read when Prometheus scrapes rather than kept
//! current: the store's pool (idle and busy connections) and whether each
//! store answers, the same check `/readyz` makes.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use http::{Method, StatusCode};
use metrics::{Counter, Histogram, counter, gauge, histogram};
use stampede_telemetry::PrometheusHandle;
use tokio::net::TcpListener;

use crate::App;

/// Requests answered, by `route` (the matched pattern, such as
/// `/api/v1/orders/{id}`; `unmatched` for none), `method` and `status`.
pub const REQUESTS: &str = "stampede_shop_requests_total";
/// Seconds from a request's arrival to its response, by `route` and `method`.
pub const DURATION: &str = "stampede_shop_request_duration_seconds";
/// Order placements by `outcome`: `reserved`, `replayed` (an idempotent
/// retry), or the contract's error code (`sold_out`, `limit_exceeded`,
/// `not_started`, `overloaded`, `unavailable`, ...); and `paying` and
/// `cancelled` for the transitions the API makes.
pub const ORDERS: &str = "stampede_shop_orders_total";
/// Catalogue lookups by `level` (`memory`, `shared`: Redis) and `result`
/// (`hit`, `miss`).
pub const CACHE: &str = "stampede_shop_cache_requests_total";
/// Connections of the primary's pool by `state` (`idle`, `busy`), read at
/// each scrape.
pub const DB_CONNECTIONS: &str = "stampede_shop_db_connections";
/// The most connections the primary's pool may open.
pub const DB_MAX_CONNECTIONS: &str = "stampede_shop_db_max_connections";
/// 1 while a store answers, 0 while it does not, by `store` (`database`,
/// `redis`); checked at each scrape and by `/readyz`.
pub const STORE_UP: &str = "stampede_shop_store_up";

/// Seconds a request waited for a connection of a database pool, by
/// `pool` (`primary`, `replica-1`, ...): recorded by `stampede_store` at
/// each acquisition. Long waits mean the pool is too small for the load.
pub const DB_ACQUIRE: &str = "stampede_shop_db_acquire_seconds";

/// Installs the process-wide Prometheus recorder (see `stampede_telemetry`)
/// and returns its handle.
pub(crate) fn install() -> PrometheusHandle {
    stampede_telemetry::install()
}

/// Counts one order placement or transition (see [`ORDERS`]).
pub(crate) fn order(outcome: &'static str) {
    counter!(ORDERS, "outcome" => outcome).increment(1);
}

/// The hit and miss counters of one cache.
#[derive(Debug)]
pub(crate) struct CacheCounters {
    memory: [Counter; 2],
    shared: [Counter; 2],
}

impl CacheCounters {
    pub(crate) fn new() -> Self {
        let pair = |level: &'static str| {
            ["hit", "miss"].map(|result| counter!(CACHE, "level" => level, "result" => result))
        };
        Self {
            memory: pair("memory"),
            shared: pair("shared"),
        }
    }

    /// One lookup of this node's memory.
    pub(crate) fn memory(&self, hit: bool) {
        self.memory[usize::from(!hit)].increment(1);
    }

    /// One lookup of the level shared through Redis.
    pub(crate) fn shared(&self, hit: bool) {
        self.shared[usize::from(!hit)].increment(1);
    }
}

/// The methods with series of their own; any other is counted as `other`,
/// so that made-up methods cannot grow the series.
const METHODS: [(Method, &str); 7] = [
    (Method::GET, "GET"),
    (Method::POST, "POST"),
    (Method::PUT, "PUT"),
    (Method::PATCH, "PATCH"),
    (Method::DELETE, "DELETE"),
    (Method::HEAD, "HEAD"),
    (Method::OPTIONS, "OPTIONS"),
];

/// Status codes with a cached counter: 100..=599.
const STATUS_SLOTS: usize = 500;

/// The request counters and latency of one route and method.
#[derive(Debug)]
struct Series {
    route: Arc<str>,
    method: &'static str,
    by_status: Box<[OnceLock<Counter>]>,
    duration: Histogram,
}

impl Series {
    fn new(route: &Arc<str>, method: &'static str) -> Self {
        Self {
            duration: histogram!(DURATION, "route" => route.to_string(), "method" => method),
            by_status: (0..STATUS_SLOTS).map(|_| OnceLock::new()).collect(),
            route: Arc::clone(route),
            method,
        }
    }

    fn record(&self, status: StatusCode, elapsed: Duration) {
        let slot = usize::from(status.as_u16()).clamp(100, 599) - 100;
        let counter = self.by_status[slot].get_or_init(|| {
            counter!(REQUESTS,
                "route" => self.route.to_string(),
                "method" => self.method,
                "status" => status.as_str().to_owned())
        });
        counter.increment(1);
        self.duration.record(elapsed.as_secs_f64());
    }
}

/// One route's series, one per method (the last: `other`), each made on
/// its first request.
#[derive(Debug)]
struct Route {
    name: Arc<str>,
    by_method: [OnceLock<Series>; METHODS.len() + 1],
}

impl Route {
    fn series(&self, method: &Method) -> &Series {
        let index = METHODS
            .iter()
            .position(|(m, _)| m == method)
            .unwrap_or(METHODS.len());
        let label = METHODS.get(index).map_or("other", |(_, label)| label);
        self.by_method[index].get_or_init(|| Series::new(&self.name, label))
    }
}

/// Every route's series, made on the route's first request. Routes are the
/// router's patterns (`/api/v1/orders/{id}`), never raw paths, so the map
/// stays as small as the router.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    routes: RwLock<HashMap<Box<str>, Arc<Route>>>,
}

impl Requests {
    /// Counts one answered request of `route` and its latency.
    pub(crate) fn record(
        &self,
        route: &str,
        method: &Method,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let known = self.routes.read().ok().and_then(|r| r.get(route).cloned());
        let route = known.unwrap_or_else(|| self.add(route));
        route.series(method).record(status, elapsed);
    }

    fn add(&self, route: &str) -> Arc<Route> {
        let made = Arc::new(Route {
            name: route.into(),
            by_method: Default::default(),
        });
        match self.routes.write() {
            Ok(mut routes) => Arc::clone(routes.entry(route.into()).or_insert(made)),
            // A panic while holding the lock: count without keeping.
            Err(_) => made,
        }
    }
}

/// Whether the node's stores answer, recorded in [`STORE_UP`]: the
/// database, and Redis when the node has one.
pub(crate) async fn stores_up(app: &App) -> bool {
    let redis = async {
        match &app.redis {
            Some(redis) => Some(redis.ping().await.is_ok()),
            None => None,
        }
    };
    let (db, redis) = tokio::join!(app.db.is_reachable(), redis);
    gauge!(STORE_UP, "store" => "database").set(f64::from(u8::from(db)));
    if let Some(up) = redis {
        gauge!(STORE_UP, "store" => "redis").set(f64::from(u8::from(up)));
    }
    db && redis.unwrap_or(true)
}

/// Reads the pool's connections into [`DB_CONNECTIONS`].
fn pool_gauges(app: &App) {
    let pool = app.db.pool();
    let (size, idle) = (pool.size(), pool.num_idle());
    let busy = usize::try_from(size)
        .unwrap_or(usize::MAX)
        .saturating_sub(idle);
    gauge!(DB_CONNECTIONS, "state" => "idle").set(idle as f64);
    gauge!(DB_CONNECTIONS, "state" => "busy").set(busy as f64);
    gauge!(DB_MAX_CONNECTIONS).set(f64::from(app.config.database.max_connections));
}

/// Serves `/metrics` and `/healthz` on `listener` until the task is aborted.
pub(crate) fn serve(listener: TcpListener, app: Arc<App>) -> tokio::task::JoinHandle<()> {
    let handle = install();
    let admin = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| std::future::ready("ok")))
        .with_state((app, handle));
    tokio::spawn(async move {
        let _ = axum::serve(listener, admin).await;
    })
}

async fn metrics(State((app, handle)): State<(Arc<App>, PrometheusHandle)>) -> String {
    stores_up(&app).await;
    pool_gauges(&app);
    handle.render()
}
