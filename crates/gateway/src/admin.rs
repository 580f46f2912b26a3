//! The admin listener: `/metrics` for Prometheus, `/healthz`, the backends'
//! state (`GET /backends`), drains (`POST
//! /pools/{pool}/backends/{backend}/drain` and `.../undrain`) and the
//! operations page (`/ops`, see `ops`), on its own address and thread so
//! that a flood on the public port cannot starve monitoring, and none of
//! it is ever exposed to clients.
//!
//! With an admin token configured, `/backends` and drains need it
//! (`Authorization: Bearer`), as the page does; `/metrics` and `/healthz`
//! stay open for Prometheus and probes. Without one, those endpoints stay
//! open as they always were, and the page says it needs a token.

mod auth;
mod ops;
mod sale;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::header::{CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
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
use crate::recent::{self, Window};
use crate::server::{Current, accept_until_stopped, runtime};
use crate::telemetry;

/// How often histogram samples are folded into their buckets, so memory
/// stays bounded even when nobody scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

/// What the admin listener keeps between requests.
#[derive(Debug)]
struct Admin {
    metrics: PrometheusHandle,
    sessions: auth::Sessions,
    /// Every backend's recent figures (see `recent`).
    window: Mutex<Window>,
    sale: sale::Sale,
}

pub(crate) fn serve(
    listener: std::net::TcpListener,
    current: Current,
    stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let sessions = auth::Sessions::new().map_err(io::Error::other)?;
    runtime()?.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        let admin = Arc::new(Admin {
            metrics: telemetry::install(),
            sessions,
            window: Mutex::new(Window::default()),
            sale: sale::Sale::default(),
        });
        let upkeep = tokio::spawn(upkeep(Arc::clone(&admin)));
        let sampler = tokio::spawn(sample(Arc::clone(&admin), current.clone()));
        let builder = auto::Builder::new(TokioExecutor::new());
        accept_until_stopped(&listener, stop, |stream, _peer| {
            let (current, admin) = (current.clone(), Arc::clone(&admin));
            let service = service_fn(move |req| {
                // The configuration current when the request arrived.
                let shared = Arc::clone(&current.borrow());
                let admin = Arc::clone(&admin);
                async move { Ok::<_, Infallible>(route(req, &shared, &admin).await) }
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
        sampler.abort();
        Ok(())
    })
}

async fn upkeep(admin: Arc<Admin>) {
    let mut tick = tokio::time::interval(UPKEEP);
    loop {
        tick.tick().await;
        admin.metrics.run_upkeep();
    }
}

/// Samples every backend's tally into the window, once a second.
async fn sample(admin: Arc<Admin>, current: Current) {
    let mut tick = tokio::time::interval(recent::SAMPLE_EVERY);
    loop {
        tick.tick().await;
        let shared = Arc::clone(&current.borrow());
        let readings: HashMap<recent::Key, recent::Counts> = shared
            .pools
            .iter()
            .flat_map(|pool| {
                pool.backends
                    .iter()
                    .zip(&pool.metrics)
                    .map(|(backend, metrics)| {
                        let key = (pool.name.to_string(), backend.id.clone());
                        (key, metrics.requests.recent.counts())
                    })
            })
            .collect();
        lock(&admin.window).sample(Instant::now(), readings);
    }
}

/// The window, even if a thread panicked holding it: it holds counts only.
fn lock(window: &Mutex<Window>) -> std::sync::MutexGuard<'_, Window> {
    window
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn route(req: Request<Incoming>, shared: &Shared, admin: &Admin) -> Response<ResponseBody> {
    let path = req.uri().path();
    if path == "/ops" || path.starts_with("/ops/") {
        return ops::route(req, shared, admin).await;
    }
    match (req.method(), path) {
        (&Method::GET, "/metrics") => {
            for pool in &shared.pools {
                for (backend, metrics) in pool.backends.iter().zip(&pool.metrics) {
                    metrics.publish_in_flight(backend.load.in_flight());
                }
            }
            text(
                StatusCode::OK,
                admin.metrics.render(),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        }
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n".into(), "text/plain"),
        _ if !bearer_allowed(&req, shared, admin) => {
            unauthorized("this call needs Authorization: Bearer <admin token>")
        }
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

/// Whether a request to `/backends` or a drain may go on: always without
/// a token (as before there was one), else with the token as a bearer.
fn bearer_allowed(req: &Request<Incoming>, shared: &Shared, admin: &Admin) -> bool {
    let Some(token) = &shared.config.admin_token else {
        return true;
    };
    // These endpoints are for scripts: the page's cookie is scoped to
    // /ops, so only a bearer can pass.
    admin.sessions.access(req.method(), req.headers(), token) == auth::Access::Granted
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

/// What the operations page shows of the pools: each backend's state as
/// `GET /backends` has it, with one word for it (`draining` before
/// `down` before `ejected` before `up`: the reason an operator set, then
/// the one that needs a look), whether it is a backup, its ejections, and
/// its figures over the recent window.
fn state(shared: &Shared, admin: &Admin) -> serde_json::Value {
    let now = Instant::now();
    let window = lock(&admin.window);
    let pools: Vec<serde_json::Value> = shared
        .pools
        .iter()
        .map(|pool| {
            let backends: Vec<serde_json::Value> = (0..pool.backends.len())
                .map(|i| {
                    let (backend, metrics) = (&pool.backends[i], &pool.metrics[i]);
                    let key = (pool.name.to_string(), backend.id.clone());
                    let rates = window.rates(&key, now, &metrics.requests.recent.counts());
                    let mut entry = backend_state(pool, i);
                    entry["state"] = health_word(backend).into();
                    entry["backup"] = pool.is_backup(i).into();
                    entry["ejections"] = metrics.ejections().into();
                    entry["requests_per_second"] = rates.requests_per_second.into();
                    entry["error_rate"] = rates.error_rate.into();
                    entry["p50_ms"] = rates.p50_ms.into();
                    entry["p99_ms"] = rates.p99_ms.into();
                    entry
                })
                .collect();
            serde_json::json!({ "pool": &*pool.name, "backends": backends })
        })
        .collect();
    serde_json::json!({
        "window_seconds": recent::WINDOW.as_secs(),
        "pools": pools,
    })
}

fn health_word(backend: &stampede_balance::Backend) -> &'static str {
    if backend.is_out(Out::Draining) {
        "draining"
    } else if backend.is_out(Out::Unhealthy) {
        "down"
    } else if backend.is_out(Out::Ejected) {
        "ejected"
    } else {
        "up"
    }
}

/// `401 unauthorized` saying what to send.
fn unauthorized(message: &str) -> Response<ResponseBody> {
    let body = serde_json::json!({ "error": "unauthorized", "message": message });
    let mut response = json(StatusCode::UNAUTHORIZED, &body);
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
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
