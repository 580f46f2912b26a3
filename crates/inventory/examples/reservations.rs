//! The store-level reservation benchmark: how many reservations of one hot
//! sku commit per second, durably, with no HTTP in the way.
//!
//! ```sh
//! cargo run --release -p stampede-inventory --example reservations -- \
//!     --mode grouped --clients 2000 --duration 10 --warmup 2
//! ```
//!
//! Two ways to reserve, the same transaction underneath ([`ledger::commit`]):
//!
//! - `plain`: every client commits its own reservation as a batch of one,
//!   so all of them queue on the product row's lock and each pays a full
//!   durable commit. This is the textbook way, and the ceiling to break.
//! - `grouped`: every client goes through one [`GroupCommit`], which
//!   coalesces whatever queued up for the sku into one transaction.
//!
//! The run is a sale as the shop would see it: one product whose stock
//! never runs out, `per_user_limit` 1, and a distinct buyer for every
//! reservation, so each batch does the full work of a real one (the limit
//! check reads every buyer's holdings, and every request is granted).
//! Cycling a small pool of buyers under a raised limit would exercise the
//! same queries but let a buyer's earlier orders pile up under the limit
//! check, which no real sale does. So the buyers are created up front
//! (`--users`, by default a generous rate × the run's length), and a run
//! that uses them all up stops with an error rather than measure refusals.
//!
//! It counts only [`Outcome::Reserved`] replies that arrive inside the
//! measured window (after `--warmup`), reports latency percentiles per
//! reservation, the batch sizes of grouped mode (replies of one batch
//! share the stock left after it, so distinct values count batches), and
//! then checks against the store that nothing was oversold or lost:
//! `stock_left + live units == initial stock`, the store's reserved units
//! equal what the clients were told, and no buyer holds more than the
//! limit. Any breach, error or refusal exits non-zero.
//!
//! Every run gets a fresh database that is removed at the end: on
//! PostgreSQL `stampede_bench_<pid>` on the server of `--database-url`; on
//! SQLite the file `sqlite://PATH` names (it must not exist yet) or, with
//! a bare `sqlite://`, a file in a new temporary folder. Commits stay
//! durable: the run refuses a PostgreSQL server with `fsync` or
//! `synchronous_commit` off, and SQLite runs with `synchronous=FULL`.
//! The last line of output is a tab-separated `result` record for scripts
//! (`bench/reservations.sh`).

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use sqlx::Row;
use stampede_inventory::ledger::{self, Batch};
use stampede_inventory::{GroupCommit, Idempotency, Outcome, Reservation, Settings};
use stampede_store::products::{self, NewProduct};
use stampede_store::{Db, DbOptions, Dialect, Order, OrderStatus, migrate, stats, users};
use stampede_testkit::scratch;

/// The one hot sku of every run.
const SKU: &str = "HOT-1";
/// Stock that no run can exhaust.
const STOCK: i64 = 1_000_000_000_000;
/// Reservations per second per mode that the default user pool allows for:
/// several times what this machine does, so the pool never runs dry.
const PLAIN_RATE_CEILING: u64 = 20_000;
const GROUPED_RATE_CEILING: u64 = 100_000;

