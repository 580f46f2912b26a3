//! Enqueueing, claiming and reporting on jobs.
//!
//! A claim is one statement on both engines: an `UPDATE ... WHERE id IN
//! (SELECT ... LIMIT n) RETURNING`. On PostgreSQL the inner select adds
//! `FOR UPDATE SKIP LOCKED`, so concurrent claimers take different rows
//! instead of queueing on the same ones; on SQLite the statement runs under
//! the database's single write lock, which gives the same guarantee.
//!
//! Every report is one conditional `UPDATE` that names the job's id *and*
//! attempt and requires it to be running; "no row changed" is the fence.
//! [`enqueue_all`] and [`complete_all`] do the work of many [`enqueue`] or
//! [`complete`] calls in one statement each (at most [`MAX_BATCH`] jobs),
//! with the same per-job outcomes: a queue's throughput is bounded by
//! round trips and durable commits per job, not by rows per statement.

use std::collections::HashSet;

use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Executor, Row};
use stampede_store::{Db, Dialect, StoreError, now_ms, placeholders};

use crate::Backoff;

/// Why a report about a job was not taken.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The job is no longer in this attempt's hands (it was reclaimed and
    /// claimed again, or already reported): nothing was changed, and the
    /// caller must roll back whatever it did in the same transaction.
    #[error("job {id} attempt {attempt} is no longer current")]
    Fenced {
        /// The job.
        id: String,
        /// The stale attempt.
        attempt: i64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for JobError {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(error.into())
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// The queue it waits in.
    pub queue: String,
    /// What to do (the handler's name).
    pub kind: String,
    /// The handler's input, usually JSON.
    pub payload: String,
    /// Lower runs first among ready jobs of a queue.
    pub priority: i64,
    /// Claims allowed before the job is dead.
    pub max_attempts: i64,
    /// Not before this time (ms since the epoch); `None`: now.
    pub run_at: Option<i64>,
    /// At most one job with this key ever exists; enqueueing another is a
    /// no-op (a cron tick is `cron:{name}:{tick}`).
    pub unique_key: Option<String>,
}

impl NewJob {
    /// A job of `kind` on `queue` with `payload`, priority 0, 20 attempts,
    /// runnable now.
    pub fn new(queue: &str, kind: &str, payload: impl Into<String>) -> Self {
        Self {
            queue: queue.to_owned(),
            kind: kind.to_owned(),
            payload: payload.into(),
            priority: 0,
            max_attempts: 20,
            run_at: None,
            unique_key: None,
        }
    }
}

/// A claimed job: what to run, and the attempt every report must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The job's id.
    pub id: String,
    /// Its queue.
    pub queue: String,
    /// Its handler's name.
    pub kind: String,
    /// Its input.
    pub payload: String,
    /// This claim's attempt number (1 for the first): the fencing token.
    pub attempt: i64,
    /// Claims allowed in all.
    pub max_attempts: i64,
    /// When it became due, in ms since the epoch: its enqueue's `run_at`,
    /// or the end of the backoff before this retry.
    pub due_at: i64,
}

/// Enqueues `job` through `executor` (a pool, or the caller's transaction
/// so that the job commits or rolls back with the caller's writes).
/// Returns the new job's id, or `None` if its unique key was taken.
pub async fn enqueue<'c, E: Executor<'c, Database = Any>>(
    executor: E,
    job: &NewJob,
) -> Result<Option<String>, StoreError> {
    let ids = enqueue_all(executor, std::slice::from_ref(job)).await?;
    Ok(ids.into_iter().next().flatten())
}

