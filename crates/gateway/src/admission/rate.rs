//! Token-bucket rate limits: how many requests per second a route, or each
//! client of it, may send, with bursts up to a size.
//!
//! # One number per bucket (GCRA)
//!
//! A token bucket of `burst` tokens refilled at `rate` per second is kept
//! the way the generic cell rate algorithm (GCRA, from ATM networks) keeps
//! it: as one number, the *theoretical arrival time* `tat`, the moment the
//! bucket would be full again. With `T = 1 / rate`, the time one token
//! takes to come back, a request at `now` is admitted when
//!
//! ```text
//! max(tat, now) + T - now <= burst × T
//! ```
//!
//! and `tat` then moves to `max(tat, now) + T`. Refused, it may come back
//! when that inequality would hold: `max(tat, now) + T - burst × T`. No
//! refill timer, no "last updated" time beside the count: the whole state
//! is one `AtomicU64` updated with compare-and-swap, so a check is
//! lock-free and costs one atomic operation on the request path.
//!
//! Written here rather than taken from a crate's keyed limiter: it is the
//! product's admission semantics (the `429`'s `Retry-After` comes from the
//! same number), and one atomic per request is less than a general keyed
//! limiter's bookkeeping.
//!
//! # Per client
//!
//! With `per = "client_ip"` every client address (after trusted-proxy
//! resolution) has its own bucket, kept in a bounded `moka` cache. An entry
//! idle for as long as an empty bucket takes to refill (`burst × T`) is
//! full, which is exactly what a missing entry means, so the cache forgets
//! it then (its time to idle) and memory follows the clients active now.
//! When more clients are active than `max_clients`, the least used buckets
//! are forgotten early and their clients start full again: under that
//! pressure the limit errs towards admitting.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::{RateKey, RateLimitConfig};

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// The longest a per-client bucket is remembered while idle, whatever the
/// rate: forgetting a bucket early only ever admits more.
const LONGEST_IDLE: Duration = Duration::from_secs(24 * 3600);

/// A route's rate limit: its shape and its bucket (or one per client).
#[derive(Debug)]
pub(crate) struct RateLimit {
    shape: Shape,
    /// Times are nanoseconds since this instant.
    epoch: Instant,
    buckets: Buckets,
}

#[derive(Debug)]
enum Buckets {
    Route(Bucket),
    PerClient(moka::sync::Cache<IpAddr, Arc<Bucket>>),
}

impl RateLimit {
    pub(crate) fn new(config: &RateLimitConfig) -> Self {
        let shape = Shape::new(config.rate, config.burst());
        let buckets = match config.per {
            RateKey::Route => Buckets::Route(Bucket::default()),
            RateKey::ClientIp => Buckets::PerClient(
                moka::sync::Cache::builder()
                    .max_capacity(config.max_clients)
                    .time_to_idle(
                        shape
                            .refill_time()
                            .clamp(Duration::from_secs(1), LONGEST_IDLE),
                    )
                    .build(),
            ),
        };
        Self {
            shape,
            epoch: Instant::now(),
            buckets,
        }
    }

    /// Takes a token for one request from `client`; when there is none, the
    /// whole seconds (at least 1) until there will be, for `Retry-After`.
    pub(crate) fn check(&self, client: IpAddr) -> Result<(), u64> {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let taken = match &self.buckets {
            Buckets::Route(bucket) => bucket.take(self.shape, now),
            Buckets::PerClient(cache) => cache.get_with(client, Arc::default).take(self.shape, now),
        };
        taken.map_err(|wait| wait.div_ceil(NANOS_PER_SECOND).max(1))
    }
}

/// A bucket's rate and size, in nanoseconds.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// `T`: how long one token takes to come back.
    interval: u64,
    /// `burst × T`: how far ahead of now the bucket's `tat` may run.
    tolerance: u64,
}

impl Shape {
    fn new(rate: f64, burst: u32) -> Self {
        // At least a nanosecond; the cast saturates for absurdly slow rates.
        let interval = ((NANOS_PER_SECOND as f64 / rate).round() as u64).max(1);
        Self {
            interval,
            tolerance: interval.saturating_mul(u64::from(burst)),
        }
    }

    /// How long an empty bucket takes to fill.
    fn refill_time(self) -> Duration {
        Duration::from_nanos(self.tolerance)
    }
}

