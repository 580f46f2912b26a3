//! The [`Db`] handle: one sqlx pool over SQLite or PostgreSQL, the few
//! places where the two engines must be told apart, and how long callers
//! wait for the pool's connections.
//!
//! sqlx keeps no measure of that wait, so [`Db::acquire`] (and the
//! transactions, which begin on a connection it acquired) times it: two
//! clock reads and a histogram's atomic add per acquisition, recorded when
//! the role names a histogram ([`DbOptions::acquire_metric`]). Queries on
//! the request path run on such a connection rather than on the bare pool.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metrics::Histogram;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Executor, SqlSafeStr, Transaction};

use crate::StoreError;

/// Which engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite in WAL mode: one writer at a time for the whole file, so a
    /// write transaction takes the write lock when it begins.
    Sqlite,
    /// PostgreSQL: writers lock rows, so a hot row is locked explicitly.
    Postgres,
}

impl Dialect {
    /// How to lock the rows a `SELECT` reads until the transaction ends.
    /// SQLite needs nothing: its write transaction already excludes every
    /// other writer.
    pub fn for_update(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            // NO KEY: the lock still excludes every other writer of the
            // row, but not the foreign-key checks of inserted orders.
            Self::Postgres => " FOR NO KEY UPDATE",
        }
    }

    pub(crate) fn from_url(url: &str) -> Result<Self, StoreError> {
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        match scheme {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            _ => Err(StoreError::Url(format!(
                "unsupported database URL `{}`: use sqlite://PATH (the embedded default) or postgres://USER@HOST/DB",
                redact(url)
            ))),
        }
    }
}

/// Pool settings; the defaults suit one shop node.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Connections this process may open.
    pub max_connections: u32,
    /// How long a query waits for a free connection (or for a dead server)
    /// before the caller gets [`StoreError::Unavailable`] and answers `503`.
    pub acquire_timeout: Duration,
    /// How long an unused connection stays open (`None`: until it dies).
    pub idle_timeout: Option<Duration>,
    /// How long any connection lives before it is replaced (`None`:
    /// forever); bounds what a server-side leak or a moved DNS name costs.
    pub max_lifetime: Option<Duration>,
    /// The histogram (in seconds, labelled `pool`: `primary`,
    /// `replica-1`, ...) of how long [`Db::acquire`] waits for a
    /// connection; `None` records nothing.
    pub acquire_metric: Option<&'static str>,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
            // sqlx's own defaults.
            idle_timeout: Some(Duration::from_secs(10 * 60)),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            acquire_metric: None,
        }
    }
}

/// A pool of connections to the store, shared by every task of a process.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    dialect: Dialect,
    /// Waits for a connection (a no-op without an `acquire_metric`).
    acquire_wait: Histogram,
}

impl Db {
    /// Opens a pool on `url`. Connections are made lazily, so a node can
    /// start (and answer `503`) while its store is still down.
    ///
    /// SQLite URLs create the file if it is missing (its folder must exist);
    /// every SQLite connection uses WAL, `synchronous=FULL` (a commit is on
    /// disk before it returns, which is what makes a `201` durable) and waits
    /// up to five seconds for another process's write lock.
    pub fn connect_lazy(url: &str, options: &DbOptions) -> Result<Self, StoreError> {
        Self::connect_named(url, options, "primary")
    }