/// Most jobs that [`enqueue_all`] or [`complete_all`] take in one call:
/// one statement binds every job's values, and SQLite accepts at most
/// 32,766 bound values per statement (PostgreSQL 65,535).
///
/// Batches of a hundred to a few hundred jobs are the sweet spot. On
/// SQLite, sqlx finds the slot of each `$N` value by its name, and SQLite
/// looks a name up by a linear search, so binding a statement costs the
/// square of its values: at 9 values per job that dominates `enqueue_all`
/// past about a hundred jobs (1,000 jobs per statement enqueue at a fifth
/// of the rate of 100), while `complete_all`, at 2 values per job, barely
/// notices it at a few hundred. On PostgreSQL a very large completion may
/// read the whole table (see the comment in `complete_all`).
pub const MAX_BATCH: usize = 3_000;

/// A new job id: the creation time, then 64 random bits.
fn new_id(now: i64) -> String {
    format!("job_{now:012x}{:016x}", fastrand::u64(..))
}

/// Enqueues every job of `jobs` in one multi-row `INSERT`, as [`enqueue`]
/// would one by one (and as atomically as the executor makes it). Returns
/// each job's new id in input order, or `None` where its unique key was
/// taken, by an earlier job or by one before it in `jobs`.
///
/// # Panics
///
/// If `jobs` holds more than [`MAX_BATCH`] jobs.
pub async fn enqueue_all<'c, E: Executor<'c, Database = Any>>(
    executor: E,
    jobs: &[NewJob],
) -> Result<Vec<Option<String>>, StoreError> {
    assert!(
        jobs.len() <= MAX_BATCH,
        "enqueue_all takes at most {MAX_BATCH} jobs"
    );
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let now = now_ms();
    let ids: Vec<String> = jobs.iter().map(|_| new_id(now)).collect();
    // `WHERE true` tells SQLite's parser that ON CONFLICT is the upsert
    // clause, not a join constraint.
    let sql = format!(
        "INSERT INTO jobs (id, queue, kind, payload, priority, max_attempts, run_at, unique_key, created_at, state, attempt)
         SELECT column1, column2, column3, column4, column5, column6, column7, column8, column9, 'available', 0
         FROM (VALUES {}) AS new_jobs WHERE true
         ON CONFLICT (unique_key) DO NOTHING
         RETURNING id",
        placeholders(jobs.len(), 9, 1)
    );
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for (id, job) in ids.iter().zip(jobs) {
        query = query
            .bind(id)
            .bind(&job.queue)
            .bind(&job.kind)
            .bind(&job.payload)
            .bind(job.priority)
            .bind(job.max_attempts.max(1))
            .bind(job.run_at.unwrap_or(now))
            .bind(job.unique_key.as_deref())
            .bind(now);
    }
    let inserted = returned_ids(query.fetch_all(executor).await?)?;
    Ok(ids
        .into_iter()
        .map(|id| inserted.contains(&id).then_some(id))
        .collect())
}

fn returned_ids(rows: Vec<AnyRow>) -> Result<HashSet<String>, StoreError> {
    rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
}

/// Claims up to `limit` ready jobs of `queues` for `worker`, best priority
/// first, then oldest `run_at`.
pub async fn claim(
    db: &Db,
    queues: &[&str],
    worker: &str,
    limit: usize,
) -> Result<Vec<Job>, StoreError> {
    let skip_locked = match db.dialect() {
        Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        Dialect::Sqlite => "",
    };
    let sql = format!(
        "UPDATE jobs SET state = 'running', attempt = attempt + 1, heartbeat_at = $1, worker = $2
         WHERE id IN (
             SELECT id FROM jobs
             WHERE state = 'available' AND run_at <= $1 AND queue IN {}
             ORDER BY priority, run_at LIMIT $3{skip_locked})
         RETURNING id, queue, kind, payload, attempt, max_attempts, priority, run_at",
        placeholders(1, queues.len(), 4)
    );
    let mut query = sqlx::query(AssertSqlSafe(sql))
        .bind(now_ms())
        .bind(worker)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX));
    for queue in queues {
        query = query.bind(*queue);
    }
    let mut rows = query.fetch_all(db.pool()).await?;
    // RETURNING keeps no order: hand the jobs out in the order they won.
    rows.sort_by_key(|row| (row.try_get::<i64, _>(6).ok(), row.try_get::<i64, _>(7).ok()));
    rows.iter().map(job_from_row).collect()
}

