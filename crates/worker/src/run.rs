//! The worker's loops: claiming, running one job with its heartbeat,
//! reclaiming lost jobs, and enqueueing schedule ticks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stampede_jobs::queue::{self, JobError, Retry};
use stampede_jobs::{Handler, Job, Schedule};
use stampede_store::{Db, now_ms};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::Settings;

/// Job runs by `queue`, `kind` and `outcome`: `completed`, `retrying`
/// (failed, another attempt scheduled), `dead` (out of attempts),
/// `unreported` (the outcome could not be written).
const RUNS: &str = "stampede_worker_jobs_total";
/// Seconds from a job being due (enqueued, or its backoff over) to a
/// worker starting it, by `queue` and `kind`: how far the workers lag.
const WAIT: &str = "stampede_worker_job_wait_seconds";
/// Seconds a job's handler ran, by `queue` and `kind`.
const RUN: &str = "stampede_worker_job_seconds";
/// Which attempt each run was, by `queue` and `kind`.
const ATTEMPT: &str = "stampede_worker_job_attempt";

/// What every loop of one worker shares.
pub(crate) struct Shared {
    pub(crate) db: Db,
    pub(crate) settings: Settings,
    pub(crate) handlers: HashMap<&'static str, Arc<dyn Handler>>,
    pub(crate) completions: mpsc::Sender<Finished>,
}

/// A job whose handler succeeded, waiting for its completion to be
/// recorded, and where to say whether it was.
pub(crate) struct Finished {
    job: Job,
    recorded: oneshot::Sender<Result<(), String>>,
}

/// Records completions in batches: every job that finished while the
/// previous batch was being written goes into the next `complete_all`, one
/// statement and one commit for all of them (fenced per job as ever). A
/// lone job is written at once; under load this is what lets one worker
/// complete tens of thousands of jobs a second.
pub(crate) async fn completer(db: Db, mut finished: mpsc::Receiver<Finished>) {
    let mut batch = Vec::new();
    while finished.recv_many(&mut batch, queue::MAX_BATCH).await > 0 {
        let jobs: Vec<Job> = batch.iter().map(|f| f.job.clone()).collect();
        match queue::complete_all(db.pool(), &jobs).await {
            Ok(results) => {
                for (f, result) in batch.drain(..).zip(results) {
                    let _ = f.recorded.send(result.map_err(|e| e.to_string()));
                }
            }
            Err(error) => {
                for f in batch.drain(..) {
                    let _ = f.recorded.send(Err(error.to_string()));
                }
            }
        }
    }
}

/// Hands `job` to the completer and waits until its completion is written.
async fn complete(shared: &Shared, job: &Job) -> Result<(), String> {
    let (recorded, written) = oneshot::channel();
    let finished = Finished {
        job: job.clone(),
        recorded,
    };
    shared
        .completions
        .send(finished)
        .await
        .map_err(|_| "the completer stopped".to_owned())?;
    written
        .await
        .unwrap_or_else(|_| Err("the completer stopped".to_owned()))
}

/// Claims jobs while slots are free, until `stopping`; then drains.
pub(crate) async fn claim_loop(shared: Arc<Shared>, mut stopping: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(shared.settings.concurrency.max(1)));
    let (hard_stop, hard) = watch::channel(false);
    let mut running = JoinSet::new();
    let queues: Vec<&str> = shared.settings.queues.iter().map(String::as_str).collect();
    loop {
        let first = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => permit,
            () = stopped(&mut stopping) => break,
        };
        let Ok(first) = first else { break };
        let wanted = slots.available_permits() + 1;
        let jobs = match queue::claim(&shared.db, &queues, &shared.settings.name, wanted).await {
            Ok(jobs) => jobs,
            Err(error) => {
                tracing::warn!(%error, "claiming jobs failed; retrying");
                Vec::new()
            }
        };
        let idle = jobs.is_empty();
        let mut permits = std::iter::once(first).chain(std::iter::from_fn(|| {
            Arc::clone(&slots).try_acquire_owned().ok()
        }));
        for job in jobs {
            let Some(permit) = permits.next() else { break };
            running.spawn(run_job(Arc::clone(&shared), job, permit, hard.clone()));
        }
        drop(permits);
        while running.try_join_next().is_some() {}
        if idle {
            tokio::select! {
                () = tokio::time::sleep(shared.settings.poll_interval) => {}
                () = stopped(&mut stopping) => break,
            }
        }
    }
    drain(running, shared.settings.drain_timeout, &hard_stop).await;
}

/// Completes once `flag` is (or becomes) true, or its sender is gone. The
/// borrow `wait_for` returns is dropped here, so callers' futures stay
/// `Send`.
async fn stopped(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|s| *s).await;
}

