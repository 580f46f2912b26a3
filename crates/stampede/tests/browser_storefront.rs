//! The storefront in a real browser (headless Chromium, `support::browser`)
//! against the real system: a gateway serving the exported assets itself
//! and proxying the rest to a shop node, and a worker running the payment
//! and confirmation jobs, on SQLite. The scenarios log in, wait for a
//! countdown, buy, pay and see the order confirmed, meet the per-user
//! limit and a sold-out product, see a hostile product name as text, buy
//! and pay again with JavaScript off, and have a forged cross-site form
//! refused.

mod support;

use std::time::Duration;

use serde_json::json;
use stampede_testkit::TestDb;
use support::browser::run_scenario;
use support::shop::{Api, PASSWORD, ShopNode, WorkerProcess};
use support::{Gateway, TempDir, run_to_end, stampede};

/// How far ahead the countdown's sale starts: long enough to see the
/// countdown, short enough to wait for.
const SALE_DELAY: Duration = Duration::from_secs(8);

/// The system under test, stopped when dropped.
struct System {
    _assets: TempDir,
    _worker: WorkerProcess,
    gateway: Gateway,
    _node: ShopNode,
    _db: TestDb,
}

impl System {
    /// The shape `stampede up` runs: assets exported for the gateway's
    /// static route, a node behind it, a worker.
    async fn start() -> System {
        let db = TestDb::sqlite().await;
        let node = ShopNode::start(&db.url, "shop-1", "").await;
        let worker = WorkerProcess::start(&db.url, "worker", &[]).await;
        let assets = TempDir::new();
        let mut export = stampede("shop");
        export.arg("--export-assets").arg(&assets.0);
        let run = run_to_end(export, "stampede shop --export-assets").await;
        assert!(run.status.success(), "{}", run.stderr);
        let gateway = Gateway::with_config(&format!(
            "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             routes = [{{ pool = \"shop\" }}, {{ path_prefix = \"/assets\", static_dir = {} }}]\n\
             [pools.shop]\nbackends = [\"{}\"]\n",
            json!(assets.0.display().to_string()),
            node.addr,
        ))
        .await;
        System {
            _assets: assets,
            _worker: worker,
            gateway,
            _node: node,
            _db: db,
        }
    }

    fn admin(&self) -> Api {
        Api::admin(&self.gateway.url(""))
    }
}

/// A product `sku` named `name`, on sale `delay` from now.
async fn product(admin: &mut Api, sku: &str, name: &str, stock: i64, delay: Duration) {
    let starts = humantime::format_rfc3339_millis(std::time::SystemTime::now() + delay);
    let body = json!({
        "sku": sku, "name": name, "price_cents": 1999, "stock": stock,
        "per_user_limit": 1, "sale_starts_at": starts.to_string(),
    });
    let reply = admin.post("/api/v1/admin/products", &body).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_waits_buys_pays_and_meets_every_refusal_in_a_browser() {
    let system = System::start().await;
    let mut admin = system.admin();
    assert_eq!(admin.create_users("u", 2).await.status, 201);
    product(&mut admin, "SOON-1", "Vaccine slot", 5, SALE_DELAY).await;
    product(&mut admin, "GONE-1", "Last ticket", 1, Duration::ZERO).await;
    product(
        &mut admin,
        "XSS-1",
        "<script>alert(1)</script>",
        3,
        Duration::ZERO,
    )
    .await;
    // Someone else bought the last ticket.
    let mut other = Api::new(&system.gateway.url(""));
    assert_eq!(other.login("u1", PASSWORD).await.status, 200);
    assert_eq!(other.order("GONE-1", 1, None).await.status, 201);

    let ran = run_scenario(
        "storefront-buy.mjs",
        &[
            ("STAMPEDE_BASE_URL", system.gateway.url("")),
            ("STAMPEDE_USER", "u0".to_owned()),
            ("STAMPEDE_PASSWORD", PASSWORD.to_owned()),
        ],
    )
    .await;
    if !ran {
        return;
    }
    // What the browser saw is what the store holds.
    let soon = admin.stats("SOON-1").await;
    assert_eq!(soon["confirmed"], 1, "{soon}");
    assert_eq!(soon["stock_left"], 4, "{soon}");
    assert_eq!(admin.stats("GONE-1").await["reserved"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_work_without_javascript_and_forged_ones_are_refused_in_a_browser() {
    let system = System::start().await;
    let mut admin = system.admin();
    assert_eq!(admin.create_users("u", 2).await.status, 201);
    assert_eq!(admin.create_product("NOJS-1", 5, 1).await.status, 201);
    assert_eq!(admin.create_product("CSRF-1", 5, 1).await.status, 201);
    let env = |user: &str| {
        [
            ("STAMPEDE_BASE_URL", system.gateway.url("")),
            ("STAMPEDE_USER", user.to_owned()),
            ("STAMPEDE_PASSWORD", PASSWORD.to_owned()),
        ]
    };
    if !run_scenario("storefront-nojs.mjs", &env("u0")).await {
        return;
    }
    assert_eq!(admin.stats("NOJS-1").await["confirmed"], 1);
    run_scenario("storefront-csrf.mjs", &env("u1")).await;
    assert_eq!(admin.stats("CSRF-1").await["reserved"], 0);
}
