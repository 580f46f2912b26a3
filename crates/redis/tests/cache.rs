//! The shared cache level against the real Redis of `REDIS_URL` (skipped,
//! saying so, without it): a value put by one node is read by another with
//! what is left of its freshness, never more, and is gone once forgotten
//! or stale.

use std::time::Duration;

use stampede_redis::{Redis, Timeouts, cache};

fn node(url: &str) -> Redis {
    Redis::connect(url, Timeouts::default()).expect("a valid REDIS_URL")
}

#[tokio::test]
async fn a_value_keeps_only_the_freshness_it_had_left() {
    let Some(url) = stampede_testkit::redis_url() else {
        return;
    };
    let (one, other) = (node(&url), node(&url));
    let name = format!("test:{}:{:016x}", std::process::id(), fastrand::u64(..));
    cache::put(&one, &name, "{\"stock\":3}", Duration::from_millis(800))
        .await
        .expect("Redis at REDIS_URL must answer");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (value, fresh_for) = cache::get(&other, &name)
        .await
        .expect("get")
        .expect("still fresh");
    assert_eq!(value, "{\"stock\":3}");
    assert!(
        fresh_for <= Duration::from_millis(500) && fresh_for > Duration::ZERO,
        "{fresh_for:?} left of 800 ms after 300 ms"
    );
    cache::forget(&other, &[&name]).await.expect("forget");
    assert_eq!(cache::get(&one, &name).await.expect("get"), None);

    cache::put(&one, &name, "x", Duration::from_millis(50))
        .await
        .expect("put");
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(cache::get(&one, &name).await.expect("get"), None, "stale");
}
