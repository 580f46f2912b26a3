//! `stampede worker`: runs the shop's background jobs and schedules.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use stampede_store::{Db, DbOptions, migrate};
use stampede_worker::{Settings, Worker};

use crate::reports;
use crate::shop::{exit_code, runtime};
use crate::signal::Signals;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// `sqlite://PATH` or `postgres://USER@HOST/DB` (the shop's store).
    #[arg(long)]
    database_url: String,

    /// Store connections this worker may open (its pool's size).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,

    /// How long a query waits for a free connection (or a dead store)
    /// before it fails and the job is retried later (e.g. `3s`).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    acquire_timeout: Duration,

    /// Jobs run at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,

    /// This worker's name in logs and on the jobs it claims [default: worker-PID].
    #[arg(long)]
    name: Option<String>,

    /// A running job whose heartbeat is older than this is given to another
    /// worker (e.g. `30s`).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    visibility_timeout: Duration,

    /// After SIGTERM or Ctrl-C: how long running jobs may finish before
    /// they are handed back to the queue.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,

    /// Address of the admin listener serving /metrics and /healthz.
    #[arg(long)]
    admin_listen: Option<std::net::SocketAddr>,

    /// How often unpaid reservations past their time are expired.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    expire_every: Duration,
}

pub(crate) fn run(args: Args, sentry_dsn: Option<String>) -> ExitCode {
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| Settings::default().name);
    // Held until the worker has stopped: dropping it flushes the reports.
    let _reports = match reports::start("worker", &name, sentry_dsn, None) {
        Ok(reports) => reports,
        Err(code) => return code,
    };
    exit_code("worker", runtime().and_then(|rt| rt.block_on(serve(args))))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let signals = Signals::install().context("installing signal handlers")?;
    let options = DbOptions {
        max_connections: args.max_connections,
        acquire_timeout: args.acquire_timeout,
        ..DbOptions::default()
    };
    let db = Db::connect_lazy(&args.database_url, &options)?;
    migrate::run(&db).await.context("migrating")?;
    let mut settings = Settings {
        queues: stampede_shop::jobs::QUEUES
            .iter()
            .map(|q| (*q).to_owned())
            .collect(),
        concurrency: args.concurrency,
        visibility_timeout: args.visibility_timeout,
        heartbeat_interval: (args.visibility_timeout / 6).max(Duration::from_millis(100)),
        admin_listen: args.admin_listen,
        drain_timeout: args.drain_timeout,
        ..Settings::default()
    };
    if let Some(name) = args.name {
        settings.name = name;
    }
    let banner = format!(
        "stampede worker running ({}, concurrency {}, queues {})",
        settings.name,
        settings.concurrency,
        settings.queues.join(",")
    );
    let handlers = stampede_shop::jobs::handlers(&db);
    let schedules = stampede_shop::jobs::schedules(args.expire_every);
    let mut worker = Worker::new(db.clone(), settings, handlers, schedules);
    if let Some(admin) = worker
        .bind_admin()
        .await
        .context("binding the admin listener")?
    {
        println!("admin (metrics) on http://{admin}/metrics");
    }
    println!("{banner}");
    worker.run(signals.recv()).await;
    db.close().await;
    Ok(())
}
