//! The schema and how it gets applied.
//!
//! Migrations are numbered SQL files compiled into the binary and applied
//! in order, each once, inside one transaction (both engines have
//! transactional DDL, so a failed migration leaves nothing half-done).
//! Several nodes may start at once against one database: on PostgreSQL a
//! transaction-scoped advisory lock lets one of them migrate while the
//! others wait; on SQLite the write lock of `BEGIN IMMEDIATE` does the same.
//!
//! Why not `sqlx::migrate!`: its checksums pull a second version of `sha2`
//! into the build, and the whole job is the thirty lines below.

use sqlx::Row;

use crate::{Db, Dialect, StoreError, now_ms};

/// Every migration, in order: (version, name, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "shop", include_str!("migrations/0001_shop.sql")),
    (2, "jobs", include_str!("migrations/0002_jobs.sql")),
    (3, "payments", include_str!("migrations/0003_payments.sql")),
];

/// An arbitrary constant that names stampede's migration lock among the
/// advisory locks other applications of the same database may take.
const PG_LOCK_KEY: i64 = 0x0057_414d_5045_4445;

/// Applies every migration the database lacks; returns how many ran.
pub async fn run(db: &Db) -> Result<usize, StoreError> {
    let mut tx = db.begin_write().await?;
    if db.dialect() == Dialect::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PG_LOCK_KEY)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS stampede_migrations (
            version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM stampede_migrations")
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| row.try_get::<i64, _>(0))
        .collect::<Result<_, _>>()?;
    let mut ran = 0;
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| !applied.contains(&m.0)) {
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO stampede_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(version)
        .bind(name)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tracing::info!(version, name, "applied migration");
        ran += 1;
    }
    tx.commit().await?;
    Ok(ran)
}
