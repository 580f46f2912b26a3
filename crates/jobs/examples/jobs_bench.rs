//! The job queue's throughput benchmark: how many no-op jobs per second
//! several worker processes claim and complete, durably, on SQLite or
//! PostgreSQL.
//!
//! ```sh
//! cargo run --release -p stampede-jobs --example jobs_bench -- \
//!     --jobs 200000 --workers 2 --concurrency 2 --batch 500
//! ```
//!
//! A burn-down, as River's benchmark does it: first `--jobs` no-op jobs
//! are enqueued (untimed for the main figure, but timed and reported as
//! the enqueue rate) with [`queue::enqueue_all`], `--enqueue-batch` jobs
//! per statement on `--enqueue-concurrency` connections. Then `--workers`
//! child processes (this program again, with a hidden `--child` flag, so
//! that "several worker processes" is literal: separate pools, separate
//! runtimes, no shared memory) each run `--concurrency` claim loops. A
//! loop claims up to `--batch` jobs ([`queue::claim`]), "runs" each no-op,
//! completes the batch in one statement ([`queue::complete_all`]) and
//! starts over until a claim comes back empty. The children connect and
//! open their pools first and start together on the parent's word.
//!
//! The rate is jobs completed ÷ the time from the first claim to the last
//! completion, over all processes (their wall clocks are the same clock).
//! Latency per job runs from the start of the claim that took it to the
//! return of the completion that reported it (hdrhistogram, merged over
//! every loop of every child).
//!
//! Then the store is checked: every job must be `completed` with attempt
//! 1 (claimed once, completed once: no job is left available or running,
//! none was handed to two loops), and the children must have been told
//! of exactly `--jobs` completions and no fenced one. Anything else exits
//! non-zero.
//!
//! Every run gets a fresh database that is removed at the end, also on
//! Ctrl-C or SIGTERM ([`stampede_testkit::scratch`]): on PostgreSQL
//! `stampede_jobs_bench_<pid>` on the server of `--database-url`, which
//! must keep `fsync` and `synchronous_commit` on; on SQLite the file of
//! `sqlite://PATH` (which must not exist yet) or, with a bare `sqlite://`,
//! a file in a new temporary folder, in WAL mode with `synchronous=FULL`.
//! The last line of output is a tab-separated `result` record for
//! `bench/jobs.sh`.

use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail, ensure};
use clap::Parser;
use hdrhistogram::Histogram;
use sqlx::Row;
use stampede_jobs::NewJob;
use stampede_jobs::queue::{self, MAX_BATCH};
use stampede_store::{Db, DbOptions, Dialect, migrate};
use stampede_testkit::scratch;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// The queue every job waits in.
const QUEUE: &str = "default";
/// What the children say when their pools are open, and what they wait for.
const READY: &str = "ready";
const GO: &str = "go";

