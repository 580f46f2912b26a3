//! Sessions against the real Redis of `REDIS_URL` (skipped, saying so,
//! without it): written by one handle and read by another, as two nodes
//! would; forgotten by Redis when their TTL runs out; deleted for every
//! node at once. And a Redis that is not there: a clear error within the
//! timeouts, never a hang.

use std::time::{Duration, Instant};

use stampede_redis::{Redis, Timeouts, sessions};

fn unique(what: &str) -> String {
    format!("{what}-{}-{:016x}", std::process::id(), fastrand::u64(..))
}

fn node(url: &str) -> Redis {
    Redis::connect(url, Timeouts::default()).expect("a valid REDIS_URL")
}

#[tokio::test]
async fn a_session_written_by_one_node_is_read_by_another_until_deleted() {
    let Some(url) = stampede_testkit::redis_url() else {
        return;
    };
    let (one, other) = (node(&url), node(&url));
    let (live, unknown) = (unique("live"), unique("unknown"));
    sessions::create(&one, &live, "alice", Duration::from_secs(60))
        .await
        .expect("Redis at REDIS_URL must answer");
    let found = sessions::usernames(&other, &[&live, &unknown, &live])
        .await
        .expect("lookup");
    assert_eq!(
        found,
        [
            (live.clone(), "alice".to_owned()),
            (live.clone(), "alice".to_owned())
        ]
    );
    sessions::delete(&other, &live).await.expect("delete");
    assert_eq!(
        sessions::usernames(&one, &[&live]).await.expect("lookup"),
        []
    );
    sessions::delete(&one, &live)
        .await
        .expect("deleting twice is fine");
}

#[tokio::test]
async fn redis_forgets_a_session_when_its_ttl_runs_out() {
    let Some(url) = stampede_testkit::redis_url() else {
        return;
    };
    let redis = node(&url);
    let short = unique("short");
    sessions::create(&redis, &short, "bob", Duration::from_millis(150))
        .await
        .expect("Redis at REDIS_URL must answer");
    assert_eq!(
        sessions::usernames(&redis, &[&short])
            .await
            .expect("lookup")
            .len(),
        1
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        sessions::usernames(&redis, &[&short])
            .await
            .expect("lookup"),
        []
    );
}

#[tokio::test]
async fn a_redis_that_is_not_there_fails_quickly_and_clearly() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let redis = node(&format!("redis://127.0.0.1:{port}"));
    let started = Instant::now();
    let error = sessions::usernames(&redis, &["any"])
        .await
        .expect_err("nothing listens");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(error.to_string().starts_with("Redis:"), "{error}");
}