/// One bucket: its theoretical arrival time, in nanoseconds since the
/// limit's epoch; 0, the default, is a full bucket.
#[derive(Debug, Default)]
struct Bucket {
    tat: AtomicU64,
}

impl Bucket {
    /// Takes a token at `now`, or says how many nanoseconds until one will
    /// be there.
    fn take(&self, shape: Shape, now: u64) -> Result<(), u64> {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now).saturating_add(shape.interval);
            let ahead = next - now;
            if ahead > shape.tolerance {
                return Err(ahead - shape.tolerance);
            }
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(current) => tat = current,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_full_bucket_admits_the_burst_then_one_per_interval() {
        let shape = Shape::new(10.0, 3);
        let bucket = Bucket::default();
        let start = 5_000 * MS;
        for _ in 0..3 {
            assert_eq!(bucket.take(shape, start), Ok(()));
        }
        assert_eq!(
            bucket.take(shape, start),
            Err(100 * MS),
            "one token in 100 ms"
        );
        assert_eq!(bucket.take(shape, start + 60 * MS), Err(40 * MS));
        assert_eq!(bucket.take(shape, start + 100 * MS), Ok(()));
        assert!(bucket.take(shape, start + 150 * MS).is_err());
        // Quiet long enough to refill: the whole burst again.
        let later = start + 1_000 * MS;
        assert_eq!(
            (0..5).filter(|_| bucket.take(shape, later).is_ok()).count(),
            3
        );
    }

    #[test]
    fn retry_after_is_whole_seconds_and_at_least_one() {
        let per_route = RateLimitConfig {
            rate: 0.5,
            burst: Some(1),
            per: RateKey::Route,
            max_clients: 10,
        };
        let limit = RateLimit::new(&per_route);
        let client = IpAddr::from([192, 0, 2, 1]);
        assert_eq!(limit.check(client), Ok(()));
        assert_eq!(limit.check(client), Err(2), "a token every two seconds");
        let fast = RateLimit::new(&RateLimitConfig {
            rate: 10.0,
            ..per_route
        });
        assert_eq!(fast.check(client), Ok(()));
        assert_eq!(fast.check(client), Err(1), "100 ms round up to 1 s");
    }

    #[test]
    fn clients_have_their_own_buckets() {
        let limit = RateLimit::new(&RateLimitConfig {
            rate: 1.0,
            burst: Some(2),
            per: RateKey::ClientIp,
            max_clients: 100,
        });
        let (a, b) = (IpAddr::from([192, 0, 2, 1]), IpAddr::from([192, 0, 2, 2]));
        assert!(limit.check(a).is_ok() && limit.check(a).is_ok());
        assert!(limit.check(a).is_err());
        assert!(limit.check(b).is_ok() && limit.check(b).is_ok());
        assert!(limit.check(b).is_err());
    }

    proptest! {
        /// In every window of time, from one admitted request to another,
        /// at most `burst + rate × window` requests are admitted.
        #[test]
        fn never_more_than_burst_plus_rate_times_the_window(
            rate in 0.5f64..2_000.0,
            burst in 1u32..40,
            gaps in proptest::collection::vec(0u64..50 * MS, 1..400),
        ) {
            let shape = Shape::new(rate, burst);
            let bucket = Bucket::default();
            let mut now = 0;
            let mut admitted = Vec::new();
            for gap in gaps {
                now += gap;
                if bucket.take(shape, now).is_ok() {
                    admitted.push(now);
                }
            }
            for (i, first) in admitted.iter().enumerate() {
                for (j, last) in admitted.iter().enumerate().skip(i) {
                    let window = last - first;
                    let allowed = u64::from(burst) + window / shape.interval;
                    prop_assert!(
                        (j - i + 1) as u64 <= allowed,
                        "{} admitted in {window} ns, at most {allowed}", j - i + 1
                    );
                }
            }
        }

        /// A client that keeps to the rate is never refused.
        #[test]
        fn requests_at_the_rate_are_all_admitted(
            rate in 0.5f64..2_000.0,
            burst in 1u32..40,
            n in 1usize..300,
        ) {
            let shape = Shape::new(rate, burst);
            let bucket = Bucket::default();
            for i in 0..n as u64 {
                prop_assert!(bucket.take(shape, i * shape.interval).is_ok());
            }
        }
    }
}
