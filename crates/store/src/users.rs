//! Accounts: a username and an argon2 hash of its password (hashing itself
//! is the shop's job; the store never sees a password).

use sqlx::{AssertSqlSafe, Row};

use crate::{Db, StoreError, now_ms, placeholders};

/// Rows per `INSERT`: keeps every statement under SQLite's limit of 32,766
/// bound values whatever the size of the call.
const ROWS_PER_INSERT: usize = 1_000;

/// Creates every user or none: if any username is taken the whole call
/// fails with [`StoreError::Conflict`] and nothing is written.
pub async fn create_all(db: &Db, users: &[(String, String)]) -> Result<(), StoreError> {
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    for chunk in users.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO users (username, password_hash, created_at) VALUES {}",
            placeholders(chunk.len(), 3, 1)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (username, hash) in chunk {
            query = query.bind(username).bind(hash).bind(now);
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The stored password hash of `username`, if the user exists.
pub async fn password_hash(db: &Db, username: &str) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT password_hash FROM users WHERE username = $1")
        .bind(username)
        .fetch_optional(&mut *db.acquire().await?)
        .await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}
