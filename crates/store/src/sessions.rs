//! Logged-in sessions, shared by every node through the store: a session
//! made on one node is valid on all of them, and deleting its row logs it
//! out everywhere at once.

use sqlx::Row;

use crate::{Db, StoreError, now_ms};

/// Records a new session for `username`, valid until `expires_at` (ms).
pub async fn create(
    db: &Db,
    token_hash: &str,
    username: &str,
    expires_at: i64,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO sessions (token_hash, username, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(token_hash)
        .bind(username)
        .bind(now_ms())
        .bind(expires_at)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// The user of a live session, or `None` if it is unknown or expired.
pub async fn username(db: &Db, token_hash: &str) -> Result<Option<String>, StoreError> {
    let row =
        sqlx::query("SELECT username FROM sessions WHERE token_hash = $1 AND expires_at > $2")
            .bind(token_hash)
            .bind(now_ms())
            .fetch_optional(db.pool())
            .await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}

/// Ends a session on every node; ending an unknown one is not an error.
pub async fn delete(db: &Db, token_hash: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(token_hash)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Deletes sessions that expired; returns how many.
pub async fn purge_expired(db: &Db) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(now_ms())
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected())
}
