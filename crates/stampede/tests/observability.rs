//! The check of the observability kit: every metric that
//! `deploy/grafana/stampede.json` and `deploy/prometheus/alerts.yml` use is
//! exported by a running node, so that a renamed metric breaks this test
//! rather than a dashboard panel or an alert nobody sees fire; and a shop
//! started with `--log-format json` logs one JSON line per request with
//! the id the request came with.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stampede_testkit::TestDb;
use support::shop::{Api, PASSWORD, ShopNode, WorkerProcess};
use support::{GatewayToml, stampede, toml_addrs};

/// The folder of the deploy files, from this crate's.
fn deploy(path: &str) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// The metric names in a PromQL expression: identifiers starting with
/// `stampede_` (label names and values never do).
fn metric_names(expr: &str) -> impl Iterator<Item = &str> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("stampede_"))
}

/// Every `expr` of the dashboard's panels.
fn dashboard_exprs(dashboard: &Value, out: &mut Vec<String>) {
    match dashboard {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    _ => dashboard_exprs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| dashboard_exprs(item, out)),
        _ => {}
    }
}

/// Every `expr:` of the alert rules: the value on its line, or the block
/// (`|`) indented under it.
fn alert_exprs(rules: &str) -> Vec<String> {
    let mut exprs = Vec::new();
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((indent, value)) = line.split_once("expr:") else {
            continue;
        };
        if value.trim() != "|" {
            exprs.push(value.trim().to_owned());
            continue;
        }
        let mut block = String::new();
        while let Some(next) = lines.next_if(|l| l.len() - l.trim_start().len() > indent.len()) {
            block.push_str(next);
            block.push('\n');
        }
        exprs.push(block);
    }
    exprs
}

/// Every metric the dashboard and the alerts use.
fn used_metrics() -> BTreeSet<String> {
    let dashboard: Value = serde_json::from_str(&deploy("grafana/stampede.json")).expect("JSON");
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() > 10, "the dashboard's panels: {exprs:?}");
    let alerts = alert_exprs(&deploy("prometheus/alerts.yml"));
    assert!(alerts.len() > 5, "the alert rules: {alerts:?}");
    exprs
        .iter()
        .chain(&alerts)
        .flat_map(|expr| metric_names(expr))
        .map(str::to_owned)
        .collect()
}

/// The metrics a `/metrics` text declares, with the series Prometheus
/// derives from each histogram (`_bucket`, `_sum`, `_count`).
fn exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(declared) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = declared.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        if kind == "histogram" {
            names.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}")));
        }
        names.insert(name.to_owned());
    }
    names
}

/// The value of `series` (a name with its labels, as rendered) in a
/// `/metrics` text.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

async fn scrape(admin: SocketAddr) -> String {
    Api::new(&format!("http://{admin}"))
        .get("/metrics")
        .await
        .text()
}

