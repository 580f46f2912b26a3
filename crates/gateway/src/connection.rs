//! One client connection's life: served by the HTTP/1.1 fast path (`h1`)
//! until a request needs hyper (HTTP/2, upgrades, ...), then by hyper; closed
//! when it has been idle too long, and gracefully when the gateway stops.
//! A connection to the HTTPS listener is served by hyper from its first
//! request on, once its TLS handshake is done (see `tls` for why).
//!
//! The fast path bounds idleness itself (a request head must arrive within
//! `idle_timeout`, so a client that connects and sends nothing is closed).
//! hyper has no idle timeout for HTTP/2, only pings a live client answers;
//! so on the hyper side the connection counts its open exchanges and asks
//! hyper to close it (HTTP/1 `Connection: close`, HTTP/2 `GOAWAY`) once none
//! has been open for `idle_timeout`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::forwarded::Peer;
use crate::h1::{self, Ended};
use crate::proxy::Proxy;
use crate::telemetry::{CLIENT_CONNECTIONS, GaugeGuard};

/// What one worker's connections share, for one configuration.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) proxy: Arc<Proxy>,
    pub(crate) builder: auto::Builder<TokioExecutor>,
    pub(crate) idle_timeout: Duration,
}

/// A connection's view of its worker's context, which a reload replaces:
/// each request is served with the one current when its head arrived.
#[derive(Debug)]
pub(crate) struct Latest(watch::Receiver<Arc<Context>>);

impl Latest {
    pub(crate) fn new(contexts: watch::Receiver<Arc<Context>>) -> Self {
        Self(contexts)
    }

    /// The current context.
    pub(crate) fn get(&mut self) -> Arc<Context> {
        Arc::clone(&self.0.borrow_and_update())
    }

    /// Replaces `proxy` with the current one if a reload came since it was
    /// taken; costs one atomic read when none did.
    pub(crate) fn refresh(&mut self, proxy: &mut Arc<Proxy>) {
        if self.0.has_changed().unwrap_or(false) {
            *proxy = Arc::clone(&self.0.borrow_and_update().proxy);
        }
    }
}

/// Serves one accepted connection until it closes; `tls` when it was
/// accepted on the HTTPS listener. `stop` turns true when the gateway shuts
/// down; `_drain` is dropped when this connection is done, which is how the
/// worker knows every connection has finished.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    tls: bool,
    mut latest: Latest,
    stop: watch::Receiver<bool>,
    _drain: mpsc::Sender<()>,
) {
    let _open = GaugeGuard::new(metrics::gauge!(CLIENT_CONNECTIONS));
    let proxy = Arc::clone(&latest.get().proxy);
    let peer = Arc::new(proxy.peer(peer, tls));
    if !tls {
        if let Ended::Handoff(io) = h1::serve(stream, &peer, &mut latest, &stop).await {
            serve_with_hyper(io, peer, latest, stop).await;
        }
        return;
    }
    // The configuration current at accept chooses the certificates; a
    // `[tls]` table cannot be removed by a reload (its listener stays), so
    // there always is one.
    let Some(tls) = &proxy.shared.tls else { return };
    if let Some(stream) = tls.accept(stream).await {
        serve_with_hyper(stream, peer, latest, stop).await;
    }
}

/// Serves the rest of a connection with hyper: HTTP/2, the HTTP/1
/// requests the fast path hands over (see `h1`), and everything over TLS.
async fn serve_with_hyper(
    io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    peer: Arc<Peer>,
    mut latest: Latest,
    mut stop: watch::Receiver<bool>,
) {
    let context = latest.get();
    let idle_timeout = context.idle_timeout;
    let activity = Arc::new(Activity::new());
    let service = {
        let (contexts, activity) = (latest.0, Arc::clone(&activity));
        service_fn(move |req| {
            let exchange = activity.begin();
            let proxy = Arc::clone(&contexts.borrow().proxy);
            let peer = Arc::clone(&peer);
            async move {
                let mut response = proxy.serve(req, &peer).await?;
                response.body_mut().hold(exchange);
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };
    let connection = context
        .builder
        .serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut idle_check = tokio::time::interval(idle_timeout / 2);
    let mut closing = false;
    // An idle HTTP/2 close waits for the client to acknowledge GOAWAY's ping;
    // a client that never does is cut off after this grace.
    let idle_close_grace = tokio::time::sleep(Duration::MAX);
    tokio::pin!(idle_close_grace);
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "Client connection ended with an error.");
                }
                return;
            }
            _ = stop.wait_for(|stop| *stop), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = idle_check.tick(), if !closing => {
                if activity.idle_for() >= idle_timeout {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                    idle_close_grace.as_mut().reset(Instant::now() + IDLE_CLOSE_GRACE);
                }
            }
            _ = &mut idle_close_grace => return,
        }
    }
}

/// How long an idle connection being closed may take to say goodbye.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Open exchanges on a connection, and when the last one ended.
#[derive(Debug)]
struct Activity {
    open: AtomicUsize,
    /// Milliseconds since `epoch` when the connection last became idle.
    idle_since: AtomicU64,
    epoch: Instant,
}

impl Activity {
    fn new() -> Self {
        Self {
            open: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn begin(self: &Arc<Self>) -> OpenExchange {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenExchange(Arc::clone(self))
    }

    /// How long the connection has had no open exchange (zero while one is open).
    fn idle_for(&self) -> Duration {
        if self.open.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let since = Duration::from_millis(self.idle_since.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(since)
    }
}

/// An exchange in progress on a connection: from the request's arrival to
/// the end of its response body.
#[derive(Debug)]
pub(crate) struct OpenExchange(Arc<Activity>);

impl Drop for OpenExchange {
    fn drop(&mut self) {
        let activity = &self.0;
        let now = activity.epoch.elapsed().as_millis() as u64;
        activity.idle_since.store(now, Ordering::Relaxed);
        activity.open.fetch_sub(1, Ordering::Relaxed);
    }
}
