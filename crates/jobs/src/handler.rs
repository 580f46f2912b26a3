//! What a worker runs: a handler per job kind.
//!
//! A handler's effects must be safe to repeat, because delivery is at
//! least once (a worker can die after the effects but before reporting):
//! write them as conditional state changes (`UPDATE ... WHERE status =
//! 'paying'`) or unique inserts, and a second run changes nothing.

use std::future::Future;
use std::pin::Pin;

use crate::Job;

/// A boxed future, so that handlers of different types fit in one table.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs the jobs of one kind.
pub trait Handler: Send + Sync + 'static {
    /// The job kind this handler runs.
    fn kind(&self) -> &'static str;

    /// Runs `job`. `Err` carries the reason, recorded with the job; the job
    /// is then retried after a backoff, or dead when out of attempts.
    fn run<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<(), String>>;
}
