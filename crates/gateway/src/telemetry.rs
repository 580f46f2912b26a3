//! The gateway's Prometheus metrics: their names, labels, and cheap handles.
//!
//! Looking a metric up by name and labels hashes the key on every call; on
//! the hot path that is a measurable share of a proxied request. So each
//! backend resolves its handles once, at start, and requests only touch
//! atomics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::LowerName;
use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use stampede_telemetry::PrometheusHandle;

use crate::recent::Tally;

/// Requests answered, by `pool`, `backend` and `status`.
pub const REQUESTS: &str = "stampede_gateway_requests_total";
/// Seconds from receiving a request to the end of its response, by `pool` and `backend`.
pub const DURATION: &str = "stampede_gateway_request_duration_seconds";
/// Open connections from the gateway to each backend, by `pool` and `backend`.
pub const BACKEND_CONNECTIONS: &str = "stampede_gateway_backend_connections";
/// Requests in flight to each backend, by `pool` and `backend`.
pub const BACKEND_IN_FLIGHT: &str = "stampede_gateway_backend_in_flight";
/// 1 while a backend is in rotation, 0 while anything holds it out
/// (failing health checks, a drain, an ejection); by `pool` and `backend`.
pub const BACKEND_UP: &str = "stampede_gateway_backend_up";
/// Requests retried on another backend, by `pool`.
pub const RETRIES: &str = "stampede_gateway_retries_total";
/// Retries the retry budget refused, by `pool`.
pub const RETRIES_REFUSED: &str = "stampede_gateway_retries_refused_total";
/// Requests admission control answered itself, by `pool` and `reason`
/// (`overloaded`: the concurrency limit and its queue, or a waiting room's
/// line, were full; `rate_limited`: the rate limit's bucket was empty;
/// `waiting_room`: a visitor was told to wait).
pub const ADMISSION_REFUSED: &str = "stampede_gateway_admission_refused_total";
/// Visitors waiting in a route's waiting room, by `pool`.
pub const WAITING_ROOM_WAITING: &str = "stampede_gateway_waiting_room_waiting";
/// DNS queries answered, by `name` (fully qualified, `none` for names not
/// served) and `rcode` (`NOERROR`, `REFUSED`, `SERVFAIL`, ...).
pub const DNS_QUERIES: &str = "stampede_gateway_dns_queries_total";
/// Connections accepted by `[[tcp]]` listeners, by `pool` and the
/// `backend` they were relayed to (`none`: no backend could be reached).
pub const TCP_CONNECTIONS: &str = "stampede_gateway_tcp_connections_total";
/// Requests to routes with a response cache, by `pool`, `route` (its host
/// and path prefix) and `result`: `hit` (answered from memory, waiting on
/// another request's fetch included), `miss` (sent to the backend) or
/// `bypass` (a request no cache may answer, such as one with
/// `Authorization`).
pub const RESPONSE_CACHE: &str = "stampede_gateway_response_cache_requests_total";
/// Open client connections.
pub const CLIENT_CONNECTIONS: &str = "stampede_gateway_client_connections";
/// TLS handshakes on the HTTPS listener, by `outcome` (`ok`, `failed`,
/// `timeout`).
pub const TLS_HANDSHAKES: &str = "stampede_gateway_tls_handshakes_total";

/// Latency buckets in seconds: from a cached answer to a slow checkout.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the process-wide Prometheus recorder (see `stampede_telemetry`),
/// with the gateway's latency buckets, and returns its handle.
pub fn install() -> PrometheusHandle {
    stampede_telemetry::install(DURATION, &BUCKETS)
}

/// Status codes with a cached counter: 100..=599.
const STATUS_SLOTS: usize = 500;

/// Request counters and latency for one backend of one pool, or for the
/// pool's requests that failed before a backend was chosen (`backend="none"`).
#[derive(Debug)]
pub(crate) struct RequestMetrics {
    pool: Arc<str>,
    backend: Arc<str>,
    by_status: Box<[OnceLock<Counter>]>,
    duration: Histogram,
    /// The same requests for the operations page (see `recent`).
    pub(crate) recent: Tally,
}

