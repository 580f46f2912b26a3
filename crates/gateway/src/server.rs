//! Listeners, worker threads and shutdown.
//!
//! The gateway runs like nginx: N worker threads, each with its own
//! single-threaded event loop accepting from the same listening socket, its
//! own backend connection pools, and nothing shared on the request path but
//! the read-only routing state and atomic counters. A request never hops
//! threads.
//!
//! The workers share one socket rather than each binding its own with
//! `SO_REUSEPORT`: with reuse-port, a second gateway started on the same port
//! by mistake would silently take half the traffic instead of failing with
//! "address in use".
//!
//! Reload ([`Gateway::reload`]): the new configuration is validated and
//! built into a new [`Shared`] beside the running one, carrying over the
//! backends that stay (their health, drains, in-flight counts), then
//! published on a `watch` channel. Each worker rebuilds its proxy from it,
//! and each connection takes the new proxy up at its next request: no
//! connection is closed and no in-flight request is touched, so keep-alive
//! clients and WebSockets ride through a reload (ingress-nginx's reloads cut
//! WebSockets, kubernetes/ingress-nginx#7115). Requests already under way
//! finish on the configuration they started with.
//!
//! Each worker also serves its copies of the `[[tcp]]` and `[[redirect]]`
//! listeners (see `l4` and `redirect`), on the same event loop: those
//! modes share the pools, and a connection never hops threads there either.
//! With `[tls]`, each worker also accepts from the HTTPS listener's socket;
//! its connections go through the TLS handshake first (see `tls`).
//!
//! Discovery (see `discover`) publishes the same way: a pool whose name
//! resolves to new addresses is rebuilt as a reload would rebuild it. The
//! two publish through one [`Publisher`], one at a time, so that neither
//! builds on a state the other is replacing.
//!
//! Shutdown: stop accepting, tell every connection to finish its in-flight
//! request and close (HTTP/1 `Connection: close`, HTTP/2 `GOAWAY`), wait up to
//! the drain timeout, then close whatever is left.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::Shared;
use crate::config::{Config, Limits};
use crate::proxy::Proxy;
use crate::{admin, connection, discover, dns, health, l4, redirect};

/// How often a worker closes backend connections idle past their pool's
/// `idle_timeout`.
const PRUNE_IDLE_EVERY: Duration = Duration::from_secs(5);

/// Backlog of each listening socket; nginx's default on Linux is 511.
const BACKLOG: i32 = 1024;

/// A gateway that could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listening address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why (in use, not permitted, ...).
        source: io::Error,
    },
    /// A thread or runtime could not be created.
    #[error("cannot start worker: {0}")]
    Runtime(io::Error),
    /// The operating system gave no random bytes for a waiting room's key.
    #[error("cannot draw a random key for a waiting room: {0}")]
    Random(getrandom::Error),
}

/// A reload the running gateway refuses; it goes on with its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new configuration changes what only a restart can change: the
    /// sockets and threads the gateway was started with.
    #[error(
        "`{key}` cannot change on a reload ({old} now, {new} in the new configuration); restart the gateway to change it"
    )]
    NeedsRestart {
        /// The key.
        key: &'static str,
        /// Its running value.
        old: String,
        /// The value the new configuration asks for.
        new: String,
    },
    /// The operating system gave no random bytes for a waiting room's key.
    #[error("cannot draw a random key for a waiting room: {0}")]
    Random(getrandom::Error),
}