fn job_from_row(row: &AnyRow) -> Result<Job, StoreError> {
    Ok(Job {
        id: row.try_get(0)?,
        queue: row.try_get(1)?,
        kind: row.try_get(2)?,
        payload: row.try_get(3)?,
        attempt: row.try_get(4)?,
        max_attempts: row.try_get(5)?,
        due_at: row.try_get(7)?,
    })
}

/// Runs a report's `UPDATE` — `$1` the job id, `$2` the attempt, `$3` a
/// time, `$4` an error text if given — and turns "no row changed" into
/// [`JobError::Fenced`].
async fn fenced<'c, E: Executor<'c, Database = Any>>(
    executor: E,
    job: &Job,
    sql: &'static str,
    time: i64,
    text: Option<&str>,
) -> Result<(), JobError> {
    let mut query = sqlx::query(sql).bind(&job.id).bind(job.attempt).bind(time);
    if let Some(text) = text {
        query = query.bind(text);
    }
    match query.execute(executor).await?.rows_affected() {
        1 => Ok(()),
        _ => Err(JobError::Fenced {
            id: job.id.clone(),
            attempt: job.attempt,
        }),
    }
}

/// Records that `job`'s attempt is alive, pushing its reclaim back.
pub async fn heartbeat<'c, E: Executor<'c, Database = Any>>(
    executor: E,
    job: &Job,
) -> Result<(), JobError> {
    let sql =
        "UPDATE jobs SET heartbeat_at = $3 WHERE id = $1 AND attempt = $2 AND state = 'running'";
    fenced(executor, job, sql, now_ms(), None).await
}

/// Marks `job` completed. Run it in the transaction that applied the job's
/// effects: if it is fenced, roll that transaction back.
pub async fn complete<'c, E: Executor<'c, Database = Any>>(
    executor: E,
    job: &Job,
) -> Result<(), JobError> {
    let sql = "UPDATE jobs SET state = 'completed', finished_at = $3, worker = NULL
               WHERE id = $1 AND attempt = $2 AND state = 'running'";
    fenced(executor, job, sql, now_ms(), None).await
}

/// Marks every job of `jobs` completed in one statement, with the fencing
/// rule of [`complete`] applied to each: a job completes only if its id
/// and attempt match and it is running. Returns each job's outcome in
/// input order, `Ok(())` or [`JobError::Fenced`] (a job listed twice
/// completes once and is fenced after). Run it in the transaction that
/// applied the jobs' effects, and roll back the effects of fenced jobs or
/// the whole transaction.
///
/// # Panics
///
/// If `jobs` holds more than [`MAX_BATCH`] jobs.
pub async fn complete_all<'c, E: Executor<'c, Database = Any>>(
    executor: E,
    jobs: &[Job],
) -> Result<Vec<Result<(), JobError>>, StoreError> {
    assert!(
        jobs.len() <= MAX_BATCH,
        "complete_all takes at most {MAX_BATCH} jobs"
    );
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    // A join on the listed (id, attempt) pairs, so that each row is found
    // by its primary key; VALUES names its columns column1, column2 on
    // both engines. The state test is wrapped in COALESCE (a no-op: state
    // is never NULL) so that it cannot be answered from an index on
    // state: PostgreSQL otherwise hashes the list against every entry of
    // `jobs_running`, which, until vacuum, still holds an entry for every
    // job that was ever running. That made a 500-job completion take 13
    // ms instead of 6.5 in a burn-down. The price is that a batch big
    // enough to cost more in probes than a whole-table read (about a
    // thousand jobs on a table of a few hundred thousand) reads the table.
    let sql = format!(
        "UPDATE jobs SET state = 'completed', finished_at = $1, worker = NULL
         FROM (VALUES {}) AS done
         WHERE jobs.id = done.column1 AND jobs.attempt = done.column2 AND COALESCE(jobs.state, '') = 'running'
         RETURNING jobs.id, jobs.attempt",
        placeholders(jobs.len(), 2, 2)
    );
    let mut query = sqlx::query(AssertSqlSafe(sql)).bind(now_ms());
    for job in jobs {
        query = query.bind(&job.id).bind(job.attempt);
    }
    let mut completed: HashSet<(String, i64)> = query
        .fetch_all(executor)
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_, StoreError>>()?;
    Ok(jobs
        .iter()
        .map(|job| {
            if completed.remove(&(job.id.clone(), job.attempt)) {
                Ok(())
            } else {
                Err(JobError::Fenced {
                    id: job.id.clone(),
                    attempt: job.attempt,
                })
            }
        })
        .collect())
}

