//! The admin listener: `/metrics` for Prometheus, `/healthz`, the backends'
//! state (`GET /backends`) and drains (`POST
//! /pools/{pool}/backends/{backend}/drain` and `.../undrain`), on its own
//! address and thread so that a flood on the public port cannot starve
//! monitoring, and none of it is ever exposed to clients.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use stampede_balance::Out;
use stampede_telemetry::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Shared;
use crate::body::ResponseBody;
use crate::pool::Pool;
use crate::server::{Current, accept_until_stopped, runtime};
use crate::telemetry;

/// How often histogram samples are folded into their buckets, so memory
/// stays bounded even when nobody scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

pub(crate) fn serve(
    listener: std::net::TcpListener,
    current: Current,
    stop: watch::Receiver<bool>,
) -> io::Result<()> {
    runtime()?.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        let handle = telemetry::install();
        let upkeep = {
            let handle = handle.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(UPKEEP);
                loop {
                    tick.tick().await;
                    handle.run_upkeep();
                }
            })
        };
        let builder = auto::Builder::new(TokioExecutor::new());
        accept_until_stopped(&listener, stop, |stream, _peer| {
            let (current, handle) = (current.clone(), handle.clone());
            let service = service_fn(move |req| {
                // The configuration current when the request arrived.
                let shared = Arc::clone(&current.borrow());
                let answer = route(&req, &shared, &handle);
                async move { Ok::<_, Infallible>(answer) }
            });
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            tokio::spawn(async move {
                let _ = connection.await;
            });
        })
        .await;
        upkeep.abort();
        Ok(())
    })
}

fn route(
    req: &Request<Incoming>,
    shared: &Shared,
    handle: &PrometheusHandle,
) -> Response<ResponseBody> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            for pool in &shared.pools {
                for (backend, metrics) in pool.backends.iter().zip(&pool.metrics) {
                    metrics.publish_in_flight(backend.load.in_flight());
                }
            }
            text(
                StatusCode::OK,
                handle.render(),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        }
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n".into(), "text/plain"),
        (&Method::GET, "/backends") => {
            let pools: Vec<serde_json::Value> =
                shared.pools.iter().map(|p| pool_state(p)).collect();
            json(StatusCode::OK, &serde_json::json!({ "pools": pools }))
        }
        (&Method::POST, path) => match drain_request(path) {
            Some((pool, backend, draining)) => drain(shared, pool, backend, draining),
            None => text(StatusCode::NOT_FOUND, "not found\n".into(), "text/plain"),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n".into(), "text/plain"),
    }
}

/// `/pools/{pool}/backends/{backend}/drain` (or `/undrain`): the pool, the
/// backend and whether to drain.
fn drain_request(path: &str) -> Option<(&str, &str, bool)> {
    let rest = path.strip_prefix("/pools/")?;
    let (pool, rest) = rest.split_once("/backends/")?;
    let (backend, action) = rest.rsplit_once('/')?;
    let draining = match action {
        "drain" => true,
        "undrain" => false,
        _ => return None,
    };
    Some((pool, backend, draining))
}

/// Takes a backend out of new picks (in-flight requests finish) or puts it
/// back; answers its state.
fn drain(shared: &Shared, pool: &str, backend: &str, draining: bool) -> Response<ResponseBody> {
    let Some(found) = shared.pools.iter().find(|p| &*p.name == pool) else {
        let body =
            serde_json::json!({ "error": "not_found", "message": format!("no pool `{pool}`") });
        return json(StatusCode::NOT_FOUND, &body);
    };
    let Some(index) = found.backends.iter().position(|b| b.id == backend) else {
        let message = format!("pool `{pool}` has no backend `{backend}`");
        let body = serde_json::json!({ "error": "not_found", "message": message });
        return json(StatusCode::NOT_FOUND, &body);
    };
    found.set_out(index, Out::Draining, draining);
    let verb = if draining { "Draining" } else { "Undraining" };
    tracing::info!(
        pool,
        backend,
        "{verb} backend on the admin listener's request."
    );
    json(StatusCode::OK, &backend_state(found, index))
}

fn pool_state(pool: &Pool) -> serde_json::Value {
    let backends: Vec<serde_json::Value> = (0..pool.backends.len())
        .map(|i| backend_state(pool, i))
        .collect();
    serde_json::json!({ "pool": &*pool.name, "backends": backends })
}

fn backend_state(pool: &Pool, index: usize) -> serde_json::Value {
    let backend = &pool.backends[index];
    serde_json::json!({
        "pool": &*pool.name,
        "backend": backend.id,
        "available": backend.is_available(),
        "healthy": !backend.is_out(Out::Unhealthy),
        "draining": backend.is_out(Out::Draining),
        "ejected": backend.is_out(Out::Ejected),
        "warming": pool.warming(index),
        "in_flight": backend.load.in_flight(),
    })
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<ResponseBody> {
    text(status, format!("{body}\n"), "application/json")
}

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(body, None));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::drain_request;

    #[test]
    fn drain_paths_name_the_pool_the_backend_and_the_action() {
        assert_eq!(
            drain_request("/pools/web/backends/127.0.0.1:9001/drain"),
            Some(("web", "127.0.0.1:9001", true))
        );
        assert_eq!(
            drain_request("/pools/web/backends/[::1]:9001/undrain"),
            Some(("web", "[::1]:9001", false))
        );
        for other in ["/pools/web/backends/x/stop", "/pools/web/x/drain", "/drain"] {
            assert_eq!(drain_request(other), None, "{other}");
        }
    }
}