/// A running gateway. Dropping it without [`Gateway::shutdown`] leaves the
/// worker threads running until the process exits.
#[derive(Debug)]
pub struct Gateway {
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    dns_addr: Option<SocketAddr>,
    tcp_addrs: Vec<SocketAddr>,
    redirect_addrs: Vec<SocketAddr>,
    /// Publishes the next shared state, on a reload or a discovery.
    publisher: Arc<Publisher>,
    shutdown: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

/// The shared state as a reader follows it across reloads.
pub(crate) type Current = watch::Receiver<Arc<Shared>>;

/// Where the next shared state is published, by one publisher at a time.
#[derive(Debug)]
pub(crate) struct Publisher(Mutex<watch::Sender<Arc<Shared>>>);

impl Publisher {
    /// Publishes what `next` builds from the running state, if it builds
    /// anything; no other publisher runs meanwhile.
    pub(crate) fn update<E>(
        &self,
        next: impl FnOnce(&Shared) -> Option<Result<Shared, E>>,
    ) -> Result<(), E> {
        let current = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let running = Arc::clone(&current.borrow());
        if let Some(next) = next(&running) {
            current.send_replace(Arc::new(next?));
        }
        Ok(())
    }
}

impl Gateway {
    /// Binds every listener and starts the workers; returns once the gateway
    /// accepts connections.
    pub fn start(config: Config) -> Result<Self, StartError> {
        let shared = Shared::new(config, discover::Discovered::default(), None)
            .map_err(StartError::Random)?;
        let shared = Arc::new(shared);
        let (current, follow) = watch::channel(Arc::clone(&shared));
        let publisher = Arc::new(Publisher(Mutex::new(current)));
        let config = &shared.config;
        let sockets = Sockets::bind(config)?;
        let addr = sockets.http.local_addr().map_err(StartError::Runtime)?;
        let tls_addr = sockets
            .tls
            .as_ref()
            .map(std::net::TcpListener::local_addr)
            .transpose()
            .map_err(StartError::Runtime)?;
        let tcp_addrs = local_addrs(&sockets.tcp)?;
        let redirect_addrs = local_addrs(&sockets.redirect)?;
        let listeners = (0..config.worker_threads())
            .map(|_| sockets.try_clone())
            .collect::<io::Result<Vec<_>>>()
            .map_err(StartError::Runtime)?;

        let (shutdown, watch_shutdown) = watch::channel(false);
        let mut threads = Vec::new();
        let mut admin_addr = None;
        if let Some(admin_listen) = config.admin_listen {
            let listener = bind(admin_listen)?;
            admin_addr = Some(listener.local_addr().map_err(StartError::Runtime)?);
            let (follow, stop) = (follow.clone(), watch_shutdown.clone());
            threads.push(spawn_thread("stampede-admin", move || {
                admin::serve(listener, follow, stop)
            })?);
        }
        let mut dns_addr = None;
        if let Some(dns) = &config.dns {
            let sockets = dns::bind(dns.listen)?;
            dns_addr = Some(sockets.local_addr().map_err(StartError::Runtime)?);
            let (follow, stop) = (follow.clone(), watch_shutdown.clone());
            threads.push(spawn_thread("stampede-dns", move || {
                dns::serve(sockets, follow, stop)
            })?);
        }
        // Always started: a reload may add checks to a gateway that had none.
        let (health_follow, stop) = (follow.clone(), watch_shutdown.clone());
        threads.push(spawn_thread("stampede-health", move || {
            health::run(health_follow, stop)
        })?);
        // Always started too: a reload may add a discovering pool.
        let (discover_follow, stop) = (follow.clone(), watch_shutdown.clone());
        let discover_publisher = Arc::clone(&publisher);
        threads.push(spawn_thread("stampede-discover", move || {
            discover::run(discover_follow, discover_publisher, stop)
        })?);
        for (i, sockets) in listeners.into_iter().enumerate() {
            let (follow, stop) = (follow.clone(), watch_shutdown.clone());
            threads.push(spawn_thread(&format!("stampede-worker-{i}"), move || {
                worker(sockets, follow, stop)
            })?);
        }
        tracing::info!(%addr, tls = ?tls_addr, admin = ?admin_addr, dns = ?dns_addr, tcp = ?tcp_addrs, redirect = ?redirect_addrs, "Gateway listening.");
        Ok(Self {
            addr,
            tls_addr,
            admin_addr,
            dns_addr,
            tcp_addrs,
            redirect_addrs,
            publisher,
            shutdown,
            threads,
        })
    }

    /// Replaces the running configuration with `config` (already validated)
    /// without closing a connection (see the module docs). Refused, with
    /// the running configuration untouched, when it changes the listeners
    /// or the worker count.
    pub fn reload(&self, config: Config) -> Result<(), ReloadError> {
        self.publisher.update(|running| {
            if let Err(error) = needs_no_restart(&running.config, &config) {
                return Some(Err(error));
            }
            let discovered = running.discovered.kept(&running.config, &config);
            Some(Shared::new(config, discovered, Some(running)).map_err(ReloadError::Random))
        })
    }

