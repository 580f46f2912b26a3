//! The shop role: the flash-sale API of `../shared/spec/flash-sale-api.md`
//! on one stateless node. Run as many nodes as you like behind the gateway:
//! everything they share (users, sessions, stock, orders, login counters)
//! lives in the store, and what a node keeps to itself (the catalogue
//! cache, the reservation queues) is at most a second stale or empties as
//! it commits.
//!
//! # Layout
//!
//! - [`config`]: the TOML file, flags and admin token.
//! - `api`: the routes, one module per resource, the extractors and
//!   error bodies they share, and the read-your-writes pinning that sends
//!   order reads to read replicas (`stampede_store::replicas`).
//! - `pages`: the storefront, HTML pages over the same functions as the
//!   API, and [`assets`], its stylesheet and script.
//! - [`catalog`]: the per-node product cache that is also the sold-out flag.
//! - `session_lookups`: each request's session read from the store, with
//!   concurrent reads on a node sharing one query.
//! - [`passwords`]: argon2id hashing off the async threads.
//! - [`jobs`]: the shop's background jobs (payment, confirmation, expiry),
//!   run by `stampede worker`.
//! - [`telemetry`]: the metrics and the admin listener that serves them;
//!   the request log is `api`'s `observe` middleware.
//! - The reservation path itself is the `stampede-inventory` crate.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use stampede_inventory::{GroupCommit, Settings};
use stampede_store::{
    Db, DbOptions, Dialect, Replicas, StoreError, login_limits, migrate, now_ms, sessions,
};
use tokio::net::TcpListener;

mod api;
pub mod catalog;
pub mod config;
pub mod jobs;
mod pages;
pub mod passwords;
mod session_lookups;
pub mod telemetry;

pub use config::{Config, Flags};
pub use pages::assets;

use catalog::Catalog;
use passwords::Passwords;
use session_lookups::{SessionLookups, SessionStore};
use stampede_redis::{Redis, Timeouts};