impl RequestMetrics {
    pub(crate) fn new(pool: &str, backend: &str) -> Self {
        Self {
            by_status: (0..STATUS_SLOTS).map(|_| OnceLock::new()).collect(),
            duration: histogram!(DURATION, &labels(pool, backend)),
            recent: Tally::default(),
            pool: pool.into(),
            backend: backend.into(),
        }
    }

    /// Counts one answered request and its duration.
    pub(crate) fn record(&self, status: u16, elapsed: Duration) {
        self.status_counter(status).increment(1);
        self.duration.record(elapsed.as_secs_f64());
        self.recent.record(status, elapsed);
    }

    fn status_counter(&self, status: u16) -> &Counter {
        let slot = usize::from(status).clamp(100, 599) - 100;
        self.by_status[slot].get_or_init(|| {
            counter!(REQUESTS,
                "pool" => self.pool.to_string(),
                "backend" => self.backend.to_string(),
                "status" => status.to_string())
        })
    }
}

/// Everything measured about one backend.
#[derive(Debug)]
pub(crate) struct BackendMetrics {
    pub(crate) requests: Arc<RequestMetrics>,
    connections: Gauge,
    in_flight: Gauge,
    up: Gauge,
    /// Resolved on the first L4 connection, so that backends of HTTP-only
    /// pools export no such series.
    tcp_connections: OnceLock<Counter>,
    /// Passive ejections so far, for the operations page; written only
    /// when one starts.
    ejections: AtomicU64,
}

impl BackendMetrics {
    pub(crate) fn new(pool: &str, backend: &str) -> Self {
        let labels = labels(pool, backend);
        let up = gauge!(BACKEND_UP, &labels);
        up.set(1.0);
        Self {
            requests: Arc::new(RequestMetrics::new(pool, backend)),
            connections: gauge!(BACKEND_CONNECTIONS, &labels),
            in_flight: gauge!(BACKEND_IN_FLIGHT, &labels),
            up,
            tcp_connections: OnceLock::new(),
            ejections: AtomicU64::new(0),
        }
    }

    /// Counts a passive ejection of the backend.
    pub(crate) fn ejected(&self) {
        self.ejections.fetch_add(1, Ordering::Relaxed);
    }

    /// Passive ejections of the backend so far.
    pub(crate) fn ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// Publishes whether the backend is in rotation.
    pub(crate) fn set_up(&self, up: bool) {
        self.up.set(if up { 1.0 } else { 0.0 });
    }

    /// Publishes the backend's in-flight count; called when metrics are
    /// scraped rather than per request, since the strategies already count.
    pub(crate) fn publish_in_flight(&self, in_flight: u32) {
        self.in_flight.set(f64::from(in_flight));
    }

    /// Marks a backend connection open until the guard drops.
    pub(crate) fn connection(&self) -> GaugeGuard {
        GaugeGuard::new(self.connections.clone())
    }

    /// Counts an L4 connection relayed to the backend, and marks it open
    /// until the guard drops.
    pub(crate) fn tcp_connection(&self) -> GaugeGuard {
        let requests = &self.requests;
        self.tcp_connections
            .get_or_init(|| counter!(TCP_CONNECTIONS, &labels(&requests.pool, &requests.backend)))
            .increment(1);
        self.connection()
    }
}

/// Counts one DNS query: its name when it is one the gateway serves (any
/// other would let clients grow the label set without bound).
pub(crate) fn dns_query(name: Option<&LowerName>, rcode: ResponseCode) {
    let name = name.map_or_else(|| "none".to_owned(), |n| n.to_string());
    counter!(DNS_QUERIES, "name" => name, "rcode" => rcode_label(rcode)).increment(1);
}

/// The mnemonic of a response code, as `dig` prints it.
fn rcode_label(rcode: ResponseCode) -> &'static str {
    match rcode {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        _ => "OTHER",
    }
}

fn labels(pool: &str, backend: &str) -> [(&'static str, String); 2] {
    [("pool", pool.to_owned()), ("backend", backend.to_owned())]
}

/// Increments a gauge now and decrements it when dropped.
#[derive(Debug)]
pub(crate) struct GaugeGuard(Gauge);

impl GaugeGuard {
    pub(crate) fn new(gauge: Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