    /// The address clients connect to (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The HTTPS listener's address, if `[tls]` is configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The admin listener's address, if one is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The DNS responder's address (UDP and TCP), if `[dns]` is configured.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns_addr
    }

    /// The `[[tcp]]` listeners' addresses, in the configuration's order.
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp_addrs
    }

    /// The `[[redirect]]` listeners' addresses, in the configuration's order.
    pub fn redirect_addrs(&self) -> &[SocketAddr] {
        &self.redirect_addrs
    }

    /// Stops accepting, drains in-flight requests up to the drain timeout,
    /// and waits for every thread to finish.
    pub fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// Refuses a configuration that changes what was fixed at start.
fn needs_no_restart(running: &Config, next: &Config) -> Result<(), ReloadError> {
    let dns_listen = |config: &Config| format!("{:?}", config.dns.as_ref().map(|d| d.listen));
    let tcp = |c: &Config| format!("{:?}", c.tcp.iter().map(|t| t.listen).collect::<Vec<_>>());
    let redirect = |c: &Config| {
        format!(
            "{:?}",
            c.redirect.iter().map(|r| r.listen).collect::<Vec<_>>()
        )
    };
    let tls_listen = |config: &Config| format!("{:?}", config.tls.as_ref().map(|t| t.listen));
    let fixed: [(&'static str, String, String); 7] = [
        (
            "listen",
            running.listen.to_string(),
            next.listen.to_string(),
        ),
        ("tls.listen", tls_listen(running), tls_listen(next)),
        (
            "admin_listen",
            format!("{:?}", running.admin_listen),
            format!("{:?}", next.admin_listen),
        ),
        ("dns.listen", dns_listen(running), dns_listen(next)),
        (
            "workers",
            running.worker_threads().to_string(),
            next.worker_threads().to_string(),
        ),
        ("tcp[].listen", tcp(running), tcp(next)),
        ("redirect[].listen", redirect(running), redirect(next)),
    ];
    match fixed.into_iter().find(|(_, old, new)| old != new) {
        Some((key, old, new)) => Err(ReloadError::NeedsRestart { key, old, new }),
        None => Ok(()),
    }
}

fn spawn_thread(
    name: &str,
    body: impl FnOnce() -> io::Result<()> + Send + 'static,
) -> Result<JoinHandle<()>, StartError> {
    let thread_name = name.to_owned();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            if let Err(error) = body() {
                tracing::error!(thread = thread_name, %error, "Thread stopped with an error.");
            }
        })
        .map_err(StartError::Runtime)
}

