//! Redis: the state many shop nodes share beside the store, where a
//! database round trip would cost too much or a TTL does the work.
//!
//! It holds the sessions (see [`sessions`]): a node that logs a user in
//! writes the session here with its lifetime as the key's TTL, every node
//! reads it, and a logout deletes it for all of them at once. Named leases
//! with fencing tokens (see [`leases`]), the same rules as the store's.
//! The sold-out flag, pushed to every node the moment one of them sells
//! the last unit (see [`sold_out`]). And the shared level of the product
//! cache, so that one node's load serves the others (see [`cache`]).
//!
//! # Failures
//!
//! One multiplexed connection per node, through redis-rs's
//! `ConnectionManager`: it pipelines concurrent commands on one socket and
//! reconnects in the background when the socket breaks. It connects
//! lazily, so a node starts while Redis is down and serves what needs no
//! Redis; every command is bounded by [`Timeouts`], so when Redis is away
//! a request fails within a second or two with an error the shop answers
//! `503`, rather than hanging, and succeeds again as soon as Redis is back.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub mod cache;
pub mod leases;
pub mod sessions;
pub mod sold_out;

/// Why Redis did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The URL is not a Redis URL.
    #[error("bad Redis URL `{url}`: {source}")]
    Url {
        /// The URL as given, with any password replaced.
        url: String,
        /// What the client said.
        source: redis::RedisError,
    },
    /// Redis is unreachable, timed out, or refused the command.
    #[error("Redis: {0}")]
    Command(#[from] redis::RedisError),
}

/// How long Redis may take before a command counts as failed.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// To open a connection.
    pub connect: Duration,
    /// For an answer to a command.
    pub response: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(1),
            response: Duration::from_secs(1),
        }
    }
}

/// A node's handle on Redis; cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct Redis {
    /// For connections of their own (a pub/sub subscription).
    client: redis::Client,
    connection: ConnectionManager,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").finish_non_exhaustive()
    }
}

impl Redis {
    /// A handle on the Redis at `url` (`redis://host:port/db`); connects
    /// on first use, so this fails only for a malformed URL. Must be called
    /// inside a tokio runtime.
    pub fn connect(url: &str, timeouts: Timeouts) -> Result<Self, RedisError> {
        let url_error = |source| RedisError::Url {
            url: without_password(url),
            source,
        };
        let client = redis::Client::open(url).map_err(url_error)?;
        // Few, quick reconnection attempts per command: a request waits at
        // most about a second and a half for a Redis that is away, and the
        // next request tries again.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeouts.connect))
            .set_response_timeout(Some(timeouts.response))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let connection =
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(url_error)?;
        Ok(Self { client, connection })
    }

    /// `PING`: whether Redis answers now.
    pub async fn ping(&self) -> Result<(), RedisError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(())
    }

    fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }
}

/// A TTL in whole milliseconds for `PX`/`PEXPIRE`: at least 1, since Redis
/// refuses 0.
fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// `url` with the password, if any, replaced by `***`, for messages.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            without_password("redis://app:s3cret@cache:6379/0"),
            "redis://app:***@cache:6379/0"
        );
        assert_eq!(
            without_password("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }

    #[tokio::test]
    async fn a_malformed_url_is_named() {
        let error = Redis::connect("http://nope", Timeouts::default()).expect_err("not Redis");
        assert!(error.to_string().contains("http://nope"), "{error}");
    }
}