    /// [`Db::connect_lazy`] for the pool `name` (the `pool` label of its
    /// acquisition waits).
    pub(crate) fn connect_named(
        url: &str,
        options: &DbOptions,
        name: &str,
    ) -> Result<Self, StoreError> {
        let dialect = Dialect::from_url(url)?;
        install_default_drivers();
        let url = match dialect {
            Dialect::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_owned(),
        };
        let mut pool = AnyPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .idle_timeout(options.idle_timeout)
            .max_lifetime(options.max_lifetime);
        if dialect == Dialect::Sqlite {
            pool = pool.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000")
                        .await
                        .map(drop)
                })
            });
        }
        let pool = pool
            .connect_lazy(&url)
            .map_err(|e| StoreError::Url(format!("bad database URL `{}`: {e}", redact(&url))))?;
        let acquire_wait = options.acquire_metric.map_or_else(
            Histogram::noop,
            |metric| metrics::histogram!(metric, "pool" => name.to_owned()),
        );
        Ok(Self {
            pool,
            dialect,
            acquire_wait,
        })
    }

    /// The engine behind this handle.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The pool, for queries off the request path (whose waits for a
    /// connection are not measured).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A connection of the pool, timing the wait for it (a timed-out wait
    /// included).
    pub async fn acquire(&self) -> Result<PoolConnection<Any>, StoreError> {
        let started = Instant::now();
        let connection = self.pool.acquire().await;
        self.acquire_wait.record(started.elapsed().as_secs_f64());
        Ok(connection?)
    }

    /// Begins a transaction with `statement` (`None`: a plain `BEGIN`) on
    /// a connection of [`Db::acquire`], so that only the wait for the
    /// connection is timed, not a SQLite `BEGIN IMMEDIATE`'s wait for the
    /// write lock. (`Transaction::begin` is what sqlx's own `Pool::begin`
    /// calls; it is public but hidden from sqlx's docs.)
    async fn begin_with(
        &self,
        statement: Option<&'static str>,
    ) -> Result<Transaction<'static, Any>, StoreError> {
        let connection = self.acquire().await?;
        let statement = statement.map(SqlSafeStr::into_sql_str);
        Ok(Transaction::begin(connection, statement).await?)
    }

    /// Begins a transaction that will write. On SQLite it takes the write
    /// lock at once (`BEGIN IMMEDIATE`): a transaction that read first and
    /// asked for the lock later could fail with `SQLITE_BUSY` instead of
    /// waiting, whenever another process wrote in between.
    pub async fn begin_write(&self) -> Result<Transaction<'static, Any>, StoreError> {
        self.begin_with(match self.dialect {
            Dialect::Sqlite => Some("BEGIN IMMEDIATE"),
            Dialect::Postgres => None,
        })
        .await
    }

    /// Begins a read-only transaction in which every query sees the same
    /// snapshot (PostgreSQL's default isolation would give each statement
    /// its own; a SQLite read transaction is a snapshot already).
    pub async fn begin_snapshot(&self) -> Result<Transaction<'static, Any>, StoreError> {
        self.begin_with(match self.dialect {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
        })
        .await
    }

    /// True while the store answers a trivial query within a second; it
    /// touches no table, so readiness probes never contend with sales.
    pub async fn is_reachable(&self) -> bool {
        let ping = sqlx::query("SELECT 1").execute(&self.pool);
        matches!(
            tokio::time::timeout(Duration::from_secs(1), ping).await,
            Ok(Ok(_))
        )
    }

    /// The engine's own version string (for benchmark reports).
    pub async fn engine_version(&self) -> Result<String, StoreError> {
        let sql = match self.dialect {
            Dialect::Postgres => "SHOW server_version",
            Dialect::Sqlite => "SELECT sqlite_version()",
        };
        let row = sqlx::query(sql).fetch_one(&self.pool).await?;
        Ok(sqlx::Row::try_get(&row, 0)?)
    }

    /// Closes every connection; pending queries finish first.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `($1, $2), ($3, $4)`: placeholders for a multi-row `VALUES` or `IN`
/// list of `rows` tuples of `columns` each, numbered from `$first`.
pub fn placeholders(rows: usize, columns: usize, first: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        out.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                out.push_str(", ");
            }
            let n = first + row * columns + column;
            out.push('$');
            out.push_str(&n.to_string());
        }
        out.push(')');
    }
    out
}

/// Milliseconds since the Unix epoch: how every time is stored.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The URL without its password, for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            let userinfo = &url[start + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..start + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialect_follows_the_scheme() {
        assert_eq!(
            Dialect::from_url("sqlite://x.db").ok(),
            Some(Dialect::Sqlite)
        );
        assert_eq!(
            Dialect::from_url("postgres://u@h/d").ok(),
            Some(Dialect::Postgres)
        );
        assert_eq!(
            Dialect::from_url("postgresql://u@h/d").ok(),
            Some(Dialect::Postgres)
        );
        let error = Dialect::from_url("mysql://u:secret@h/d")
            .err()
            .map(|e| e.to_string());
        let error = error.unwrap_or_default();
        assert!(error.contains("unsupported database URL"), "{error}");
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn placeholders_number_rows_then_columns() {
        assert_eq!(placeholders(2, 3, 1), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(placeholders(1, 1, 4), "($4)");
        assert_eq!(placeholders(0, 2, 1), "");
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://u:pw@h:5432/d"),
            "postgres://u:***@h:5432/d"
        );
        assert_eq!(redact("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