/// Job queue throughput: enqueue N no-op jobs, then burn them down with
/// several worker processes.
#[derive(Debug, Clone, Parser)]
struct Args {
    /// Server (or SQLite file) to benchmark on; a fresh database is made
    /// there and removed at the end.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    database_url: String,
    /// Jobs enqueued before the workers start.
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Claim loops per worker process (and its pool's connections).
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Most jobs one claim takes (and one completion reports).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Jobs per enqueue statement (at most `queue::MAX_BATCH`, whose doc
    /// says why larger is slower on SQLite).
    #[arg(long, default_value_t = 100)]
    enqueue_batch: usize,
    /// Concurrent enqueue statements.
    #[arg(long, default_value_t = 4)]
    enqueue_concurrency: usize,
    /// Internal: run as one worker process of a parent run, on
    /// `--database-url` as it is.
    #[arg(long, hide = true)]
    child: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = if args.child {
        child(&args).await
    } else {
        parent(&args).await
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let who = if args.child {
                "jobs_bench child"
            } else {
                "jobs_bench"
            };
            eprintln!("{who}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(args: &Args) -> anyhow::Result<()> {
    ensure!(args.jobs > 0, "--jobs must be at least 1");
    ensure!(
        args.workers > 0 && args.concurrency > 0 && args.enqueue_concurrency > 0,
        "--workers, --concurrency and --enqueue-concurrency must be at least 1"
    );
    for (flag, value) in [
        ("--batch", args.batch),
        ("--enqueue-batch", args.enqueue_batch),
    ] {
        ensure!(
            (1..=MAX_BATCH).contains(&value),
            "{flag} must be between 1 and {MAX_BATCH}"
        );
    }
    Ok(())
}

fn pool(url: &str, connections: usize) -> anyhow::Result<Db> {
    let options = DbOptions {
        max_connections: u32::try_from(connections).unwrap_or(u32::MAX),
        // Many loops may queue on SQLite's write lock at once.
        acquire_timeout: Duration::from_secs(30),
        ..DbOptions::default()
    };
    Ok(Db::connect_lazy(url, &options)?)
}

/// Microseconds since the Unix epoch: comparable across processes.
fn wall_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// 1 µs to 10 min at 3 significant digits.
fn latency_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

// ------------------------------------------------------------ the parent

/// Makes the fresh database, runs, and always removes the database again.
async fn parent(args: &Args) -> anyhow::Result<()> {
    check(args)?;
    let report = scratch::run(&args.database_url, "stampede_jobs_bench", |url| {
        run(args, url)
    })
    .await?;
    report.print(args);
    report.verdict(args)
}

/// Everything a run produced, before it is judged.
struct Report {
    dialect: Dialect,
    /// The server's or the SQLite library's version.
    version: String,
    enqueue: Duration,
    tally: Tally,
    store: StoreCheck,
}

async fn run(args: &Args, url: String) -> anyhow::Result<Report> {
    let db = pool(&url, args.enqueue_concurrency)?;
    migrate::run(&db).await.context("migrating")?;
    let enqueue = enqueue(&db, args).await?;
    eprintln!(
        "jobs_bench: enqueued {} jobs in {:.2}s; {} worker processes × {} loops, batches of {}",
        args.jobs,
        enqueue.as_secs_f64(),
        args.workers,
        args.concurrency,
        args.batch
    );
    let tally = burn_down(args, &url).await?;
    let store = StoreCheck::read(&db).await?;
    let version = db.engine_version().await?;
    db.close().await;
    Ok(Report {
        dialect: db.dialect(),
        version,
        enqueue,
        tally,
        store,
    })
}

/// Enqueues `--jobs` no-op jobs in multi-row statements, several at a
/// time; returns how long it took.
async fn enqueue(db: &Db, args: &Args) -> anyhow::Result<Duration> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let enqueuers: Vec<_> = (0..args.enqueue_concurrency)
        .map(|_| tokio::spawn(enqueuer(db.clone(), Arc::clone(&next), args.clone())))
        .collect();
    for enqueuer in enqueuers {
        enqueuer.await.context("an enqueuer panicked")??;
    }
    Ok(started.elapsed())
}

/// Takes the next statement's worth of jobs (statement `next`) and
/// enqueues it, until all are.
async fn enqueuer(db: Db, next: Arc<AtomicUsize>, args: Args) -> anyhow::Result<()> {
    loop {
        let first = next.fetch_add(1, Ordering::Relaxed) * args.enqueue_batch;
        if first >= args.jobs {
            return Ok(());
        }
        let last = (first + args.enqueue_batch).min(args.jobs);
        let jobs: Vec<NewJob> = (first..last).map(noop_job).collect();
        let ids = queue::enqueue_all(db.pool(), &jobs).await?;
        ensure!(
            ids.iter().all(Option::is_some),
            "a job without a unique key was refused"
        );
    }
}

fn noop_job(n: usize) -> NewJob {
    NewJob::new(QUEUE, "noop", format!(r#"{{"n":{n}}}"#))
}

/// Starts the worker processes, lets them go together once all are
/// ready, and adds up what they report.
async fn burn_down(args: &Args, url: &str) -> anyhow::Result<Tally> {
    let mut workers = Vec::with_capacity(args.workers);
    for _ in 0..args.workers {
        workers.push(Worker::spawn(args, url)?);
    }
    for worker in &mut workers {
        worker.expect_ready().await?;
    }
    for worker in &mut workers {
        worker.go().await?;
    }
    let mut tally = Tally::new()?;
    for worker in workers {
        tally.merge(worker.finish().await?)?;
    }
    Ok(tally)
}

/// One worker process, as the parent sees it.
struct Worker {
    process: Child,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    fn spawn(args: &Args, url: &str) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find this program to re-run")?;
        let mut process = Command::new(exe)
            .args(["--child", "--database-url", url])
            .args(["--batch", &args.batch.to_string()])
            .args(["--concurrency", &args.concurrency.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // If the run ends early (an error, Ctrl-C), no worker outlives it.
            .kill_on_drop(true)
            .spawn()
            .context("cannot start a worker process")?;
        let stdout = process.stdout.take().context("no stdout")?;
        Ok(Self {
            process,
            stdout: BufReader::new(stdout).lines(),
        })
    }

    async fn line(&mut self) -> anyhow::Result<String> {
        self.stdout
            .next_line()
            .await?
            .context("a worker process ended early (its error is above)")
    }

    async fn expect_ready(&mut self) -> anyhow::Result<()> {
        let line = self.line().await?;
        ensure!(
            line == READY,
            "a worker process said {line:?} instead of {READY:?}"
        );
        Ok(())
    }

    async fn go(&mut self) -> anyhow::Result<()> {
        let stdin = self.process.stdin.as_mut().context("no stdin")?;
        stdin.write_all(format!("{GO}\n").as_bytes()).await?;
        Ok(stdin.flush().await?)
    }

    async fn finish(mut self) -> anyhow::Result<Tally> {
        let line = self.line().await?;
        let status = self.process.wait().await?;
        ensure!(status.success(), "a worker process failed ({status})");
        Tally::decode(&line)
    }
}

// ------------------------------------------------------------ a worker

/// One worker process: opens its pool, says it is ready, waits for the
/// word, runs its claim loops and prints their tally.
async fn child(args: &Args) -> anyhow::Result<()> {
    let db = pool(&args.database_url, args.concurrency)?;
    open_connections(&db, args.concurrency).await?;
    println!("{READY}");
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let word = stdin.next_line().await?;
    ensure!(
        word.as_deref() == Some(GO),
        "the parent said {word:?} instead of {GO:?}"
    );

    let loops: Vec<_> = (0..args.concurrency)
        .map(|i| {
            let db = db.clone();
            let worker = format!("bench-{}-{i}", std::process::id());
            let batch = args.batch;
            tokio::spawn(async move { claim_loop(db, worker, batch).await })
        })
        .collect();
    let mut tally = Tally::new()?;
    for claim_loop in loops {
        tally.merge(claim_loop.await.context("a claim loop panicked")??)?;
    }
    db.close().await;
    println!("{}", tally.encode());
    Ok(())
}

/// Opens `n` connections up front, so no loop pays for connecting.
async fn open_connections(db: &Db, n: usize) -> anyhow::Result<()> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(db.pool().acquire().await?);
    }
    Ok(())
}

/// Claims, runs and completes batches until a claim comes back empty.
async fn claim_loop(db: Db, worker: String, batch: usize) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    loop {
        let (started, started_us) = (Instant::now(), wall_us());
        let jobs = queue::claim(&db, &[QUEUE], &worker, batch).await?;
        if jobs.is_empty() {
            return Ok(tally);
        }
        let claimed = Instant::now();
        for job in &jobs {
            // The no-op: a handler that looks at its input and is done.
            std::hint::black_box(&job.payload);
        }
        let outcomes = queue::complete_all(db.pool(), &jobs).await?;
        let fenced = outcomes.iter().filter(|o| o.is_err()).count();
        tally.record_batch(
            Times {
                started,
                started_us,
                claimed,
            },
            outcomes.len() - fenced,
            fenced,
        )?;
    }
}

// ------------------------------------------------------------ the tally

/// When one batch's claim began (monotonic and wall clock) and returned.
struct Times {
    started: Instant,
    started_us: i64,
    claimed: Instant,
}

/// What claim loops saw: completions, batches, their time span, latency.
struct Tally {
    completed: u64,
    fenced: u64,
    batches: u64,
    /// Wall clock (µs) of the first claim, and of the last completion.
    first_claim_us: i64,
    last_done_us: i64,
    /// Time spent in claims and in completions, summed over batches: what
    /// a batch's round trips (and commits) cost.
    claiming_us: u64,
    completing_us: u64,
    latency_us: Histogram<u64>,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            completed: 0,
            fenced: 0,
            batches: 0,
            first_claim_us: i64::MAX,
            last_done_us: i64::MIN,
            claiming_us: 0,
            completing_us: 0,
            latency_us: latency_histogram()?,
        })
    }