/// Store-level reservation benchmark: one hot sku, many concurrent buyers.
#[derive(Debug, Parser)]
struct Args {
    /// Server (or SQLite file) to benchmark on; a fresh database is made
    /// there and removed at the end.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    database_url: String,
    /// One transaction per reservation, or coalesced per sku.
    #[arg(long, value_enum, default_value_t = Mode::Grouped)]
    mode: Mode,
    /// Concurrent callers, each reserving 1 unit at a time in a loop.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before the measured window.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Buyers created up front [default: the mode's rate ceiling × the
    /// run's length].
    #[arg(long)]
    users: Option<u64>,
    /// Pool connections [default: --clients for plain, 4 for grouped].
    #[arg(long)]
    pool: Option<u32>,
    /// Grouped mode: most requests per transaction.
    #[arg(long, default_value_t = Settings::default().max_batch)]
    max_batch: usize,
    /// Send a fresh Idempotency-Key with every request (adds the key
    /// lookup and the key insert to every batch).
    #[arg(long)]
    idempotency_keys: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Plain,
    Grouped,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Grouped => "grouped",
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match bench(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("reservations: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Makes the fresh database, runs, and always removes the database again
/// (also on Ctrl-C or SIGTERM: `stampede_testkit::scratch`).
async fn bench(args: &Args) -> anyhow::Result<()> {
    ensure!(args.clients > 0, "--clients must be at least 1");
    ensure!(
        args.duration > 0.0 && args.warmup >= 0.0,
        "--duration must be positive and --warmup not negative"
    );
    let report = scratch::run(&args.database_url, "stampede_bench", |url| async move {
        run(args, &url).await
    })
    .await?;
    report.print(args);
    report.verdict()
}

// ---------------------------------------------------------------- the run

/// Everything a run produced, before it is judged.
struct Report {
    dialect: Dialect,
    /// The server's or the SQLite library's version.
    version: String,
    users: u64,
    tally: Tally,
    store: StoreCheck,
}

/// Migrates, seeds, runs the clients and reads the store back.
async fn run(args: &Args, url: &str) -> anyhow::Result<Report> {
    let pool = args.pool.unwrap_or(match args.mode {
        Mode::Plain => u32::try_from(args.clients).unwrap_or(u32::MAX),
        Mode::Grouped => 4,
    });
    let options = DbOptions {
        max_connections: pool,
        acquire_timeout: Duration::from_secs(30),
        ..DbOptions::default()
    };
    let db = Db::connect_lazy(url, &options)?;
    migrate::run(&db).await.context("migrating")?;
    let users = args.users.unwrap_or_else(|| default_users(args));
    seed(&db, users).await?;
    eprintln!(
        "reservations: {} clients, {} mode, {} buyers, pool {pool}; {}s warm-up then {}s measured",
        args.clients,
        args.mode.name(),
        users,
        args.warmup,
        args.duration
    );
    let tally = load(args, &db, users).await?;
    let store = StoreCheck::read(&db).await?;
    let version = db.engine_version().await?;
    db.close().await;
    Ok(Report {
        dialect: db.dialect(),
        version,
        users,
        tally,
        store,
    })
}

fn default_users(args: &Args) -> u64 {
    let ceiling = match args.mode {
        Mode::Plain => PLAIN_RATE_CEILING,
        Mode::Grouped => GROUPED_RATE_CEILING,
    };
    let seconds = (args.warmup + args.duration).ceil() as u64;
    ceiling * seconds.max(1)
}

/// The product and the buyers `u0` .. `u{users-1}`.
async fn seed(db: &Db, users: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let buyers: Vec<(String, String)> = (0..users).map(|i| (username(i), "-".to_owned())).collect();
    users::create_all(db, &buyers)
        .await
        .context("creating the buyers")?;
    let product = NewProduct {
        sku: SKU.into(),
        name: "The hot item".into(),
        price_cents: 100,
        stock: STOCK,
        per_user_limit: 1,
        sale_starts_at: None,
    };
    products::create(db, &product)
        .await
        .context("creating the product")?;
    eprintln!(
        "reservations: seeded {users} buyers in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn username(i: u64) -> String {
    format!("u{i}")
}

/// How a client reserves: alone, or through the shared queues.
enum Reserver {
    Plain { db: Db, hold_ms: i64 },
    Grouped(GroupCommit),
}

/// A reply the client can count, or why there was none.
type Answer = Result<(Outcome, Option<i64>), String>;

impl Reserver {
    fn new(args: &Args, db: &Db) -> Self {
        let settings = Settings {
            max_batch: args.max_batch,
            ..Settings::default()
        };
        match args.mode {
            Mode::Plain => Self::Plain {
                db: db.clone(),
                hold_ms: i64::try_from(settings.hold.as_millis()).unwrap_or(i64::MAX),
            },
            Mode::Grouped => Self::Grouped(GroupCommit::new(db.clone(), settings, render)),
        }
    }

    async fn reserve(&self, request: Reservation) -> Answer {
        match self {
            Self::Plain { db, hold_ms } => {
                let batch = Batch {
                    sku: SKU,
                    requests: std::slice::from_ref(&request),
                    hold_ms: *hold_ms,
                    render: &render,
                };
                let committed = ledger::commit(db, &batch)
                    .await
                    .map_err(|e| e.to_string())?;
                let outcome = committed.outcomes.into_iter().next();
                let outcome = outcome.ok_or("a batch of one came back empty")?;
                Ok((outcome, committed.stock_left))
            }
            Self::Grouped(queues) => {
                let reply = queues
                    .reserve(SKU, request)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((reply.outcome, reply.stock_left))
            }
        }
    }
}

/// A `201` body shaped like the shop's, so batches carry realistic bytes.
fn render(order: &Order) -> String {
    format!(
        r#"{{"order_id":"{}","sku":"{}","quantity":{},"status":"{}","expires_at":{}}}"#,
        order.order_id, order.sku, order.quantity, order.status, order.expires_at
    )
}

/// When the phases of a run begin and end, shared by every client.
struct Clock {
    measure_from: Instant,
    stop_at: Instant,
    next_user: AtomicU64,
    users: u64,
    keys: bool,
}

/// Runs every client to the end of the window and adds up what they saw.
async fn load(args: &Args, db: &Db, users: u64) -> anyhow::Result<Tally> {
    let reserver = Arc::new(Reserver::new(args, db));
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let clock = Arc::new(Clock {
        measure_from,
        stop_at: measure_from + Duration::from_secs_f64(args.duration),
        next_user: AtomicU64::new(0),
        users,
        keys: args.idempotency_keys,
    });
    let clients: Vec<_> = (0..args.clients)
        .map(|_| tokio::spawn(client(Arc::clone(&reserver), Arc::clone(&clock))))
        .collect();
    // Every client stops issuing at stop_at; the grace covers the last
    // replies, and past it the run fails instead of hanging.
    let grace = Duration::from_secs(60);
    let mut tally = Tally::new()?;
    for handle in clients {
        let deadline = tokio::time::Instant::from_std(clock.stop_at + grace);
        let joined = tokio::time::timeout_at(deadline, handle)
            .await
            .context("clients still waiting for replies 60s after the end")?;
        tally.merge(joined.context("a client panicked")??)?;
    }
    ensure!(
        clock.next_user.load(Ordering::Relaxed) < users,
        "all {users} buyers were used before the end; rerun with a larger --users"
    );
    Ok(tally)
}

/// One caller: reserves 1 unit for the next unused buyer until the end.
async fn client(reserver: Arc<Reserver>, clock: Arc<Clock>) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    loop {
        let begun = Instant::now();
        if begun >= clock.stop_at {
            return Ok(tally);
        }
        let user = clock.next_user.fetch_add(1, Ordering::Relaxed);
        if user >= clock.users {
            return Ok(tally);
        }
        let answer = reserver.reserve(request(user, clock.keys)).await;
        let done = Instant::now();
        // Counted by when the reply came: a rate of completions.
        let measured = done >= clock.measure_from && done <= clock.stop_at;
        tally.count(answer, measured, done - begun);
    }
}

fn request(user: u64, keys: bool) -> Reservation {
    Reservation {
        username: username(user),
        quantity: 1,
        idempotency: keys.then(|| Idempotency {
            key: format!("bench-{user}"),
            fingerprint: format!("{SKU}:1"),
        }),
    }
}

/// What the clients saw; `window_*` only inside the measured window.
struct Tally {
    reserved: u64,
    window_reserved: u64,
    refused: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    latency_us: Histogram<u64>,
    /// Window replies per batch, the batch named by the stock left after it.
    batches: HashMap<i64, u64>,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            reserved: 0,
            window_reserved: 0,
            refused: BTreeMap::new(),
            errors: BTreeMap::new(),
            // 1 µs to 10 min at 3 significant digits.
            latency_us: Histogram::new_with_bounds(1, 600_000_000, 3)?,
            batches: HashMap::new(),
        })
    }

