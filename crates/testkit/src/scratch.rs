//! Scratch databases for benchmarks: made fresh for one run and removed
//! after it, also when the run is interrupted.
//!
//! A benchmark must not measure (or damage) anybody's data, and must not
//! leave a million rows behind when a script's `timeout` or a Ctrl-C ends
//! it. [`run`] gives the run its own database, waits for it or for SIGINT
//! or SIGTERM, and then removes the database either way. Unlike
//! [`TestDb`](crate::TestDb) it reports failures as errors (a benchmark
//! exits non-zero with a message rather than panicking), and it refuses a
//! PostgreSQL server whose commits would not be durable: such numbers
//! would mean nothing.

use std::future::Future;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail, ensure};
use sqlx::{AnyConnection, AssertSqlSafe, Connection, Executor, Row};

use crate::{drop_database, with_database};

/// Runs `body` on a fresh database made from `url` and removes it after.
///
/// - `postgres://...`: the database `{prefix}_{pid}` on that server (an
///   older one of the same name, left by a killed run, is dropped first).
/// - `sqlite://PATH`: that file, which must not exist yet; a bare
///   `sqlite://` makes one in a new temporary folder.
///
/// `body` gets the new database's URL. On SIGINT or SIGTERM it is dropped
/// (whatever it owns, such as child processes spawned with
/// `kill_on_drop`, goes with it), the database is removed, and the
/// result is an error saying so. A failure to remove the database is
/// printed, not returned: it does not change the run's verdict.
pub async fn run<T, F, Fut>(url: &str, prefix: &str, body: F) -> anyhow::Result<T>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let scratch = Scratch::create(url, prefix).await?;
    let outcome = tokio::select! {
        outcome = body(scratch.url.clone()) => outcome,
        signal = stop_signal() => Err(signal),
    };
    if let Err(error) = scratch.remove().await {
        eprintln!("{prefix}: could not remove the benchmark database: {error:#}");
    }
    outcome
}

/// Resolves on Ctrl-C or SIGTERM, as the error that ends the run.
async fn stop_signal() -> anyhow::Error {
    use tokio::signal::unix::{SignalKind, signal};
    // A handler that cannot be installed leaves the default one (which
    // ends the process) rather than ending the run at once.
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut term) => term.recv().await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        Ok(()) = tokio::signal::ctrl_c() => anyhow!("interrupted"),
        _ = term => anyhow!("stopped by SIGTERM"),
    }
}

/// A database made for one run.
struct Scratch {
    url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    /// The SQLite file, and the folder made for it if any.
    Sqlite {
        file: PathBuf,
        folder: Option<PathBuf>,
    },
    Postgres {
        admin_url: String,
        name: String,
    },
}

impl Scratch {
    async fn create(url: &str, prefix: &str) -> anyhow::Result<Self> {
        match url.split_once("://") {
            Some(("sqlite", path)) => Self::sqlite(path, prefix),
            Some(("postgres" | "postgresql", _)) => Self::postgres(url, prefix).await,
            _ => bail!("the database URL must be postgres://USER@HOST:PORT/DB or sqlite://PATH"),
        }
    }

    fn sqlite(path: &str, prefix: &str) -> anyhow::Result<Self> {
        let path = path.split('?').next().unwrap_or_default();
        let (file, folder) = if path.is_empty() {
            let folder = std::env::temp_dir().join(format!(
                "{prefix}-{}-{:08x}",
                std::process::id(),
                fastrand::u32(..)
            ));
            std::fs::create_dir(&folder)
                .with_context(|| format!("cannot create {}", folder.display()))?;
            (folder.join("bench.db"), Some(folder))
        } else {
            let file = PathBuf::from(path);
            ensure!(
                !file.exists(),
                "{} exists; name a new file (it is removed after the run)",
                file.display()
            );
            (file, None)
        };
        Ok(Self {
            url: format!("sqlite://{}", file.display()),
            cleanup: Cleanup::Sqlite { file, folder },
        })
    }

    async fn postgres(admin_url: &str, prefix: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let name = format!("{prefix}_{}", std::process::id());
        let mut admin = AnyConnection::connect(admin_url)
            .await
            .with_context(|| format!("cannot connect to {admin_url}"))?;
        refuse_lax_durability(&mut admin).await?;
        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        admin.execute(AssertSqlSafe(drop)).await?;
        admin
            .execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .with_context(|| format!("cannot create the database {name}"))?;
        let _ = admin.close().await;
        Ok(Self {
            url: with_database(admin_url, &name),
            cleanup: Cleanup::Postgres {
                admin_url: admin_url.to_owned(),
                name,
            },
        })
    }

    async fn remove(self) -> anyhow::Result<()> {
        match &self.cleanup {
            Cleanup::Sqlite { file, folder } => remove_sqlite(file, folder.as_ref()),
            Cleanup::Postgres { admin_url, name } => Ok(drop_database(admin_url, name).await?),
        }
    }
}

/// The numbers are only worth having for durable commits.
async fn refuse_lax_durability(admin: &mut AnyConnection) -> anyhow::Result<()> {
    for setting in ["fsync", "synchronous_commit"] {
        let row = sqlx::query(AssertSqlSafe(format!("SHOW {setting}")))
            .fetch_one(&mut *admin)
            .await?;
        let value: String = row.try_get(0)?;
        ensure!(
            !matches!(value.as_str(), "off" | "local"),
            "the server runs with {setting}={value}: commits would not be durable, so the numbers would mean nothing"
        );
    }
    Ok(())
}

fn remove_sqlite(file: &Path, folder: Option<&PathBuf>) -> anyhow::Result<()> {
    if let Some(folder) = folder {
        return Ok(std::fs::remove_dir_all(folder)?);
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut path = file.as_os_str().to_owned();
        path.push(suffix);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    Ok(())
}
