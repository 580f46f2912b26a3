//! `stampede gateway`: flags, config loading and the process lifecycle.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use stampede_gateway::{Config, Gateway, QuickFlags};

use crate::signal::ShutdownSignal;

/// Exit code for a configuration that cannot be run (as `nginx -t` and
/// sysexits' EX_USAGE family do, distinct from a runtime failure).
const EXIT_CONFIG: u8 = 2;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A TOML configuration file with every option (see examples/gateway.toml).
    #[arg(long, short = 'c', conflicts_with_all = ["backends", "listen", "strategy"])]
    config: Option<PathBuf>,

    /// Only validate the configuration and exit (0 when valid, 2 when not).
    #[arg(long)]
    check: bool,

    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<String>,

    /// A backend `host:port`; repeat for more.
    #[arg(long = "backend", value_name = "ADDR")]
    backends: Vec<String>,

    /// Balancing strategy: round-robin, weighted-round-robin, random,
    /// least-conn, p2c-ewma, ip-hash, consistent-hash, maglev.
    #[arg(long)]
    strategy: Option<String>,

    /// Address of the admin listener serving /metrics and /healthz.
    #[arg(long)]
    admin_listen: Option<String>,

    /// Worker threads [default: one per core].
    #[arg(long)]
    workers: Option<usize>,
}

pub(crate) fn run(args: Args) -> ExitCode {
    let config = match load(&args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("stampede gateway: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.check {
        println!("configuration ok");
        return ExitCode::SUCCESS;
    }
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("stampede gateway: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(args: &Args) -> Result<Config, stampede_gateway::ConfigError> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::from_flags(&QuickFlags {
            listen: args.listen.clone(),
            backends: args.backends.clone(),
            strategy: args.strategy.clone(),
            admin_listen: args.admin_listen.clone(),
            workers: args.workers,
        })?,
    };
    // With a file, --workers still overrides, like nginx's -g.
    if let (Some(workers), Some(_)) = (args.workers, &args.config) {
        config.workers = workers;
    }
    Ok(config)
}

fn serve(config: Config) -> anyhow::Result<()> {
    let signal = ShutdownSignal::install().context("installing signal handlers")?;
    let gateway = Gateway::start(config).context("starting the gateway")?;
    println!(
        "stampede gateway listening on http://{}",
        gateway.local_addr()
    );
    if let Some(admin) = gateway.admin_addr() {
        println!("admin (metrics) on http://{admin}/metrics");
    }
    signal.wait();
    tracing::info!("Shutting down: draining in-flight requests.");
    gateway.shutdown();
    Ok(())
}