    fn record_batch(
        &mut self,
        times: Times,
        completed: usize,
        fenced: usize,
    ) -> anyhow::Result<()> {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let took = micros(times.started.elapsed());
        let claiming = micros(times.claimed - times.started);
        self.latency_us
            .record_n(took.max(1), u64::try_from(completed)?)?;
        self.completed += u64::try_from(completed)?;
        self.fenced += u64::try_from(fenced)?;
        self.batches += 1;
        self.claiming_us += claiming;
        self.completing_us += took.saturating_sub(claiming);
        self.first_claim_us = self.first_claim_us.min(times.started_us);
        self.last_done_us = self.last_done_us.max(wall_us());
        Ok(())
    }

    fn merge(&mut self, other: Self) -> anyhow::Result<()> {
        self.completed += other.completed;
        self.fenced += other.fenced;
        self.batches += other.batches;
        self.claiming_us += other.claiming_us;
        self.completing_us += other.completing_us;
        self.first_claim_us = self.first_claim_us.min(other.first_claim_us);
        self.last_done_us = self.last_done_us.max(other.last_done_us);
        Ok(self.latency_us.add(&other.latency_us)?)
    }

    fn seconds(&self) -> f64 {
        (self.last_done_us.saturating_sub(self.first_claim_us)).max(1) as f64 / 1e6
    }

