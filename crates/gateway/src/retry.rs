//! Retries on another backend, and the budget that bounds them.
//!
//! A request is tried again elsewhere only when that cannot do harm twice:
//! the connection to the backend failed before anything was sent; or no
//! answer came and the request has no body and is idempotent (`GET`,
//! `HEAD`, `PUT`, `DELETE`, `OPTIONS`, `TRACE`) or carries an
//! `Idempotency-Key`. A backend's `5xx` answer is passed on, not retried:
//! it is an answer. Each request is retried at most `max` times, each time
//! on a backend it has not tried.
//!
//! The budget (Finagle's and Linkerd's idea) keeps retries from doubling
//! the load on a pool that is already failing: it is a token bucket that
//! earns `budget_ratio` of a token per request and `budget_floor` tokens
//! per second, holds at most ten seconds of the floor plus 100 tokens, and
//! a retry spends one. With every backend failing, retries stay near
//! `budget_ratio` of the traffic.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use metrics::Counter;

use crate::config::{MAX_RETRIES, RetryConfig};
use crate::fields::Fields;

/// Whether sending the request twice does no harm: an idempotent method
/// (RFC 9110: `GET`, `HEAD`, `PUT`, `DELETE`, `OPTIONS`, `TRACE`), or an
/// `Idempotency-Key` the backend dedupes on. Both request paths ask this.
pub(crate) fn harmless_twice(method: &str, headers: &(impl Fields + ?Sized)) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
    ) || headers.field("idempotency-key").is_some()
}

/// Thousandths of a token: the bucket's unit, so ratios add up exactly.
const MILLI: i64 = 1000;

/// A pool's retry settings and budget.
#[derive(Debug)]
pub(crate) struct Retries {
    /// Retries per request at most.
    pub(crate) max: u32,
    ratio_milli: i64,
    floor_milli: i64,
    cap_milli: i64,
    balance_milli: AtomicI64,
    /// The last whole second the floor was paid for, since `epoch`.
    paid_until_s: AtomicU64,
    epoch: Instant,
    retried: Counter,
    refused: Counter,
}

impl Retries {
    pub(crate) fn new(config: &RetryConfig, pool: &str) -> Self {
        let floor_milli = i64::from(config.budget_floor) * MILLI;
        Self {
            max: config.max,
            ratio_milli: (config.budget_ratio * MILLI as f64).round() as i64,
            floor_milli,
            cap_milli: 10 * floor_milli + 100 * MILLI,
            balance_milli: AtomicI64::new(floor_milli),
            paid_until_s: AtomicU64::new(0),
            epoch: Instant::now(),
            retried: metrics::counter!(crate::telemetry::RETRIES, "pool" => pool.to_owned()),
            refused: metrics::counter!(crate::telemetry::RETRIES_REFUSED, "pool" => pool.to_owned()),
        }
    }

    /// Every request earns the budget its share of a token.
    pub(crate) fn deposit(&self) {
        self.add(self.ratio_milli);
    }

    /// Takes a token for one retry, if the budget has one.
    pub(crate) fn withdraw(&self) -> bool {
        self.pay_floor();
        let taken = self
            .balance_milli
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b >= MILLI).then(|| b - MILLI)
            })
            .is_ok();
        if taken {
            self.retried.increment(1);
        } else {
            self.refused.increment(1);
        }
        taken
    }

    /// Adds the floor for every whole second since it was last paid.
    fn pay_floor(&self) {
        let now = self.epoch.elapsed().as_secs();
        let paid = self.paid_until_s.swap(now, Ordering::Relaxed);
        if now > paid {
            let seconds = i64::try_from(now - paid).unwrap_or(i64::MAX);
            self.add(self.floor_milli.saturating_mul(seconds));
        }
    }

    /// Adds to the balance: one `fetch_add`, as every request deposits and
    /// a compare-and-swap loop would contend across worker threads; the
    /// rare overshoot past the cap is trimmed right after.
    fn add(&self, milli: i64) {
        if milli > 0 {
            let before = self.balance_milli.fetch_add(milli, Ordering::Relaxed);
            if before + milli > self.cap_milli {
                self.balance_milli
                    .fetch_min(self.cap_milli, Ordering::Relaxed);
            }
        }
    }
}

/// The backends one request has tried, on the stack: every request has
/// one, and the fast path allocates nothing per request it need not.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tried {
    list: [usize; MAX_TRIES],
    len: usize,
}

/// The first try and the most retries a pool may configure.
const MAX_TRIES: usize = 1 + MAX_RETRIES as usize;

impl Tried {
    pub(crate) fn first(index: usize) -> Self {
        let mut list = [0; MAX_TRIES];
        list[0] = index;
        Self { list, len: 1 }
    }

    pub(crate) fn as_slice(&self) -> &[usize] {
        &self.list[..self.len]
    }

    pub(crate) fn push(&mut self, index: usize) {
        if self.len < MAX_TRIES {
            self.list[self.len] = index;
            self.len += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retries(ratio: f64, floor: u32) -> Retries {
        let config = RetryConfig {
            max: 1,
            budget_ratio: ratio,
            budget_floor: floor,
        };
        Retries::new(&config, "test")
    }

    #[test]
    fn retries_stay_within_the_ratio_of_requests() {
        let r = retries(0.2, 0);
        let mut granted = 0;
        for _ in 0..1000 {
            r.deposit();
            if r.withdraw() {
                granted += 1;
            }
        }
        assert_eq!(granted, 200, "a fifth of a thousand requests");
    }

    #[test]
    fn the_floor_allows_a_few_retries_without_traffic() {
        let r = retries(0.0, 3);
        let granted = (0..10).filter(|_| r.withdraw()).count();
        assert_eq!(granted, 3, "the first second's floor");
    }

    #[test]
    fn a_calm_period_banks_at_most_the_cap() {
        let r = retries(1.0, 0);
        for _ in 0..10_000 {
            r.deposit();
        }
        let granted = (0..10_000).filter(|_| r.withdraw()).count();
        assert_eq!(granted, 100);
    }
}
