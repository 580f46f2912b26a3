//! `stampede shop` and `stampede migrate`: flags, config loading and the
//! process lifecycle of a shop node.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use stampede_shop::config::ADMIN_TOKEN_ENV;
use stampede_shop::{Config, Flags, Shop};
use stampede_store::{Db, DbOptions, migrate};

use crate::reports;
use crate::signal::Signals;

/// Exit code for a configuration that cannot be run (as for the gateway).
const EXIT_CONFIG: u8 = 2;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A TOML configuration file (see examples/shop.toml); flags override it.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,

    /// Only validate the configuration and exit (0 when valid, 2 when not).
    #[arg(long)]
    check: bool,

    /// Address to listen on [default: 127.0.0.1:8000].
    #[arg(long)]
    listen: Option<String>,

    /// `sqlite://PATH` (the embedded default) or `postgres://USER@HOST/DB`.
    #[arg(long)]
    database_url: Option<String>,

    /// This node's name in logs [default: shop].
    #[arg(long)]
    node_name: Option<String>,

    /// `redis://HOST:PORT/DB`: keep sessions in Redis rather than the
    /// database.
    #[arg(long)]
    redis_url: Option<String>,

    /// Address of the admin listener serving /metrics and /healthz.
    #[arg(long)]
    admin_listen: Option<String>,

    /// Log requests slower than this at WARN (e.g. `500ms`) [default: 500ms].
    #[arg(long, value_parser = humantime::parse_duration)]
    slow_request: Option<std::time::Duration>,

    /// Only write the storefront's stylesheet and script (fingerprinted
    /// names) into DIR, for a gateway's static route, and exit.
    #[arg(long, value_name = "DIR")]
    export_assets: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct MigrateArgs {
    /// `sqlite://PATH` or `postgres://USER@HOST/DB`.
    #[arg(long)]
    database_url: String,
}

pub(crate) fn run(args: Args, sentry_dsn: Option<String>) -> ExitCode {
    if let Some(dir) = &args.export_assets {
        return exit_code("shop", export_assets(dir));
    }
    let flags = Flags {
        listen: args.listen,
        database_url: args.database_url,
        node_name: args.node_name,
        redis_url: args.redis_url,
        admin_listen: args.admin_listen,
        slow_request: args.slow_request,
    };
    let token = std::env::var(ADMIN_TOKEN_ENV).ok();
    let config = match Config::load(args.config.as_deref(), &flags, token) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("stampede shop: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let file_dsn = config.sentry_dsn.as_deref();
    // Held until the node has stopped: dropping it flushes the reports.
    // Before `--check` returns, so that a bad `--sentry-dsn` fails it.
    let _reports = match reports::start("shop", &config.node_name, sentry_dsn, file_dsn) {
        Ok(reports) => reports,
        Err(code) => return code,
    };
    if args.check {
        println!("configuration ok");
        return ExitCode::SUCCESS;
    }
    exit_code("shop", runtime().and_then(|rt| rt.block_on(serve(config))))
}

fn export_assets(dir: &Path) -> anyhow::Result<()> {
    let written = stampede_shop::assets::export(dir)
        .with_context(|| format!("writing the assets into {}", dir.display()))?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let signals = Signals::install().context("installing signal handlers")?;
    let name = config.node_name.clone();
    let shop = Shop::bind(config).await.context("starting the shop")?;
    println!(
        "stampede shop listening on http://{} ({name})",
        shop.local_addr()?
    );
    if let Some(admin) = shop.admin_addr() {
        println!("admin (metrics) on http://{}/metrics", admin?);
    }
    shop.serve(async move {
        signals.recv().await;
        tracing::info!("Shutting down: draining in-flight requests.");
    })
    .await
    .context("serving")
}

pub(crate) fn migrate(args: MigrateArgs) -> ExitCode {
    let done = runtime().and_then(|rt| {
        rt.block_on(async {
            let db = Db::connect_lazy(&args.database_url, &DbOptions::default())?;
            let applied = migrate::run(&db).await.context("migrating")?;
            db.close().await;
            println!("migrations applied: {applied}");
            Ok(())
        })
    });
    exit_code("migrate", done)
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

pub(crate) fn exit_code(role: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("stampede {role}: {error:#}");
            ExitCode::FAILURE
        }
    }
}
