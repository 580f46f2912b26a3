//! Read replicas: PostgreSQL streaming standbys that take the reads which
//! may be a little stale (order lists, product pages) off the primary.
//!
//! A [`Replicas`] handle holds the primary's [`Db`] and one per replica.
//! Writes, the hot path and every read that must see the latest commit use
//! [`Replicas::primary`]. A read that tolerates staleness goes through
//! [`Replicas::read_stale_ok`] (or [`Replicas::read_within`], for a tighter
//! bound): it runs on a replica that is fresh enough, round-robin among
//! them, or else on the primary, and comes back with a bound on how old the
//! data it read there can be. A replica that fails it is retried on the
//! primary.
//!
//! # How the lag is measured
//!
//! In time, from positions in the write-ahead log (LSNs): no clocks of two
//! hosts are compared and no heartbeat row is written. Every check (four
//! per `max_lag`, at most 250 ms apart) samples the primary's
//! `pg_current_wal_lsn()`, noting the instant just *before* asking: every
//! commit acknowledged before that instant lies at or below the LSN it
//! returns. The samples of the last few seconds are kept. Each replica is
//! then asked for `pg_last_wal_replay_lsn()`; the newest sample at or below
//! it is an instant before which the replica holds every commit, so what a
//! read finds there is at most `now - that instant` old. That is the lag;
//! it only overestimates (by a check's round trips, and by the time since
//! the check), never underestimates.
//!
//! It stays right for an idle primary (its LSN does not move, so a replica
//! that replayed it is current however old the sample) and for a replica
//! whose replay is paused or whose WAL stream is cut (its instant stops, so
//! its lag grows with the clock until it is skipped). A replica that errors
//! or does not answer a check within a second is down until a check
//! succeeds again; a read that fails on a replica marks it down at once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::db::redact;
use crate::{Db, DbOptions, Dialect, StoreError};

/// How long a check waits for a server before calling it down; also the
/// longest a read waits for a replica's connection before it is retried
/// on the primary.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest time between two checks of the replicas.
const MAX_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// The primary and its read replicas; cheap to clone.
#[derive(Debug, Clone)]
pub struct Replicas {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    primary: Db,
    replicas: Vec<Replica>,
    max_lag: Duration,
    /// Where the next round-robin pick starts.
    next: AtomicUsize,
}

/// Where a stale-ok read goes, and how old the data there may be.
#[derive(Debug, Clone, Copy)]
struct StaleRead<'a> {
    db: &'a Db,
    /// An upper bound on how old the data read from `db` is right now:
    /// every commit acknowledged more than `lag` ago is there.
    /// `Duration::ZERO` for the primary.
    lag: Duration,
    /// The replica's index; `None` for the primary.
    replica: Option<usize>,
}

