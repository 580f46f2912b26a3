//! Named leases with fencing tokens in Redis, the same rules as the
//! store's (`stampede-jobs`' `lease` module): one holder at a time until
//! the lease lapses or is released, and every new holder a token one
//! higher than the last ever issued for that name.
//!
//! Two keys per name, in one hash slot (`{name}`) so that a Redis Cluster
//! keeps them together: `stampede:lease:{name}` holds `"HOLDER TOKEN"`
//! with the lease's time as its TTL, and `stampede:lease:{name}:token`
//! counts the tokens and never expires. Each operation is one Lua script,
//! so it is atomic without a transaction round trip: taking the lease only
//! if the key is absent, renewing or releasing it only if it still holds
//! this holder's token.
//!
//! The tokens are as durable as Redis is: a Redis that keeps nothing on
//! disk starts counting again after a restart. Where a fencing token must
//! never repeat, run Redis with AOF (`appendonly yes`), or keep the lease
//! in the store.

use std::time::Duration;

use crate::{Redis, RedisError, ttl_millis};

const ACQUIRE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. token, 'PX', ARGV[2])
return token
";

const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

fn lease_key(name: &str) -> String {
    format!("stampede:lease:{{{name}}}")
}

/// What the lease key holds while `holder` has it with `token`.
fn held_by(holder: &str, token: i64) -> String {
    format!("{holder} {token}")
}

/// Takes the lease `name` for `holder` for `ttl` if nobody holds it; its
/// fencing token, or `None` while someone else holds it.
pub async fn acquire(
    redis: &Redis,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<Option<i64>, RedisError> {
    let key = lease_key(name);
    let token: Option<i64> = redis::cmd("EVAL")
        .arg(ACQUIRE)
        .arg(2)
        .arg(&key)
        .arg(format!("{key}:token"))
        .arg(holder)
        .arg(ttl_millis(ttl))
        .query_async(&mut redis.connection())
        .await?;
    Ok(token)
}

/// Extends the lease `name` held by `holder` with `token` by `ttl` from
/// now; false if it was lost (it lapsed, maybe to another holder).
pub async fn renew(
    redis: &Redis,
    name: &str,
    holder: &str,
    token: i64,
    ttl: Duration,
) -> Result<bool, RedisError> {
    let renewed: i64 = redis::cmd("EVAL")
        .arg(RENEW)
        .arg(1)
        .arg(lease_key(name))
        .arg(held_by(holder, token))
        .arg(ttl_millis(ttl))
        .query_async(&mut redis.connection())
        .await?;
    Ok(renewed == 1)
}

/// Gives the lease up at once if `holder` still holds it with `token`.
pub async fn release(
    redis: &Redis,
    name: &str,
    holder: &str,
    token: i64,
) -> Result<(), RedisError> {
    let _: i64 = redis::cmd("EVAL")
        .arg(RELEASE)
        .arg(1)
        .arg(lease_key(name))
        .arg(held_by(holder, token))
        .query_async(&mut redis.connection())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_keys_of_a_lease_share_a_cluster_slot() {
        assert_eq!(lease_key("scheduler"), "stampede:lease:{scheduler}");
        assert_eq!(held_by("worker-1", 7), "worker-1 7");
    }
}
