//! The worker role: the runtime that turns rows of the job queue into work
//! done, the part of Celery that runs tasks (and of celery beat that
//! schedules them), built on `stampede-jobs`.
//!
//! One worker process runs four loops:
//!
//! - **claim**: while a slot is free (`concurrency` slots), claim that many
//!   ready jobs and start each with its handler; poll again after
//!   `poll_interval` when the queues are empty.
//! - **run** (one per job): the handler, and beside it a heartbeat every
//!   `heartbeat_interval`; then complete (batched with every other job that
//!   finished meanwhile: one statement and one commit), or fail with a
//!   backoff. A
//!   heartbeat or report that is fenced (the job was reclaimed and taken
//!   over) ends the job here without touching the newer attempt.
//! - **reclaim**: every half visibility timeout, take back running jobs
//!   whose heartbeat stopped (their worker was killed).
//! - **schedule**: enqueue each schedule's current tick; the unique key
//!   makes that once per tick across every worker.
//!
//! On shutdown it stops claiming, lets running jobs finish for up to
//! `drain_timeout`, then releases the rest (their attempt is given back).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use stampede_jobs::{Backoff, Handler, Schedule};
use stampede_store::Db;
use tokio::sync::watch;

mod admin;
mod run;

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This worker's name, recorded on the jobs it claims.
    pub name: String,
    /// The queues it claims from.
    pub queues: Vec<String>,
    /// Jobs run at once.
    pub concurrency: usize,
    /// A running job whose heartbeat is older than this is taken back.
    pub visibility_timeout: Duration,
    /// How often a running job's heartbeat is recorded.
    pub heartbeat_interval: Duration,
    /// How long to wait before claiming again when the queues were empty.
    pub poll_interval: Duration,
    /// How long running jobs may finish after shutdown is asked.
    pub drain_timeout: Duration,
    /// Delays between attempts of a failing job.
    pub backoff: Backoff,
    /// Where to serve `/metrics` and `/healthz`, if anywhere.
    pub admin_listen: Option<SocketAddr>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            name: format!("worker-{}", std::process::id()),
            queues: vec!["default".into()],
            concurrency: 16,
            visibility_timeout: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(5),
            poll_interval: Duration::from_millis(200),
            drain_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
            admin_listen: None,
        }
    }
}

/// A worker: settings, the handlers of the kinds it runs, its schedules.
pub struct Worker {
    db: Db,
    settings: Settings,
    handlers: HashMap<&'static str, Arc<dyn Handler>>,
    schedules: Vec<Schedule>,
    admin_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("settings", &self.settings)
            .field("kinds", &self.handlers.keys().collect::<Vec<_>>())
            .field("schedules", &self.schedules)
            .finish()
    }
}

impl Worker {
    /// A worker over `db` running `handlers` and keeping `schedules`.
    pub fn new(
        db: Db,
        settings: Settings,
        handlers: Vec<Arc<dyn Handler>>,
        schedules: Vec<Schedule>,
    ) -> Self {
        let handlers = handlers.into_iter().map(|h| (h.kind(), h)).collect();
        Self {
            db,
            settings,
            handlers,
            schedules,
            admin_tasks: Vec::new(),
        }
    }

    /// Binds the admin listener if one is configured; returns its address.
    pub async fn bind_admin(&mut self) -> std::io::Result<Option<SocketAddr>> {
        let Some(addr) = self.settings.admin_listen else {
            return Ok(None);
        };
        let (bound, tasks) = admin::serve(addr, self.db.clone()).await?;
        self.admin_tasks.extend(tasks);
        Ok(Some(bound))
    }

    /// Runs until `shutdown` completes, then drains.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let (stop, stopping) = watch::channel(false);
        let (completions, finished) = tokio::sync::mpsc::channel(stampede_jobs::queue::MAX_BATCH);
        let completer = tokio::spawn(run::completer(self.db.clone(), finished));
        let shared = Arc::new(run::Shared {
            db: self.db,
            settings: self.settings,
            handlers: self.handlers,
            completions,
        });
        let background = [
            tokio::spawn(run::reclaim_loop(Arc::clone(&shared), stopping.clone())),
            tokio::spawn(run::schedule_loop(
                Arc::clone(&shared),
                self.schedules,
                stopping.clone(),
            )),
        ];
        let claiming = tokio::spawn(run::claim_loop(Arc::clone(&shared), stopping));
        shutdown.await;
        tracing::info!("Shutting down: no new jobs; finishing the running ones.");
        let _ = stop.send(true);
        let _ = claiming.await;
        // Every job has had its completion written (run_job waits for it),
        // so stopping the completer loses nothing.
        for task in background
            .into_iter()
            .chain(self.admin_tasks)
            .chain([completer])
        {
            task.abort();
        }
    }
}