impl Replicas {
    /// The primary with read replicas at `replica_urls` (none is fine: every
    /// read then goes to the primary). Replica pools use `options`, with an
    /// acquire timeout of at most a second: a read waiting longer for a
    /// replica is better served by the primary. A replica is used only
    /// while its lag is at most `max_lag`.
    ///
    /// With replicas, a task checks them until the last clone of the handle
    /// is dropped; so this must be called inside a Tokio runtime.
    pub fn new(
        primary: Db,
        replica_urls: &[String],
        options: &DbOptions,
        max_lag: Duration,
    ) -> Result<Self, StoreError> {
        if !replica_urls.is_empty() && primary.dialect() != Dialect::Postgres {
            return Err(StoreError::Url(
                "read replicas need a PostgreSQL primary (postgres://...); a SQLite store has none"
                    .into(),
            ));
        }
        let options = DbOptions {
            acquire_timeout: options.acquire_timeout.min(CHECK_TIMEOUT),
            ..options.clone()
        };
        let replicas = replica_urls
            .iter()
            .enumerate()
            .map(|(i, url)| Replica::connect(url, &options, &format!("replica-{}", i + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        let inner = Arc::new(Inner {
            primary,
            replicas,
            max_lag,
            next: AtomicUsize::new(0),
        });
        if !inner.replicas.is_empty() {
            tokio::spawn(monitor(Arc::downgrade(&inner), max_lag));
        }
        Ok(Self { inner })
    }

    /// The primary: for writes, and reads that must see every commit.
    pub fn primary(&self) -> &Db {
        &self.inner.primary
    }

    /// True when any replica is configured (whether or not one is fresh).
    pub fn has_replicas(&self) -> bool {
        !self.inner.replicas.is_empty()
    }

    /// Where to send a read that may be stale: the next replica, in
    /// round-robin order, whose lag is within both `bound` and the
    /// configured bound, or the primary when none is.
    fn stale_within(&self, bound: Duration) -> StaleRead<'_> {
        let inner = &*self.inner;
        let count = inner.replicas.len();
        let start = match count {
            0 => 0,
            _ => inner.next.fetch_add(1, Ordering::Relaxed) % count,
        };
        let now = Instant::now();
        let bound = bound.min(inner.max_lag);
        let picked = pick(count, start, bound, |i| inner.replicas[i].lag(now));
        match picked {
            Some((i, lag)) => StaleRead {
                db: &inner.replicas[i].db,
                lag,
                replica: Some(i),
            },
            None => StaleRead {
                db: &inner.primary,
                lag: Duration::ZERO,
                replica: None,
            },
        }
    }

    /// Runs `query` on a replica within the configured lag, or else the
    /// primary; returns its result and the lag of where it ran (an upper
    /// bound on how old what it read may be: every commit acknowledged
    /// more than that long ago was there; zero on the primary). If a
    /// replica turns out to be unreachable, it is marked down (until a check finds it
    /// up) and `query` runs again on the primary: a replica going away
    /// costs latency, not errors. (`query` gets its own handle, a cheap
    /// clone, so that its future borrows nothing from this call.)
    pub async fn read_stale_ok<T, F, Fut>(&self, query: F) -> Result<(T, Duration), StoreError>
    where
        F: Fn(Db) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        self.read_within(self.inner.max_lag, query).await
    }

    /// [`Self::read_stale_ok`] for a reader with a tighter bound of its own:
    /// only replicas within both `bound` and the configured lag.
    pub async fn read_within<T, F, Fut>(
        &self,
        bound: Duration,
        query: F,
    ) -> Result<(T, Duration), StoreError>
    where
        F: Fn(Db) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let read = self.stale_within(bound);
        match (query(read.db.clone()).await, read.replica) {
            (Ok(value), _) => Ok((value, read.lag)),
            (Err(StoreError::Unavailable(error)), Some(i)) => {
                self.inner.replicas[i].update(Health::Down(error.to_string()), None);
                Ok((query(self.inner.primary.clone()).await?, Duration::ZERO))
            }
            (Err(error), _) => Err(error),
        }
    }

    /// Closes every pool; pending queries finish first.
    pub async fn close(&self) {
        self.inner.primary.close().await;
        for replica in &self.inner.replicas {
            replica.db.close().await;
        }
    }
}

/// Checks a quarter of `max_lag` apart, so a healthy replica is never
/// skipped for the time between two checks; at most [`MAX_CHECK_INTERVAL`]
/// apart, at least 10 ms.
fn check_interval(max_lag: Duration) -> Duration {
    (max_lag / 4).clamp(Duration::from_millis(10), MAX_CHECK_INTERVAL)
}

/// The first of `count` replicas, counting round from `start`, whose lag
/// (`None`: down or unmeasured) is at most `max_lag`, with that lag.
fn pick(
    count: usize,
    start: usize,
    max_lag: Duration,
    lag: impl Fn(usize) -> Option<Duration>,
) -> Option<(usize, Duration)> {
    (0..count)
        .map(|k| (start + k) % count)
        .find_map(|i| lag(i).filter(|l| *l <= max_lag).map(|l| (i, l)))
}

/// One replica: its pool and what the last check (or failed read) found.
#[derive(Debug)]
struct Replica {
    db: Db,
    /// Its URL without the password, for logs.
    name: String,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Every commit acknowledged by the primary before this instant is on
    /// the replica; `None` while down, unmeasured or beyond the history.
    current_as_of: Option<Instant>,
    /// What was last logged.
    health: Health,
}

/// What a check found, for logging its changes once.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Health {
    Unchecked,
    Down(String),
    Lagging,
    Fresh,
}

