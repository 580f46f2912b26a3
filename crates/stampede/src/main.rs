//! `stampede`: one binary, a subcommand per role.
//!
//! This file only wires things together: parse the command line, set up
//! logging, hand over to the role's library crate, and turn errors into a
//! message and an exit code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

mod gateway;
mod jobs;
mod reports;
mod shop;
mod signal;
mod storm;
mod up;
mod worker;

/// mimalloc rather than glibc's allocator: a proxied request allocates and
/// frees dozens of small objects (headers, futures, buffers), and glibc's
/// malloc/free showed as ~10% of the gateway's CPU in profiles.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps a web service up and correct when a flash crowd hits it.
#[derive(Debug, Parser)]
#[command(name = "stampede", version, about, long_about = None)]
struct Cli {
    /// Log filter in RUST_LOG syntax (e.g. `info`, `stampede_gateway=debug`).
    #[arg(long, global = true, env = "RUST_LOG", default_value = "info")]
    log: String,

    /// Log lines for people (`pretty`) or for a log pipeline (`json`: one
    /// object a line, with the fields and spans of each event).
    #[arg(long, global = true, env = "STAMPEDE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,

    /// Report ERROR log lines to Sentry at this DSN
    /// (`http://KEY@HOST/PROJECT`); for the gateway, shop and worker, over
    /// `sentry_dsn` in their config file.
    #[arg(long, global = true, env = "SENTRY_DSN")]
    sentry_dsn: Option<String>,

    #[command(subcommand)]
    role: Role,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    /// One line of text per event.
    Pretty,
    /// One JSON object per event.
    Json,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// Run the gateway: an L7 load balancer in front of backends.
    Gateway(gateway::Args),
    /// Run a shop node: the flash-sale API on SQLite or PostgreSQL.
    Shop(shop::Args),
    /// Apply the database schema and exit.
    Migrate(shop::MigrateArgs),
    /// Run a worker: the shop's background jobs (payment, confirmation,
    /// expiry of unpaid reservations) and their schedules.
    Worker(worker::Args),
    /// Look at the job queue: depths, failing and dead jobs; retry a dead job.
    Jobs(jobs::Args),
    /// Run a local cluster: the gateway in front of N shop nodes, on SQLite
    /// in a data directory (or --database-url); Ctrl-C stops it all.
    Up(up::Args),
    /// Send a flash crowd at a flash-sale API, show it live, check the
    /// contract's invariants, and report (text, JSON or HTML).
    Storm(storm::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log, cli.log_format);
    let dsn = cli.sentry_dsn;
    match cli.role {
        Role::Gateway(args) => gateway::run(args, dsn),
        Role::Shop(args) => shop::run(args, dsn),
        Role::Migrate(args) => shop::migrate(args),
        Role::Worker(args) => worker::run(args, dsn),
        Role::Jobs(args) => jobs::run(args),
        Role::Up(args) => up::run(args),
        Role::Storm(args) => storm::run(args),
    }
}

fn init_logging(filter: &str, format: LogFormat) {
    // hickory-server logs every DNS query at info: an access log, which the
    // HTTP path does not keep either. Quiet unless the filter asks for it.
    let filter = match filter.contains("hickory") {
        true => filter.to_owned(),
        false => format!("{filter},hickory_server=warn"),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use tracing_subscriber::fmt::layer as lines;
    let pretty = matches!(format, LogFormat::Pretty).then(|| lines().with_writer(std::io::stderr));
    let json =
        matches!(format, LogFormat::Json).then(|| lines().json().with_writer(std::io::stderr));
    // The Sentry layer is always there and idle until a role starts
    // reporting (`reports`), once it has read its DSN.
    tracing_subscriber::registry()
        .with(filter)
        .with(pretty)
        .with(json)
        .with(stampede_telemetry::sentry::layer())
        .init();
}
