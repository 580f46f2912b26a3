//! L4 (TCP) listeners: each `[[tcp]]` accepts connections and balances
//! them over a pool, then copies bytes both ways until both sides are
//! done. The pool is the same as the HTTP routes': its strategy, health
//! checks, drains, ejection and slow start apply, per connection instead
//! of per request.
//!
//! A connection counts as in flight to its backend for its whole life, so
//! least-conn balances open connections; the connect time feeds the
//! backend's latency average for p2c-ewma. A backend that refuses, or does
//! not accept within `connect_timeout`, is counted against it for passive
//! ejection and the connection is tried on another: nothing was sent, so
//! this is always safe. As many times as the pool's `retries.max` (within
//! its budget), or once when the pool has no `[retries]`.
//!
//! Half-close: when one side ends its writing (a client's `shutdown(WR)`
//! after its last command), `copy_bidirectional` shuts down the write side
//! towards the other and goes on copying the reverse direction until that
//! ends too, so request-then-half-close protocols get their whole answer.
//!
//! Each connection reads the current configuration when it is accepted
//! (the listener's pool, timeouts, PROXY header), so a reload applies to
//! new connections and leaves open ones alone.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use stampede_balance::InFlight;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::Shared;
use crate::config::TcpConfig;
use crate::pool::Pool;
use crate::retry::Tried;
use crate::server::{Current, Drain, accept_until_stopped};
use crate::telemetry::GaugeGuard;

mod proxy_protocol;

/// Serves `tcp[index]` on `listener` until `stop`, then lets open
/// connections finish for the drain timeout.
pub(crate) async fn serve(
    listener: TcpListener,
    index: usize,
    follow: Current,
    stop: watch::Receiver<bool>,
) {
    let drain = Drain::new();
    accept_until_stopped(&listener, stop, |client, peer| {
        let shared = Arc::clone(&follow.borrow());
        let hold = drain.hold();
        tokio::spawn(async move {
            relay(&shared, index, client, peer).await;
            drop(hold);
        });
    })
    .await;
    drop(listener);
    let limit = follow.borrow().config.drain_timeout;
    drain.wait(limit).await;
}

/// One client connection, from the choice of a backend to the end of the
/// copying.
async fn relay(shared: &Shared, index: usize, mut client: TcpStream, peer: SocketAddr) {
    let listener = &shared.config.tcp[index];
    let Some(pool) = shared.pool(&listener.pool) else {
        return; // Validation makes every listener's pool exist.
    };
    let mut upstream = match connect(pool, listener, peer.ip()).await {
        Ok(upstream) => upstream,
        Err(reason) => {
            metrics::counter!(crate::telemetry::TCP_CONNECTIONS,
                "pool" => pool.name.to_string(), "backend" => "none")
            .increment(1);
            tracing::warn!(pool = %pool.name, %peer, "TCP connection closed: {reason}.");
            return;
        }
    };
    if let Some(version) = listener.proxy_protocol {
        let local = client.local_addr().unwrap_or(peer);
        let header = proxy_protocol::header(version, peer, local);
        if upstream.stream.write_all(&header).await.is_err() {
            return;
        }
    }
    let activity = Activity::default();
    let mut client = Watched::new(&mut client, &activity);
    let copied = tokio::io::copy_bidirectional(&mut client, &mut upstream.stream);
    let result = match listener.idle_timeout {
        Some(idle) => tokio::select! {
            copied = copied => copied.map(drop),
            () = activity.idle_for(idle) => Ok(()),
        },
        None => copied.await.map(drop),
    };
    if let Err(error) = result {
        tracing::debug!(pool = %pool.name, %peer, %error, "TCP connection broken.");
    }
}

/// A connection to a chosen backend, counted while it lives.
struct Upstream {
    stream: TcpStream,
    _in_flight: InFlight,
    _open: GaugeGuard,
}

/// Connects to the backend the strategy chooses for `client`, or, when that
/// fails, to others (see the module docs); why not, when none would do.
async fn connect(pool: &Pool, listener: &TcpConfig, client: IpAddr) -> Result<Upstream, String> {
    let headers: &[httparse::Header<'_>] = &[];
    let mut choice = pool
        .choose(client, "", headers)
        .ok_or("no backend of the pool is available")?;
    if let Some(retries) = &pool.retries {
        retries.deposit();
    }
    let mut tried = Tried::first(choice.index);
    loop {
        let backend = &pool.backends[choice.index];
        let in_flight = backend.start();
        let started = Instant::now();
        let reason =
            match tokio::time::timeout(listener.connect_timeout, TcpStream::connect(backend.addr))
                .await
            {
                Ok(Ok(stream)) => {
                    backend.load.observe_latency(started.elapsed());
                    pool.observe(choice.index, false);
                    let _ = stream.set_nodelay(true);
                    return Ok(Upstream {
                        stream,
                        _in_flight: in_flight,
                        _open: pool.metrics[choice.index].tcp_connection(),
                    });
                }
                Ok(Err(error)) => format!("connect failed: {error}"),
                Err(_) => format!("connect timed out after {:?}", listener.connect_timeout),
            };
        pool.observe(choice.index, true);
        tracing::warn!(pool = %pool.name, backend = %backend.id, "TCP backend failed: {reason}.");
        choice = pool
            .retry_connect(&mut tried)
            .ok_or_else(|| format!("backend {} {reason}", backend.id))?;
    }
}

/// When a connection last moved a byte either way, for its idle timeout.
#[derive(Debug)]
struct Activity {
    epoch: Instant,
    /// Milliseconds since `epoch`.
    last: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
    }

    /// Returns once nothing has moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.epoch + Duration::from_millis(self.last.load(Ordering::Relaxed));
            let quiet = last.elapsed();
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet).await;
        }
    }
}

/// The client's socket, noting each read and write in an [`Activity`]:
/// every byte either way passes through it, so the backend's side needs
/// no watching.
struct Watched<'a> {
    stream: &'a mut TcpStream,
    activity: &'a Activity,
}

impl<'a> Watched<'a> {
    fn new(stream: &'a mut TcpStream, activity: &'a Activity) -> Self {
        Self { stream, activity }
    }
}

impl AsyncRead for Watched<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut *this.stream).poll_read(cx, buf);
        if polled.is_ready() {
            this.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut *this.stream).poll_write(cx, buf);
        if polled.is_ready() {
            this.activity.touch();
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_idle_timeout_counts_from_the_last_byte() {
        let activity = Activity::default();
        let idle = Duration::from_secs(10);
        tokio::time::sleep(Duration::from_secs(6)).await;
        activity.touch();
        let waited = Instant::now();
        activity.idle_for(idle).await;
        assert_eq!(waited.elapsed(), idle);
    }
}
