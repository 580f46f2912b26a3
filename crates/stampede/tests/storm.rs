//! `stampede storm` end to end, as its users run it: the real binary
//! against a real `stampede up` cluster (closed and open loop; zero
//! violations, every unit sold, a JSON and an HTML report), and against
//! deliberately broken shops in this process (one oversells by one unit,
//! one forgets orders it acknowledged), where it must name the broken
//! invariant and exit 1.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use support::shop::ADMIN_TOKEN;
use support::{Process, TempFile, stampede, within};

/// How long one storm run may take in a test, setup included.
const STORM_LIMIT: Duration = Duration::from_secs(120);

/// Runs `stampede storm ARGS` to its end.
async fn storm(args: &[&str]) -> Output {
    let mut command = stampede("storm");
    command
        .args(args)
        .args(["--quiet", "--admin-token", ADMIN_TOKEN]);
    let run = tokio::task::spawn_blocking(move || command.output().expect("run stampede storm"));
    within(STORM_LIMIT, "stampede storm", run)
        .await
        .expect("storm thread")
}

fn json_report(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "storm printed no JSON ({e}); stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// A running `stampede up` with cheap password hashing, stopped on drop.
struct Cluster {
    process: Process,
    url: String,
    _dir: TempDir,
    _config: TempFile,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = TempDir::new();
        let config = TempFile::new("toml", "[passwords]\nmemory_kib = 64\niterations = 1\n");
        let mut command = stampede("up");
        command
            .args(["--port", "0", "--nodes", "2", "--data-dir"])
            .arg(&dir.0)
            .arg("--shop-config")
            .arg(&config.0)
            .env("STAMPEDE_ADMIN_TOKEN", ADMIN_TOKEN);
        let mut process = Process::spawn(command, "stampede up");
        let url = format!(
            "http://{}",
            process.line_after("stampede is up: http://").await
        );
        Cluster {
            process,
            url,
            _dir: dir,
            _config: config,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SIGTERM first: `up` stops its children in order.
        self.process.stop_within(Duration::from_secs(20));
    }
}

/// A fresh folder, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let file = TempFile::new("dir", "");
        let path = file.0.clone();
        drop(file);
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn assert_sold_out_cleanly(report: &Value, stock: i64) {
    let verdict = &report["invariants"];
    assert_eq!(verdict["violation_count"], 0, "{verdict:#}");
    assert_eq!(
        report["crowd"]["units_sold"], stock,
        "{:#}",
        report["crowd"]
    );
    let stats = &verdict["stats"];
    assert_eq!(stats["stock_left"], 0, "{stats:#}");
    assert_eq!(stats["reserved"], stock, "{stats:#}");
    assert_eq!(report["statuses"]["201"], stock);
    assert!(report["crowd"]["time_to_sell_out_seconds"].is_f64());
    assert_eq!(report["fairness"]["winners"], stock);
    let attempts = &report["crowd"]["attempts"];
    assert_eq!(&report["order_latency"]["count"], attempts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_against_stampede_up_sells_out_and_breaks_nothing() {
    let cluster = Cluster::start().await;
    let html = TempFile::new("html", "");
    let html_path = html.0.display().to_string();

    let closed = storm(&[
        "--target",
        &cluster.url,
        "--users",
        "120",
        "--stock",
        "40",
        "--concurrency",
        "16",
        "--duration",
        "60s",
        "--seed",
        "11",
        "--json",
        "--report",
        &html_path,
    ])
    .await;
    assert_eq!(
        closed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&closed.stderr)
    );
    let report = json_report(&closed);
    assert_sold_out_cleanly(&report, 40);
    assert_eq!(report["users"], 120);
    assert_eq!(report["invariants"]["users_checked"], 120);
    // Every user got an answer for good: 40 sold, 80 told sold out.
    assert_eq!(report["statuses"]["409"], 80, "{:#}", report["statuses"]);
    let page = std::fs::read_to_string(Path::new(&html_path)).expect("the HTML report");
    assert!(
        page.contains("<svg") && page.contains("Invariants: all held"),
        "{page}"
    );

    // An open loop on the same cluster: a new run, a new sku.
    let open = storm(&[
        "--target",
        &cluster.url,
        "--users",
        "60",
        "--stock",
        "25",
        "--rate",
        "300",
        "--read-ratio",
        "0",
        "--duration",
        "60s",
        "--seed",
        "12",
        "--json",
    ])
    .await;
    assert_eq!(
        open.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&open.stderr)
    );
    let report = json_report(&open);
    assert_sold_out_cleanly(&report, 25);
    assert_eq!(report["options"]["load"]["model"], "open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_options_exit_2_and_an_unreachable_target_exits_3() {
    let bad = storm(&["--read-ratio", "1.5"]).await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--read-ratio"));
    let closed_port = support::unused_addr();
    let unreachable = storm(&["--target", &format!("http://{closed_port}")]).await;
    assert_eq!(unreachable.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(
        stderr.contains("setup failed while creating users"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------
// Broken shops
// ---------------------------------------------------------------------------

/// What is wrong with a broken shop.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Flaw {
    /// `sold <= stock` where `sold < stock` was meant: one unit too many.
    OffByOne,
    /// Answers `201` for every third order but never stores it.
    ForgetsOrders,
}

#[derive(Default)]
struct Books {
    stock: i64,
    sku: String,
    sold: i64,
    answered: u64,
    /// (username, order id) of every stored order.
    orders: Vec<(String, String)>,
}

type Shop = State<(Flaw, Arc<Mutex<Books>>)>;

/// Serves just enough of the contract for a storm, with `flaw`.
async fn broken_shop(flaw: Flaw) -> SocketAddr {
    let app = Router::new()
        .route("/api/v1/admin/users", post(create_users))
        .route("/api/v1/admin/products", post(create_product))
        .route("/api/v1/login", post(login))
        .route("/api/v1/products/{sku}", get(product))
        .route("/api/v1/orders", post(order).get(orders))
        .route("/api/v1/admin/stats", get(stats))
        .with_state((flaw, Arc::new(Mutex::new(Books::default()))));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn create_users(Json(body): Json<Value>) -> Response {
    let created = body["users"].as_array().map_or(0, Vec::len);
    (StatusCode::CREATED, Json(json!({ "created": created }))).into_response()
}

async fn create_product(State((_, books)): Shop, Json(body): Json<Value>) -> Response {
    let mut books = books.lock().expect("books");
    books.sku = body["sku"].as_str().unwrap_or_default().to_owned();
    books.stock = body["stock"].as_i64().unwrap_or_default();
    (StatusCode::CREATED, Json(body)).into_response()
}

async fn login(Json(body): Json<Value>) -> Response {
    let user = body["username"].as_str().unwrap_or_default().to_owned();
    let cookie = format!("who={user}; HttpOnly; Path=/");
    (
        [(header::SET_COOKIE, cookie)],
        Json(json!({ "username": user })),
    )
        .into_response()
}

async fn product(UrlPath(sku): UrlPath<String>) -> Response {
    Json(json!({ "sku": sku })).into_response()
}

fn user(headers: &HeaderMap) -> String {
    let cookie = headers.get(header::COOKIE).and_then(|v| v.to_str().ok());
    cookie
        .and_then(|c| c.strip_prefix("who="))
        .unwrap_or_default()
        .to_owned()
}

fn order_json(id: &str, sku: &str) -> Value {
    json!({ "order_id": id, "sku": sku, "quantity": 1, "status": "reserved" })
}

async fn order(State((flaw, books)): Shop, headers: HeaderMap) -> Response {
    let user = user(&headers);
    let mut books = books.lock().expect("books");
    let limit_reached = books.orders.iter().any(|(u, _)| *u == user);
    let stock_left = match flaw {
        Flaw::OffByOne => books.sold <= books.stock,
        Flaw::ForgetsOrders => books.sold < books.stock,
    };
    if !stock_left {
        let body = json!({ "error": "sold_out", "message": "sold out" });
        return (StatusCode::CONFLICT, Json(body)).into_response();
    }
    if limit_reached {
        let body = json!({ "error": "limit_exceeded", "message": "limit" });
        return (StatusCode::CONFLICT, Json(body)).into_response();
    }
    books.sold += 1;
    books.answered += 1;
    let id = format!("o{}", books.answered);
    if !(flaw == Flaw::ForgetsOrders && books.answered % 3 == 0) {
        books.orders.push((user, id.clone()));
    }
    (StatusCode::CREATED, Json(order_json(&id, &books.sku))).into_response()
}

async fn orders(State((_, books)): Shop, headers: HeaderMap) -> Response {
    let user = user(&headers);
    let books = books.lock().expect("books");
    let mine: Vec<Value> = books
        .orders
        .iter()
        .filter(|(u, _)| *u == user)
        .map(|(_, id)| order_json(id, &books.sku))
        .collect();
    Json(json!({ "orders": mine })).into_response()
}

async fn stats(State((_, books)): Shop) -> Response {
    let books = books.lock().expect("books");
    let reserved = i64::try_from(books.orders.len()).unwrap_or_default();
    Json(json!({ "skus": [{
        "sku": books.sku, "initial_stock": books.stock, "stock_left": books.stock - books.sold,
        "reserved": reserved, "paying": 0, "paid": 0, "confirmed": 0,
        "expired": 0, "cancelled": 0, "payment_failed": 0,
    }]}))
    .into_response()
}

async fn storm_against(flaw: Flaw) -> (Option<i32>, String) {
    let addr = broken_shop(flaw).await;
    let output = storm(&[
        "--target",
        &format!("http://{addr}"),
        "--users",
        "30",
        "--stock",
        "10",
        "--concurrency",
        "8",
        "--duration",
        "30s",
        "--seed",
        "5",
    ])
    .await;
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_that_oversells_by_one_unit_is_caught() {
    let (code, report) = storm_against(Flaw::OffByOne).await;
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("VIOLATIONS"), "{report}");
    assert!(
        report.contains("nothing oversold: sku STORM-5: live orders hold 11 units and -1 are left, of 10 in stock"),
        "{report}"
    );
    assert!(
        report.contains("clients got 201 for 11 units, but only 10 exist"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_that_forgets_acknowledged_orders_is_caught() {
    let (code, report) = storm_against(Flaw::ForgetsOrders).await;
    assert_eq!(code, Some(1), "{report}");
    // Orders o3, o6 and o9 were acknowledged and never stored.
    for id in ["o3", "o6", "o9"] {
        let missing = format!("every 201 names an order of its user: order {id} (201 to user");
        assert!(report.contains(&missing), "{id}: {report}");
    }
    assert!(report.contains("stock conserved"), "{report}");
}
