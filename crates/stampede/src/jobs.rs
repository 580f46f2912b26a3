//! `stampede jobs`: look at the job queue and retry dead jobs.
//!
//! ```text
//! stampede jobs --database-url URL            queues and their jobs per state
//! stampede jobs --database-url URL failing    jobs waiting to retry after a failure
//! stampede jobs --database-url URL dead       jobs out of attempts
//! stampede jobs --database-url URL retry ID   run a dead job again
//! ```

use std::process::ExitCode;

use anyhow::{Context, bail};
use stampede_jobs::admin::{self, JobInfo, Listing};
use stampede_store::{Db, DbOptions, migrate};

use crate::shop::{exit_code, runtime};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// `sqlite://PATH` or `postgres://USER@HOST/DB` (the shop's store).
    #[arg(long)]
    database_url: String,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Jobs that failed and wait for another attempt.
    Failing {
        /// Most jobs listed.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Jobs out of attempts.
    Dead {
        /// Most jobs listed.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Makes a dead job runnable again.
    Retry {
        /// The job's id (`job_...`).
        id: String,
        /// How many more attempts it gets.
        #[arg(long, default_value_t = 1)]
        attempts: i64,
    },
}

pub(crate) fn run(args: Args) -> ExitCode {
    exit_code("jobs", runtime().and_then(|rt| rt.block_on(command(args))))
}

async fn command(args: Args) -> anyhow::Result<()> {
    let db = Db::connect_lazy(&args.database_url, &DbOptions::default())?;
    // A store made by an older stampede lacks the job tables until migrated.
    migrate::run(&db).await.context("migrating")?;
    match args.command {
        None => print_depths(&db).await?,
        Some(Command::Failing { limit }) => {
            print_jobs(&admin::list(&db, Listing::Failing, limit).await?)
        }
        Some(Command::Dead { limit }) => print_jobs(&admin::list(&db, Listing::Dead, limit).await?),
        Some(Command::Retry { id, attempts }) => {
            if !admin::retry_dead(&db, &id, attempts)
                .await
                .context("retrying")?
            {
                bail!("no dead job `{id}` (see `stampede jobs --database-url URL dead`)");
            }
            println!("{id} will run again ({attempts} more attempt(s))");
        }
    }
    db.close().await;
    Ok(())
}

async fn print_depths(db: &Db) -> anyhow::Result<()> {
    let depths = admin::depths(db).await.context("reading the queues")?;
    println!("{:<16} {:<10} {:>10}", "QUEUE", "STATE", "JOBS");
    for d in depths {
        println!("{:<16} {:<10} {:>10}", d.queue, d.state, d.jobs);
    }
    Ok(())
}

fn print_jobs(jobs: &[JobInfo]) {
    println!(
        "{:<34} {:<10} {:<20} {:>8}  LAST ERROR",
        "ID", "QUEUE", "KIND", "ATTEMPTS"
    );
    for j in jobs {
        let attempts = format!("{}/{}", j.attempt, j.max_attempts);
        let error = j.last_error.as_deref().unwrap_or("");
        println!(
            "{:<34} {:<10} {:<20} {:>8}  {error}",
            j.id, j.queue, j.kind, attempts
        );
    }
}