    /// One line for the parent: the counts, then the histogram as
    /// `value:count` pairs (hdrhistogram's own encoding needs a feature
    /// the workspace leaves off).
    fn encode(&self) -> String {
        let histogram: Vec<String> = self
            .latency_us
            .iter_recorded()
            .map(|v| format!("{}:{}", v.value_iterated_to(), v.count_at_value()))
            .collect();
        format!(
            "tally {} {} {} {} {} {} {} {}",
            self.completed,
            self.fenced,
            self.batches,
            self.first_claim_us,
            self.last_done_us,
            self.claiming_us,
            self.completing_us,
            histogram.join(",")
        )
    }

    fn decode(line: &str) -> anyhow::Result<Self> {
        let bad = || anyhow!("a worker process reported {line:?}");
        let fields: Vec<&str> = line.split(' ').collect();
        let [
            "tally",
            completed,
            fenced,
            batches,
            first,
            last,
            claiming,
            completing,
            histogram,
        ] = fields[..]
        else {
            return Err(bad());
        };
        let mut tally = Self::new()?;
        tally.completed = completed.parse().map_err(|_| bad())?;
        tally.fenced = fenced.parse().map_err(|_| bad())?;
        tally.batches = batches.parse().map_err(|_| bad())?;
        tally.first_claim_us = first.parse().map_err(|_| bad())?;
        tally.last_done_us = last.parse().map_err(|_| bad())?;
        tally.claiming_us = claiming.parse().map_err(|_| bad())?;
        tally.completing_us = completing.parse().map_err(|_| bad())?;
        for pair in histogram.split(',').filter(|p| !p.is_empty()) {
            let (value, count) = pair.split_once(':').ok_or_else(bad)?;
            let (value, count) = (
                value.parse().map_err(|_| bad())?,
                count.parse().map_err(|_| bad())?,
            );
            tally.latency_us.record_n(value, count)?;
        }
        Ok(tally)
    }
}

