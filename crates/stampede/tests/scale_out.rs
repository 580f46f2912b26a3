//! The scale-out tier as it runs across machines, on one: three shop nodes
//! and two workers on PostgreSQL and Redis, behind the gateway. A storm
//! through the front door sells out without breaking an invariant while
//! Redis is restarted in the middle of it; a session made on one node is
//! good on the others, before and after the restart; and the workers go on
//! paying and confirming orders.
//!
//! PostgreSQL comes from `DATABASE_URL` (a database of the test's own);
//! Redis is a `redis-server` of the test's own, with an append-only file as
//! a session store should have, so that it can be restarted. Skipped,
//! saying so, without them.

mod support;

use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};
use stampede_testkit::TestDb;
use support::redis::OwnRedis;
use support::shop::{ADMIN_TOKEN, Api, Cluster, PASSWORD, WorkerProcess};
use support::{stampede, within};

const STOCK: i64 = 60;
const SKU: &str = "SCALE-1";

/// Runs `stampede storm` through `target` on its own thread.
fn storm(target: &str) -> tokio::task::JoinHandle<Output> {
    let mut command = stampede("storm");
    command
        .args(["--target", target, "--admin-token", ADMIN_TOKEN])
        .args([
            "--users",
            "300",
            "--stock",
            &STOCK.to_string(),
            "--sku",
            SKU,
        ])
        // An open loop over about six seconds, so Redis goes away while
        // users are still arriving.
        .args(["--rate", "50", "--read-ratio", "0.2", "--duration", "60s"])
        .args(["--seed", "7", "--json", "--quiet"]);
    tokio::task::spawn_blocking(move || command.output().expect("run stampede storm"))
}

/// Waits until the storm's crowd has reserved something.
async fn sale_under_way(admin: &mut Api) {
    within(Duration::from_secs(60), "the storm's first orders", async {
        loop {
            let all = admin.get("/api/v1/admin/stats").await.json();
            let reserved = all["skus"]
                .as_array()
                .and_then(|skus| skus.iter().find(|s| s["sku"] == SKU))
                .map_or(0, |s| s["reserved"].as_i64().unwrap_or(0));
            if reserved > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// `/api/v1/me` on every node with `user`'s cookie.
async fn me_everywhere(cluster: &Cluster, user: &Api) -> Vec<Value> {
    let mut seen = Vec::new();
    for node in &cluster.nodes {
        seen.push(user.via(&node.url("")).get("/api/v1/me").await.json());
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_and_two_workers_ride_out_a_redis_restart_mid_storm() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let Some(mut redis) = OwnRedis::durable().await else {
        return;
    };
    let top = format!("redis_url = \"{}\"", redis.url());
    let cluster = Cluster::start_with(db, 3, &top, "").await;
    let pool = ["--max-connections", "4"];
    let _workers = [
        WorkerProcess::start(&cluster.db.url, "w1", &pool).await,
        WorkerProcess::start(&cluster.db.url, "w2", &pool).await,
    ];
    let mut admin = cluster.admin();
    assert_eq!(admin.create_users("held", 1).await.status, 201);
    assert_eq!(admin.create_product("PAID-1", 5, 1).await.status, 201);

    // A session made on the first node is good on all three.
    let mut held = Api::new(&cluster.nodes[0].url(""));
    assert_eq!(held.login("held0", PASSWORD).await.status, 200);
    let me = json!({ "username": "held0" });
    assert_eq!(me_everywhere(&cluster, &held).await, vec![me.clone(); 3]);

    let run = storm(&cluster.gateway.url(""));
    sale_under_way(&mut admin).await;
    redis.stop().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.restart().await;
    let output = within(Duration::from_secs(120), "the storm", run)
        .await
        .expect("storm thread");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    assert_eq!(report["invariants"]["violation_count"], 0, "{report:#}");
    assert_eq!(report["crowd"]["units_sold"], STOCK, "{report:#}");
    assert_eq!(report["invariants"]["stats"]["stock_left"], 0);
    let shed = report["statuses"]["503"].as_u64().unwrap_or(0);
    assert!(shed > 0, "Redis was away mid-run: {:#}", report["statuses"]);

    // The session survived the restart, on every node; the workers pay and
    // confirm an order placed after it.
    assert_eq!(me_everywhere(&cluster, &held).await, vec![me.clone(); 3]);
    let mut buyer = held.via(&cluster.gateway.url(""));
    let order = buyer.order("PAID-1", 1, None).await;
    assert_eq!(order.status, 201, "{}", order.text());
    let id = order.json()["order_id"].as_str().expect("id").to_owned();
    let pay = json!({ "payment_token": "tok_ok" });
    let paid = buyer.post(&format!("/api/v1/orders/{id}/pay"), &pay).await;
    assert_eq!(paid.status, 202, "{}", paid.text());
    within(Duration::from_secs(15), "a worker to confirm", async {
        while buyer.get(&format!("/api/v1/orders/{id}")).await.json()["status"] != "confirmed" {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}
