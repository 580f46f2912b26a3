//! Periodic schedules that run once per tick however many workers run.
//!
//! A schedule's ticks are either every N (multiples of the period since the
//! Unix epoch) or the minutes a cron expression matches. Every worker
//! enqueues the current tick's job under the unique key
//! `cron:{name}:{tick}`, and the store accepts only the first: there is no
//! leader to elect and no beat process to keep single, so a second
//! scheduler simply inserts nothing (celery beat's double run cannot
//! happen). A tick during which no worker ran is skipped, not made up.

use std::time::Duration;

use sqlx::{Any, Executor};
use stampede_store::StoreError;

use crate::cron::Cron;
use crate::{NewJob, queue};

/// When a schedule's ticks are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// Every period, counted from the Unix epoch.
    Every(Duration),
    /// The minutes (UTC) a cron expression matches.
    Cron(Cron),
}

/// A job to run at every tick of `when`, named `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The schedule's name, part of each tick's unique key.
    pub name: String,
    /// When its ticks are.
    pub when: When,
    /// The job enqueued for each tick (its `unique_key` and `run_at` are
    /// set per tick).
    pub job: NewJob,
}

/// A minute in milliseconds: the resolution of cron expressions.
const MINUTE_MS: i64 = 60_000;

impl Schedule {
    /// The tick in progress at `now_ms`, if there is one (a cron schedule
    /// has none in a minute it does not match).
    pub fn tick(&self, now_ms: i64) -> Option<i64> {
        match &self.when {
            When::Every(_) => Some(now_ms.div_euclid(self.period_ms())),
            When::Cron(cron) => cron.matches(now_ms).then_some(now_ms.div_euclid(MINUTE_MS)),
        }
    }

    /// The job for tick `tick`: runnable from the tick's start, unique to it.
    pub fn job_for(&self, tick: i64) -> NewJob {
        NewJob {
            unique_key: Some(format!("cron:{}:{tick}", self.name)),
            run_at: Some(tick.saturating_mul(self.period_ms())),
            ..self.job.clone()
        }
    }

    fn period_ms(&self) -> i64 {
        match &self.when {
            When::Every(every) => i64::try_from(every.as_millis()).unwrap_or(i64::MAX).max(1),
            When::Cron(_) => MINUTE_MS,
        }
    }

    /// Enqueues the job of the tick in progress at `now_ms`, unless there is
    /// none or some worker already did; returns the job id if this call
    /// enqueued it.
    pub async fn enqueue_tick<'c, E: Executor<'c, Database = Any>>(
        &self,
        executor: E,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        match self.tick(now_ms) {
            Some(tick) => queue::enqueue(executor, &self.job_for(tick)).await,
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(when: When) -> Schedule {
        Schedule {
            name: "expire".into(),
            when,
            job: NewJob::new("default", "expire", "{}"),
        }
    }

    #[test]
    fn periodic_ticks_are_periods_since_the_epoch() {
        let s = schedule(When::Every(Duration::from_secs(5)));
        assert_eq!(s.tick(0), Some(0));
        assert_eq!(s.tick(4_999), Some(0));
        assert_eq!(s.tick(5_000), Some(1));
        let job = s.job_for(7);
        assert_eq!(job.unique_key.as_deref(), Some("cron:expire:7"));
        assert_eq!(job.run_at, Some(35_000));
    }

    #[test]
    fn cron_ticks_are_the_matching_minutes() {
        let s = schedule(When::Cron(
            "*/10 * * * *".parse().unwrap_or_else(|e| panic!("{e}")),
        ));
        // 1970-01-01 00:10:30 matches; 00:11 does not.
        assert_eq!(s.tick(630_000), Some(10));
        assert_eq!(s.tick(660_000), None);
        assert_eq!(s.job_for(10).run_at, Some(600_000));
    }
}
