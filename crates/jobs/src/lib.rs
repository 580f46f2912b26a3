//! The job queue: the part of Celery a flash sale relies on (payments,
//! confirmations, expiring unpaid reservations), without its known ways of
//! losing or repeating work.
//!
//! Jobs are rows in the store the shop already uses, so a job is enqueued
//! inside the caller's transaction: an order and its jobs commit or vanish
//! together. Delivery is at least once, and exactly-once *effects* are
//! the caller's by the fencing rule below.
//!
//! # A job's life
//!
//! ```text
//! enqueue ──> available ──claim──> running ──complete──> completed
//!                ▲                    │
//!                └── fail (backoff) ──┤ (attempts left)
//!                └── release ─────────┤ (shutdown; budget kept)
//!                └── reclaim ─────────┘ (no heartbeat within the visibility timeout)
//!                                     └── fail / reclaim, attempts spent ──> dead
//! ```
//!
//! Every claim increments the job's `attempt`, and every report about a
//! running job (heartbeat, complete, fail, release) names the attempt it
//! comes from: a report from any other attempt changes nothing and returns
//! [`JobError::Fenced`]. So a worker that stalled past the visibility
//! timeout, while another worker took the job over, cannot overwrite the
//! newer attempt's result; done in the same transaction as the job's
//! effects, completion makes those effects happen once.
//!
//! # Layout
//!
//! - [`queue`]: enqueue, claim, report, reclaim.
//! - [`backoff`]: how long a failed job waits before its next attempt.
//! - [`handler`]: what a worker runs for each job kind.
//! - [`schedule`]: periodic jobs, once per tick across every worker;
//!   [`cron`] the cron expressions they may use.
//! - [`lease`]: named leases with fencing tokens, for single-runner work.
//! - [`admin`]: queue depths, failing and dead jobs, retrying a dead one.
//!
//! The runtime that claims and runs jobs is the `stampede-worker` crate.

pub mod admin;
pub mod backoff;
pub mod cron;
pub mod handler;
pub mod lease;
pub mod queue;
pub mod schedule;

pub use backoff::Backoff;
pub use handler::{BoxFuture, Handler};
pub use lease::{Lease, LeaseError, Leases};
pub use queue::{Job, JobError, NewJob, Retry};
pub use schedule::{Schedule, When};
