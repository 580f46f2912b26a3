//! A store that goes away and comes back: while PostgreSQL is unreachable
//! a node answers `503` (never hangs, never panics), `/readyz` says so and
//! `/healthz` does not; when it returns, the node recovers by itself.
//! Needs PostgreSQL (DATABASE_URL); the outage is a relay the test cuts.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use stampede_testkit::TestDb;
use support::relay::Relay;
use support::shop::{Api, PASSWORD, ShopNode};

/// `url` with its `host:port` replaced by `addr`, and that `host:port`.
fn through(url: &str, addr: SocketAddr) -> (String, SocketAddr) {
    let start = url
        .find('@')
        .map_or_else(|| url.find("://").map_or(0, |i| i + 3), |i| i + 1);
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let target = url[start..end]
        .parse()
        .expect("DATABASE_URL must name host:port by IP");
    (format!("{}{addr}{}", &url[..start], &url[end..]), target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_store_gives_503_and_the_node_recovers() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let (_, target) = through(&db.url, "127.0.0.1:1".parse().expect("addr"));
    let mut relay = Relay::start(target).await;
    let (url, _) = through(&db.url, relay.addr);
    let node = ShopNode::start(&url, "shop", "[database]\nacquire_timeout = \"1s\"").await;
    let mut admin = Api::admin(&node.url(""));
    admin.create_users("u", 1).await;
    admin.create_product("VAX-001", 10, 5).await;
    let mut api = Api::new(&node.url(""));
    assert_eq!(api.login("u0", PASSWORD).await.status, 200);
    assert_eq!(api.order("VAX-001", 1, None).await.status, 201);

    relay.cut().await;
    let started = Instant::now();
    let reply = api.order("VAX-001", 1, None).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.json()["error"], "unavailable");
    assert_eq!(reply.header("retry-after").as_deref(), Some("1"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered in {:?}",
        started.elapsed()
    );
    assert_eq!(api.get("/readyz").await.status, 503);
    assert_eq!(api.get("/healthz").await.status, 200);
    assert_eq!(api.get("/api/v1/me").await.status, 503);

    relay.restore().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = api.order("VAX-001", 1, None).await;
        if reply.status == 201 {
            break;
        }
        assert_eq!(reply.status, 503, "{}", reply.text());
        assert!(Instant::now() < deadline, "no recovery within 10 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(api.get("/readyz").await.status, 200);
    let stats = admin.stats("VAX-001").await;
    assert_eq!(
        (stats["reserved"].clone(), stats["stock_left"].clone()),
        (json!(2), json!(8))
    );
}
