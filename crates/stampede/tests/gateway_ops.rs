//! The gateway's operations page without a browser: the admin token in
//! front of it (and of `/backends` and drains), its login and session
//! cookie, the state it polls (every backend with its recent figures, a
//! killed one going down), drains from the page refused from another
//! origin, and the sale read from a real shop node behind the gateway.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use serde_json::Value;
use stampede_testkit::TestDb;
use support::shop::{ADMIN_TOKEN, Api, ShopNode};
use support::{Backend, Behaviour, Gateway, HttpClient, Reply, client, get, get_with, send};

/// Health checks every 100 ms, down after two failures.
const CHECKS: &str =
    "[pools.web.health_check]\ninterval = \"100ms\"\ntimeout = \"100ms\"\nfall = 2\nrise = 2\n";

/// A gateway over `backends` in pool `web`, with `top` keys (such as the
/// admin token) and `tables` after the pool.
async fn gateway(backends: &[&Backend], top: &str, tables: &str) -> Gateway {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr)).collect();
    Gateway::with_config(&format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nworkers = 1\n{top}\n\
         routes = [{{ pool = \"web\" }}]\n[pools.web]\nbackends = [{}]\n{tables}",
        list.join(", ")
    ))
    .await
}

fn with_token() -> String {
    format!("admin_token = \"{ADMIN_TOKEN}\"")
}

/// A browser's view of the admin listener: its origin, and the session
/// cookie once logged in.
struct Ops {
    client: HttpClient,
    origin: String,
    cookie: Option<String>,
}

impl Ops {
    fn new(gateway: &Gateway) -> Ops {
        Ops {
            client: client(),
            origin: gateway.admin_url(""),
            cookie: None,
        }
    }

    /// `POST /ops/login` with `token` from this listener's own page.
    async fn log_in(&mut self, token: &str) -> Reply {
        let body = format!("token={}", token.replace('+', "%2B"));
        let request = Request::post(format!("{}/ops/login", self.origin))
            .header("origin", &self.origin)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        let reply = send(&self.client, request).await;
        if let Some(set) = reply.header("set-cookie") {
            self.cookie = set.split(';').next().map(str::to_owned);
        }
        reply
    }

    async fn get(&self, path: &str) -> Reply {
        let url = format!("{}{path}", self.origin);
        match &self.cookie {
            Some(cookie) => get_with(&self.client, &url, &[("cookie", cookie)]).await,
            None => get(&self.client, &url).await,
        }
    }

    /// `POST path` with the session cookie and this `origin` (none: no
    /// `Origin` header).
    async fn post_from(&self, path: &str, origin: Option<&str>) -> Reply {
        let mut request = Request::post(format!("{}{path}", self.origin));
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        send(
            &self.client,
            request.body(Full::default()).expect("request"),
        )
        .await
    }

    async fn state(&self) -> Value {
        let reply = self.get("/ops/state").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()
    }
}

/// `GET url` with the admin token as a bearer.
async fn with_bearer(client: &HttpClient, url: &str) -> Reply {
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    get_with(client, url, &[("authorization", &bearer)]).await
}

/// Backend `id`'s entry in the state's pool `pool`.
fn backend<'s>(state: &'s Value, pool: &str, id: &str) -> &'s Value {
    let pools = state["pools"].as_array().expect("pools");
    let pool = pools.iter().find(|p| p["pool"] == pool).expect("the pool");
    let backends = pool["backends"].as_array().expect("backends");
    backends
        .iter()
        .find(|b| b["backend"] == id)
        .unwrap_or_else(|| panic!("no backend {id} in {state}"))
}

