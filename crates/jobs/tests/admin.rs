//! What `stampede jobs` shows and does, on both engines.

use stampede_jobs::admin::{self, Listing};
use stampede_jobs::queue::{self, Retry};
use stampede_jobs::{Backoff, NewJob};
use stampede_testkit::store_tests;

store_tests! {
    async fn depths_failures_and_a_dead_job_retried(t) {
        for kind in ["a", "b", "c"] {
            let job = NewJob { max_attempts: 1, ..NewJob::new("default", kind, "") };
            queue::enqueue(t.db.pool(), &job).await.expect("enqueue");
        }
        queue::enqueue(t.db.pool(), &NewJob::new("payments", "p", "")).await.expect("enqueue");
        let claimed = queue::claim(&t.db, &["default"], "w", 2).await.expect("claim");
        let dead = queue::fail(t.db.pool(), &claimed[0], "boom", &Backoff::default()).await.expect("fail");
        assert_eq!(dead, Retry::Dead);

        let depths: Vec<(String, String, i64)> = admin::depths(&t.db)
            .await
            .expect("depths")
            .into_iter()
            .map(|d| (d.queue, d.state, d.jobs))
            .collect();
        let expect = |q: &str, s: &str, n| (q.to_owned(), s.to_owned(), n);
        assert_eq!(
            depths,
            [expect("default", "available", 1), expect("default", "dead", 1), expect("default", "running", 1), expect("payments", "available", 1)]
        );
        let later = NewJob { run_at: Some(stampede_store::now_ms() + 60_000), ..NewJob::new("payments", "later", "") };
        queue::enqueue(t.db.pool(), &later).await.expect("enqueue");
        let by_queue = admin::queue_depths(&t.db, stampede_store::now_ms()).await.expect("queue depths");
        let depth = |queue: &str, ready, scheduled, running, dead| admin::QueueDepth { queue: queue.to_owned(), ready, scheduled, running, dead };
        assert_eq!(by_queue, [depth("default", 1, 0, 1, 1), depth("payments", 1, 1, 0, 0)]);
        let listed = admin::list(&t.db, Listing::Dead, 10).await.expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].last_error.as_deref(), Some("boom"));
        assert!(admin::list(&t.db, Listing::Failing, 10).await.expect("list").is_empty());

        assert!(admin::retry_dead(&t.db, &listed[0].id, 1).await.expect("retry"));
        assert!(!admin::retry_dead(&t.db, &listed[0].id, 1).await.expect("retry"), "no longer dead");
        let again = queue::claim(&t.db, &["default"], "w", 5).await.expect("claim");
        let retried = again.iter().find(|j| j.id == listed[0].id).expect("claimable again");
        assert_eq!((retried.attempt, retried.max_attempts), (2, 2));
    }

    async fn old_completed_jobs_are_pruned(t) {
        for kind in ["old", "new", "waiting"] {
            queue::enqueue(t.db.pool(), &NewJob::new("default", kind, "")).await.expect("enqueue");
        }
        for job in queue::claim(&t.db, &["default"], "w", 2).await.expect("claim") {
            queue::complete(t.db.pool(), &job).await.expect("complete");
        }
        sqlx::query("UPDATE jobs SET finished_at = 1 WHERE kind = 'old'").execute(t.db.pool()).await.expect("age");
        assert_eq!(admin::prune_completed(&t.db, 1_000, 10).await.expect("prune"), 1);
        let left: Vec<(String, i64)> = admin::depths(&t.db).await.expect("depths").into_iter().map(|d| (d.state, d.jobs)).collect();
        assert_eq!(left, [("available".to_owned(), 1), ("completed".to_owned(), 1)]);
    }
}
