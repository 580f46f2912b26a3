//! Counters of failed logins, per bucket (a client IP or a username) and
//! fixed time window, kept in the store so that every node enforces one
//! shared limit rather than each its own.

use sqlx::{AssertSqlSafe, Row};

use crate::{Db, StoreError, placeholders};

/// The failure count of each of `buckets` (in their order) in the window
/// starting at `window_start` (ms).
pub async fn failures(
    db: &Db,
    buckets: &[&str],
    window_start: i64,
) -> Result<Vec<i64>, StoreError> {
    let sql = format!(
        "SELECT bucket, failures FROM login_failures WHERE window_start = $1 AND bucket IN {}",
        placeholders(1, buckets.len(), 2)
    );
    let mut query = sqlx::query(AssertSqlSafe(sql)).bind(window_start);
    for bucket in buckets {
        query = query.bind(*bucket);
    }
    let rows = query.fetch_all(&mut *db.acquire().await?).await?;
    let mut counts = vec![0; buckets.len()];
    for row in rows {
        let bucket: String = row.try_get(0)?;
        if let Some(i) = buckets.iter().position(|b| *b == bucket) {
            counts[i] = row.try_get(1)?;
        }
    }
    Ok(counts)
}

/// Counts one more failure in each of `buckets`.
pub async fn record_failure(
    db: &Db,
    buckets: &[&str],
    window_start: i64,
) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO login_failures (bucket, window_start, failures) VALUES {}
         ON CONFLICT (bucket, window_start) DO UPDATE SET failures = login_failures.failures + 1",
        values(buckets.len())
    );
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for bucket in buckets {
        query = query.bind(*bucket).bind(window_start);
    }
    query.execute(&mut *db.acquire().await?).await?;
    Ok(())
}

/// Deletes the counters of windows that started before `before` (ms).
pub async fn purge(db: &Db, before: i64) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM login_failures WHERE window_start < $1")
        .bind(before)
        .execute(&mut *db.acquire().await?)
        .await?;
    Ok(done.rows_affected())
}

/// `($1, $2, 1), ($3, $4, 1)`: one fresh counter row per bucket.
fn values(n: usize) -> String {
    (0..n)
        .map(|i| format!("(${}, ${}, 1)", 2 * i + 1, 2 * i + 2))
        .collect::<Vec<_>>()
        .join(", ")
}
