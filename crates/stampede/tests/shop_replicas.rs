//! A shop node reading from a real streaming replica of the PostgreSQL of
//! `DATABASE_URL` (skipped, saying so, without it): order lists and
//! lookups come from the replica, except for a client right after its own
//! write (read-your-writes); a replica lagging past `replica_max_lag` is
//! skipped until it catches up; and one that goes away costs no errors and
//! is used again when it is back.
//!
//! Routing is proven by what only the replica shows: with its replay
//! paused, an order just made on the primary is missing there. A test in
//! which every read went to the primary therefore fails.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use stampede_testkit::TestDb;
use support::shop::{Api, PASSWORD, ShopNode};
use support::standby::Standby;
use support::within;

const SKU: &str = "REPLICA-1";

/// One user's sale on a node with one replica. Fields drop in order: the
/// node, then the standby, then the database.
struct Sale {
    _node: ShopNode,
    standby: Standby,
    db: TestDb,
    /// The client that writes (and is pinned to the primary by it).
    writer: Api,
    /// Another client (another device) of the same user, which does not
    /// write.
    reader: Api,
}

impl Sale {
    /// A database, a standby of it, and a node reading from the standby
    /// with `database`, more `[database]` keys.
    async fn start(database: &str) -> Option<Sale> {
        // The standby copies the whole server: the database comes first.
        let db = TestDb::postgres().await?;
        let standby = Standby::start(&db).await;
        let extra = format!(
            "[database]\nreplicas = [{}]\n{database}",
            Value::from(standby.url())
        );
        let node = ShopNode::start(&db.url, "shop-1", &extra).await;
        let base = node.url("");
        let mut admin = Api::admin(&base);
        assert_eq!(admin.create_users("reader-u", 1).await.status, 201);
        assert_eq!(admin.create_product(SKU, 1_000, 1_000).await.status, 201);
        let mut writer = Api::new(&base);
        assert_eq!(writer.login("reader-u0", PASSWORD).await.status, 200);
        let mut reader = Api::new(&base);
        assert_eq!(reader.login("reader-u0", PASSWORD).await.status, 200);
        Some(Sale {
            _node: node,
            standby,
            db,
            writer,
            reader,
        })
    }

