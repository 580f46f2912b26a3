//! Fresh databases for tests, one per test, on both engines.
//!
//! [`TestDb::sqlite`] makes a SQLite file in a new temporary folder.
//! [`TestDb::postgres`] creates a new database on the server named by
//! `DATABASE_URL` (CI exports it, and a test then fails if the server is
//! unreachable); without that variable it prints why the test is skipped
//! and returns `None`. Both are migrated and removed again on drop.
//!
//! [`store_tests!`] turns one async test body into a test per engine.
//!
//! [`redis_url`] is the Redis server of `REDIS_URL`, with the same rule:
//! set (as in CI), a test must reach it; unset, the test says it skipped.
//!
//! [`scratch`] does the same for benchmarks (`examples/`): a database per
//! run, removed after it even on Ctrl-C, with errors instead of panics.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::{AnyConnection, Connection, Executor};
use stampede_store::{Db, DbOptions, migrate};

pub mod scratch;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The Redis server of `REDIS_URL`, or `None` (with a message saying so)
/// when the variable is not set; tests that get a URL must fail if that
/// server is unreachable.
pub fn redis_url() -> Option<String> {
    let url = std::env::var("REDIS_URL").ok();
    if url.is_none() {
        skipped("this Redis test needs REDIS_URL (e.g. redis://127.0.0.1:6379)");
    }
    url
}

/// Says on the real stderr (not the harness's captured one, which hides
/// passing tests' output) that the current test skipped, and why.
fn skipped(why: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {}: {why}; .ci/run sets it, and then the test fails if the server is unreachable",
        std::thread::current().name().unwrap_or("a test")
    );
}

/// A migrated database that exists as long as this value.
#[derive(Debug)]
pub struct TestDb {
    /// The pool, ready to use.
    pub db: Db,
    /// Its URL, for processes started by the test.
    pub url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Folder(PathBuf),
    Database { admin_url: String, name: String },
}

impl TestDb {
    /// A SQLite database in a new temporary folder.
    pub async fn sqlite() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "stampede-test-{}-{}-{:08x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).expect("create a temporary folder");
        let url = format!("sqlite://{}", dir.join("stampede.db").display());
        Self::migrated(url, Cleanup::Folder(dir)).await
    }

    /// A new database on the PostgreSQL server of `DATABASE_URL`, or `None`
    /// (with a message saying so) when the variable is not set.
    pub async fn postgres() -> Option<Self> {
        let Ok(admin_url) = std::env::var("DATABASE_URL") else {
            skipped(
                "this PostgreSQL test needs DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test)",
            );
            return None;
        };
        let name = format!(
            "stampede_test_{}_{}_{:08x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            fastrand::u32(..)
        );
        sqlx::any::install_default_drivers();
        let mut admin = AnyConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("DATABASE_URL is set but PostgreSQL is unreachable: {e}"));
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("create a test database");
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name);
        Some(Self::migrated(url, Cleanup::Database { admin_url, name }).await)
    }

    async fn migrated(url: String, cleanup: Cleanup) -> Self {
        let db = Db::connect_lazy(&url, &DbOptions::default()).expect("a valid test database URL");
        migrate::run(&db).await.expect("migrate the test database");
        Self { db, url, cleanup }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Folder(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Database { admin_url, name } => {
                // Drop runs outside async: a short-lived runtime on its own
                // thread removes the database, forcing out any connection
                // the test's processes left open.
                let (admin_url, name, db) = (admin_url.clone(), name.clone(), self.db.clone());
                let _ = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    if let Ok(runtime) = runtime {
                        runtime.block_on(async {
                            db.close().await;
                            let _ = drop_database(&admin_url, &name).await;
                        });
                    }
                })
                .join();
            }
        }
    }
}

/// Drops the database `name` on the server of `admin_url`, forcing out
/// any connection still open to it.
async fn drop_database(admin_url: &str, name: &str) -> Result<(), sqlx::Error> {
    let mut admin = AnyConnection::connect(admin_url).await?;
    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    admin.execute(sqlx::AssertSqlSafe(sql)).await?;
    let _ = admin.close().await;
    Ok(())
}

/// `url` with its database (the path) replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// Declares one test per engine from one async body taking a `TestDb`:
///
/// ```ignore
/// store_tests! {
///     async fn creates_a_product(t) { /* use t.db */ }
/// }
/// ```
///
/// makes `creates_a_product::sqlite` and `creates_a_product::postgres`.
#[macro_export]
macro_rules! store_tests {
    ($(async fn $name:ident($t:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($t: $crate::TestDb) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                body($crate::TestDb::sqlite().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(t) = $crate::TestDb::postgres().await {
                    body(t).await;
                }
            }
        }
    )*};
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://u@h:5432/test", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
        assert_eq!(
            with_database("postgres://u@h/test?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }
}