/// A non-blocking listening socket with the gateway's backlog.
pub(crate) fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, StartError> {
    let bind_error = |source| StartError::Bind { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(bind_error)?;
    socket.set_reuse_address(true).map_err(bind_error)?;
    socket.set_nonblocking(true).map_err(bind_error)?;
    socket.bind(&addr.into()).map_err(bind_error)?;
    socket.listen(BACKLOG).map_err(bind_error)?;
    Ok(socket.into())
}

/// The listening sockets the workers share: the HTTP listener, then the
/// `[[tcp]]` and `[[redirect]]` ones in the configuration's order.
#[derive(Debug)]
struct Sockets {
    http: std::net::TcpListener,
    /// The HTTPS listener, with `[tls]`.
    tls: Option<std::net::TcpListener>,
    tcp: Vec<std::net::TcpListener>,
    redirect: Vec<std::net::TcpListener>,
}

impl Sockets {
    fn bind(config: &Config) -> Result<Self, StartError> {
        let all = |addrs: Vec<SocketAddr>| addrs.into_iter().map(bind).collect::<Result<_, _>>();
        Ok(Self {
            http: bind(config.listen)?,
            tls: config
                .tls
                .as_ref()
                .map(|tls| bind(tls.listen))
                .transpose()?,
            tcp: all(config.tcp.iter().map(|t| t.listen).collect())?,
            redirect: all(config.redirect.iter().map(|r| r.listen).collect())?,
        })
    }

    /// Another handle on the same sockets, for one more worker.
    fn try_clone(&self) -> io::Result<Self> {
        let all = |sockets: &[std::net::TcpListener]| {
            sockets
                .iter()
                .map(|s| s.try_clone())
                .collect::<io::Result<_>>()
        };
        Ok(Self {
            http: self.http.try_clone()?,
            tls: self.tls.as_ref().map(|s| s.try_clone()).transpose()?,
            tcp: all(&self.tcp)?,
            redirect: all(&self.redirect)?,
        })
    }
}

fn local_addrs(sockets: &[std::net::TcpListener]) -> Result<Vec<SocketAddr>, StartError> {
    sockets
        .iter()
        .map(|s| s.local_addr().map_err(StartError::Runtime))
        .collect()
}

/// A listener's open connections, for a shutdown to wait on: each holds a
/// sender, and once the last is dropped the receiver yields `None`
/// (mini-redis's shutdown pattern).
#[derive(Debug)]
pub(crate) struct Drain {
    hold: mpsc::Sender<()>,
    done: mpsc::Receiver<()>,
}

impl Drain {
    pub(crate) fn new() -> Self {
        let (hold, done) = mpsc::channel(1);
        Self { hold, done }
    }

    /// What one connection holds while it is open.
    pub(crate) fn hold(&self) -> mpsc::Sender<()> {
        self.hold.clone()
    }

    /// Waits at most `limit` for every connection to finish.
    pub(crate) async fn wait(self, limit: Duration) {
        let Self { hold, mut done } = self;
        drop(hold);
        if tokio::time::timeout(limit, done.recv()).await.is_err() {
            tracing::warn!(
                ?limit,
                "Drain timeout passed; closing remaining connections."
            );
        }
    }
}

/// A single-threaded runtime for one worker or the admin listener.
pub(crate) fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn worker(sockets: Sockets, mut follow: Current, stop: watch::Receiver<bool>) -> io::Result<()> {
    runtime()?.block_on(async move {
        let listener = TcpListener::from_std(sockets.http)?;
        let tls_listener = sockets.tls.map(TcpListener::from_std).transpose()?;
        let https_port = tls_listener
            .as_ref()
            .map(|l| l.local_addr().map(|a| a.port()))
            .transpose()?;
        let mut beside = JoinSet::new();
        for (i, socket) in sockets.tcp.into_iter().enumerate() {
            let socket = TcpListener::from_std(socket)?;
            beside.spawn(l4::serve(socket, i, follow.clone(), stop.clone()));
        }
        for (i, socket) in sockets.redirect.into_iter().enumerate() {
            let socket = TcpListener::from_std(socket)?;
            beside.spawn(redirect::serve(socket, i, follow.clone(), stop.clone()));
        }
        let first = context(Arc::clone(&follow.borrow_and_update()), https_port);
        let (publish, latest) = watch::channel(first);
        // Rebuilds this worker's context on every reload; connections take
        // it up at their next request.
        let rebuild = tokio::spawn(async move {
            while follow.changed().await.is_ok() {
                let shared = Arc::clone(&follow.borrow_and_update());
                publish.send_replace(context(shared, https_port));
            }
        });
        let prune = tokio::spawn({
            let latest = latest.clone();
            async move {
                let mut tick = tokio::time::interval(PRUNE_IDLE_EVERY);
                loop {
                    tick.tick().await;
                    let context = Arc::clone(&latest.borrow());
                    let timeouts = context.proxy.shared.pools.iter().map(|p| p.idle_timeout);
                    context.proxy.idle.prune(timeouts);
                }
            }
        });
        let drain = Drain::new();
        let accept = |tls| {
            let (latest, stop, hold) = (latest.clone(), stop.clone(), drain.hold());
            move |stream, peer| {
                let serve = connection::serve(
                    stream,
                    peer,
                    tls,
                    connection::Latest::new(latest.clone()),
                    stop.clone(),
                    hold.clone(),
                );
                tokio::spawn(serve);
            }
        };
        let plain = accept_until_stopped(&listener, stop.clone(), accept(false));
        let https = async {
            if let Some(tls_listener) = &tls_listener {
                accept_until_stopped(tls_listener, stop.clone(), accept(true)).await;
            }
        };
        tokio::join!(plain, https);
        drop((listener, tls_listener));
        prune.abort();
        rebuild.abort();
        let limit = latest.borrow().proxy.shared.config.drain_timeout;
        drain.wait(limit).await;
        // The other listeners drain at the same time, within the same limit.
        while beside.join_next().await.is_some() {}
        Ok(())
    })
}

/// A worker's context for one configuration; must run inside the worker's
/// runtime, where its upstream clients spawn their connections.
/// `https_port` is the HTTPS listener's, if there is one.
fn context(shared: Arc<Shared>, https_port: Option<u16>) -> Arc<connection::Context> {
    let limits = &shared.config.limits;
    Arc::new(connection::Context {
        builder: connection_builder(limits),
        idle_timeout: limits.idle_timeout,
        proxy: Arc::new(Proxy::new(shared, https_port)),
    })
}

/// Accepts connections and hands each to `serve` until `stop` turns true.
pub(crate) async fn accept_until_stopped(
    listener: &TcpListener,
    mut stop: watch::Receiver<bool>,
    mut serve: impl FnMut(tokio::net::TcpStream, SocketAddr),
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                serve(stream, peer);
            }
            // Out of file descriptors, or a connection reset before
            // accept: pause briefly instead of spinning on the error.
            Err(error) => {
                tracing::warn!(%error, "Accept failed.");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The per-connection protocol settings: HTTP/1.1 and HTTP/2 (h2c on the
/// plain listener; over TLS, what ALPN chose, as the client's preface
/// shows), with the configured limits.
fn connection_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Hyper starts this timer whenever it waits for a request head, so
        // it is also the keep-alive idle timeout.
        .header_read_timeout(limits.idle_timeout)
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(limits.idle_timeout / 2)
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let toml = format!(
            "routes = [{{ pool = \"web\" }}]\n[pools.web]\nbackends = [\"127.0.0.1:9001\"]\n\
             [pools.db]\nbackends = [\"127.0.0.1:5432\"]\n{extra}"
        );
        Config::from_toml(&toml, "test.toml").expect("config")
    }

    #[test]
    fn a_reload_may_change_dns_names_but_not_where_dns_listens() {
        let dns = |listen: &str, name: &str| {
            config(&format!(
                "[dns]\nlisten = \"{listen}\"\n[[dns.names]]\nname = \"{name}\"\npool = \"web\"\n"
            ))
        };
        let running = dns("127.0.0.1:5353", "a.test");
        assert!(needs_no_restart(&running, &dns("127.0.0.1:5353", "b.test")).is_ok());
        for next in [dns("127.0.0.1:5354", "a.test"), config("")] {
            let error = needs_no_restart(&running, &next).expect_err("a restart");
            assert!(error.to_string().contains("`dns.listen`"), "{error}");
        }
    }

    #[test]
    fn a_reload_may_change_a_listeners_pool_but_not_its_address() {
        let tcp = |listen: &str, pool: &str| {
            format!("[[tcp]]\nlisten = \"{listen}\"\npool = \"{pool}\"\n")
        };
        let running = config(&tcp("127.0.0.1:6380", "web"));
        assert!(needs_no_restart(&running, &config(&tcp("127.0.0.1:6380", "db"))).is_ok());
        let moved = needs_no_restart(&running, &config(&tcp("127.0.0.1:6381", "web")));
        assert!(
            matches!(
                moved,
                Err(ReloadError::NeedsRestart {
                    key: "tcp[].listen",
                    ..
                })
            ),
            "{moved:?}"
        );
        let added = needs_no_restart(
            &running,
            &config(&format!(
                "{}[[redirect]]\nlisten = \"127.0.0.1:8081\"\npool = \"web\"\n",
                tcp("127.0.0.1:6380", "web")
            )),
        );
        assert!(
            matches!(
                added,
                Err(ReloadError::NeedsRestart {
                    key: "redirect[].listen",
                    ..
                })
            ),
            "{added:?}"
        );
    }
}