    fn count(&mut self, answer: Answer, measured: bool, took: Duration) {
        match answer {
            Ok((Outcome::Reserved { .. }, stock_left)) => {
                self.reserved += 1;
                if measured {
                    self.window_reserved += 1;
                    let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                    self.latency_us.saturating_record(micros.max(1));
                    *self.batches.entry(stock_left.unwrap_or(-1)).or_default() += 1;
                }
            }
            Ok((other, _)) => *self.refused.entry(format!("{other:?}")).or_default() += 1,
            Err(error) => *self.errors.entry(error).or_default() += 1,
        }
    }

    fn merge(&mut self, other: Self) -> anyhow::Result<()> {
        self.reserved += other.reserved;
        self.window_reserved += other.window_reserved;
        for (what, n) in other.refused {
            *self.refused.entry(what).or_default() += n;
        }
        for (what, n) in other.errors {
            *self.errors.entry(what).or_default() += n;
        }
        self.latency_us.add(&other.latency_us)?;
        for (batch, n) in other.batches {
            *self.batches.entry(batch).or_default() += n;
        }
        Ok(())
    }

    fn failures(&self) -> u64 {
        self.refused.values().chain(self.errors.values()).sum()
    }

    /// Mean, median and largest batch seen in the window.
    fn batch_sizes(&self) -> (f64, u64, u64) {
        let mut sizes: Vec<u64> = self.batches.values().copied().collect();
        sizes.sort_unstable();
        if sizes.is_empty() {
            return (0.0, 0, 0);
        }
        let mean = self.window_reserved as f64 / sizes.len() as f64;
        (mean, sizes[sizes.len() / 2], sizes[sizes.len() - 1])
    }
}

