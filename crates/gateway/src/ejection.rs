//! Passive ejection (Envoy's outlier detection, HAProxy's `observe
//! layer7`): live traffic, not probes, takes a failing backend out.
//!
//! Every answer a backend gives counts: a 5xx, or no answer at all (refused
//! or broken connection, timeout), is a failure; anything else resets the
//! count. `consecutive_failures` in a row eject the backend for a while:
//! `base_time`, doubled for each ejection since the backend last stayed
//! out of trouble for `max_time`, and never longer than `max_time`. When
//! the time is up it is back in rotation and the count starts afresh.
//!
//! At most `max_share` of a pool is ever ejected at once: when the whole
//! pool fails (the shop behind it is down), ejecting everything would only
//! turn every answer into a `503`, so the last backends stay in rotation
//! and the failures stay visible.
//!
//! The count is one atomic per backend, written only when it changes, so
//! a healthy backend's requests cost one read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use stampede_balance::Out;

use crate::config::EjectionConfig;
use crate::pool::Pool;

/// A pool's passive ejection: its settings and one record per backend.
#[derive(Debug)]
pub(crate) struct Ejection {
    config: EjectionConfig,
    records: Vec<Record>,
    epoch: Instant,
}

#[derive(Debug, Default)]
struct Record {
    /// Failures in a row.
    failures: AtomicU32,
    /// Ejections in the current streak of trouble.
    ejections: AtomicU32,
    /// When the last ejection began, in ms since `epoch`.
    last_ejected_ms: AtomicU64,
}

impl Ejection {
    /// Ejection for a pool of `backends` backends.
    pub(crate) fn new(config: EjectionConfig, backends: usize) -> Self {
        Self {
            config,
            records: (0..backends).map(|_| Record::default()).collect(),
            epoch: Instant::now(),
        }
    }

    /// Counts one answer of `pool`'s backend `index`: `failed` for a 5xx or
    /// no answer. Ejects the backend when that makes enough in a row.
    pub(crate) fn observe(&self, pool: &Pool, index: usize, failed: bool) {
        let record = &self.records[index];
        if !failed {
            if record.failures.load(Ordering::Relaxed) != 0 {
                record.failures.store(0, Ordering::Relaxed);
            }
            return;
        }
        let failures = record.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < self.config.consecutive_failures {
            return;
        }
        record.failures.store(0, Ordering::Relaxed);
        let backend = &pool.backends[index];
        if backend.is_out(Out::Ejected) {
            return;
        }
        let ejected = pool
            .backends
            .iter()
            .filter(|b| b.is_out(Out::Ejected))
            .count();
        if (ejected + 1) as f64 > self.config.max_share * pool.backends.len() as f64 {
            tracing::warn!(pool = %pool.name, backend = %backend.id, failures, "Backend keeps failing but stays in rotation: the pool's max_share is already ejected.");
            return;
        }
        let time = self.ejection_time(record);
        pool.set_out(index, Out::Ejected, true);
        pool.metrics[index].ejected();
        tracing::warn!(pool = %pool.name, backend = %backend.id, failures, ?time, "Backend ejected: its answers keep failing.");
        let (backend, metrics) = (Arc::clone(backend), Arc::clone(&pool.metrics[index]));
        let name = Arc::clone(&pool.name);
        tokio::spawn(async move {
            tokio::time::sleep(time).await;
            backend.set_out(Out::Ejected, false);
            metrics.set_up(backend.is_available());
            tracing::info!(pool = %name, backend = %backend.id, "Ejection over: backend back in rotation.");
        });
    }

    /// How long this ejection lasts: doubling within a streak of trouble;
    /// a streak ends when the backend's last ejection began more than
    /// twice `max_time` ago (it served clear for at least `max_time`).
    fn ejection_time(&self, record: &Record) -> Duration {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = record.last_ejected_ms.swap(now, Ordering::Relaxed);
        let max = self.config.max_time;
        let clear_for = Duration::from_millis(now.saturating_sub(last));
        let first = record.ejections.load(Ordering::Relaxed) == 0;
        let ejections = if first || clear_for > max * 2 {
            record.ejections.store(1, Ordering::Relaxed);
            1
        } else {
            record.ejections.fetch_add(1, Ordering::Relaxed) + 1
        };
        let factor = 1u32 << (ejections - 1).min(16);
        self.config.base_time.saturating_mul(factor).min(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn pool(backends: usize, ejection: &str) -> Pool {
        let list: Vec<String> = (0..backends)
            .map(|i| format!("\"127.0.0.1:{}\"", 9001 + i))
            .collect();
        let toml = format!(
            "routes = [{{ pool = \"web\" }}]\n[pools.web]\nbackends = [{}]\n[pools.web.ejection]\n{ejection}\n",
            list.join(", ")
        );
        let config = Config::from_toml(&toml, "test.toml").expect("config");
        Pool::new(0, "web", &config.pools["web"], None)
    }

    #[tokio::test]
    async fn failures_in_a_row_eject_and_a_success_resets_the_count() {
        let pool = pool(2, "consecutive_failures = 3");
        for failed in [true, true, false, true, true] {
            pool.observe(0, failed);
        }
        assert!(
            pool.backends[0].is_available(),
            "the success reset the count"
        );
        pool.observe(0, true);
        assert!(
            pool.backends[0].is_out(Out::Ejected),
            "third failure in a row"
        );
        assert!(pool.backends[1].is_available());
    }

    #[tokio::test]
    async fn no_more_than_max_share_of_the_pool_is_ejected() {
        let pool = pool(4, "consecutive_failures = 1\nmax_share = 0.5");
        for index in 0..4 {
            pool.observe(index, true);
        }
        let ejected = pool
            .backends
            .iter()
            .filter(|b| b.is_out(Out::Ejected))
            .count();
        assert_eq!(ejected, 2, "half of four");
    }

    #[tokio::test(start_paused = true)]
    async fn an_ejection_ends_after_its_time() {
        let pool = pool(2, "consecutive_failures = 1\nbase_time = \"10s\"");
        pool.observe(0, true);
        assert!(!pool.backends[0].is_available());
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert!(pool.backends[0].is_available(), "back after base_time");
    }

    #[test]
    fn ejections_in_a_streak_double_up_to_max_time() {
        let config = EjectionConfig {
            consecutive_failures: 1,
            base_time: Duration::from_secs(10),
            max_time: Duration::from_secs(60),
            max_share: 0.5,
        };
        let ejection = Ejection::new(config, 1);
        let record = &ejection.records[0];
        let times: Vec<u64> = (0..5)
            .map(|_| ejection.ejection_time(record).as_secs())
            .collect();
        assert_eq!(times, [10, 20, 40, 60, 60]);
    }
}