// ------------------------------------------------------------ the verdict

/// What the store holds once the workers are done.
struct StoreCheck {
    /// Per state: jobs, lowest and highest attempt.
    states: Vec<(String, i64, i64, i64)>,
}

impl StoreCheck {
    async fn read(db: &Db) -> anyhow::Result<Self> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*), MIN(attempt), MAX(attempt) FROM jobs GROUP BY state ORDER BY state",
        )
        .fetch_all(db.pool())
        .await?;
        let states = rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { states })
    }

    /// Every invariant that failed, in words.
    fn breaches(&self, jobs: usize, tally: &Tally) -> Vec<String> {
        let mut breaches = Vec::new();
        let expected = i64::try_from(jobs).unwrap_or(i64::MAX);
        match &self.states[..] {
            [(state, n, 1, 1)] if state == "completed" && *n == expected => {}
            other => breaches.push(format!(
                "the store holds {} (state, jobs, min attempt, max attempt) instead of all {jobs} completed at attempt 1",
                describe(other)
            )),
        }
        if tally.completed != jobs as u64 {
            breaches.push(format!(
                "the workers were told of {} completions, not {jobs}",
                tally.completed
            ));
        }
        if tally.fenced != 0 {
            breaches.push(format!("{} completions were fenced", tally.fenced));
        }
        breaches
    }
}

fn describe(states: &[(String, i64, i64, i64)]) -> String {
    let states: Vec<String> = states
        .iter()
        .map(|(s, n, lo, hi)| format!("({s}, {n}, {lo}, {hi})"))
        .collect();
    if states.is_empty() {
        "nothing".into()
    } else {
        states.join(" ")
    }
}

/// A run's figures, in the units they are printed in.
struct Figures {
    rate: f64,
    enqueue_rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    batch_mean: f64,
    /// Mean time of one claim, and of one batch's completion.
    claim_ms: f64,
    complete_ms: f64,
    invariant: &'static str,
}