// ------------------------------------------------------------ the verdict

/// What the store holds once the clients are done.
struct StoreCheck {
    initial_stock: i64,
    stock_left: i64,
    live: i64,
    reserved: i64,
    over_limit: i64,
}

impl StoreCheck {
    async fn read(db: &Db) -> anyhow::Result<Self> {
        let all = stats::all(db).await?;
        let sku = all
            .iter()
            .find(|s| s.sku == SKU)
            .context("the benchmark's product is missing from the store")?;
        let live = OrderStatus::ALL
            .into_iter()
            .filter(|s| s.is_live())
            .map(|s| sku.quantity(s))
            .sum();
        let over_limit: i64 = sqlx::query(
            "SELECT COUNT(*) FROM (SELECT username FROM orders WHERE sku = $1
             GROUP BY username HAVING SUM(quantity) > 1) AS over",
        )
        .bind(SKU)
        .fetch_one(db.pool())
        .await?
        .try_get(0)?;
        Ok(Self {
            initial_stock: sku.initial_stock,
            stock_left: sku.stock_left,
            live,
            reserved: sku.quantity(OrderStatus::Reserved),
            over_limit,
        })
    }

    /// Every invariant that failed, in words.
    fn breaches(&self, counted: u64) -> Vec<String> {
        let mut breaches = Vec::new();
        if self.stock_left + self.live != self.initial_stock {
            breaches.push(format!(
                "stock_left {} + live units {} != initial stock {}",
                self.stock_left, self.live, self.initial_stock
            ));
        }
        if u64::try_from(self.reserved).ok() != Some(counted) {
            breaches.push(format!(
                "the store holds {} reserved units but the clients were told {counted}",
                self.reserved
            ));
        }
        if self.over_limit != 0 {
            breaches.push(format!(
                "{} buyers hold more than the limit",
                self.over_limit
            ));
        }
        breaches
    }
}

impl Report {
    fn engine(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => "postgres",
            Dialect::Sqlite => "sqlite",
        }
    }

    fn rate(&self, args: &Args) -> f64 {
        self.tally.window_reserved as f64 / args.duration
    }

    fn print(&self, args: &Args) {
        let t = &self.tally;
        let ms = |q: f64| t.latency_us.value_at_quantile(q) as f64 / 1000.0;
        let max_ms = t.latency_us.max() as f64 / 1000.0;
        let (mean, p50, max) = t.batch_sizes();
        println!(
            "{} on {} {}: {:.0} committed reservations/s ({} in {}s)",
            args.mode.name(),
            self.engine(),
            self.version,
            self.rate(args),
            t.window_reserved,
            args.duration
        );
        println!(
            "latency per reservation: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(0.5),
            ms(0.99),
            max_ms
        );
        println!("batches in the window: mean {mean:.1}, median {p50}, largest {max}");
        for (what, n) in t.refused.iter().chain(&t.errors) {
            println!("not reserved: {n} x {what}");
        }
        let breaches = self.store.breaches(t.reserved);
        let invariant = if breaches.is_empty() { "ok" } else { "BROKEN" };
        println!(
            "store: stock_left {} + live {} = initial {}; reserved {} (clients counted {}); over limit {}: {invariant}",
            self.store.stock_left,
            self.store.live,
            self.store.initial_stock,
            self.store.reserved,
            t.reserved,
            self.store.over_limit
        );
        println!(
            "result\tmode={}\tengine={}\tversion={}\tclients={}\tusers={}\trate={:.0}\tp50_ms={:.2}\tp99_ms={:.2}\tmax_ms={:.2}\tbatch_mean={mean:.1}\tbatch_p50={p50}\tbatch_max={max}\tfailed={}\tinvariant={invariant}",
            args.mode.name(),
            self.engine(),
            self.version.split_whitespace().next().unwrap_or_default(),
            args.clients,
            self.users,
            self.rate(args),
            ms(0.5),
            ms(0.99),
            max_ms,
            t.failures()
        );
    }

    fn verdict(&self) -> anyhow::Result<()> {
        let breaches = self.store.breaches(self.tally.reserved);
        ensure!(
            breaches.is_empty(),
            "INVARIANT BROKEN: {}",
            breaches.join("; ")
        );
        ensure!(
            self.tally.failures() == 0,
            "{} reservations were refused or failed",
            self.tally.failures()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_database_swaps_only_the_path() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "b"),
            "postgres://postgres@127.0.0.1:5432/b"
        );
        assert_eq!(
            with_database("postgres://u@h/d?sslmode=disable", "b"),
            "postgres://u@h/b?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h:1", "b"), "postgres://u@h:1/b");
    }
}
