//! `stampede storm`: flags for a flash crowd, and what its verdict means
//! for the exit code. The crowd itself lives in the `stampede-storm` crate.
//!
//! Exit codes: 0 every invariant held; 1 an invariant was broken; 2 bad
//! flags; 3 the storm could not run (target unreachable, setup refused,
//! the verdict could not be read).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use stampede_storm::{Load, Options, Progress, Report, StormError};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The server's front door, http://HOST:PORT.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    target: String,

    /// The admin bearer token (or STAMPEDE_ADMIN_TOKEN).
    #[arg(long, env = "STAMPEDE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,

    /// Read the admin token from this file (`stampede up` writes one in
    /// its data directory).
    #[arg(long, conflicts_with = "admin_token")]
    admin_token_file: Option<PathBuf>,

    /// Users to create, log in and send.
    #[arg(long, default_value_t = 2_000)]
    users: usize,

    /// Units on sale.
    #[arg(long, default_value_t = 500)]
    stock: i64,

    /// Most live units one user may hold.
    #[arg(long, default_value_t = 1)]
    per_user_limit: i64,

    /// Units per order.
    #[arg(long, default_value_t = 1)]
    quantity: i64,

    /// Closed loop: users in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,

    /// Closed loop: pause between one user's requests (e.g. `100ms`).
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    think_time: Duration,

    /// Open loop instead: this many requests per second, whatever the
    /// server does, each timed from when it was due.
    #[arg(long, conflicts_with_all = ["concurrency", "think_time"])]
    rate: Option<f64>,

    /// Open loop: requests waiting for an answer at most; arrivals beyond
    /// are counted as dropped.
    #[arg(long, default_value_t = 10_000, requires = "rate")]
    max_in_flight: usize,

    /// Share of requests that read the product page, 0 to below 1.
    #[arg(long, default_value_t = 0.5)]
    read_ratio: f64,

    /// The crowd stops after this long at the latest (e.g. `30s`).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,

    /// The crowd stops after this many requests at the latest.
    #[arg(long)]
    requests: Option<u64>,

    /// Seeds the run (user order, reads, names); random by default and
    /// printed in the report.
    #[arg(long)]
    seed: Option<u64>,

    /// Logins (and order checks) in flight at once, outside the crowd.
    #[arg(long, default_value_t = 32)]
    login_concurrency: usize,

    /// One request's time limit.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,

    /// The product's sku [default: STORM-<run>].
    #[arg(long)]
    sku: Option<String>,

    /// Usernames are this prefix and a number [default: storm-<run>-].
    #[arg(long)]
    user_prefix: Option<String>,

    /// Print the report as JSON instead of text.
    #[arg(long)]
    json: bool,

    /// Also write the report as a self-contained HTML page to this file.
    #[arg(long)]
    report: Option<PathBuf>,

    /// No live progress line.
    #[arg(long)]
    quiet: bool,

    /// Threads the load generator runs on [default: one per core]. On the
    /// machine under test, fewer leave more CPU to the system measured.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
}

pub(crate) fn run(args: Args) -> ExitCode {
    match storm(args) {
        Ok(report) if report.invariants.held() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(error) => {
            eprintln!("stampede storm: {error:#}");
            let bad_option = error
                .downcast_ref::<StormError>()
                .is_some_and(|e| matches!(e, StormError::Option { .. }));
            ExitCode::from(if bad_option { 2 } else { 3 })
        }
    }
}

fn storm(args: Args) -> anyhow::Result<Report> {
    let options = options(&args)?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(usize::from(threads));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let progress = Progress::new(!args.quiet);
    let report = runtime.block_on(stampede_storm::run(&options, &progress))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    if let Some(path) = &args.report {
        std::fs::write(path, stampede_storm::to_html(&report))
            .with_context(|| format!("writing the HTML report to {}", path.display()))?;
    }
    Ok(report)
}

fn options(args: &Args) -> anyhow::Result<Options> {
    let token = match (&args.admin_token, &args.admin_token_file) {
        (Some(token), _) => token.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the admin token from {}", path.display()))?
            .trim()
            .to_owned(),
        (None, None) => anyhow::bail!(StormError::Option {
            option: "admin-token",
            problem: "needed (or --admin-token-file, or STAMPEDE_ADMIN_TOKEN) to create the users and the product".into(),
        }),
    };
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    let mut options = Options::new(&args.target, &token, seed);
    options.users = args.users;
    options.stock = args.stock;
    options.per_user_limit = args.per_user_limit;
    options.quantity = args.quantity;
    options.load = match args.rate {
        Some(rate) => Load::Open {
            rate,
            max_in_flight: args.max_in_flight,
        },
        None => Load::Closed {
            concurrency: args.concurrency,
            think_time: args.think_time,
        },
    };
    options.read_ratio = args.read_ratio;
    options.duration = args.duration;
    options.max_requests = args.requests;
    options.login_concurrency = args.login_concurrency;
    options.request_timeout = args.timeout;
    if let Some(sku) = &args.sku {
        options.sku.clone_from(sku);
    }
    if let Some(prefix) = &args.user_prefix {
        options.user_prefix.clone_from(prefix);
    }
    options.validate()?;
    Ok(options)
}