impl Report {
    fn engine(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => "postgres",
            Dialect::Sqlite => "sqlite",
        }
    }

    /// The figures both printouts show.
    fn figures(&self, args: &Args) -> Figures {
        let t = &self.tally;
        let ms = |us: u64| us as f64 / 1000.0;
        let invariant = if self.store.breaches(args.jobs, t).is_empty() {
            "ok"
        } else {
            "BROKEN"
        };
        Figures {
            rate: t.completed as f64 / t.seconds(),
            enqueue_rate: args.jobs as f64 / self.enqueue.as_secs_f64().max(1e-6),
            p50_ms: ms(t.latency_us.value_at_quantile(0.5)),
            p99_ms: ms(t.latency_us.value_at_quantile(0.99)),
            max_ms: ms(t.latency_us.max()),
            batch_mean: t.completed as f64 / t.batches.max(1) as f64,
            claim_ms: t.claiming_us as f64 / 1000.0 / t.batches.max(1) as f64,
            complete_ms: t.completing_us as f64 / 1000.0 / t.batches.max(1) as f64,
            invariant,
        }
    }

    fn print(&self, args: &Args) {
        let f = self.figures(args);
        let t = &self.tally;
        println!(
            "enqueue on {} {}: {:.0} jobs/s ({} jobs in {:.2}s, {} per statement, {} at a time)",
            self.engine(),
            self.version,
            f.enqueue_rate,
            args.jobs,
            self.enqueue.as_secs_f64(),
            args.enqueue_batch,
            args.enqueue_concurrency
        );
        println!(
            "claim+complete: {:.0} jobs/s ({} in {:.2}s; {} processes × {} loops, batch {}, mean batch {:.1})",
            f.rate,
            t.completed,
            t.seconds(),
            args.workers,
            args.concurrency,
            args.batch,
            f.batch_mean
        );
        println!(
            "claim to completion per job: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            f.p50_ms, f.p99_ms, f.max_ms
        );
        println!(
            "per batch: claim {:.2} ms, complete {:.2} ms (means, round trip and commit included)",
            f.claim_ms, f.complete_ms
        );
        println!(
            "store: {}; workers told of {} completions, {} fenced: {}",
            describe(&self.store.states),
            t.completed,
            t.fenced,
            f.invariant
        );
        self.print_record(args, &f);
    }

    /// The last line, for scripts.
    fn print_record(&self, args: &Args, f: &Figures) {
        println!(
            "result\tengine={}\tversion={}\tjobs={}\tworkers={}\tconcurrency={}\tbatch={}\tenqueue_rate={:.0}\trate={:.0}\tseconds={:.3}\tp50_ms={:.2}\tp99_ms={:.2}\tmax_ms={:.2}\tbatch_mean={:.1}\tclaim_ms={:.2}\tcomplete_ms={:.2}\tfenced={}\tinvariant={}",
            self.engine(),
            self.version.split_whitespace().next().unwrap_or_default(),
            args.jobs,
            args.workers,
            args.concurrency,
            args.batch,
            f.enqueue_rate,
            f.rate,
            self.tally.seconds(),
            f.p50_ms,
            f.p99_ms,
            f.max_ms,
            f.batch_mean,
            f.claim_ms,
            f.complete_ms,
            self.tally.fenced,
            f.invariant
        );
    }

    fn verdict(&self, args: &Args) -> anyhow::Result<()> {
        let breaches = self.store.breaches(args.jobs, &self.tally);
        if !breaches.is_empty() {
            bail!("INVARIANT BROKEN: {}", breaches.join("; "));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(completed: u64, fenced: u64) -> Tally {
        let mut tally = Tally::new().expect("histogram");
        tally.completed = completed;
        tally.fenced = fenced;
        tally
    }

    #[test]
    fn a_tally_survives_its_line() {
        let mut sent = tally(7, 1);
        sent.batches = 2;
        sent.first_claim_us = 10;
        sent.last_done_us = 2_000_010;
        sent.claiming_us = 30;
        sent.completing_us = 40;
        sent.latency_us.record_n(1_500, 4).expect("record");
        sent.latency_us.record_n(90_000, 3).expect("record");
        let got = Tally::decode(&sent.encode()).expect("decode");
        assert_eq!((got.completed, got.fenced, got.batches), (7, 1, 2));
        assert_eq!((got.claiming_us, got.completing_us), (30, 40));
        assert_eq!(got.seconds(), 2.0);
        assert_eq!(got.latency_us.len(), 7);
        assert_eq!(got.latency_us.max(), sent.latency_us.max());
        assert!(Tally::decode("tally 1 2").is_err());
    }

    #[test]
    fn only_all_completed_once_passes() {
        let all = |n, lo, hi| StoreCheck {
            states: vec![("completed".into(), n, lo, hi)],
        };
        assert!(all(5, 1, 1).breaches(5, &tally(5, 0)).is_empty());
        assert_eq!(
            all(5, 1, 2).breaches(5, &tally(5, 0)).len(),
            1,
            "claimed twice"
        );
        assert_eq!(
            all(4, 1, 1).breaches(5, &tally(5, 0)).len(),
            1,
            "one missing"
        );
        assert_eq!(
            all(5, 1, 1).breaches(5, &tally(6, 1)).len(),
            2,
            "told too many, fenced"
        );
        let left = StoreCheck {
            states: vec![("available".into(), 1, 0, 0), ("completed".into(), 4, 1, 1)],
        };
        assert_eq!(left.breaches(5, &tally(4, 0)).len(), 2);
    }
}