/// Lets running jobs finish for up to `limit`, then tells the rest to
/// hand their jobs back.
async fn drain(mut running: JoinSet<()>, limit: Duration, hard_stop: &watch::Sender<bool>) {
    let finished = tokio::time::timeout(limit, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            still_running = running.len(),
            "drain timeout: releasing the jobs still running"
        );
        let _ = hard_stop.send(true);
        while running.join_next().await.is_some() {}
    }
}

/// Runs one job with its heartbeat and reports the result.
async fn run_job(
    shared: Arc<Shared>,
    job: Job,
    _slot: OwnedSemaphorePermit,
    mut hard: watch::Receiver<bool>,
) {
    let started = Instant::now();
    // Clocks of other hosts set `due_at`: a skew makes a wait negative, 0.
    let waited = now_ms().saturating_sub(job.due_at).max(0);
    metrics::histogram!(WAIT, &labels(&job)).record(waited as f64 / 1000.0);
    let Some(handler) = shared.handlers.get(job.kind.as_str()) else {
        let error = format!("this worker has no handler for kind `{}`", job.kind);
        report(&shared, &job, Err(error), started).await;
        return;
    };
    let result = tokio::select! {
        result = handler.run(&job) => result,
        () = heartbeats(&shared, &job) => {
            tracing::warn!(job = %job.id, attempt = job.attempt, "taken over by another attempt; abandoned");
            return;
        }
        () = stopped(&mut hard) => {
            if let Err(error) = queue::release(shared.db.pool(), &job).await {
                tracing::warn!(job = %job.id, %error, "releasing a job at shutdown failed");
            }
            return;
        }
    };
    report(&shared, &job, result, started).await;
}

/// Records a heartbeat every interval; returns only when the job is no
/// longer this attempt's (fenced).
async fn heartbeats(shared: &Shared, job: &Job) {
    let mut every = tokio::time::interval(shared.settings.heartbeat_interval);
    every.tick().await;
    loop {
        every.tick().await;
        match queue::heartbeat(shared.db.pool(), job).await {
            Ok(()) => {}
            Err(JobError::Fenced { .. }) => return,
            Err(error) => tracing::warn!(job = %job.id, %error, "a heartbeat failed"),
        }
    }
}

/// The labels of a job's metrics: its `queue` and `kind`.
fn labels(job: &Job) -> [(&'static str, String); 2] {
    [("queue", job.queue.clone()), ("kind", job.kind.clone())]
}

async fn report(shared: &Shared, job: &Job, result: Result<(), String>, started: Instant) {
    let labels = labels(job);
    metrics::histogram!(RUN, &labels).record(started.elapsed().as_secs_f64());
    let outcome = match result {
        Ok(()) => complete(shared, job).await.map(|()| "completed"),
        Err(error) => {
            tracing::warn!(job = %job.id, kind = %job.kind, attempt = job.attempt, %error, "job failed");
            queue::fail(shared.db.pool(), job, &error, &shared.settings.backoff)
                .await
                .map(|retry| match retry {
                    Retry::At(_) => "retrying",
                    Retry::Dead => "dead",
                })
                .map_err(|e| e.to_string())
        }
    };
    let outcome = outcome.unwrap_or_else(|error| {
        tracing::warn!(job = %job.id, %error, "reporting a job failed");
        "unreported"
    });
    metrics::histogram!(ATTEMPT, &labels).record(job.attempt as f64);
    let [queue, kind] = labels;
    metrics::counter!(RUNS, &[queue, kind, ("outcome", outcome.to_owned())]).increment(1);
}

/// Takes back jobs whose worker went silent, every half visibility timeout.
pub(crate) async fn reclaim_loop(shared: Arc<Shared>, mut stopping: watch::Receiver<bool>) {
    let timeout = shared.settings.visibility_timeout;
    let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
    let mut every = tokio::time::interval(timeout / 2);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stopped(&mut stopping) => return,
        }
        match queue::reclaim(&shared.db, timeout_ms).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(jobs = n, "reclaimed jobs whose worker went silent"),
            Err(error) => tracing::warn!(%error, "reclaiming jobs failed"),
        }
    }
}

/// How often schedules are looked at: well under any sensible period.
const SCHEDULE_CHECK: Duration = Duration::from_millis(200);

/// Enqueues each schedule's tick once it begins (a no-op when another
/// worker was first).
pub(crate) async fn schedule_loop(
    shared: Arc<Shared>,
    schedules: Vec<Schedule>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut done: HashMap<String, i64> = HashMap::new();
    let mut every = tokio::time::interval(SCHEDULE_CHECK);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stopped(&mut stopping) => return,
        }
        let now = now_ms();
        for schedule in &schedules {
            let Some(tick) = schedule.tick(now) else {
                continue;
            };
            if done.get(&schedule.name) == Some(&tick) {
                continue;
            }
            match schedule.enqueue_tick(shared.db.pool(), now).await {
                Ok(_) => {
                    done.insert(schedule.name.clone(), tick);
                }
                Err(error) => {
                    tracing::warn!(schedule = %schedule.name, %error, "enqueueing a tick failed")
                }
            }
        }
    }
}