/// A product on sale and some traffic through the gateway: a login, an
/// order, a payment (a job for the worker), a refusal, a product read.
async fn some_traffic(front: &str) {
    let mut admin = Api::admin(front);
    assert_eq!(admin.create_users("u", 2).await.status, 201);
    assert_eq!(admin.create_product("OBS-1", 5, 1).await.status, 201);
    let mut api = Api::new(front);
    assert_eq!(api.login("u0", PASSWORD).await.status, 200);
    let reply = api.order("OBS-1", 1, None).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let id = reply.json()["order_id"].as_str().expect("id").to_owned();
    let pay = json!({ "payment_token": "tok_ok" });
    let reply = api.post(&format!("/api/v1/orders/{id}/pay"), &pay).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert_eq!(
        api.order("OBS-1", 1, None).await.status,
        409,
        "over the limit"
    );
    assert_eq!(api.get("/api/v1/products/OBS-1").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_alerts_use_is_exported() {
    let used = used_metrics();
    let db = TestDb::sqlite().await;
    let mut shop =
        ShopNode::start_with(&db.url, "shop-1", "admin_listen = \"127.0.0.1:0\"", "").await;
    let shop_admin = shop.admin_addr().await;
    // As deploy/ runs it: retries on, health checked on /readyz.
    let gateway = GatewayToml::web(toml_addrs([shop.addr]))
        .named("shop")
        .top("admin_listen = \"127.0.0.1:0\"")
        .pool("retries = { max = 1 }")
        .pool("health_check = { path = \"/readyz\", interval = \"1s\" }")
        .start()
        .await;
    some_traffic(&gateway.url("")).await;
    // Every request that reached the store waited for one of its
    // connections, however briefly.
    let shop_metrics = scrape(shop_admin).await;
    let waits = value(
        &shop_metrics,
        "stampede_shop_db_acquire_seconds_count{pool=\"primary\"}",
    );
    assert!(waits.unwrap_or(0.0) >= 5.0, "{shop_metrics}");
    // Started after the sale began, so that its first reading of the
    // ledger already has the sku.
    let worker = WorkerProcess::start(&db.url, "w1", &["--admin-listen", "127.0.0.1:0"]).await;
    let admins = [
        gateway.admin.expect("gateway admin"),
        shop_admin,
        worker.admin.expect("worker admin"),
    ];
    // The worker's gauges and its payment job come within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut all = BTreeSet::new();
        for admin in admins {
            all.extend(exported(&scrape(admin).await));
        }
        let missing: Vec<&String> = used.difference(&all).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "used by deploy/ but exported by no node: {missing:?}\nexported: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_shop_logs_each_request_with_its_id() {
    let db = TestDb::sqlite().await;
    let config = support::TempFile::new(
        "toml",
        &format!(
            "listen = \"127.0.0.1:0\"\ndatabase_url = {}\nnode_name = \"shop-j\"\n",
            Value::from(db.url.as_str())
        ),
    );
    let mut command = stampede("shop");
    command
        .args(["--log-format", "json", "--log", "info"])
        .arg("--config")
        .arg(&config.0)
        .env("STAMPEDE_ADMIN_TOKEN", support::shop::ADMIN_TOKEN);
    let mut process = support::Process::spawn(command, "shop-j");
    let addr = process
        .line_after("stampede shop listening on http://")
        .await;
    let base = format!(
        "http://{}",
        addr.split_whitespace().next().unwrap_or_default()
    );
    let mut api = Api::new(&base);
    let ids = ["req-obs-1", "req-obs-2"];
    for id in ids {
        let reply = api
            .call(
                hyper::Method::GET,
                "/api/v1/products",
                None,
                &[("x-request-id", id)],
            )
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.headers["x-request-id"], id, "the id goes back");
    }
    // An unmatched path, and no id: the node makes one.
    let reply = api.get("/no/such/path").await;
    assert_eq!(reply.status, 404);
    let made = reply.headers["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    let access = loop {
        let access: Vec<Value> = process
            .stderr()
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).expect("every line is JSON"))
            .filter(|event| event["target"] == "stampede_shop::access")
            .collect();
        if access.len() >= 3 || Instant::now() > deadline {
            break access;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let fields: Vec<&Value> = access.iter().map(|event| &event["fields"]).collect();
    assert_eq!(fields.len(), 3, "one line per request: {fields:?}");
    for (field, (id, route, status)) in fields.iter().zip([
        (ids[0], "/api/v1/products", 200),
        (ids[1], "/api/v1/products", 200),
        (made.as_str(), "unmatched", 404),
    ]) {
        assert_eq!(field["request_id"], id, "{field}");
        assert_eq!(field["route"], route, "{field}");
        assert_eq!(field["status"], status, "{field}");
        assert_eq!(field["method"], "GET", "{field}");
        assert_eq!(field["node"], "shop-j", "{field}");
        assert!(field["latency_ms"].is_number(), "{field}");
    }
}

/// The JSON log lines of `process` at WARN or ERROR that carry the
/// request id `id` (in their `span`, the request's).
fn error_lines(process: &support::Process, id: &str) -> Vec<Value> {
    process
        .stderr()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("every line is JSON"))
        .filter(|event| event["span"]["request_id"] == id)
        .filter(|event| event["level"] == "WARN" || event["level"] == "ERROR")
        .collect()
}

