//! The worker against real shop nodes and a real store: payments settle
//! (once), confirmations follow, unpaid reservations expire with their
//! stock returned, a worker killed mid-job loses nothing and repeats
//! nothing, and a schedule runs once per tick however many workers run.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Row;
use stampede_store::Db;
use stampede_testkit::TestDb;
use support::shop::{Api, Cluster, PASSWORD, WorkerProcess};

/// Polls `check` every 100 ms until it returns `Some`, for up to `limit`.
async fn eventually<T, F: Future<Output = Option<T>>>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn order_status(api: &Api, id: &str) -> String {
    let reply = api.clone().get(&format!("/api/v1/orders/{id}")).await;
    reply.json()["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Waits up to `seconds` for order `id` to reach `status`.
async fn status_becomes(api: &Api, id: &str, status: &str, seconds: u64) {
    let what = format!("{id} to be {status}");
    eventually(Duration::from_secs(seconds), &what, || async {
        (order_status(api, id).await == status).then_some(())
    })
    .await;
}

async fn scalar(db: &Db, sql: &'static str, bind: &str) -> i64 {
    let row = sqlx::query(sql)
        .bind(bind)
        .fetch_one(db.pool())
        .await
        .expect("query");
    row.try_get(0).expect("an integer")
}

/// A logged-in buyer of `VAX-001` with `n` orders, and their ids.
async fn buyer_with_orders(cluster: &Cluster, user: &str, n: usize) -> (Api, Vec<String>) {
    let mut api = cluster.api();
    assert_eq!(api.login(user, PASSWORD).await.status, 200);
    let mut ids = Vec::new();
    for _ in 0..n {
        let reply = api.order("VAX-001", 1, None).await;
        assert_eq!(reply.status, 201, "{}", reply.text());
        ids.push(reply.json()["order_id"].as_str().expect("id").to_owned());
    }
    (api, ids)
}

async fn shop(stock: i64, extra: &str) -> Cluster {
    let cluster = Cluster::start(TestDb::sqlite().await, 1, extra).await;
    let mut admin = cluster.admin();
    assert_eq!(admin.create_users("u", 3).await.status, 201);
    assert_eq!(admin.create_product("VAX-001", stock, 3).await.status, 201);
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_settle_once_and_confirmations_follow() {
    let cluster = shop(10, "").await;
    let worker =
        WorkerProcess::start(&cluster.db.url, "w1", &["--admin-listen", "127.0.0.1:0"]).await;
    let (mut api, ids) = buyer_with_orders(&cluster, "u0", 3).await;
    for (id, token) in ids.iter().zip(["tok_ok", "tok_fail", "tok_slow"]) {
        let reply = api
            .post(
                &format!("/api/v1/orders/{id}/pay"),
                &json!({ "payment_token": token }),
            )
            .await;
        assert_eq!(reply.status, 202, "{}", reply.text());
    }
    let wanted = ["confirmed", "payment_failed", "confirmed"];
    for (id, want) in ids.iter().zip(wanted) {
        status_becomes(&api, id, want, 10).await;
    }
    for (id, charges) in ids.iter().zip([1, 0, 1]) {
        assert_eq!(
            scalar(
                &cluster.db.db,
                "SELECT COUNT(*) FROM charges WHERE order_id = $1",
                id
            )
            .await,
            charges
        );
    }
    let stats = cluster.admin().stats("VAX-001").await;
    assert_eq!(
        (
            stats["confirmed"].clone(),
            stats["payment_failed"].clone(),
            stats["stock_left"].clone()
        ),
        (json!(2), json!(1), json!(8)),
        "the failed payment's unit is back on sale: {stats}"
    );
    let admin = worker.admin.expect("admin listener");
    // Depth gauges are refreshed every 5 s.
    let metrics = eventually(Duration::from_secs(10), "queue depth gauges", || async {
        let text = Api::new(&format!("http://{admin}"))
            .get("/metrics")
            .await
            .text();
        text.contains(r#"stampede_worker_queue_jobs{queue="payments""#)
            .then_some(text)
    })
    .await;
    for wanted in [
        r#"stampede_worker_jobs_total{queue="payments",kind="payment",outcome="completed"} 3"#,
        r#"stampede_worker_jobs_total{queue="payments",kind="confirm",outcome="completed"} 2"#,
        r#"stampede_worker_job_seconds_bucket{queue="payments",kind="payment""#,
        r#"stampede_worker_job_wait_seconds_count{queue="payments",kind="payment"} 3"#,
        r#"stampede_worker_job_attempt_count{queue="payments",kind="payment"} 3"#,
        r#"stampede_worker_queue_jobs{queue="payments",state="#,
    ] {
        assert!(metrics.contains(wanted), "no `{wanted}` in:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpaid_reservations_expire_and_their_stock_returns() {
    let cluster = shop(5, "[orders]\nhold = \"1s\"").await;
    let _worker = WorkerProcess::start(&cluster.db.url, "w1", &["--expire-every", "500ms"]).await;
    let (api, ids) = buyer_with_orders(&cluster, "u1", 2).await;
    for id in &ids {
        status_becomes(&api, id, "expired", 10).await;
    }
    let stats: Value = cluster.admin().stats("VAX-001").await;
    assert_eq!(
        (stats["expired"].clone(), stats["stock_left"].clone()),
        (json!(2), json!(5)),
        "{stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_loses_nothing_and_repeats_nothing() {
    let cluster = shop(5, "").await;
    let timeout = ["--visibility-timeout", "2s"];
    let mut doomed = WorkerProcess::start(&cluster.db.url, "doomed", &timeout).await;
    // tok_slow takes two seconds: long enough to be killed in the middle.
    let (api, id) = slow_payment_running(&cluster, "u2", "doomed").await;
    doomed.kill();
    assert_eq!(
        order_status(&api, &id).await,
        "paying",
        "killed before it paid"
    );

    let _rescuer = WorkerProcess::start(&cluster.db.url, "rescuer", &timeout).await;
    status_becomes(&api, &id, "confirmed", 15).await;
    let charges = "SELECT COUNT(*) FROM charges WHERE order_id = $1";
    assert_eq!(scalar(&cluster.db.db, charges, &id).await, 1);
    let attempt =
        "SELECT attempt FROM jobs WHERE kind = 'payment' AND payload LIKE '%' || $1 || '%'";
    assert_eq!(
        scalar(&cluster.db.db, attempt, &id).await,
        2,
        "the second attempt finished it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_run_a_one_second_schedule_once_per_tick() {
    let db = TestDb::sqlite().await;
    let args = ["--expire-every", "1s"];
    let mut workers = Vec::new();
    for name in ["w1", "w2", "w3"] {
        workers.push(WorkerProcess::start(&db.url, name, &args).await);
    }
    let first_tick = stampede_store::now_ms() / 1000 + 1;
    tokio::time::sleep(Duration::from_secs(31)).await;
    for worker in &workers {
        worker.terminate();
    }
    for worker in &mut workers {
        let status = worker.wait_exit(Duration::from_secs(15)).await;
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "{}",
            worker.stderr()
        );
    }
    let mut runs = Vec::new();
    for tick in first_tick..first_tick + 30 {
        let key = format!("cron:expire_reservations:{tick}");
        let row = sqlx::query(
            "SELECT COUNT(*), MIN(state), MAX(attempt) FROM jobs WHERE unique_key = $1",
        )
        .bind(&key)
        .fetch_one(db.db.pool())
        .await
        .expect("query");
        let (count, state, attempt): (i64, Option<String>, Option<i64>) = (
            row.try_get(0).expect("count"),
            row.try_get(1).expect("state"),
            row.try_get(2).expect("attempt"),
        );
        runs.push((tick, count, state, attempt));
    }
    let wrong: Vec<_> = runs
        .iter()
        .filter(|(_, count, state, attempt)| {
            (*count, state.as_deref(), *attempt) != (1, Some("completed"), Some(1))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "every one of 30 ticks ran exactly once; not these: {wrong:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_job_is_listed_and_retried_with_stampede_jobs() {
    let db = TestDb::sqlite().await;
    let job = stampede_jobs::NewJob {
        max_attempts: 1,
        ..stampede_jobs::NewJob::new("default", "no_such_kind", "{}")
    };
    let id = stampede_jobs::queue::enqueue(db.db.pool(), &job)
        .await
        .expect("enqueue")
        .expect("new");
    let _worker = WorkerProcess::start(&db.url, "w1", &[]).await;
    let state = || async {
        stampede_jobs::queue::state(&db.db, &id)
            .await
            .expect("state")
            .map(|s| s.0)
    };
    eventually(Duration::from_secs(10), "the job to die", || async {
        (state().await.as_deref() == Some("dead")).then_some(())
    })
    .await;

    let jobs = |args: &[&str]| {
        let mut command = support::stampede("jobs");
        command.args(["--database-url", &db.url]).args(args);
        support::run_to_end(command, "stampede jobs")
    };
    let listing = jobs(&[]).await;
    assert!(
        listing.stdout.contains("default") && listing.stdout.contains("dead"),
        "{}",
        listing.stdout
    );
    let dead = jobs(&["dead"]).await;
    assert!(
        dead.stdout.contains(&id) && dead.stdout.contains("no handler for kind `no_such_kind`"),
        "{}",
        dead.stdout
    );
    let retried = jobs(&["retry", &id]).await;
    assert!(retried.status.success(), "{}", retried.stderr);
    let missing = jobs(&["retry", "job_nope"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        missing.stderr.contains("no dead job `job_nope`"),
        "{}",
        missing.stderr
    );
    // The worker takes it again, fails again: dead again, after attempt 2.
    eventually(
        Duration::from_secs(10),
        "the retried job to die again",
        || async {
            let s = stampede_jobs::queue::state(&db.db, &id)
                .await
                .expect("state");
            (s == Some(("dead".to_owned(), 2))).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_dead_jobs_and_waits_are_counted_per_queue() {
    let db = TestDb::sqlite().await;
    // No handler for the kind: attempt 1 fails and is retried after the
    // backoff (about a second), attempt 2 fails for good.
    let job = stampede_jobs::NewJob {
        max_attempts: 2,
        ..stampede_jobs::NewJob::new("default", "no_such_kind", "{}")
    };
    stampede_jobs::queue::enqueue(db.db.pool(), &job)
        .await
        .expect("enqueue")
        .expect("new");
    let worker = WorkerProcess::start(&db.url, "w1", &["--admin-listen", "127.0.0.1:0"]).await;
    let admin = worker.admin.expect("admin listener");
    let labels = r#"{queue="default",kind="no_such_kind""#;
    let dead = format!(r#"stampede_worker_jobs_total{labels},outcome="dead"}} 1"#);
    let metrics = eventually(Duration::from_secs(10), "the job to die", || async {
        let text = Api::new(&format!("http://{admin}"))
            .get("/metrics")
            .await
            .text();
        text.contains(&dead).then_some(text)
    })
    .await;
    for wanted in [
        format!(r#"stampede_worker_jobs_total{labels},outcome="retrying"}} 1"#),
        format!("stampede_worker_job_wait_seconds_count{labels}}} 2"),
        format!("stampede_worker_job_seconds_count{labels}}} 2"),
    ] {
        assert!(metrics.contains(&wanted), "no `{wanted}` in:\n{metrics}");
    }
    // Each run was started well within the test's time: both waits are in
    // the buckets under 10 s.
    let under_ten = format!(r#"stampede_worker_job_wait_seconds_bucket{labels},le="10"}} 2"#);
    assert!(metrics.contains(&under_ten), "{metrics}");
}

/// Pays `VAX-001`'s first order of a new buyer with `tok_slow` (2 s) and
/// waits until worker `name` runs the payment.
async fn slow_payment_running(cluster: &Cluster, user: &str, name: &str) -> (Api, String) {
    let (mut api, ids) = buyer_with_orders(cluster, user, 1).await;
    let id = ids[0].clone();
    api.post(
        &format!("/api/v1/orders/{id}/pay"),
        &json!({ "payment_token": "tok_slow" }),
    )
    .await;
    let db = cluster.db.db.clone();
    eventually(
        Duration::from_secs(5),
        "the worker to start the payment",
        || {
            let db = db.clone();
            async move {
                let sql = "SELECT COUNT(*) FROM jobs WHERE state = 'running' AND worker = $1";
                (scalar(&db, sql, name).await == 1).then_some(())
            }
        },
    )
    .await;
    (api, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_running_jobs_or_hands_them_back() {
    let cluster = shop(5, "").await;
    // Enough drain time: the running payment finishes, then the worker exits 0.
    let mut patient = WorkerProcess::start(&cluster.db.url, "patient", &[]).await;
    let (api, id) = slow_payment_running(&cluster, "u0", "patient").await;
    patient.terminate();
    let status = patient.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{}",
        patient.stderr()
    );
    assert_eq!(
        order_status(&api, &id).await,
        "paid",
        "finished before exiting"
    );

    // Too little: the payment goes back to the queue with its attempt
    // returned, and the next worker finishes it, charging once.
    let mut hasty =
        WorkerProcess::start(&cluster.db.url, "hasty", &["--drain-timeout", "300ms"]).await;
    let (api, id) = slow_payment_running(&cluster, "u1", "hasty").await;
    hasty.terminate();
    let status = hasty.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", hasty.stderr());
    assert_eq!(
        order_status(&api, &id).await,
        "paying",
        "handed back unfinished"
    );
    let _next = WorkerProcess::start(&cluster.db.url, "next", &[]).await;
    status_becomes(&api, &id, "confirmed", 10).await;
    assert_eq!(
        scalar(
            &cluster.db.db,
            "SELECT COUNT(*) FROM charges WHERE order_id = $1",
            &id
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_worker_refuses_a_pool_without_connections() {
    let mut command = support::stampede("worker");
    command.args(["--database-url", "sqlite:///tmp/never.db"]);
    command.args(["--max-connections", "0"]);
    let run = support::run_to_end(command, "stampede worker").await;
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    assert!(run.stderr.contains("--max-connections"), "{}", run.stderr);
}