/// Polls the state until `done` holds of it, for at most `limit`.
async fn state_until(
    ops: &Ops,
    limit: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let state = ops.state().await;
        if done(&state) {
            return state;
        }
        assert!(
            start.elapsed() < limit,
            "not {what} within {limit:?}: {state}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_needs_the_token_and_a_login_trades_it_for_a_cookie() {
    let a = Backend::start("a").await;
    let gateway = gateway(&[&a], &with_token(), "").await;
    let mut ops = Ops::new(&gateway);

    let refused = ops.get("/ops/state").await;
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert_eq!(refused.json()["error"], "unauthorized");
    let page = ops.get("/ops").await;
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location").as_deref(), Some("/ops/login"));
    let login = ops.get("/ops/login").await;
    assert_eq!(login.status, 200);
    assert!(login.text().contains("name=\"token\""), "{}", login.text());
    let csp = login.header("content-security-policy").expect("a CSP");
    for rule in [
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(rule), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(
        login.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(
        login.header("referrer-policy").as_deref(),
        Some("same-origin")
    );

    let wrong = ops.log_in("not-the-admin-token").await;
    assert_eq!(wrong.status, 401);
    assert!(
        wrong.text().contains("not the admin token"),
        "{}",
        wrong.text()
    );
    assert_eq!(ops.cookie, None);
    let right = ops.log_in(ADMIN_TOKEN).await;
    assert_eq!(right.status, 303);
    assert_eq!(right.header("location").as_deref(), Some("/ops"));
    let set = right.header("set-cookie").expect("a session cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(
        !set.contains(ADMIN_TOKEN),
        "the cookie must not hold the token: {set}"
    );

    let page = ops.get("/ops").await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(
        page.text().contains("src=\"/ops/ops.js\""),
        "{}",
        page.text()
    );
    assert!(!page.text().contains("<script>"), "no inline script");
    let script = ops.get("/ops/ops.js").await;
    assert_eq!(script.status, 200);
    assert!(script.text().contains("/ops/state"));
    assert_eq!(ops.state().await["pools"][0]["pool"], "web");

    // A session from another key (a forged or older one) counts for nothing.
    let forged = Ops {
        cookie: Some(format!("stampede_ops=9999999999.{}", "ab".repeat(32))),
        ..Ops::new(&gateway)
    };
    assert_eq!(forged.get("/ops/state").await.status, 401);
    let logout = ops.post_from("/ops/logout", Some(&ops.origin)).await;
    assert!(
        logout
            .header("set-cookie")
            .expect("cleared")
            .contains("Max-Age=0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_backends_and_drains_need_it_and_metrics_stay_open() {
    let a = Backend::start("a").await;
    let gateway = gateway(&[&a], &with_token(), "").await;
    let client = client();
    let backends = get(&client, &gateway.admin_url("/backends")).await;
    assert_eq!(backends.status, 401, "{}", backends.text());
    assert_eq!(
        backends.header("www-authenticate").as_deref(),
        Some("Bearer")
    );
    assert_eq!(
        with_bearer(&client, &gateway.admin_url("/backends"))
            .await
            .status,
        200
    );
    let drain = format!("/pools/web/backends/{}/drain", a.addr);
    let request = Request::post(gateway.admin_url(&drain))
        .body(Full::default())
        .expect("request");
    assert_eq!(send(&client, request).await.status, 401);
    assert_eq!(
        get(&client, &gateway.admin_url("/metrics")).await.status,
        200
    );
    assert_eq!(
        get(&client, &gateway.admin_url("/healthz")).await.status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_page_says_so_and_the_old_endpoints_stay_open() {
    let a = Backend::start("a").await;
    let gateway = gateway(&[&a], "", "").await;
    let client = client();
    let page = get(&client, &gateway.admin_url("/ops")).await;
    assert_eq!(page.status, 403);
    assert!(
        page.text().contains("admin_token") && page.text().contains("STAMPEDE_ADMIN_TOKEN"),
        "{}",
        page.text()
    );
    assert_eq!(
        get(&client, &gateway.admin_url("/ops/state")).await.status,
        403
    );
    assert_eq!(
        get(&client, &gateway.admin_url("/backends")).await.status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_shows_recent_traffic_and_a_killed_backend_going_down() {
    let a = Backend::start("a").await;
    let b = Backend::start_with("b", Behaviour::delayed(Duration::from_millis(30))).await;
    let gateway = gateway(&[&a, &b], &with_token(), CHECKS).await;
    let mut ops = Ops::new(&gateway);
    assert_eq!(ops.log_in(ADMIN_TOKEN).await.status, 303);
    let client = client();
    for _ in 0..40 {
        assert_eq!(get(&client, &gateway.url("/")).await.status, 200);
    }
    let state = ops.state().await;
    assert_eq!(state["window_seconds"], 10);
    let (a_id, b_id) = (a.addr.to_string(), b.addr.to_string());
    for id in [&a_id, &b_id] {
        let entry = backend(&state, "web", id);
        assert_eq!(entry["state"], "up", "{entry}");
        assert_eq!(entry["in_flight"], 0, "{entry}");
        assert_eq!(entry["ejections"], 0, "{entry}");
        assert_eq!(entry["backup"], false, "{entry}");
        assert_eq!(entry["error_rate"], 0.0, "{entry}");
        let rps = entry["requests_per_second"].as_f64().expect("requests/s");
        assert!(rps > 0.0, "{entry}");
    }
    // Round-robin: 20 each; b answers after 30 ms, a at once.
    let p50 = |id: &str| backend(&state, "web", id)["p50_ms"].as_f64().expect("p50");
    let p99 = backend(&state, "web", &b_id)["p99_ms"]
        .as_f64()
        .expect("p99");
    assert!(p50(&b_id) >= 25.0 && p99 >= p50(&b_id), "{state}");
    assert!(p50(&a_id) < 25.0, "{state}");

    b.stop();
    let state = state_until(&ops, Duration::from_secs(5), "b down", |s| {
        backend(s, "web", &b_id)["state"] == "down"
    })
    .await;
    let entry = backend(&state, "web", &b_id);
    assert_eq!(
        (&entry["healthy"], &entry["available"]),
        (&false.into(), &false.into())
    );
    assert_eq!(backend(&state, "web", &a_id)["state"], "up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_drains_a_backend_but_not_for_another_site() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let gateway = gateway(&[&a, &b], &with_token(), "").await;
    let mut ops = Ops::new(&gateway);
    assert_eq!(ops.log_in(ADMIN_TOKEN).await.status, 303);
    // As the page's script sends it: the backend's id percent-encoded.
    let drain = format!(
        "/ops/pools/web/backends/{}/drain",
        b.addr.to_string().replace(':', "%3A")
    );

    for origin in [Some("http://evil.example"), None] {
        let refused = ops.post_from(&drain, origin).await;
        assert_eq!(refused.status, 403, "{origin:?}: {}", refused.text());
        assert_eq!(refused.json()["error"], "cross_site");
    }
    let b_id = b.addr.to_string();
    assert_eq!(backend(&ops.state().await, "web", &b_id)["state"], "up");

    let drained = ops.post_from(&drain, Some(&ops.origin.clone())).await;
    assert_eq!(drained.status, 200, "{}", drained.text());
    assert_eq!(drained.json()["draining"], true);
    assert_eq!(
        backend(&ops.state().await, "web", &b_id)["state"],
        "draining"
    );
    let client = client();
    for _ in 0..6 {
        assert_eq!(
            get(&client, &gateway.url("/")).await.text(),
            "a",
            "b is drained"
        );
    }

    // Without a session, even from the right origin: 401.
    let stranger = Ops::new(&gateway);
    let undrain = drain.replace("/drain", "/undrain");
    assert_eq!(
        stranger.post_from(&undrain, Some(&ops.origin)).await.status,
        401
    );
    // A script with the bearer token needs no Origin.
    let request = Request::post(gateway.admin_url(&undrain))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(Full::default())
        .expect("request");
    assert_eq!(send(&client, request).await.status, 200);
    assert_eq!(backend(&ops.state().await, "web", &b_id)["state"], "up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sale_is_read_from_the_shop_pool_and_unavailable_once_it_is_gone() {
    let db = TestDb::sqlite().await;
    let mut shop = ShopNode::start(&db.url, "shop-1", "").await;
    let mut admin = Api::admin(&shop.url(""));
    assert_eq!(admin.create_product("OPS-1", 25, 2).await.status, 201);
    let gateway = Gateway::with_config(&format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nworkers = 1\n{}\n\
         routes = [{{ pool = \"shop\" }}]\n[pools.shop]\nbackends = [\"{}\"]\n\
         [ops]\nshop_pool = \"shop\"\n",
        with_token(),
        shop.addr
    ))
    .await;
    let client = client();
    let state = with_bearer(&client, &gateway.admin_url("/ops/state")).await;
    assert_eq!(state.status, 200, "{}", state.text());
    let sale = &state.json()["sale"];
    assert_eq!(sale["available"], true, "{sale}");
    let skus = sale["skus"].as_array().expect("skus");
    let sku = skus.iter().find(|s| s["sku"] == "OPS-1").expect("OPS-1");
    assert_eq!(
        (&sku["initial_stock"], &sku["stock_left"]),
        (&25.into(), &25.into())
    );
    assert_eq!(sku["reserved"], 0);
    assert!(sale["queues"].is_array(), "{sale}");

    // The shop's own endpoint, as documented.
    let queues = with_bearer(&client, &shop.url("/api/v1/admin/queues")).await;
    assert_eq!(queues.status, 200, "{}", queues.text());
    assert!(queues.json()["queues"].is_array());
    assert_eq!(
        get(&client, &shop.url("/api/v1/admin/queues")).await.status,
        401
    );

    shop.kill();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let start = Instant::now();
    let state = with_bearer(&client, &gateway.admin_url("/ops/state")).await;
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "no hang: {:?}",
        start.elapsed()
    );
    let sale = &state.json()["sale"];
    assert_eq!(sale["available"], false, "{sale}");
    assert!(
        sale["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{sale}"
    );
}
