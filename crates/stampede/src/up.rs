//! `stampede up`: flags for the local cluster, and the runtime it runs on.
//! The supervision itself lives in the `stampede-up` crate; this edge only
//! says where the roles' binary is (this very one) and turns the outcome
//! into a message and an exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use stampede_up::Options;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// How many shop nodes to run behind the gateway (1 to 64).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    nodes: u16,

    /// The gateway's port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 8080)]
    port: u16,

    /// Where the SQLite database, the admin token (unless
    /// STAMPEDE_ADMIN_TOKEN is set) and the demo users' passwords live.
    #[arg(long, default_value = "./stampede-data")]
    data_dir: PathBuf,

    /// Run on this database instead of SQLite in the data directory, e.g.
    /// postgres://USER@HOST/DB.
    #[arg(long)]
    database_url: Option<String>,

    /// Keep the shop nodes' sessions in this Redis, e.g.
    /// redis://127.0.0.1:6379/0, instead of the database.
    #[arg(long)]
    redis_url: Option<String>,

    /// A TOML file every shop node reads (see examples/shop.toml), e.g. a
    /// lower password cost for load tests with many users.
    #[arg(long)]
    shop_config: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> ExitCode {
    match up(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("stampede up: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn up(args: Args) -> anyhow::Result<()> {
    let binary =
        std::env::current_exe().context("finding the stampede binary to start the roles from")?;
    let mut options = Options::new(binary);
    options.nodes = usize::from(args.nodes);
    options.port = args.port;
    options.data_dir = args.data_dir;
    options.database_url = args.database_url;
    options.redis_url = args.redis_url;
    options.shop_config = args.shop_config;
    // Two threads are plenty: `up` only relays log lines and waits.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let mut stop =
            stampede_up::stop_on_signals().context("installing the SIGINT and SIGTERM handlers")?;
        stampede_up::run(&options, &mut stop).await?;
        Ok(())
    })
}
