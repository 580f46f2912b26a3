//! `stampede gateway`: flags, config loading and the process lifecycle:
//! start, reload on `SIGHUP` (or when the watched file changes), drain and
//! stop on `SIGINT`/`SIGTERM`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use stampede_gateway::config::ADMIN_TOKEN_ENV;
use stampede_gateway::{Config, Gateway, QuickFlags};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::signal::Signals;

/// How often `--watch` looks at the configuration file.
const WATCH_EVERY: Duration = Duration::from_secs(1);

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

    /// Reload the configuration file whenever its contents change (as
    /// `SIGHUP` does).
    #[arg(long, requires = "config")]
    watch: bool,

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

    /// Address of the admin listener serving /metrics, /healthz and the
    /// operations page /ops (whose token is $STAMPEDE_ADMIN_TOKEN).
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
    match serve(config, &args) {
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
    // A secret is never a flag: flags show in `ps`.
    config.with_admin_token_env(std::env::var(ADMIN_TOKEN_ENV).ok())
}

fn serve(config: Config, args: &Args) -> anyhow::Result<()> {
    // Signals are caught on a small runtime of this thread's own, installed
    // before the gateway listens (see `signal`).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal runtime")?;
    let (signals, hangups) = runtime
        .block_on(async {
            Ok::<_, std::io::Error>((Signals::install()?, signal(SignalKind::hangup())?))
        })
        .context("installing signal handlers")?;
    let gateway = Gateway::start(config).context("starting the gateway")?;
    println!(
        "stampede gateway listening on http://{}",
        gateway.local_addr()
    );
    if let Some(tls) = gateway.tls_addr() {
        println!("stampede gateway listening on https://{tls}");
    }
    if let Some(admin) = gateway.admin_addr() {
        println!("admin (metrics) on http://{admin}/metrics");
        println!("operations page on http://{admin}/ops");
    }
    if let Some(dns) = gateway.dns_addr() {
        println!("dns on {dns} (udp and tcp)");
    }
    for (i, addr) in gateway.tcp_addrs().iter().enumerate() {
        println!("tcp[{i}] listening on {addr}");
    }
    for (i, addr) in gateway.redirect_addrs().iter().enumerate() {
        println!("redirect[{i}] listening on http://{addr}");
    }
    runtime.block_on(follow(&gateway, args, signals, hangups));
    tracing::info!("Shutting down: draining in-flight requests.");
    gateway.shutdown();
    Ok(())
}

/// Reloads on `SIGHUP` and, with `--watch`, when the file's contents
/// change, until `SIGINT` or `SIGTERM`.
///
/// Watching polls the file rather than asking the kernel (inotify): a
/// Kubernetes ConfigMap is updated by swapping a symlink and editors
/// replace files by renaming, both of which an inotify watch on the file
/// misses; reading a small file once a second costs nothing (Caddy's
/// `--watch` polls too).
async fn follow(gateway: &Gateway, args: &Args, signals: Signals, mut hangups: Signal) {
    let stop = signals.recv();
    tokio::pin!(stop);
    let mut seen = args
        .config
        .as_deref()
        .and_then(|path| std::fs::read(path).ok());
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = hangups.recv() => reload(gateway, args),
            _ = tick.tick(), if args.watch => {
                let now = args.config.as_deref().and_then(|path| std::fs::read(path).ok());
                if now.is_some() && now != seen {
                    seen = now;
                    reload(gateway, args);
                }
            }
        }
    }
}

/// Reads the configuration file again and hands it to the gateway; a file
/// that fails validation, or changes what needs a restart, is refused and
/// the running configuration stays.
fn reload(gateway: &Gateway, args: &Args) {
    let Some(path) = args.config.as_deref() else {
        tracing::warn!("Reload asked, but the gateway runs from flags: nothing to reload.");
        return;
    };
    match load(args).map(|config| gateway.reload(config)) {
        Ok(Ok(())) => tracing::info!(path = %path.display(), "Configuration reloaded."),
        Ok(Err(error)) => refused(path, &error),
        Err(error) => refused(path, &error),
    }
}

fn refused(path: &Path, error: &dyn std::fmt::Display) {
    tracing::error!(path = %path.display(), "Reload refused, still serving the previous configuration: {error}");
}
