//! The middleware around every route: the request's id, its metrics and
//! its one log line.
//!
//! The id is the gateway's `X-Request-Id` (a fresh one when the request
//! came some other way), sent back on the response and carried, with the
//! route, by a span around the handler (`request{request_id, route}`), so
//! that every line a handler logs (a store error, a 500) names the
//! request it failed, and a client's complaint can be found in the logs
//! of whichever node served it.
//!
//! The log line goes to the target `stampede_shop::access`, at INFO, or at
//! WARN for a request slower than `slow_request`: an operator who wants
//! only the slow ones filters with `stampede_shop::access=warn`. Health
//! checks (`/healthz`, `/readyz`) are logged at DEBUG: a gateway or a
//! kubelet asks every second or two, and those lines would bury the rest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use http::header::HeaderName;
use tracing::Instrument;

use crate::telemetry::Requests;

/// The header the gateway assigns every request's id in.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The routes of health checks, logged at DEBUG.
const HEALTH_CHECKS: [&str; 2] = ["/healthz", "/readyz"];

/// The route of a request no route matched (a `404` or `405`).
const UNMATCHED: &str = "unmatched";

/// What the middleware keeps across requests.
#[derive(Debug)]
pub(crate) struct Observer {
    node: String,
    slow: Duration,
    requests: Requests,
}

impl Observer {
    /// Logs as `node`; requests slower than `slow` at WARN.
    pub(crate) fn new(node: &str, slow: Duration) -> Self {
        Self {
            node: node.to_owned(),
            slow,
            requests: Requests::default(),
        }
    }
}

/// Runs the request inside its span, then counts and logs it.
pub(crate) async fn observe(
    State(observer): State<Arc<Observer>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = request_id(&mut request);
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
    let method = request.method().clone();
    let id_text = id.to_str().unwrap_or_default();
    // At ERROR, the most severe level, so that the span is enabled
    // whatever the filter lets through: at `RUST_LOG=warn` an INFO span
    // would be filtered out, and the warnings inside it would lose their
    // request id.
    let span = tracing::error_span!("request", request_id = id_text, route);
    let mut response = next.run(request).instrument(span).await;
    let elapsed = started.elapsed();
    let status = response.status();
    observer.requests.record(route, &method, status, elapsed);
    log(
        &observer,
        id_text,
        method.as_str(),
        route,
        status.as_u16(),
        elapsed,
    );
    response.headers_mut().insert(X_REQUEST_ID, id);
    response
}

/// The request's one line.
fn log(
    observer: &Observer,
    request_id: &str,
    method: &str,
    route: &str,
    status: u16,
    elapsed: Duration,
) {
    let (latency_ms, node) = (elapsed.as_secs_f64() * 1000.0, observer.node.as_str());
    if elapsed > observer.slow {
        tracing::warn!(target: "stampede_shop::access", request_id, method, route, status, latency_ms, node, "slow request");
    } else if HEALTH_CHECKS.contains(&route) {
        tracing::debug!(target: "stampede_shop::access", request_id, method, route, status, latency_ms, node, "health check");
    } else {
        tracing::info!(target: "stampede_shop::access", request_id, method, route, status, latency_ms, node, "request");
    }
}

/// The request's `X-Request-Id`, or a new random one set on it, so that
/// the handler sees the same id the log line and the response carry.
fn request_id(request: &mut Request) -> HeaderValue {
    let given = request
        .headers()
        .get(&X_REQUEST_ID)
        .filter(|v| !v.is_empty() && v.len() <= 200);
    if let Some(id) = given {
        return id.clone();
    }
    let mut random = [0u8; 16];
    // Without randomness the id is all zeros: still a log line, just not a
    // findable one.
    let _ = getrandom::fill(&mut random);
    let id = HeaderValue::from_str(&hex::encode(random)).unwrap_or(HeaderValue::from_static("0"));
    request.headers_mut().insert(X_REQUEST_ID, id.clone());
    id
}