/// What a failure led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Another attempt at this time (ms since the epoch).
    At(i64),
    /// No attempts left: the job is dead.
    Dead,
}

/// Records that `job`'s attempt failed with `error`: another attempt after
/// a backoff, or dead when its attempts are spent.
pub async fn fail<'c, E: Executor<'c, Database = Any>>(
    executor: E,
    job: &Job,
    error: &str,
    backoff: &Backoff,
) -> Result<Retry, JobError> {
    let now = now_ms();
    if job.attempt >= job.max_attempts {
        let sql = "UPDATE jobs SET state = 'dead', finished_at = $3, worker = NULL, last_error = $4
                   WHERE id = $1 AND attempt = $2 AND state = 'running'";
        fenced(executor, job, sql, now, Some(error)).await?;
        return Ok(Retry::Dead);
    }
    let delay = backoff.delay(job.attempt, fastrand::f64());
    let run_at = now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
    let sql = "UPDATE jobs SET state = 'available', run_at = $3, worker = NULL, last_error = $4
               WHERE id = $1 AND attempt = $2 AND state = 'running'";
    fenced(executor, job, sql, run_at, Some(error)).await?;
    Ok(Retry::At(run_at))
}

/// Hands `job` back untouched (a worker shutting down): runnable at once,
/// and the attempt it used is given back to its budget.
pub async fn release<'c, E: Executor<'c, Database = Any>>(
    executor: E,
    job: &Job,
) -> Result<(), JobError> {
    let sql = "UPDATE jobs SET state = 'available', run_at = $3, worker = NULL, max_attempts = max_attempts + 1
               WHERE id = $1 AND attempt = $2 AND state = 'running'";
    fenced(executor, job, sql, now_ms(), None).await
}

/// Takes back running jobs whose last heartbeat is older than
/// `visibility_timeout_ms` (their worker died or hung): available again, or
/// dead if that was their last attempt. Returns how many were taken back.
pub async fn reclaim(db: &Db, visibility_timeout_ms: i64) -> Result<u64, StoreError> {
    let now = now_ms();
    let stale = now.saturating_sub(visibility_timeout_ms);
    let mut tx = db.begin_write().await?;
    let dead = sqlx::query(
        "UPDATE jobs SET state = 'dead', finished_at = $2, worker = NULL, last_error = 'lost: no heartbeat within the visibility timeout'
         WHERE state = 'running' AND heartbeat_at < $1 AND attempt >= max_attempts",
    )
    .bind(stale)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let again = sqlx::query(
        "UPDATE jobs SET state = 'available', run_at = $2, worker = NULL, last_error = 'lost: no heartbeat within the visibility timeout'
         WHERE state = 'running' AND heartbeat_at < $1",
    )
    .bind(stale)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(dead.rows_affected() + again.rows_affected())
}

/// A job's state and attempt, for tests and the `stampede jobs` listing.
pub async fn state(db: &Db, id: &str) -> Result<Option<(String, i64)>, StoreError> {
    let row = sqlx::query("SELECT state, attempt FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .transpose()
}
