//! Sessions in Redis: one key per session, `stampede:session:{token
//! hash}`, holding the username, with the session's lifetime as the key's
//! TTL, so that Redis forgets expired sessions by itself and no node has
//! to purge them. Deleting the key logs the session out on every node at
//! once, since no node keeps a copy.

use std::time::Duration;

use crate::{Redis, RedisError, ttl_millis};

/// The prefix of every session key.
const PREFIX: &str = "stampede:session:";

fn key(token_hash: &str) -> String {
    format!("{PREFIX}{token_hash}")
}

/// Records a session of `username`, valid for `ttl`.
pub async fn create(
    redis: &Redis,
    token_hash: &str,
    username: &str,
    ttl: Duration,
) -> Result<(), RedisError> {
    let () = redis::cmd("SET")
        .arg(key(token_hash))
        .arg(username)
        .arg("PX")
        .arg(ttl_millis(ttl))
        .query_async(&mut redis.connection())
        .await?;
    Ok(())
}

/// The users of the live sessions among `token_hashes`, as
/// `(token_hash, username)` pairs; unknown or expired ones are left out.
/// One `MGET` for them all, as the store's lookup is one query.
pub async fn usernames(
    redis: &Redis,
    token_hashes: &[&str],
) -> Result<Vec<(String, String)>, RedisError> {
    if token_hashes.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = token_hashes.iter().map(|hash| key(hash)).collect();
    let users: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&keys)
        .query_async(&mut redis.connection())
        .await?;
    Ok(token_hashes
        .iter()
        .zip(users)
        .filter_map(|(hash, user)| Some(((*hash).to_owned(), user?)))
        .collect())
}

/// Ends a session on every node; ending an unknown one is not an error.
pub async fn delete(redis: &Redis, token_hash: &str) -> Result<(), RedisError> {
    let _: usize = redis::cmd("DEL")
        .arg(key(token_hash))
        .query_async(&mut redis.connection())
        .await?;
    Ok(())
}
