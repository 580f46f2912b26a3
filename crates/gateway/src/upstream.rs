//! Connections to backends: hyper-util's pooled keep-alive client, with a
//! connector that counts each backend's open connections for `/metrics`.
//!
//! Each worker thread owns its clients, so a connection is only ever driven
//! by the thread that uses it and the pool's lock is never contended.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::RequestBody;
use crate::pool::Pool;
use crate::telemetry::{BackendMetrics, GaugeGuard};

/// The HTTP client one worker uses for one route.
pub(crate) type UpstreamClient = Client<CountingConnector, RequestBody>;

/// Builds the client for a route to `pool` with the route's connect timeout.
pub(crate) fn client(pool: &Pool, connect_timeout: Duration) -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let connector = CountingConnector {
        http,
        metrics: Arc::new(
            pool.backends
                .iter()
                .zip(&pool.metrics)
                .map(|(backend, metrics)| (backend.addr, Arc::clone(metrics)))
                .collect(),
        ),
    };
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(pool.idle_timeout)
        .pool_max_idle_per_host(pool.max_idle_per_backend)
        .http2_only(pool.http2)
        .build(connector)
}

/// An [`HttpConnector`] whose connections hold a gauge of their backend.
#[derive(Debug, Clone)]
pub(crate) struct CountingConnector {
    http: HttpConnector,
    metrics: Arc<HashMap<SocketAddr, Arc<BackendMetrics>>>,
}

type Connecting = Pin<Box<dyn Future<Output = Result<Counted, BoxError>> + Send>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<Uri> for CountingConnector {
    type Response = Counted;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        let gauge = uri
            .authority()
            .and_then(|a| a.as_str().parse::<SocketAddr>().ok())
            .and_then(|addr| self.metrics.get(&addr))
            .map(|m| m.connection());
        let connecting = self.http.call(uri);
        Box::pin(async move {
            let stream = connecting.await?;
            Ok(Counted {
                stream,
                _gauge: gauge,
            })
        })
    }
}

type Stream = hyper_util::rt::TokioIo<tokio::net::TcpStream>;

/// A backend connection counted in its backend's gauge until dropped.
///
/// It delegates hyper's IO traits by hand, as `h1::Prefixed` delegates
/// tokio's: hyper-util's `Connection` must be implemented on the type the
/// connector returns, and the orphan rule forbids implementing it for
/// `TokioIo<_>` of a local wrapper, so the two cannot share one type.
#[derive(Debug)]
pub(crate) struct Counted {
    stream: Stream,
    _gauge: Option<GaugeGuard>,
}

impl Connection for Counted {
    fn connected(&self) -> Connected {
        self.stream.connected()
    }
}

impl Read for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl Write for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
