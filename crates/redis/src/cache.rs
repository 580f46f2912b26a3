//! The shared level of the nodes' caches: a value one node loaded from the
//! store, kept in Redis for what is left of its freshness, so the other
//! nodes take it from there instead of each loading it again.
//!
//! Every key carries its value's remaining freshness as its TTL, and a read
//! hands that remainder back with the value: a node copying it into its own
//! memory keeps it exactly as long, so however many levels a value passes
//! through it is never older than its first loader allowed. No clock is
//! compared across machines; Redis counts the time.

use std::time::Duration;

use crate::{Redis, RedisError, ttl_millis};

/// Every key of the shared cache starts with this.
const PREFIX: &str = "stampede:cache:";

fn key(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// The value under `name` and how long it stays fresh, or `None` when
/// there is none (or it is just expiring).
pub async fn get(redis: &Redis, name: &str) -> Result<Option<(String, Duration)>, RedisError> {
    let key = key(name);
    // One round trip; not atomic, but a key expiring between the two
    // commands only shows as a negative PTTL, which reads as a miss.
    let (value, ttl_ms): (Option<String>, i64) = redis::pipe()
        .get(&key)
        .pttl(&key)
        .query_async(&mut redis.connection())
        .await?;
    let fresh_for = u64::try_from(ttl_ms).ok().filter(|ms| *ms > 0);
    Ok(value.zip(fresh_for.map(Duration::from_millis)))
}

/// Stores `value` under `name` for `fresh_for`.
pub async fn put(
    redis: &Redis,
    name: &str,
    value: &str,
    fresh_for: Duration,
) -> Result<(), RedisError> {
    let _: () = redis::cmd("SET")
        .arg(key(name))
        .arg(value)
        .arg("PX")
        .arg(ttl_millis(fresh_for))
        .query_async(&mut redis.connection())
        .await?;
    Ok(())
}

/// Removes the values under `names` (a write made them wrong).
pub async fn forget(redis: &Redis, names: &[&str]) -> Result<(), RedisError> {
    let keys: Vec<String> = names.iter().map(|name| key(name)).collect();
    let _: i64 = redis::cmd("DEL")
        .arg(keys)
        .query_async(&mut redis.connection())
        .await?;
    Ok(())
}
