//! The queue's guarantees, one suite run on SQLite and on PostgreSQL; the
//! lease rules on Redis too.

use std::collections::HashSet;
use std::sync::Arc;

use stampede_jobs::queue::{self, Retry};
use std::time::Duration;

use stampede_jobs::{Backoff, JobError, Leases, NewJob};
use stampede_store::{Db, now_ms};
use stampede_testkit::store_tests;

async fn enqueue(db: &Db, job: NewJob) -> String {
    queue::enqueue(db.pool(), &job)
        .await
        .expect("enqueue")
        .expect("a new job")
}

async fn claim_one(db: &Db, worker: &str) -> queue::Job {
    let mut jobs = queue::claim(db, &["default"], worker, 1)
        .await
        .expect("claim");
    jobs.pop().expect("a ready job")
}

/// Makes every running job look silent for a minute.
async fn age_heartbeats(db: &Db) {
    sqlx::query("UPDATE jobs SET heartbeat_at = heartbeat_at - 60000")
        .execute(db.pool())
        .await
        .expect("age heartbeats");
}

/// The lease rules, whoever keeps the leases: one holder at a time, and
/// each new holder a token one above the last (counted from the first, as
/// Redis keeps counting across tests).
async fn lease_rules(leases: &dyn Leases) {
    let name = format!("scheduler-{:016x}", fastrand::u64(..));
    let minute = Duration::from_secs(60);
    let first = leases
        .acquire(&name, "a", minute)
        .await
        .expect("acquire")
        .expect("free");
    assert!(
        leases
            .acquire(&name, "b", minute)
            .await
            .expect("acquire")
            .is_none()
    );
    assert!(leases.renew(&first, minute).await.expect("renew"));
    leases.release(&first).await.expect("release");
    let second = leases
        .acquire(&name, "b", Duration::from_millis(1))
        .await
        .expect("acquire")
        .expect("released");
    assert_eq!(second.token, first.token + 1);
    assert!(
        !leases.renew(&first, minute).await.expect("renew"),
        "the old holder lost it"
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    let third = leases
        .acquire(&name, "a", minute)
        .await
        .expect("acquire")
        .expect("lapsed");
    assert_eq!(third.token, first.token + 2);
    assert!(!leases.renew(&second, minute).await.expect("renew"));
    leases
        .release(&second)
        .await
        .expect("a lost lease's release changes nothing");
    assert!(
        leases
            .acquire(&name, "c", minute)
            .await
            .expect("acquire")
            .is_none(),
        "still the third's"
    );

    // Four racing for a free lease: exactly one gets it.
    let raced = format!("{name}-raced");
    let race = |holder| leases.acquire(&raced, holder, minute);
    let (r0, r1, r2, r3) = tokio::join!(race("r0"), race("r1"), race("r2"), race("r3"));
    let won = [r0, r1, r2, r3]
        .into_iter()
        .filter(|won| won.as_ref().expect("acquire").is_some())
        .count();
    assert_eq!(won, 1);
}

#[tokio::test]
async fn leases_in_redis_keep_the_same_rules() {
    let Some(url) = stampede_testkit::redis_url() else {
        return;
    };
    let redis = stampede_redis::Redis::connect(&url, stampede_redis::Timeouts::default())
        .expect("a valid REDIS_URL");
    lease_rules(&redis).await;
}

store_tests! {
    async fn an_enqueue_rolls_back_with_its_transaction(t) {
        let mut tx = t.db.begin_write().await.expect("begin");
        queue::enqueue(&mut *tx, &NewJob::new("default", "noop", "{}")).await.expect("enqueue");
        tx.rollback().await.expect("rollback");
        assert!(queue::claim(&t.db, &["default"], "w", 10).await.expect("claim").is_empty());

        let mut tx = t.db.begin_write().await.expect("begin");
        queue::enqueue(&mut *tx, &NewJob::new("default", "noop", "{}")).await.expect("enqueue");
        tx.commit().await.expect("commit");
        assert_eq!(queue::claim(&t.db, &["default"], "w", 10).await.expect("claim").len(), 1);
    }

    async fn claims_take_the_best_ready_jobs_of_their_queues(t) {
        let later = NewJob { run_at: Some(now_ms() + 60_000), ..NewJob::new("default", "later", "") };
        enqueue(&t.db, later).await;
        enqueue(&t.db, NewJob { priority: 5, ..NewJob::new("default", "low", "") }).await;
        enqueue(&t.db, NewJob { priority: 1, ..NewJob::new("default", "high", "") }).await;
        enqueue(&t.db, NewJob::new("other", "elsewhere", "")).await;
        let kinds: Vec<String> = queue::claim(&t.db, &["default"], "w", 10).await.expect("claim").into_iter().map(|j| j.kind).collect();
        assert_eq!(kinds, ["high", "low"], "by priority; not the future job, not another queue");
        let other = queue::claim(&t.db, &["other", "default"], "w", 10).await.expect("claim");
        assert_eq!((other.len(), other[0].attempt), (1, 1));
    }

    async fn concurrent_claimers_never_share_a_job(t) {
        for i in 0..200 {
            enqueue(&t.db, NewJob::new("default", "noop", i.to_string())).await;
        }
        let db = Arc::new(t.db.clone());
        let claimers: Vec<_> = (0..8)
            .map(|w| {
                let db = Arc::clone(&db);
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    loop {
                        let jobs = queue::claim(&db, &["default"], &format!("w{w}"), 7).await.expect("claim");
                        if jobs.is_empty() {
                            return mine;
                        }
                        mine.extend(jobs.into_iter().map(|j| j.id));
                    }
                })
            })
            .collect();
        let mut all = Vec::new();
        for claimer in claimers {
            all.extend(claimer.await.expect("claimer"));
        }
        let distinct: HashSet<&String> = all.iter().collect();
        assert_eq!((all.len(), distinct.len()), (200, 200), "every job claimed exactly once");
    }

    async fn a_stale_attempt_cannot_report(t) {
        let id = enqueue(&t.db, NewJob::new("default", "noop", "")).await;
        let first = claim_one(&t.db, "stalled").await;
        age_heartbeats(&t.db).await;
        assert_eq!(queue::reclaim(&t.db, 30_000).await.expect("reclaim"), 1);
        let second = claim_one(&t.db, "fresh").await;
        assert_eq!((second.id.as_str(), second.attempt), (id.as_str(), 2));

        for stale in [
            queue::heartbeat(t.db.pool(), &first).await,
            queue::complete(t.db.pool(), &first).await,
            queue::release(t.db.pool(), &first).await,
            queue::fail(t.db.pool(), &first, "late", &Backoff::default()).await.map(drop),
        ] {
            assert!(matches!(stale, Err(JobError::Fenced { attempt: 1, .. })), "{stale:?}");
        }
        queue::complete(t.db.pool(), &second).await.expect("the current attempt completes");
        assert_eq!(queue::state(&t.db, &id).await.expect("state"), Some(("completed".into(), 2)));
        assert!(matches!(queue::complete(t.db.pool(), &second).await, Err(JobError::Fenced { .. })), "only once");
    }

    async fn a_completion_rolls_back_with_the_effects_it_fenced(t) {
        let id = enqueue(&t.db, NewJob::new("default", "noop", "")).await;
        let job = claim_one(&t.db, "w").await;
        let mut tx = t.db.begin_write().await.expect("begin");
        queue::complete(&mut *tx, &job).await.expect("complete");
        tx.rollback().await.expect("rollback");
        assert_eq!(queue::state(&t.db, &id).await.expect("state"), Some(("running".into(), 1)));
    }

    async fn a_batch_completion_fences_each_job_as_complete_would(t) {
        let retried = enqueue(&t.db, NewJob::new("default", "noop", "")).await;
        let stale = claim_one(&t.db, "stalled").await;
        age_heartbeats(&t.db).await;
        queue::reclaim(&t.db, 30_000).await.expect("reclaim");
        let current = claim_one(&t.db, "fresh").await;
        let fresh = enqueue(&t.db, NewJob::new("default", "noop", "")).await;
        let early = enqueue(&t.db, NewJob::new("default", "noop", "")).await;
        let jobs = queue::claim(&t.db, &["default"], "w", 10).await.expect("claim");
        let by_id = |id: &str| jobs.iter().find(|j| j.id == id).cloned().expect("claimed");
        queue::complete(t.db.pool(), &by_id(&early)).await.expect("complete alone");

        let batch = [stale, current, by_id(&fresh), by_id(&early), by_id(&fresh)];
        let outcomes = queue::complete_all(t.db.pool(), &batch).await.expect("complete_all");
        let fenced: Vec<Option<i64>> = outcomes
            .iter()
            .map(|o| match o {
                Ok(()) => None,
                Err(JobError::Fenced { attempt, .. }) => Some(*attempt),
                Err(other) => panic!("{other}"),
            })
            .collect();
        assert_eq!(fenced, [Some(1), None, None, Some(1), Some(1)], "stale attempt, current, fresh, already completed, listed twice");
        for (id, attempt) in [(&retried, 2), (&fresh, 1), (&early, 1)] {
            assert_eq!(queue::state(&t.db, id).await.expect("state"), Some(("completed".into(), attempt)));
        }
        assert!(queue::complete_all(t.db.pool(), &[]).await.expect("nothing").is_empty());
    }

    async fn a_batch_completion_rolls_back_with_its_transaction(t) {
        for _ in 0..3 {
            enqueue(&t.db, NewJob::new("default", "noop", "")).await;
        }
        let jobs = queue::claim(&t.db, &["default"], "w", 10).await.expect("claim");
        let mut tx = t.db.begin_write().await.expect("begin");
        let outcomes = queue::complete_all(&mut *tx, &jobs).await.expect("complete_all");
        assert!(outcomes.iter().all(Result::is_ok));
        tx.rollback().await.expect("rollback");
        for job in &jobs {
            assert_eq!(queue::state(&t.db, &job.id).await.expect("state"), Some(("running".into(), 1)));
        }
        assert!(queue::complete_all(t.db.pool(), &jobs).await.expect("again").iter().all(Result::is_ok));
    }

    async fn a_batch_enqueue_is_many_enqueues_in_one_statement(t) {
        let keyed = |key: &str| NewJob { unique_key: Some(key.into()), ..NewJob::new("default", "tick", "") };
        let taken = enqueue(&t.db, keyed("cron:a:1")).await;
        let batch = [NewJob::new("default", "plain", "{}"), keyed("cron:b:1"), keyed("cron:b:1"), keyed("cron:a:1")];
        let ids = queue::enqueue_all(t.db.pool(), &batch).await.expect("enqueue_all");
        assert_eq!(ids.iter().map(Option::is_some).collect::<Vec<_>>(), [true, true, false, false], "a key once, within the batch and across");
        let claimed: HashSet<String> = queue::claim(&t.db, &["default"], "w", 10).await.expect("claim").into_iter().map(|j| j.id).collect();
        let expected: HashSet<String> = ids.into_iter().flatten().chain([taken]).collect();
        assert_eq!(claimed, expected);
        assert!(queue::enqueue_all(t.db.pool(), &[]).await.expect("nothing").is_empty());
    }

    async fn failures_back_off_then_die(t) {
        let id = enqueue(&t.db, NewJob { max_attempts: 2, ..NewJob::new("default", "flaky", "") }).await;
        let job = claim_one(&t.db, "w").await;
        let before = now_ms();
        let retry = queue::fail(t.db.pool(), &job, "boom", &Backoff::default()).await.expect("fail");
        let Retry::At(at) = retry else { panic!("expected a retry, got {retry:?}") };
        assert!((before + 500..=now_ms() + 1000).contains(&at), "backoff of 0.5-1 s: {}", at - before);
        assert!(queue::claim(&t.db, &["default"], "w", 1).await.expect("claim").is_empty(), "not before run_at");

        sqlx::query("UPDATE jobs SET run_at = 0").execute(t.db.pool()).await.expect("skip the wait");
        let job = claim_one(&t.db, "w").await;
        assert_eq!(job.attempt, 2);
        let retry = queue::fail(t.db.pool(), &job, "boom again", &Backoff::default()).await.expect("fail");
        assert_eq!(retry, Retry::Dead);
        assert_eq!(queue::state(&t.db, &id).await.expect("state"), Some(("dead".into(), 2)));
    }

    async fn a_silent_last_attempt_is_dead_and_a_release_keeps_the_budget(t) {
        let lost = enqueue(&t.db, NewJob { max_attempts: 1, ..NewJob::new("default", "lost", "") }).await;
        claim_one(&t.db, "w").await;
        age_heartbeats(&t.db).await;
        queue::reclaim(&t.db, 30_000).await.expect("reclaim");
        assert_eq!(queue::state(&t.db, &lost).await.expect("state"), Some(("dead".into(), 1)));

        let kept = enqueue(&t.db, NewJob { max_attempts: 1, ..NewJob::new("default", "kept", "") }).await;
        let job = claim_one(&t.db, "w").await;
        queue::heartbeat(t.db.pool(), &job).await.expect("heartbeat");
        queue::release(t.db.pool(), &job).await.expect("release");
        let again = claim_one(&t.db, "w").await;
        assert_eq!((again.id.as_str(), again.attempt, again.max_attempts), (kept.as_str(), 2, 2));
    }

    async fn a_unique_key_is_enqueued_once(t) {
        let tick = NewJob { unique_key: Some("cron:expire:42".into()), ..NewJob::new("default", "expire", "") };
        assert!(queue::enqueue(t.db.pool(), &tick).await.expect("enqueue").is_some());
        assert!(queue::enqueue(t.db.pool(), &tick).await.expect("enqueue").is_none());
        let racing = NewJob { unique_key: Some("k".into()), ..tick.clone() };
        let (a, b) = tokio::join!(queue::enqueue(t.db.pool(), &racing), queue::enqueue(t.db.pool(), &racing));
        assert_eq!([a.expect("a"), b.expect("b")].iter().filter(|r| r.is_some()).count(), 1);
    }

    async fn a_lease_has_one_holder_and_growing_tokens(t) {
        lease_rules(&t.db).await;
    }
}
