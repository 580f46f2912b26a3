//! `stampede up`: a whole stampede cluster on one machine, as child
//! processes of one command that a single Ctrl-C stops.
//!
//! `up` runs the roles of the `stampede` binary it is given (normally
//! itself): `migrate` once, N shop nodes on ephemeral ports, and the gateway
//! in front of them on the port asked for. It learns every address from the
//! line each child prints once it listens, passes every child's output on
//! with the child's name in front, seeds demo data into a fresh database,
//! and prints the URL with a curl session to try it. The data directory
//! holds the SQLite database (unless a `--database-url` names another), the
//! generated admin token and the demo users' passwords.
//!
//! # Layout
//!
//! - `cluster`: the start sequence and each role's command line.
//! - `supervisor`: the running children, and stopping them.
//! - `child`: one child: its output, its readiness, its signals.
//! - `logline`: finding an address in a child's log line.
//! - `token`: the admin token, from the environment or the data directory.
//! - `seed`, `http`: the demo data, through the admin API.
//! - `files`: the data directory and its private files.
//! - `report`: what `up` prints.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

mod child;
mod cluster;
mod error;
mod files;
mod http;
mod logline;
mod report;
mod seed;
mod supervisor;
mod token;

pub use error::UpError;
pub use token::{TOKEN_VARIABLE, TokenSource};

use cluster::{Plan, Started};
use report::say;
use supervisor::Supervisor;
use token::AdminToken;

/// What to run, and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `stampede` binary whose roles are started.
    pub binary: PathBuf,
    /// How many shop nodes.
    pub nodes: usize,
    /// The gateway's port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Where the SQLite database, the admin token and the demo users'
    /// passwords live.
    pub data_dir: PathBuf,
    /// Another database than the SQLite file in the data directory.
    pub database_url: Option<String>,
    /// Redis for the shop nodes' sessions; without it they live in the
    /// database.
    pub redis_url: Option<String>,
    /// How long each child may take to say it listens (or `migrate` to
    /// finish).
    pub startup_timeout: Duration,
    /// How long the children get to stop before they are killed.
    pub drain_timeout: Duration,
    /// A TOML file for every shop node (e.g. a lower password cost for
    /// load tests with many users).
    pub shop_config: Option<PathBuf>,
}

impl Options {
    /// The defaults of `stampede up` for the roles of `binary`.
    pub fn new(binary: PathBuf) -> Self {
        Self {
            binary,
            nodes: 3,
            port: 8080,
            data_dir: PathBuf::from("stampede-data"),
            database_url: None,
            redis_url: None,
            startup_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            shop_config: None,
        }
    }
}

/// Requests to stop: the first stops the cluster gracefully, a second one
/// kills what is still running. A closed channel requests nothing.
pub type StopRequests = mpsc::UnboundedReceiver<()>;

/// A stop request for every SIGINT (Ctrl-C) and SIGTERM from now on. Call
/// it inside a Tokio runtime, before [`run`], so that a signal arriving
/// during the start is caught too.
pub fn stop_on_signals() -> io::Result<StopRequests> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(()) = interrupt.recv() => {}
                Some(()) = terminate.recv() => {}
                else => return,
            }
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// Runs the cluster until a stop request, or until a child ends on its own
/// (an error), then stops every child. `Ok` only when the cluster started
/// (or was asked to stop while starting) and every child stopped cleanly.
pub async fn run(options: &Options, stop: &mut StopRequests) -> Result<(), UpError> {
    let data_dir = files::data_dir(&options.data_dir)?;
    say(&format!("data directory {}", data_dir.display()));
    let plan = Plan {
        nodes: options.nodes,
        port: options.port,
        database_url: options
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("stampede.db").display())),
        redis_url: options.redis_url.clone(),
        token: AdminToken::load(&data_dir)?,
        data_dir,
        startup_timeout: options.startup_timeout,
        shop_config: options
            .shop_config
            .as_deref()
            .map(files::existing)
            .transpose()?,
    };
    let mut supervisor = Supervisor::new(options.binary.clone());
    let outcome = supervise(&mut supervisor, &plan, stop).await;
    let stopped = supervisor.stop(options.drain_timeout, stop).await;
    outcome.and(stopped)
}

/// Starts the cluster, seeds it, and waits for the end.
async fn supervise(
    sup: &mut Supervisor,
    plan: &Plan,
    stop: &mut StopRequests,
) -> Result<(), UpError> {
    let started = tokio::select! {
        started = cluster::start(sup, plan) => started?,
        () = stop_requested(stop) => return Ok(()),
    };
    tokio::select! {
        welcomed = welcome(plan, started) => welcomed?,
        () = stop_requested(stop) => return Ok(()),
        (name, exit) = sup.first_exit() => return Err(exited(name, exit)),
    }
    tokio::select! {
        () = stop_requested(stop) => Ok(()),
        (name, exit) = sup.first_exit() => Err(exited(name, exit)),
    }
}

/// Seeds the demo data and prints the ready message.
async fn welcome(plan: &Plan, started: Started) -> Result<(), UpError> {
    let api = http::AdminApi::new(started.gateway, plan.token.secret())?;
    let demo = seed::seed(&api, &plan.data_dir).await?;
    let database = if plan.database_url.starts_with("sqlite:") {
        plan.database_url.clone()
    } else {
        // Not the URL itself: it may hold a password.
        "from --database-url".to_owned()
    };
    report::ready(&report::Ready {
        url: started.gateway,
        metrics: started.metrics,
        nodes: plan.nodes,
        database: &database,
        token: plan.token.source(),
        demo: &demo,
        data_dir: &plan.data_dir,
    });
    Ok(())
}

fn exited(name: String, exit: child::Exit) -> UpError {
    UpError::ChildExited {
        name,
        status: exit.to_string(),
    }
}

/// Resolves at the next stop request; never, once nobody can send one.
pub(crate) async fn stop_requested(stop: &mut StopRequests) {
    if stop.recv().await.is_none() {
        std::future::pending::<()>().await;
    }
}
