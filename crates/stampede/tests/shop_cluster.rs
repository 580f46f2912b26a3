//! Several shop nodes on one store: sessions valid on every node, a crowd
//! racing for a few units through the gateway without breaking a single
//! invariant of the contract (on SQLite and on PostgreSQL), and
//! acknowledged orders surviving a node killed mid-sale.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use stampede_testkit::TestDb;
use support::shop::{Api, Cluster, PASSWORD, ShopNode};
use tokio::sync::Semaphore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_made_on_one_node_works_and_ends_on_every_node() {
    let cluster = Cluster::start(TestDb::sqlite().await, 2, "").await;
    assert_eq!(cluster.admin().create_users("u", 1).await.status, 201);
    let mut on_first = Api::new(&cluster.nodes[0].url(""));
    assert_eq!(on_first.login("u0", PASSWORD).await.status, 200);
    let mut on_second = on_first.via(&cluster.nodes[1].url(""));
    assert_eq!(
        on_second.get("/api/v1/me").await.json(),
        json!({ "username": "u0" })
    );
    assert_eq!(
        on_second.post("/api/v1/logout", &json!({})).await.status,
        204
    );
    // `on_first` still sends the old cookie: the first node refuses it too.
    assert_eq!(on_first.get("/api/v1/me").await.status, 401);
}

/// Logs in `n` users (`u0..`) through the front door, 32 at a time.
async fn log_in_all(cluster: &Cluster, n: usize) -> Vec<Api> {
    let gate = Arc::new(Semaphore::new(32));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (gate, mut api) = (Arc::clone(&gate), cluster.api());
            tokio::spawn(async move {
                let _permit = gate.acquire().await;
                let reply = api.login(&format!("u{i}"), PASSWORD).await;
                assert_eq!(reply.status, 200, "{}", reply.text());
                api
            })
        })
        .collect();
    let mut apis = Vec::new();
    for task in tasks {
        apis.push(task.await.expect("login task"));
    }
    apis
}

/// Hundreds of users race for a few dozen units with `per_user_limit` 1:
/// each sends the same keyed request twice and an unkeyed one, all at once.
async fn a_crowd_keeps_every_invariant(db: TestDb) {
    let (buyers, stock) = (300, 40);
    let cluster = Cluster::start(db, 3, "").await;
    let mut admin = cluster.admin();
    assert_eq!(admin.create_users("u", buyers).await.status, 201);
    assert_eq!(admin.create_product("HOT-1", stock, 1).await.status, 201);
    let apis = log_in_all(&cluster, buyers).await;

    let start = Arc::new(tokio::sync::Barrier::new(buyers * 3));
    let mut tasks = Vec::new();
    for (user, api) in apis.iter().enumerate() {
        for key in [Some("same"), Some("same"), None] {
            let (mut api, start) = (api.clone(), Arc::clone(&start));
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                (user, api.order("HOT-1", 1, key).await)
            }));
        }
    }
    let mut won: HashMap<usize, HashSet<String>> = HashMap::new();
    for task in tasks {
        let (user, reply) = task.await.expect("order task");
        match reply.status.as_u16() {
            201 => {
                let id = reply.json()["order_id"]
                    .as_str()
                    .expect("order_id")
                    .to_owned();
                won.entry(user).or_default().insert(id);
            }
            409 => assert!(
                ["sold_out", "limit_exceeded"]
                    .contains(&reply.json()["error"].as_str().unwrap_or(""))
            ),
            other => panic!("unexpected {other}: {}", reply.text()),
        }
    }

    // Never oversold, never lost: one order per unit, stock conserved.
    let orders: usize = won.values().map(HashSet::len).sum();
    assert_eq!(orders, stock as usize, "every unit sold exactly once");
    let stats = admin.stats("HOT-1").await;
    assert_eq!(stats["stock_left"], 0, "{stats}");
    assert_eq!(stats["reserved"], stock, "{stats}");
    // Never over the limit, and every 201 names an order that exists.
    for (user, ids) in &won {
        assert_eq!(ids.len(), 1, "u{user} holds {ids:?}");
        let mut api = apis[*user].clone();
        for id in ids {
            let order = api.get(&format!("/api/v1/orders/{id}")).await;
            assert_eq!(order.json()["status"], "reserved", "{}", order.text());
        }
    }
    // The sold-out product reads as sold out on every node within a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for node in &cluster.nodes {
        let product: Value = Api::new(&node.url(""))
            .get("/api/v1/products/HOT-1")
            .await
            .json();
        assert_eq!(
            (product["stock_left"].clone(), product["sold_out"].clone()),
            (json!(0), json!(true))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_keeps_every_invariant_on_sqlite() {
    a_crowd_keeps_every_invariant(TestDb::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_keeps_every_invariant_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        a_crowd_keeps_every_invariant(db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_orders_survive_a_killed_node() {
    let db = TestDb::sqlite().await;
    let mut node = ShopNode::start(&db.url, "doomed", "").await;
    let mut admin = Api::admin(&node.url(""));
    admin.create_users("u", 5).await;
    admin.create_product("VAX-001", 10, 1).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut api = Api::new(&node.url(""));
        api.login(&format!("u{i}"), PASSWORD).await;
        let reply = api.order("VAX-001", 1, None).await;
        assert_eq!(reply.status, 201, "{}", reply.text());
        ids.push((
            api,
            reply.json()["order_id"].as_str().expect("id").to_owned(),
        ));
    }
    node.kill();

    let revived = ShopNode::start(&db.url, "revived", "").await;
    for (api, id) in &ids {
        let reply = api
            .via(&revived.url(""))
            .get(&format!("/api/v1/orders/{id}"))
            .await;
        assert_eq!(reply.status, 200, "order {id} lost: {}", reply.text());
    }
    let stats = Api::admin(&revived.url("")).stats("VAX-001").await;
    assert_eq!(
        (stats["reserved"].clone(), stats["stock_left"].clone()),
        (json!(5), json!(5))
    );
}
