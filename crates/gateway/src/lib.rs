//! The gateway role: an L7 reverse proxy that balances requests over pools
//! of backends, and in the same process an L4 (TCP) balancer and an HTTP
//! redirector over the same pools.
//!
//! Every request of a stampede deployment passes through here first, so this
//! crate is built for two things: never being the bottleneck (one event loop
//! per worker thread, pooled keep-alive connections to backends, bodies
//! streamed and never buffered whole), and failing in ways a client can read
//! (JSON errors in the shop's contract shape, status codes that say whose
//! fault it was).
//!
//! # Layout
//!
//! - [`config`]: the TOML file and quick flags, validated into a [`Config`].
//! - `server`: listeners, worker threads, reloads, graceful shutdown
//!   ([`Gateway`]).
//! - `connection`: one client connection, from the fast path to hyper, drain.
//! - `tls`: TLS termination: handshakes, certificates by SNI, HSTS and the
//!   redirect to HTTPS.
//! - `h1`: the HTTP/1.1 fast path that carries nearly all traffic: heads
//!   parsed in place, bodies relayed unchanged, per-worker idle backend
//!   connections.
//! - `proxy`: the same journey through hyper, for HTTP/2, upgrades and the
//!   rest; `upstream` holds its pooled client.
//! - `fields`: one read-only header view for both paths.
//! - `route`: Host and path-prefix routing to pools and directories.
//! - `files`: static files from a directory, with cache headers and
//!   compression, kept in memory when small.
//! - `stored`: answers held in memory, one body per content coding, sent
//!   as they are by either path.
//! - `cache`: a pool route's response cache, one backend request per page
//!   however many clients ask; and the header rules of caching.
//! - `compress`: compressing a pool route's answers as they stream.
//! - `admission`: what a route lets through when a crowd arrives.
//! - `discover`: a pool's backends found by resolving a name, such as a
//!   Kubernetes headless Service's, again and again.
//! - `pool`: a pool's backends and strategy (the strategies themselves live
//!   in the `stampede-balance` crate).
//! - `forwarded`: client address, `X-Forwarded-*`/`Forwarded`, hop-by-hop headers.
//! - `body`: streaming bodies with their limits and deadlines.
//! - `upgrade`: WebSocket pass-through.
//! - `dns`: the authoritative DNS responder answering configured names
//!   with a pool's backends in rotation.
//! - `l4`: `[[tcp]]` listeners, connections balanced over a pool.
//! - `redirect`: `[[redirect]]` listeners, clients sent to a backend.
//! - `admin`, [`telemetry`]: the admin listener, the metrics it serves
//!   and the operations page; `recent` keeps the page's figures over the
//!   last seconds.

use std::sync::Arc;

mod admin;
mod admission;
mod body;
mod cache;
mod compress;
pub mod config;
mod connection;
mod discover;
mod dns;
mod ejection;
mod error;
mod fields;
mod files;
mod forwarded;
mod h1;
mod health;
mod l4;
mod pool;
mod proxy;
mod recent;
mod redirect;
mod retry;
mod route;
mod server;
mod stored;
pub mod telemetry;
mod tls;
mod upgrade;
mod upstream;

pub use config::{Config, ConfigError, QuickFlags};
pub use server::{Gateway, ReloadError, StartError};

/// What every worker thread shares: built from the configuration and
/// read-only afterwards (but for the atomic load counters in backends). A
/// reload builds a new one and publishes it; each connection takes it up
/// at its next request (see `server`).
#[derive(Debug)]
pub(crate) struct Shared {
    config: Config,
    /// The addresses `discover` found, which the pools hold beside the
    /// file's backends.
    discovered: discover::Discovered,
    router: route::Router,
    pools: Vec<Arc<pool::Pool>>,
    trusted: forwarded::TrustedProxies,
    /// The names the DNS responder answers, when `[dns]` is configured.
    dns: Option<dns::Names>,
    /// With `[tls]`: the certificates as read for this configuration.
    tls: Option<tls::Tls>,
}

impl Shared {
    /// The state `config` describes, with the `discovered` backends; on a
    /// reload (or a discovery), `previous` is the state it replaces, whose
    /// backends and routes that stay keep theirs. Fails only when no random
    /// key can be drawn for a waiting room.
    fn new(
        config: Config,
        discovered: discover::Discovered,
        previous: Option<&Shared>,
    ) -> Result<Self, getrandom::Error> {
        // Handles are resolved against the recorder, so it must exist first.
        // Without an admin listener nobody could read the metrics, and
        // nobody would drain their histograms: record nothing.
        if config.admin_listen.is_some() {
            telemetry::install();
        }
        let pools: Vec<(String, Arc<pool::Pool>)> = config
            .pools
            .iter()
            .enumerate()
            .map(|(i, (name, pool))| {
                let old = previous.and_then(|p| p.pools.iter().find(|p| *p.name == **name));
                let pool =
                    pool::Pool::new(i, name, &discovered.pool(name, pool), old.map(|p| &**p));
                (name.clone(), Arc::new(pool))
            })
            .collect();
        let routes = config
            .routes
            .iter()
            .filter_map(|route| {
                let name = route.pool.as_ref()?;
                let (_, pool) = pools.iter().find(|(n, _)| n == name)?;
                let old = previous.and_then(|p| p.router.same(route));
                let compression = config.compression.as_ref();
                Some(route::Route::new(route, Arc::clone(pool), compression, old))
            })
            .collect::<Result<_, _>>()?;
        let files = config
            .routes
            .iter()
            .filter(|route| route.static_dir.is_some())
            .map(|route| {
                let files =
                    files::Files::new(route, config.compression.as_ref(), &config.file_cache);
                Arc::new(files)
            })
            .collect();
        let dns = config.dns.as_ref().map(|dns| dns::Names::new(dns, &pools));
        Ok(Self {
            router: route::Router::new(routes, files),
            dns,
            pools: pools.into_iter().map(|(_, pool)| pool).collect(),
            trusted: forwarded::TrustedProxies::new(config.trusted_proxies.clone()),
            tls: config.tls.as_ref().map(tls::Tls::new),
            config,
            discovered,
        })
    }

    /// The pool named `name`.
    fn pool(&self, name: &str) -> Option<&Arc<pool::Pool>> {
        self.pools.iter().find(|pool| *pool.name == *name)
    }
}

/// Seconds since the Unix epoch: the clock of the cookies the gateway
/// signs (waiting-room passes, operations-page sessions).
pub(crate) fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