impl Replica {
    /// The replica at `url`, its pool named `name` in metrics.
    fn connect(url: &str, options: &DbOptions, name: &str) -> Result<Self, StoreError> {
        if Dialect::from_url(url)? != Dialect::Postgres {
            return Err(StoreError::Url(format!(
                "read replica `{}` is not a PostgreSQL URL (postgres://USER@HOST/DB)",
                redact(url)
            )));
        }
        Ok(Self {
            db: Db::connect_named(url, options, name)?,
            name: redact(url),
            state: Mutex::new(State {
                current_as_of: None,
                health: Health::Unchecked,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lag at `now`, or `None` while the replica is unusable.
    fn lag(&self, now: Instant) -> Option<Duration> {
        let as_of = self.lock().current_as_of?;
        Some(now.saturating_duration_since(as_of))
    }

    /// Records a check's (or a failed read's) finding, logging a change.
    fn update(&self, health: Health, current_as_of: Option<Instant>) {
        let before = {
            let mut state = self.lock();
            state.current_as_of = current_as_of;
            std::mem::replace(&mut state.health, health.clone())
        };
        if before == health || matches!((&before, &health), (Health::Down(_), Health::Down(_))) {
            return;
        }
        let replica = &self.name;
        match health {
            Health::Down(error) => {
                tracing::warn!(replica, error, "read replica down; its reads go elsewhere");
            }
            Health::Lagging => {
                tracing::warn!(replica, "read replica lagging; skipped until it catches up");
            }
            Health::Fresh if before == Health::Lagging => {
                tracing::info!(replica, "read replica caught up; in use again");
            }
            Health::Fresh => tracing::info!(replica, "read replica up; in use"),
            Health::Unchecked => {}
        }
    }
}

/// The primary's WAL positions of the last few seconds, oldest first.
#[derive(Debug, Default)]
struct History {
    samples: VecDeque<(Instant, u64)>,
}

impl History {
    /// Adds the primary's `lsn`, asked for at `at`, and forgets samples
    /// older than `keep` (but never the newest): a replica whose position
    /// only they could date is older than that anyway.
    fn record(&mut self, at: Instant, lsn: u64, keep: Duration) {
        match self.samples.back_mut() {
            // An idle primary: the newer instant says strictly more.
            Some(newest) if newest.1 == lsn => newest.0 = at,
            _ => self.samples.push_back((at, lsn)),
        }
        while self.samples.len() > 1
            && self
                .samples
                .front()
                .is_some_and(|(t, _)| at.saturating_duration_since(*t) > keep)
        {
            self.samples.pop_front();
        }
    }

    /// The latest instant before which a replica that replayed up to
    /// `replayed` holds every commit, or `None` when it is behind the
    /// whole history.
    fn current_as_of(&self, replayed: u64) -> Option<Instant> {
        self.samples
            .iter()
            .rev()
            .find(|(_, lsn)| *lsn <= replayed)
            .map(|(at, _)| *at)
    }
}

/// Checks the replicas until the handle is dropped.
async fn monitor(inner: Weak<Inner>, max_lag: Duration) {
    let keep = 2 * max_lag + CHECK_TIMEOUT;
    let mut history = History::default();
    let mut every = tokio::time::interval(check_interval(max_lag));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        inner.check(&mut history, keep).await;
    }
}

const PRIMARY_LSN: &str = "SELECT CAST(pg_current_wal_lsn() - '0/0'::pg_lsn AS BIGINT)";
const REPLAY_LSN: &str = "SELECT CAST(pg_last_wal_replay_lsn() - '0/0'::pg_lsn AS BIGINT)";

impl Inner {
    /// Samples the primary, then asks every replica at once how far it
    /// has replayed.
    async fn check(&self, history: &mut History, keep: Duration) {
        let asked = Instant::now();
        match lsn(&self.primary, PRIMARY_LSN).await {
            Ok(position) => history.record(asked, position, keep),
            // Nothing new is learnt; the replicas' instants stand still, so
            // they age out by themselves if this lasts.
            Err(error) => tracing::debug!(error, "primary WAL position unknown"),
        }
        let replays: Vec<_> = self
            .replicas
            .iter()
            .map(|r| {
                let db = r.db.clone();
                tokio::spawn(async move { lsn(&db, REPLAY_LSN).await })
            })
            .collect();
        for (replica, replay) in self.replicas.iter().zip(replays) {
            let replay = replay.await.unwrap_or_else(|e| Err(e.to_string()));
            let (health, as_of) = match replay {
                Err(error) => (Health::Down(error), None),
                Ok(replayed) => {
                    let as_of = history.current_as_of(replayed);
                    let fresh = as_of.is_some_and(|t| t.elapsed() <= self.max_lag);
                    (
                        if fresh {
                            Health::Fresh
                        } else {
                            Health::Lagging
                        },
                        as_of,
                    )
                }
            };
            replica.update(health, as_of);
        }
    }
}

/// A WAL position as a number, asked within [`CHECK_TIMEOUT`]; on a
/// server that is not a standby the replay position is NULL, an error.
async fn lsn(db: &Db, sql: &'static str) -> Result<u64, String> {
    let query = sqlx::query_scalar::<_, Option<i64>>(sql).fetch_one(db.pool());
    match tokio::time::timeout(CHECK_TIMEOUT, query).await {
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
        Ok(Err(error)) => Err(error.to_string()),
        Ok(Ok(None)) => Err("not a standby: it replays no WAL".into()),
        Ok(Ok(Some(position))) => u64::try_from(position).map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn history(start: Instant, samples: &[(u64, u64)]) -> History {
        let mut history = History::default();
        for &(at, lsn) in samples {
            history.record(start + ms(at), lsn, Duration::from_secs(3600));
        }
        history
    }

    #[test]
    fn a_replica_is_as_current_as_the_newest_sample_it_replayed() {
        let t = Instant::now();
        let h = history(t, &[(0, 100), (250, 200), (500, 300)]);
        assert_eq!(h.current_as_of(300), Some(t + ms(500)));
        assert_eq!(h.current_as_of(350), Some(t + ms(500)));
        assert_eq!(h.current_as_of(299), Some(t + ms(250)));
        assert_eq!(h.current_as_of(100), Some(t));
        assert_eq!(h.current_as_of(99), None, "behind the whole history");
    }

    #[test]
    fn an_idle_primary_keeps_a_caught_up_replica_current() {
        let t = Instant::now();
        let h = history(t, &[(0, 100), (250, 100), (10_000, 100)]);
        assert_eq!(h.current_as_of(100), Some(t + ms(10_000)));
        assert_eq!(h.samples.len(), 1, "one sample per position");
    }

    #[test]
    fn old_samples_are_forgotten_but_never_the_newest() {
        let t = Instant::now();
        let mut h = History::default();
        h.record(t, 100, Duration::from_secs(1));
        h.record(t + ms(600), 200, Duration::from_secs(1));
        h.record(t + ms(1200), 300, Duration::from_secs(1));
        assert_eq!(h.current_as_of(150), None, "the first sample is gone");
        assert_eq!(h.current_as_of(250), Some(t + ms(600)));
        h.record(t + ms(60_000), 300, Duration::from_secs(1));
        assert_eq!(h.samples.len(), 1);
    }

    #[test]
    fn picks_go_round_the_fresh_replicas_and_fall_back_to_none() {
        let lags = [Some(ms(10)), None, Some(ms(900)), Some(ms(0))];
        let max = ms(500);
        let lag = |i: usize| lags[i];
        assert_eq!(pick(4, 0, max, lag), Some((0, ms(10))));
        assert_eq!(
            pick(4, 1, max, lag),
            Some((3, ms(0))),
            "skips down and lagging"
        );
        assert_eq!(pick(4, 2, max, lag), Some((3, ms(0))));
        assert_eq!(pick(4, 3, max, lag), Some((3, ms(0))));
        assert_eq!(pick(2, 1, max, |i| [None, Some(max * 2)][i]), None);
        assert_eq!(pick(0, 0, max, |_| Some(ms(1))), None);
    }

    #[test]
    fn checks_come_four_times_per_lag_bound_within_limits() {
        assert_eq!(check_interval(ms(500)), ms(125));
        assert_eq!(check_interval(Duration::from_secs(60)), MAX_CHECK_INTERVAL);
        assert_eq!(check_interval(ms(1)), ms(10));
    }

    fn url_error(result: Result<Replicas, StoreError>) -> String {
        result.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[tokio::test]
    async fn replicas_need_a_postgres_primary_and_postgres_urls() {
        let options = DbOptions::default();
        let sqlite = Db::connect_lazy("sqlite://unused.db", &options).expect("a URL");
        let urls = ["postgres://u@h/d".to_owned()];
        let error = url_error(Replicas::new(sqlite.clone(), &urls, &options, ms(1)));
        assert!(error.contains("PostgreSQL primary"), "{error}");
        let none = Replicas::new(sqlite, &[], &options, ms(1)).expect("no replicas");
        assert!(!none.has_replicas());
        assert!(
            none.stale_within(Duration::MAX).replica.is_none(),
            "everything reads the primary"
        );

        let postgres = Db::connect_lazy("postgres://u@h/d", &options).expect("a URL");
        let urls = ["sqlite://copy.db".to_owned()];
        let error = url_error(Replicas::new(postgres, &urls, &options, ms(1)));
        assert!(error.contains("read replica `sqlite://copy.db`"), "{error}");
    }

    #[tokio::test]
    async fn a_read_on_an_unreachable_replica_is_retried_on_the_primary() {
        // Only `SELECT 1` on the primary: no test database is needed.
        let Ok(url) = std::env::var("DATABASE_URL") else {
            eprintln!("SKIPPED: this PostgreSQL test needs DATABASE_URL");
            return;
        };
        let options = DbOptions::default();
        let primary = Db::connect_lazy(&url, &options).expect("DATABASE_URL is a URL");
        let gone = ["postgres://postgres@127.0.0.1:1/nowhere".to_owned()];
        let replicas = Replicas::new(primary, &gone, &options, Duration::from_secs(60))
            .expect("a primary with a replica");
        // As if a check had just found it current (the monitor has not run
        // yet: nothing awaited on this single-threaded runtime).
        replicas.inner.replicas[0].update(Health::Fresh, Some(Instant::now()));
        assert!(replicas.stale_within(Duration::MAX).replica.is_some());
        let one = |db: Db| async move {
            let one = sqlx::query_scalar::<_, i64>("SELECT 1").fetch_one(db.pool());
            Ok(one.await?)
        };
        let answer = replicas
            .read_stale_ok(one)
            .await
            .expect("the primary answers");
        assert_eq!(answer, (1, Duration::ZERO));
        assert!(
            replicas.stale_within(Duration::MAX).replica.is_none(),
            "marked down"
        );
    }

    /// The primary over time: positions after each step, with how long the
    /// step took. Commits are the steps: a commit acknowledged at a step's
    /// end lies at or below that step's position.
    fn timeline() -> impl Strategy<Value = Vec<(u64, u64)>> {
        prop::collection::vec((0..300u64, 0..3u64), 1..40)
    }

    proptest! {
        /// Whatever the primary wrote, however checks were spaced and
        /// wherever the replica's replay stands: every commit acknowledged
        /// before the instant the replica is said to be current as of is
        /// on the replica. The lag is never underestimated.
        #[test]
        fn the_lag_is_never_underestimated(
            steps in timeline(),
            sampled in prop::collection::vec(any::<bool>(), 40),
            replay_fraction in 0.0..=1.0f64,
        ) {
            let start = Instant::now();
            let (mut now, mut lsn) = (0, 0);
            let mut commits = Vec::new();
            let mut h = History::default();
            for (i, (dt, dlsn)) in steps.iter().enumerate() {
                now += dt;
                lsn += dlsn;
                commits.push((start + ms(now), lsn));
                if sampled[i] {
                    // Asked just after this moment: the answer is at least
                    // this position (the primary may have moved since).
                    h.record(start + ms(now), lsn, Duration::from_secs(3600));
                }
            }
            let replayed = (lsn as f64 * replay_fraction) as u64;
            if let Some(as_of) = h.current_as_of(replayed) {
                for (acked, at) in commits {
                    // Strictly before: the instant is noted before asking.
                    if acked < as_of {
                        prop_assert!(at <= replayed, "commit at {at} acked before as_of, replay {replayed}");
                    }
                }
            }
        }
    }
}