/// [`error_lines`], waiting up to 10 s for one to come.
async fn wait_error_lines(process: &support::Process, id: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = error_lines(process, id);
        if !lines.is_empty() || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `method path` with the request id `id`: its status.
async fn call_as(api: &mut Api, id: &str, method: hyper::Method, path: &str, body: &Value) -> u16 {
    let body = (method == hyper::Method::POST).then_some(body);
    let reply = api.call(method, path, body, &[("x-request-id", id)]).await;
    assert_eq!(reply.headers["x-request-id"], id, "the id goes back");
    reply.status.as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_while_serving_a_request_are_logged_with_its_id_route_and_cause() {
    let db = TestDb::sqlite().await;
    let shop = ShopNode::start_args(&db.url, "shop-e", "", "", &["--log-format", "json"]).await;
    let mut admin = Api::admin(&shop.url(""));
    assert_eq!(admin.create_users("u", 1).await.status, 201);
    assert_eq!(admin.create_product("ERR-2", 5, 5).await.status, 201);
    let mut api = Api::new(&shop.url(""));
    assert_eq!(api.login("u0", PASSWORD).await.status, 200);
    let mut orders = Vec::new();
    for _ in 0..2 {
        let reply = api.order("ERR-2", 1, None).await;
        assert_eq!(reply.status, 201, "{}", reply.text());
        orders.push(reply.json()["order_id"].as_str().expect("id").to_owned());
    }

    // The database turns against the node, as a hand edit or a failing
    // disk would: a row no code path writes, and tables that refuse new
    // rows.
    let lost = format!(
        "UPDATE orders SET status = 'lost' WHERE order_id = '{}'",
        orders[1]
    );
    let sql = [
        lost,
        "CREATE TRIGGER no_orders BEFORE INSERT ON orders \
         BEGIN SELECT RAISE(ABORT, 'orders refused by the test'); END"
            .to_owned(),
        "CREATE TRIGGER no_jobs BEFORE INSERT ON jobs \
         BEGIN SELECT RAISE(ABORT, 'jobs refused by the test'); END"
            .to_owned(),
    ];
    for statement in sql {
        sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
            .execute(db.db.pool())
            .await
            .expect(&statement);
    }
    let none = json!({});
    let order_body = json!({ "sku": "ERR-2", "quantity": 1 });
    let pay_body = json!({ "payment_token": "tok_ok" });
    let pay = format!("/api/v1/orders/{}/pay", orders[0]);
    let corrupt = format!("/api/v1/orders/{}", orders[1]);
    let cases = [
        // id, method, path, body, status, level, route, the cause's words
        (
            "req-corrupt",
            "GET",
            corrupt.as_str(),
            &none,
            500,
            "ERROR",
            "/api/v1/orders/{id}",
            "unknown order status `lost`",
        ),
        (
            "req-order",
            "POST",
            "/api/v1/orders",
            &order_body,
            503,
            "WARN",
            "/api/v1/orders",
            "orders refused by the test",
        ),
        (
            "req-pay",
            "POST",
            pay.as_str(),
            &pay_body,
            503,
            "WARN",
            "/api/v1/orders/{id}/pay",
            "jobs refused by the test",
        ),
    ];
    for (id, method, path, body, status, level, route, cause) in cases {
        let method = hyper::Method::from_bytes(method.as_bytes()).expect("method");
        assert_eq!(
            call_as(&mut api, id, method, path, body).await,
            status,
            "{id}"
        );
        let lines = wait_error_lines(&shop, id).await;
        let line = lines
            .first()
            .unwrap_or_else(|| panic!("no WARN or ERROR line with {id}:\n{}", shop.stderr()));
        assert_eq!(line["level"], level, "{line}");
        assert_eq!(line["span"]["route"], route, "{line}");
        let error = line["fields"]["error"].as_str().unwrap_or_default();
        assert!(error.contains(cause), "the cause is logged: {line}");
    }
    // A request that went well logs nothing but its access line.
    assert_eq!(
        call_as(
            &mut api,
            "req-fine",
            hyper::Method::GET,
            "/api/v1/products/ERR-2",
            &none
        )
        .await,
        200
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(error_lines(&shop, "req-fine").is_empty());
}

/// Envelopes received: `"{project} {X-Sentry-Auth}"` and the body.
type Envelopes = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// A Sentry ingest on 127.0.0.1 that records every envelope posted to
/// it, with its `X-Sentry-Auth`.
struct FakeSentry {
    addr: SocketAddr,
    envelopes: Envelopes,
}

impl FakeSentry {
    async fn start() -> FakeSentry {
        use axum::extract::{Path, State};
        let envelopes = std::sync::Arc::default();
        let record = |State(seen): State<Envelopes>,
                      Path(project): Path<String>,
                      headers: hyper::HeaderMap,
                      body: String| async move {
            let auth = headers
                .get("x-sentry-auth")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if let Ok(mut seen) = seen.lock() {
                seen.push((format!("{project} {auth}"), body));
            }
            "{}"
        };
        let app = axum::Router::new()
            .route("/api/{project}/envelope/", axum::routing::post(record))
            .with_state(std::sync::Arc::clone(&envelopes));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeSentry { addr, envelopes }
    }

    fn dsn(&self) -> String {
        format!("http://testkey@{}/42", self.addr)
    }

    /// The events received: each envelope's item that has `tags`.
    fn events(&self) -> Vec<(String, Value)> {
        let envelopes = self.envelopes.lock().map(|e| e.clone()).unwrap_or_default();
        envelopes
            .iter()
            .flat_map(|(auth, body)| {
                body.lines()
                    .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                    .filter(|item| item.get("tags").is_some())
                    .map(move |event| (auth.clone(), event))
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_go_to_sentry_with_the_request_id_only_where_a_dsn_is_set() {
    let sentry = FakeSentry::start().await;
    let db = TestDb::sqlite().await;
    let top = format!("sentry_dsn = {}", Value::from(sentry.dsn()));
    let reporting = ShopNode::start_with(&db.url, "shop-s", &top, "").await;
    let quiet = ShopNode::start(&db.url, "shop-q", "").await;
    let mut admin = Api::admin(&reporting.url(""));
    assert_eq!(admin.create_users("u", 1).await.status, 201);
    assert_eq!(admin.create_product("SEN-1", 5, 5).await.status, 201);
    let mut api = Api::new(&reporting.url(""));
    assert_eq!(api.login("u0", PASSWORD).await.status, 200);
    let reply = api.order("SEN-1", 1, None).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let order = reply.json()["order_id"].as_str().expect("id").to_owned();
    sqlx::query("UPDATE orders SET status = 'lost'")
        .execute(db.db.pool())
        .await
        .expect("a row no code path writes");
    let path = format!("/api/v1/orders/{order}");
    let none = json!({});
    assert_eq!(
        call_as(&mut api, "req-sentry", hyper::Method::GET, &path, &none).await,
        500
    );
    // The same failure on the node without a DSN (the session is in the
    // shared store, so the same client works there).
    let mut quiet_api = api.via(&quiet.url(""));
    assert_eq!(
        call_as(
            &mut quiet_api,
            "req-quiet",
            hyper::Method::GET,
            &path,
            &none
        )
        .await,
        500
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    let events = loop {
        let events = sentry.events();
        if !events.is_empty() || Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (auth, event) = events.first().expect("an event reached the fake Sentry");
    assert!(auth.starts_with("42 Sentry sentry_key=testkey"), "{auth}");
    // Sentry's default level, left out of the JSON.
    assert!(
        event.get("level").is_none_or(|level| level == "error"),
        "{event}"
    );
    assert_eq!(event["message"], "store error", "{event}");
    assert_eq!(event["tags"]["request_id"], "req-sentry", "{event}");
    assert_eq!(event["tags"]["route"], "/api/v1/orders/{id}", "{event}");
    assert_eq!(event["server_name"], "shop-s", "{event}");
    let error = event["extra"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("unknown order status `lost`"), "{event}");
    // Nothing else came: not the other node's failure, nor a WARN.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sentry.events().len(), 1, "{:?}", sentry.events());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_sentry_dsn_is_refused_naming_where_it_came_from() {
    let db = TestDb::sqlite().await;
    let mut worker = stampede("worker");
    worker.args([
        "--database-url",
        &db.url,
        "--sentry-dsn",
        "https://k@sentry.example/1",
    ]);
    let run = support::run_to_end(worker, "stampede worker").await;
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("--sentry-dsn (or SENTRY_DSN)") && run.stderr.contains("Sentry Relay"),
        "{}",
        run.stderr
    );
    let config = support::TempFile::new("toml", "sentry_dsn = \"nope\"\n");
    let shop = |env_dsn: Option<&str>, file: bool| {
        let mut shop = stampede("shop");
        shop.args(["--database-url", &db.url, "--check"])
            .env("STAMPEDE_ADMIN_TOKEN", support::shop::ADMIN_TOKEN);
        if let Some(dsn) = env_dsn {
            shop.env("SENTRY_DSN", dsn);
        }
        if file {
            shop.arg("--config").arg(&config.0);
        }
        support::run_to_end(shop, "stampede shop")
    };
    for (env_dsn, file, named) in [
        (None, true, "`sentry_dsn`"),
        (Some("not a dsn"), false, "--sentry-dsn (or SENTRY_DSN)"),
    ] {
        let run = shop(env_dsn, file).await;
        assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
        assert!(run.stderr.contains(named), "{named}: {}", run.stderr);
    }
    let fine = shop(Some("http://k@127.0.0.1:9/1"), false).await;
    assert!(fine.status.success(), "{}", fine.stderr);
}
