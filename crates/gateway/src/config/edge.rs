//! The keys of what a pool route does to its backends' answers on their
//! way out: `routes[N].compress`, `routes[N].cache_control` and
//! `routes[N].response_cache`. Each only makes sense on a route served by
//! a pool (a `static_dir` route has `cache` and `[compression]` for the
//! same jobs), and `compress` only with a `[compression]` that compresses:
//! validation refuses the combinations that would silently do nothing.

use std::time::Duration;

use http::HeaderValue;
use serde::Deserialize;

use super::de;
use super::{CompressionConfig, RouteConfig};

/// `routes[N].response_cache`: answers kept in memory for `ttl`, so that a
/// crowd asking for one page sends the backend one request (see the
/// gateway's `cache` module).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseCacheConfig {
    /// How long an answer is served from memory at most; a backend's
    /// `s-maxage` (else `max-age`) can shorten it, never lengthen it. It
    /// adds to whatever staleness the backend already has.
    #[serde(deserialize_with = "de::duration")]
    pub ttl: Duration,
    /// The memory the route's answers may take together, compressed
    /// copies included; beyond it the least used are dropped.
    #[serde(default = "defaults::max_bytes")]
    pub max_bytes: u64,
    /// Larger bodies are passed through and never kept.
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: u64,
}

/// The longest `ttl`: a response cache in front of a flash sale is for
/// absorbing a crowd within a second or so, not for hiding the backend.
const MAX_TTL: Duration = Duration::from_secs(60 * 60);

mod defaults {
    pub(super) fn max_bytes() -> u64 {
        16 * 1024 * 1024
    }
    pub(super) fn max_body_bytes() -> u64 {
        1024 * 1024
    }
}

impl ResponseCacheConfig {
    /// The key returned is relative to `response_cache`.
    fn validate(&self) -> Result<(), (String, String)> {
        if self.ttl.is_zero() || self.ttl > MAX_TTL {
            return Err(("ttl".into(), "must be more than 0 and at most 1h".into()));
        }
        if self.max_body_bytes == 0 || self.max_body_bytes > self.max_bytes {
            return Err((
                "max_body_bytes".into(),
                "must be more than 0 and at most max_bytes".into(),
            ));
        }
        // moka weighs entries in u32.
        if self.max_body_bytes > u64::from(u32::MAX) / 4 {
            return Err(("max_body_bytes".into(), "must be at most 1 GiB".into()));
        }
        Ok(())
    }
}

impl RouteConfig {
    /// Checks the keys of this module against the route's target and the
    /// gateway's `compression`; the key returned is relative to the route.
    pub(super) fn validate_edge(
        &self,
        compression: Option<&CompressionConfig>,
    ) -> Result<(), (String, String)> {
        let on_files = self.static_dir.is_some();
        let only_pools = |key: &str, instead: &str| {
            Err((
                key.to_owned(),
                format!("applies to routes served by a pool; a static_dir route {instead}"),
            ))
        };
        if self.compress {
            if on_files {
                return only_pools("compress", "is compressed as [compression] says");
            }
            if !compression.is_some_and(CompressionConfig::compresses) {
                return Err((
                    "compress".into(),
                    "needs [compression] with enabled = true and at least one algorithm".into(),
                ));
            }
        }
        if let Some(value) = &self.cache_control {
            if on_files {
                return only_pools("cache_control", "sets Cache-Control with `cache`");
            }
            if value.trim().is_empty() || HeaderValue::from_str(value).is_err() {
                return Err((
                    "cache_control".into(),
                    format!(
                        "`{value}` is not a header value such as \"public, max-age=0, s-maxage=1\""
                    ),
                ));
            }
        }
        if let Some(cache) = &self.response_cache {
            if on_files {
                return only_pools("response_cache", "is served from its directory");
            }
            cache
                .validate()
                .map_err(|(key, problem)| (format!("response_cache.{key}"), problem))?;
        }
        Ok(())
    }
}