/// What every request handler shares.
#[derive(Debug)]
pub(crate) struct App {
    /// The primary: writes, the hot path, sessions, login counters.
    db: Db,
    /// The primary and its read replicas, for reads that may be stale.
    replicas: Replicas,
    config: Config,
    catalog: Catalog,
    sessions: SessionLookups,
    queues: GroupCommit,
    passwords: Passwords,
    /// With `redis_url`: where sessions live and sold-out skus are
    /// announced.
    redis: Option<Redis>,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened or migrated.
    #[error("database")]
    Store(#[from] StoreError),
    /// The password parameters are unusable.
    #[error("passwords")]
    Passwords(#[from] passwords::PasswordError),
    /// The Redis URL is unusable.
    #[error("redis")]
    Redis(#[from] stampede_redis::RedisError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Where the node keeps sessions: Redis when it has one, else the store.
fn session_store(redis: Option<&Redis>, db: &Db) -> SessionStore {
    match redis {
        Some(redis) => SessionStore::Redis(redis.clone()),
        None => SessionStore::Store(db.clone()),
    }
}

/// Marks in `catalog` every sku another node announces sold out.
fn follow_sold_out(redis: &Redis, catalog: &Catalog) {
    let catalog = catalog.clone();
    stampede_redis::sold_out::follow(redis, move |sku| {
        let catalog = catalog.clone();
        tokio::spawn(async move { catalog.saw_stock(&sku, 0).await });
    });
}

/// How long a starting node keeps retrying a store that is not up yet
/// (e.g. a PostgreSQL container starting next to it) before giving up.
const STORE_WAIT: Duration = Duration::from_secs(30);

/// A shop node, bound and ready to serve.
#[derive(Debug)]
pub struct Shop {
    app: Arc<App>,
    listener: TcpListener,
    /// With `admin_listen`: where `/metrics` is served.
    admin: Option<TcpListener>,
}

impl Shop {
    /// Opens and migrates the store, and binds the listener.
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        // Before anything makes a metric handle: one made earlier would
        // belong to no recorder.
        if config.admin_listen.is_some() {
            telemetry::install();
        }
        let options = db_options(&config);
        let db = Db::connect_lazy(&config.database_url, &options)?;
        migrate_when_reachable(&db).await?;
        let replicas = Replicas::new(
            db.clone(),
            &config.database.replicas,
            &options,
            config.database.replica_max_lag,
        )?;
        let passwords = Passwords::new(&config.passwords)?;
        let settings = Settings {
            max_batch: config.orders.max_batch,
            max_waiting: config.orders.max_waiting,
            hold: config.orders.hold,
        };
        let queues = GroupCommit::new(db.clone(), settings, api::model::order_json);
        let listener = bind(config.listen).await?;
        let admin = match config.admin_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let redis = match &config.redis_url {
            Some(url) => Some(Redis::connect(url, Timeouts::default())?),
            None => None,
        };
        let catalog = Catalog::new(replicas.clone(), redis.as_ref());
        if let Some(redis) = &redis {
            follow_sold_out(redis, &catalog);
        }
        let app = App {
            catalog,
            sessions: SessionLookups::start(session_store(redis.as_ref(), &db)),
            redis,
            db,
            replicas,
            config,
            queues,
            passwords,
        };
        Ok(Self {
            app: Arc::new(app),
            listener,
            admin,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The admin listener's address, with `admin_listen`.
    pub fn admin_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.admin.as_ref().map(TcpListener::local_addr)
    }

    /// Serves until `shutdown` completes, then lets in-flight requests
    /// finish for up to the drain timeout.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let housekeeping = tokio::spawn(housekeeping(self.app.clone()));
        let admin = self
            .admin
            .map(|listener| telemetry::serve(listener, self.app.clone()));
        let drain = self.app.config.drain_timeout;
        let router = api::router(self.app.clone());
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let mut stopped = stop_rx.clone();
        let server = axum::serve(self.listener, service).with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let deadline = async move {
            let _ = stopped.wait_for(|s| *s).await;
            tokio::time::sleep(drain).await;
        };
        let result = tokio::select! {
            result = server => result,
            () = deadline => {
                tracing::warn!(?drain, "drain timeout: closing the connections still open");
                Ok(())
            }
        };
        housekeeping.abort();
        if let Some(admin) = admin {
            admin.abort();
        }
        self.app.replicas.close().await;
        result
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

fn db_options(config: &Config) -> DbOptions {
    let database = &config.database;
    // Zero in the file means "no limit", which sqlx spells `None`.
    let limit = |d: Duration| (!d.is_zero()).then_some(d);
    DbOptions {
        max_connections: database.max_connections,
        acquire_timeout: database.acquire_timeout,
        idle_timeout: limit(database.idle_timeout),
        max_lifetime: limit(database.max_lifetime),
        acquire_metric: Some(telemetry::DB_ACQUIRE),
    }
}

/// Migrates, waiting up to [`STORE_WAIT`] for a PostgreSQL server that is
/// not up yet; a SQLite file that cannot be opened will not get better, so
/// that fails at once.
async fn migrate_when_reachable(db: &Db) -> Result<(), StoreError> {
    let started = tokio::time::Instant::now();
    let patient = db.dialect() == Dialect::Postgres;
    loop {
        match migrate::run(db).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Unavailable(e)) if patient && started.elapsed() < STORE_WAIT => {
                tracing::warn!(error = %e, "the store is not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(other) => return Err(other),
        }
    }
}

/// Deletes expired sessions and old login counters once a minute. Every
/// node does it; the deletes are idempotent, so that costs nothing extra.
async fn housekeeping(app: Arc<App>) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        every.tick().await;
        let window =
            i64::try_from(app.config.login_limits.window.as_millis()).unwrap_or(i64::MAX / 2);
        let purged = tokio::try_join!(
            sessions::purge_expired(&app.db),
            login_limits::purge(&app.db, now_ms().saturating_sub(2 * window)),
        );
        if let Err(error) = purged {
            tracing::warn!(%error, "housekeeping failed; retrying in a minute");
        }
    }
}
