//! The admin listener: `/metrics` for Prometheus and `/healthz`, on its own
//! address and thread so that a flood on the public port cannot starve
//! monitoring, and monitoring is never exposed to clients.

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
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Shared;
use crate::body::ResponseBody;
use crate::server::{accept_until_stopped, runtime};
use crate::telemetry;

/// How often histogram samples are folded into their buckets, so memory
/// stays bounded even when nobody scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

pub(crate) fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
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
            let shared = Arc::clone(&shared);
            let handle = handle.clone();
            let service = service_fn(move |req| {
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
        _ => text(StatusCode::NOT_FOUND, "not found\n".into(), "text/plain"),
    }
}

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(body, None));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
