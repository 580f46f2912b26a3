//! Periodic schedules that run once per tick however many workers run.
//!
//! Time is cut into ticks of the schedule's period since the Unix epoch;
//! every worker enqueues the current tick's job under the unique key
//! `cron:{name}:{tick}`, and the store accepts only the first. There is no
//! leader to elect and no beat process to keep single: a second scheduler
//! simply inserts nothing (celery beat's double-run problem cannot occur).

use std::time::Duration;

use sqlx::{Any, Executor};
use stampede_store::StoreError;

use crate::{NewJob, queue};

/// A job to run every `every`, named `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The schedule's name, part of each tick's unique key.
    pub name: String,
    /// The period; ticks start at multiples of it since the epoch.
    pub every: Duration,
    /// The job enqueued for each tick (its `unique_key` and `run_at` are
    /// set per tick).
    pub job: NewJob,
}

impl Schedule {
    /// The tick that contains `now_ms`.
    pub fn tick(&self, now_ms: i64) -> i64 {
        let period = i64::try_from(self.every.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        now_ms.div_euclid(period)
    }

    /// The job for tick `tick`: runnable from the tick's start, unique to it.
    pub fn job_for(&self, tick: i64) -> NewJob {
        let period = i64::try_from(self.every.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        NewJob {
            unique_key: Some(format!("cron:{}:{tick}", self.name)),
            run_at: Some(tick.saturating_mul(period)),
            ..self.job.clone()
        }
    }

    /// Enqueues the job of the tick containing `now_ms`, unless some worker
    /// already did; returns the job id if this call enqueued it.
    pub async fn enqueue_tick<'c, E: Executor<'c, Database = Any>>(
        &self,
        executor: E,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        queue::enqueue(executor, &self.job_for(self.tick(now_ms))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_periods_since_the_epoch() {
        let s = Schedule {
            name: "expire".into(),
            every: Duration::from_secs(5),
            job: NewJob::new("default", "expire", "{}"),
        };
        assert_eq!(s.tick(0), 0);
        assert_eq!(s.tick(4_999), 0);
        assert_eq!(s.tick(5_000), 1);
        let job = s.job_for(7);
        assert_eq!(job.unique_key.as_deref(), Some("cron:expire:7"));
        assert_eq!(job.run_at, Some(35_000));
    }
}