    /// The writer orders one unit; returns the order's id and its
    /// `Set-Cookie` header.
    async fn order(&mut self) -> (String, String) {
        let reply = self.writer.order(SKU, 1, None).await;
        assert_eq!(reply.status, 201, "{}", reply.text());
        let id = reply.json()["order_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (id, reply.header("set-cookie").unwrap_or_default())
    }

    /// Proves the node reads from the replica: pauses its replay, orders,
    /// and waits (up to `limit`) for the reader's list to miss the order,
    /// which only the replica can. Returns what [`Sale::order`] does.
    async fn replica_serves(&mut self, limit: Duration) -> (String, String) {
        self.standby.pause_caught_up(&self.db.db).await;
        let (id, cookie) = self.order().await;
        let reader = &mut self.reader;
        within(
            limit,
            "a list from the replica, without the new order",
            async {
                while listed(reader).await.contains_key(&id) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        )
        .await;
        (id, cookie)
    }
}

/// `GET /api/v1/orders` as order id -> status; it must answer `200`.
async fn listed(api: &mut Api) -> std::collections::BTreeMap<String, String> {
    let reply = api.get("/api/v1/orders").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let orders = reply.json()["orders"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    orders
        .iter()
        .map(|o| (text(&o["order_id"]), text(&o["status"])))
        .collect()
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_reads_come_from_the_replica_but_a_writer_reads_its_writes() {
    // A bound generous enough that the paused replica stays in use.
    let keys = "replica_max_lag = \"60s\"\nread_your_writes = \"2s\"\n";
    let Some(mut sale) = Sale::start(keys).await else {
        return;
    };
    let (id, cookie) = sale.replica_serves(Duration::from_secs(5)).await;
    let one = format!("/api/v1/orders/{id}");
    assert_eq!(sale.reader.get(&one).await.status, 404, "not replayed yet");

    // The writer carries the pin and reads from the primary.
    for flag in [
        "stampede_primary=1",
        "Max-Age=2",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
    ] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    assert!(listed(&mut sale.writer).await.contains_key(&id));
    assert_eq!(sale.writer.get(&one).await.status, 200);
    // When the pin expires, the writer reads from the replica too.
    sale.writer.forget_cookie("stampede_primary");
    assert!(!listed(&mut sale.writer).await.contains_key(&id));

    // A write through the other client pins that client.
    let cancel = sale
        .reader
        .post(&format!("{one}/cancel"), &serde_json::json!({}))
        .await;
    assert_eq!(cancel.status, 200, "{}", cancel.text());
    assert_eq!(listed(&mut sale.reader).await[&id], "cancelled");

    // Replaying again, the replica shows it all to the unpinned client.
    sale.standby.resume().await;
    let writer = &mut sale.writer;
    within(Duration::from_secs(5), "the replica to catch up", async {
        while listed(writer).await.get(&id).map(String::as_str) != Some("cancelled") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_is_skipped_and_used_again_when_it_catches_up() {
    let max_lag = Duration::from_secs(2);
    let Some(mut sale) = Sale::start("replica_max_lag = \"2s\"\n").await else {
        return;
    };
    let written = Instant::now();
    let (id, _) = sale.replica_serves(Duration::from_secs(1)).await;

    // Paused, the replica falls behind the order; past the bound (plus a
    // check, 250 ms) reads go to the primary, which has it.
    let reader = &mut sale.reader;
    within(
        Duration::from_secs(10),
        "reads to leave the lagging replica",
        async {
            while !listed(reader).await.contains_key(&id) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        },
    )
    .await;
    let skipped_after = written.elapsed();
    assert!(
        skipped_after <= max_lag + Duration::from_millis(1_000),
        "skipped only after {skipped_after:?}"
    );
    for _ in 0..5 {
        assert!(
            listed(&mut sale.reader).await.contains_key(&id),
            "stays skipped"
        );
    }

    // Replaying again, it catches up and serves again.
    sale.standby.resume().await;
    sale.replica_serves(Duration::from_secs(1)).await;
    sale.standby.resume().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_goes_away_costs_no_errors_and_comes_back() {
    let Some(mut sale) = Sale::start("replica_max_lag = \"3s\"\n").await else {
        return;
    };
    let (id, _) = sale.replica_serves(Duration::from_secs(2)).await;

    // Gone: every read still answers 200 (`listed` checks), from the
    // primary, which has the order the paused replica missed.
    sale.standby.stop();
    let gone = Instant::now();
    let mut reads = 0;
    while gone.elapsed() < Duration::from_secs(3) {
        assert!(listed(&mut sale.reader).await.contains_key(&id));
        reads += 1;
    }
    assert!(reads > 10, "only {reads} reads in 3 s");

    // Back (replaying: a restart forgets the pause), it serves again.
    sale.standby.restart();
    sale.replica_serves(Duration::from_secs(2)).await;
    sale.standby.resume().await;
}

/// How many scans the replica has counted on the products table.
async fn product_scans(url: &str) -> i64 {
    use sqlx::Connection;
    let mut replica = sqlx::AnyConnection::connect(url)
        .await
        .expect("the replica");
    let sql = "SELECT CAST(COALESCE(seq_scan, 0) + COALESCE(idx_scan, 0) AS BIGINT) \
               FROM pg_stat_user_tables WHERE relname = 'products'";
    sqlx::query_scalar(sql)
        .fetch_one(&mut replica)
        .await
        .expect("scan counts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_pages_load_from_a_replica_only_half_a_second_behind() {
    // Order lists may come from a replica a minute behind; product pages,
    // which the contract lets lag by a second at most, may not.
    let Some(mut sale) = Sale::start("replica_max_lag = \"60s\"\n").await else {
        return;
    };
    let page = format!("/api/v1/products/{SKU}");
    let before = product_scans(sale.standby.url()).await;
    // The entry the product's creation left on the node expires first.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(sale.reader.get(&page).await.status, 200);
    let url = sale.standby.url().to_owned();
    within(
        Duration::from_secs(15),
        "the replica to count the page's load",
        async {
            while product_scans(&url).await == before {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        },
    )
    .await;

    // Paused, the replica falls behind a rename on the primary: once it is
    // half a second behind, pages load from the primary.
    sale.standby.pause_caught_up(&sale.db.db).await;
    sqlx::query("UPDATE products SET name = 'Renamed' WHERE sku = $1")
        .bind(SKU)
        .execute(sale.db.db.pool())
        .await
        .expect("rename on the primary");
    let reader = &mut sale.reader;
    within(Duration::from_secs(5), "the primary's name", async {
        while reader.get(&page).await.json()["name"] != "Renamed" {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    sale.standby.resume().await;
}
