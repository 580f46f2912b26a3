//! Logged-in sessions, shared by every node through the store: a session
//! made on one node is valid on all of them, and deleting its row logs it
//! out everywhere at once.

use sqlx::Row;

use sqlx::AssertSqlSafe;

use crate::{Db, StoreError, now_ms, placeholders};

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
        .execute(&mut *db.acquire().await?)
        .await?;
    Ok(())
}

/// The users of the live sessions among `token_hashes`, as
/// `(token_hash, username)` pairs; unknown or expired ones are left out.
/// One query for many lookups: a node under a crowd asks for the sessions
/// of all its waiting requests at once (see the shop's session lookups).
pub async fn usernames(
    db: &Db,
    token_hashes: &[&str],
) -> Result<Vec<(String, String)>, StoreError> {
    let Some(last) = token_hashes.last() else {
        return Ok(Vec::new());
    };
    // The list is padded to a power of two with repeats of its last hash,
    // so that a node prepares at most nine statements (1 to 256 hashes)
    // instead of one per batch size, which would overflow the
    // connection's statement cache and re-plan nearly every query.
    let size = token_hashes.len().next_power_of_two();
    let sql = format!(
        "SELECT token_hash, username FROM sessions WHERE expires_at > $1 AND token_hash IN ({})",
        placeholders(size, 1, 2)
    );
    let mut query = sqlx::query(AssertSqlSafe(sql)).bind(now_ms());
    let padding = std::iter::repeat_n(last, size - token_hashes.len());
    for hash in token_hashes.iter().chain(padding) {
        query = query.bind(*hash);
    }
    let rows = query.fetch_all(&mut *db.acquire().await?).await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

/// Ends a session on every node; ending an unknown one is not an error.
pub async fn delete(db: &Db, token_hash: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(token_hash)
        .execute(&mut *db.acquire().await?)
        .await?;
    Ok(())
}

/// Deletes sessions that expired; returns how many.
pub async fn purge_expired(db: &Db) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(now_ms())
        .execute(&mut *db.acquire().await?)
        .await?;
    Ok(done.rows_affected())
}
