//! What operators ask of the queue: how deep each queue is, which jobs are
//! failing or dead, and "run that dead job again" — for `stampede jobs`
//! and the worker's metrics.

use sqlx::Row;
use sqlx::any::AnyRow;
use stampede_store::{Db, StoreError, now_ms};

/// How many jobs one queue holds in one state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Depth {
    /// The queue.
    pub queue: String,
    /// `available`, `running`, `completed` or `dead`.
    pub state: String,
    /// How many jobs.
    pub jobs: i64,
}

/// Every queue's job count per state.
pub async fn depths(db: &Db) -> Result<Vec<Depth>, StoreError> {
    let rows = sqlx::query(
        "SELECT queue, state, COUNT(*) FROM jobs GROUP BY queue, state ORDER BY queue, state",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Depth {
                queue: row.try_get(0)?,
                state: row.try_get(1)?,
                jobs: row.try_get(2)?,
            })
        })
        .collect()
}

/// One queue's jobs by what they wait for, as the operations page shows
/// them: `available` jobs split into those due now and those due later (a
/// retry's backoff, a job scheduled ahead), and no completed ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    /// The queue.
    pub queue: String,
    /// Available and due: what workers would claim now.
    pub ready: i64,
    /// Available but due later.
    pub scheduled: i64,
    /// Claimed by a worker.
    pub running: i64,
    /// Out of attempts.
    pub dead: i64,
}

/// Every queue that holds an unfinished or dead job, with its depths at
/// `now` (ms since the epoch).
pub async fn queue_depths(db: &Db, now: i64) -> Result<Vec<QueueDepth>, StoreError> {
    let rows = sqlx::query(
        "SELECT queue,
                CAST(SUM(CASE WHEN state = 'available' AND run_at <= $1 THEN 1 ELSE 0 END) AS BIGINT),
                CAST(SUM(CASE WHEN state = 'available' AND run_at > $1 THEN 1 ELSE 0 END) AS BIGINT),
                CAST(SUM(CASE WHEN state = 'running' THEN 1 ELSE 0 END) AS BIGINT),
                CAST(SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END) AS BIGINT)
         FROM jobs WHERE state <> 'completed' GROUP BY queue ORDER BY queue",
    )
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(QueueDepth {
                queue: row.try_get(0)?,
                ready: row.try_get(1)?,
                scheduled: row.try_get(2)?,
                running: row.try_get(3)?,
                dead: row.try_get(4)?,
            })
        })
        .collect()
}

/// A job as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    /// The job's id.
    pub id: String,
    /// Its queue.
    pub queue: String,
    /// Its kind.
    pub kind: String,
    /// Claims so far.
    pub attempt: i64,
    /// Claims allowed.
    pub max_attempts: i64,
    /// Why its last attempt failed.
    pub last_error: Option<String>,
    /// When it may run next (ms since the epoch).
    pub run_at: i64,
}

/// Which jobs to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Failed at least once and waiting for another attempt.
    Failing,
    /// Out of attempts.
    Dead,
}

/// Up to `limit` jobs of `listing`, most recent first.
pub async fn list(db: &Db, listing: Listing, limit: i64) -> Result<Vec<JobInfo>, StoreError> {
    let sql = match listing {
        Listing::Failing => {
            "SELECT id, queue, kind, attempt, max_attempts, last_error, run_at FROM jobs
             WHERE state = 'available' AND last_error IS NOT NULL ORDER BY run_at DESC LIMIT $1"
        }
        Listing::Dead => {
            "SELECT id, queue, kind, attempt, max_attempts, last_error, run_at FROM jobs
             WHERE state = 'dead' ORDER BY finished_at DESC LIMIT $1"
        }
    };
    let rows = sqlx::query(sql).bind(limit).fetch_all(db.pool()).await?;
    rows.iter().map(info_from_row).collect()
}

fn info_from_row(row: &AnyRow) -> Result<JobInfo, StoreError> {
    Ok(JobInfo {
        id: row.try_get(0)?,
        queue: row.try_get(1)?,
        kind: row.try_get(2)?,
        attempt: row.try_get(3)?,
        max_attempts: row.try_get(4)?,
        last_error: row.try_get(5)?,
        run_at: row.try_get(6)?,
    })
}

/// Deletes up to `limit` completed jobs that finished before `before`
/// (ms); returns how many. Their unique keys go with them, which only ever
/// matters for keys nobody enqueues again (past cron ticks).
pub async fn prune_completed(db: &Db, before: i64, limit: i64) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "DELETE FROM jobs WHERE id IN (
             SELECT id FROM jobs WHERE state = 'completed' AND finished_at < $1 LIMIT $2)",
    )
    .bind(before)
    .bind(limit)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected())
}

/// Makes dead job `id` runnable now with `attempts` more attempts; false
/// if there is no such dead job.
pub async fn retry_dead(db: &Db, id: &str, attempts: i64) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE jobs SET state = 'available', run_at = $2, max_attempts = attempt + $3, finished_at = NULL
         WHERE id = $1 AND state = 'dead'",
    )
    .bind(id)
    .bind(now_ms())
    .bind(attempts.max(1))
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}
