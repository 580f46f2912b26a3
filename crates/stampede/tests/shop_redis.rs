//! Shop nodes keeping their sessions in a real Redis (`redis_url`): a
//! session made on one node works on another and ends on every node, none
//! of it in the database; and when Redis goes away, what needs a session
//! answers `503 unavailable` (not a hang, not a 500), and the nodes serve
//! again by themselves when it is back.
//!
//! And a sku sold out on one node is sold out on the others at once, not a
//! second later when their cached copies expire.
//!
//! The first test uses the Redis of `REDIS_URL` (skipped, saying so,
//! without it). The others run a `redis-server` of their own on a free
//! port, to stop and restart it or to count who listens on it; where
//! `REDIS_URL` is set (CI) that program must be installed.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use stampede_testkit::TestDb;
use support::redis::OwnRedis;
use support::shop::{Api, PASSWORD, ShopNode};
use support::within;

/// Two nodes on one SQLite database, with sessions in the Redis at `url`.
async fn two_nodes(db: &TestDb, url: &str) -> [ShopNode; 2] {
    let top = format!("redis_url = \"{url}\"");
    [
        ShopNode::start_with(&db.url, "shop-1", &top, "").await,
        ShopNode::start_with(&db.url, "shop-2", &top, "").await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_in_redis_works_and_ends_on_every_node() {
    let Some(url) = stampede_testkit::redis_url() else {
        return;
    };
    let db = TestDb::sqlite().await;
    let nodes = two_nodes(&db, &url).await;
    let created = Api::admin(&nodes[0].url(""))
        .create_users("redis-u", 1)
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let mut on_first = Api::new(&nodes[0].url(""));
    let login = on_first.login("redis-u0", PASSWORD).await;
    assert_eq!(login.status, 200, "{}", login.text());
    let mut on_second = on_first.via(&nodes[1].url(""));
    assert_eq!(
        on_second.get("/api/v1/me").await.json(),
        json!({ "username": "redis-u0" })
    );
    let in_database: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
        .fetch_one(db.db.pool())
        .await
        .expect("count sessions");
    assert_eq!(in_database, 0, "the session is in Redis, not the database");
    assert_eq!(
        on_second.post("/api/v1/logout", &json!({})).await.status,
        204
    );
    assert_eq!(on_first.get("/api/v1/me").await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_sessions_answer_503_and_come_back_with_it() {
    let Some(mut redis) = OwnRedis::start().await else {
        return;
    };
    let db = TestDb::sqlite().await;
    let url = redis.url();
    let nodes = two_nodes(&db, &url).await;
    let base = nodes[0].url("");
    assert_eq!(
        Api::admin(&base).create_users("gone-u", 1).await.status,
        201
    );
    let mut user = Api::new(&base);
    assert_eq!(user.login("gone-u0", PASSWORD).await.status, 200);

    redis.stop().await;
    let me = within(
        Duration::from_secs(10),
        "an answer without Redis",
        user.get("/api/v1/me"),
    )
    .await;
    assert_eq!(me.status, 503, "{}", me.text());
    assert_eq!(me.json()["error"], "unavailable", "{}", me.text());
    assert_eq!(me.headers["retry-after"], "1");
    let login = Api::new(&base).login("gone-u0", PASSWORD).await;
    assert_eq!(login.status, 503, "{}", login.text());
    let products = Api::new(&base).get("/api/v1/products").await;
    assert_eq!(products.status, 200, "what needs no session still works");
    assert_eq!(Api::new(&base).get("/readyz").await.status, 503);

    // Back (empty: it keeps nothing on disk): a new login works again.
    redis.restart().await;
    let mut again = Api::new(&base);
    within(
        Duration::from_secs(10),
        "the nodes to use Redis again",
        async {
            while again.login("gone-u0", PASSWORD).await.status != 200 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        },
    )
    .await;
    assert_eq!(again.get("/api/v1/me").await.status, 200);
    assert_eq!(again.get("/readyz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sku_sold_out_on_one_node_is_sold_out_on_the_other_at_once() {
    let Some(server) = OwnRedis::start().await else {
        return;
    };
    let url = server.url();
    let db = TestDb::sqlite().await;
    let nodes = two_nodes(&db, &url).await;
    let mut admin = Api::admin(&nodes[0].url(""));
    assert_eq!(admin.create_product("LAST-1", 1, 1).await.status, 201);
    assert_eq!(admin.create_users("last-u", 1).await.status, 201);
    let mut buyer = Api::new(&nodes[0].url(""));
    assert_eq!(buyer.login("last-u0", PASSWORD).await.status, 200);
    let redis = stampede_redis::Redis::connect(&url, stampede_redis::Timeouts::default())
        .expect("a Redis URL");
    within(
        Duration::from_secs(10),
        "both nodes to follow the flag",
        async {
            while stampede_redis::sold_out::followers(&redis).await.ok() != Some(2) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        },
    )
    .await;

    // The second node caches the product (good for a second), then the
    // first node sells its last unit.
    let mut watcher = Api::new(&nodes[1].url(""));
    let before = watcher.get("/api/v1/products/LAST-1").await.json();
    assert_eq!(before["sold_out"], false, "{before}");
    assert_eq!(buyer.order("LAST-1", 1, None).await.status, 201);
    let sold = Instant::now();
    within(
        Duration::from_secs(5),
        "the second node to see it sold out",
        async {
            while watcher.get("/api/v1/products/LAST-1").await.json()["sold_out"] != true {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        },
    )
    .await;
    assert!(
        sold.elapsed() < Duration::from_millis(400),
        "seen after {:?}, as late as its cached copy expiring",
        sold.elapsed()
    );
}
