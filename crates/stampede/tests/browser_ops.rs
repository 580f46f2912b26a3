//! The gateway's operations page in headless Chromium (`browser/ops-page.mjs`):
//! two real shop nodes behind the gateway, a login with the admin token,
//! the sale's stock on the page, a drain and undrain by button, and a node
//! whose process is killed shown down.

mod support;

use stampede_testkit::TestDb;
use support::Gateway;
use support::browser::run_scenario;
use support::shop::{ADMIN_TOKEN, Api, ShopNode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operations_page_shows_a_killed_node_down_and_drains_by_button() {
    let db = TestDb::sqlite().await;
    let doomed = ShopNode::start(&db.url, "shop-1", "").await;
    let kept = ShopNode::start(&db.url, "shop-2", "").await;
    let mut admin = Api::admin(&kept.url(""));
    let created = admin.create_product("OPS-BROWSER", 30, 1).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let gateway = Gateway::with_config(&format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nworkers = 1\n\
         admin_token = \"{ADMIN_TOKEN}\"\n\
         routes = [{{ pool = \"shop\" }}]\n\
         [pools.shop]\nbackends = [\"{}\", \"{}\"]\n\
         [pools.shop.health_check]\npath = \"/readyz\"\ninterval = \"200ms\"\ntimeout = \"200ms\"\nfall = 2\n\
         [ops]\nshop_pool = \"shop\"\n",
        doomed.addr, kept.addr
    ))
    .await;
    run_scenario(
        "ops-page.mjs",
        &[
            ("STAMPEDE_BASE_URL", gateway.admin_url("")),
            ("STAMPEDE_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
            ("STAMPEDE_DRAIN", kept.addr.to_string()),
            ("STAMPEDE_KILL", doomed.addr.to_string()),
            ("STAMPEDE_KILL_PID", doomed.pid().to_string()),
            ("STAMPEDE_SKU", "OPS-BROWSER".to_owned()),
            ("STAMPEDE_STOCK", "30".to_owned()),
        ],
    )
    .await;
}
