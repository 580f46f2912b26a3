//! `stampede up` end to end: the real binary starts its cluster on an
//! ephemeral port in a temporary data directory; the printed demo session
//! logs in and buys through the printed URL, and the storefront's assets
//! come from the gateway's files; one SIGINT stops every process with
//! exit 0; a second start keeps the data and prints the same session;
//! the same on PostgreSQL; and the failures a user meets (a child dying, a
//! taken port) end `up` with a message that names them.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use stampede_testkit::TestDb;
use support::shop::{ADMIN_TOKEN, Api};
use support::{Process, stampede};

/// Shop nodes per test cluster: more than one, and light on two cores.
const NODES: usize = 2;

/// How long `up` may take to stop (its drain timeout is 10 s).
const STOP_LIMIT: Duration = Duration::from_secs(20);

/// A new empty folder for a data directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "stampede-up-e2e-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `stampede up` and what it printed on the way up.
struct Up {
    process: Process,
    /// `(name, pid)` of every long-running child.
    children: Vec<(String, u32)>,
    /// `http://ADDR` of the gateway.
    url: String,
    /// `http://ADMIN/ops`, the gateway's operations page.
    ops: String,
    /// The `admin token:` line, after the label.
    token_note: String,
    /// The `demo users:` line, after the label.
    demo_note: String,
    /// The demo user's name and password, from the printed login command.
    login: (String, String),
}

impl Up {
    /// `stampede up --port 0 --nodes 2 --data-dir DIR [--database-url URL]`,
    /// with `token` as `STAMPEDE_ADMIN_TOKEN` or none at all.
    fn spawn(dir: &Path, database_url: Option<&str>, token: Option<&str>) -> Process {
        let mut command = stampede("up");
        command
            .args(["--port", "0", "--nodes", &NODES.to_string(), "--data-dir"])
            .arg(dir)
            .env_remove("STAMPEDE_ADMIN_TOKEN");
        if let Some(url) = database_url {
            command.args(["--database-url", url]);
        }
        if let Some(token) = token {
            command.env("STAMPEDE_ADMIN_TOKEN", token);
        }
        Process::spawn(command, "stampede up")
    }

    /// Starts `up` and reads what it prints up to the demo session.
    async fn start(dir: &Path, database_url: Option<&str>, token: Option<&str>) -> Up {
        let mut process = Self::spawn(dir, database_url, token);
        let mut children = Vec::new();
        // migrate, the shops, the gateway: in that order.
        for _ in 0..NODES + 2 {
            let started = process.line_after("[up] started ").await;
            let (name, pid) = started
                .trim_end_matches(')')
                .split_once(" (pid ")
                .unwrap_or_else(|| panic!("a name and pid: {started}"));
            children.push((name.to_owned(), pid.parse().expect("a pid")));
        }
        assert_eq!(children.remove(0).0, "migrate");
        let url = format!(
            "http://{}",
            process.line_after("stampede is up: http://").await
        );
        let ops = process.line_after("  operations:  ").await;
        let ops = ops.split_whitespace().next().unwrap_or_default().to_owned();
        let token_note = process.line_after("  admin token: ").await;
        let demo_note = process.line_after("  demo users:  ").await;
        let login = process.line_after("      -d '").await;
        let (json, rest) = login.split_once("' ").expect("the login body");
        assert_eq!(rest, format!("{url}/api/v1/login"));
        let json: Value = serde_json::from_str(json).expect("a JSON login body");
        let field = |name: &str| json[name].as_str().expect("a string").to_owned();
        Up {
            process,
            children,
            url,
            ops,
            token_note,
            demo_note,
            login: (field("username"), field("password")),
        }
    }

    /// Logs the demo user in through the printed URL.
    async fn logged_in(&self) -> Api {
        let mut api = Api::new(&self.url);
        let reply = api.login(&self.login.0, &self.login.1).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        api
    }

    /// Sends one SIGINT, as Ctrl-C would, and waits for `up` to end.
    async fn interrupt(&mut self) -> ExitStatus {
        signal("-INT", self.process.pid());
        let status = self.process.wait_exit(STOP_LIMIT).await;
        status.unwrap_or_else(|| panic!("up still runs; stderr:\n{}", self.process.stderr()))
    }

    /// Asserts that no child of this `up` is still running.
    fn assert_children_gone(&self) {
        for (name, pid) in &self.children {
            assert!(!running(*pid), "{name} (pid {pid}) still runs");
        }
    }

    fn pid_of(&self, name: &str) -> u32 {
        self.children
            .iter()
            .find_map(|(n, pid)| (n == name).then_some(*pid))
            .unwrap_or_else(|| panic!("no child {name}"))
    }
}

impl Drop for Up {
    /// A failed test still leaves nothing behind: `up` is asked to stop,
    /// and whatever survives is killed.
    fn drop(&mut self) {
        if running(self.process.pid()) {
            signal("-INT", self.process.pid());
            std::thread::sleep(Duration::from_millis(200));
        }
        for (_, pid) in &self.children {
            if running(*pid) {
                signal("-KILL", *pid);
            }
        }
    }
}

fn signal(which: &str, pid: u32) {
    let _ = Command::new("kill")
        .arg(which)
        .arg(pid.to_string())
        .status();
}

fn running(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The whole user story on one database: start, buy, stop, start again.
async fn demo_session_then_restart(database_url: Option<&str>) {
    let dir = TempDir::new();
    let mut up = Up::start(&dir.0, database_url, None).await;
    let token_file = dir.0.join("admin-token");
    assert_eq!(
        up.token_note,
        format!("in {} (generated now)", token_file.display())
    );
    assert!(
        up.demo_note.starts_with("3 created now"),
        "{}",
        up.demo_note
    );
    let mode = std::fs::metadata(&token_file)
        .expect("the token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(&token_file).expect("the token");
    assert!(
        !up.process.stderr().contains(token.trim()),
        "the token was printed"
    );

    let mut buyer = up.logged_in().await;
    let order = buyer.order("DEMO-001", 1, None).await;
    assert_eq!(order.status, 201, "{}", order.text());
    assert_eq!(order.json()["status"], "reserved");
    // The cluster's worker pays and confirms it.
    let id = order.json()["order_id"]
        .as_str()
        .expect("order id")
        .to_owned();
    let paid = buyer
        .post(
            &format!("/api/v1/orders/{id}/pay"),
            &serde_json::json!({ "payment_token": "tok_ok" }),
        )
        .await;
    assert_eq!(paid.status, 202, "{}", paid.text());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while buyer.get(&format!("/api/v1/orders/{id}")).await.json()["status"] != "confirmed" {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never confirmed the order"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_storefront_assets_come_from_the_gateway(&mut buyer).await;

    let status = up.interrupt().await;
    assert!(
        status.success(),
        "{status}; stderr:\n{}",
        up.process.stderr()
    );
    up.assert_children_gone();

    let mut again = Up::start(&dir.0, database_url, None).await;
    assert!(
        again
            .demo_note
            .starts_with("already there (not seeded again)"),
        "{}",
        again.demo_note
    );
    assert_eq!(again.token_note, format!("in {}", token_file.display()));
    assert_eq!(again.login, up.login);
    let product = again
        .logged_in()
        .await
        .get("/api/v1/products/DEMO-001")
        .await;
    assert_eq!(product.json()["stock_left"], 99, "{}", product.text());
    let status = again.interrupt().await;
    assert!(
        status.success(),
        "{status}; stderr:\n{}",
        again.process.stderr()
    );
    again.assert_children_gone();
}

/// The storefront's pages link fingerprinted assets, which the gateway
/// answers from the data directory (with its file validators, which a
/// node's answer has not) and lets browsers keep for a year.
async fn assert_storefront_assets_come_from_the_gateway(visitor: &mut Api) {
    let page = visitor.get("/products/DEMO-001").await;
    assert_eq!(page.status, 200);
    let page = page.text();
    let start = page.find("/assets/app.").expect("an asset link");
    let path = &page[start..start + page[start..].find('"').expect("a quoted link")];
    let asset = visitor.get(path).await;
    assert_eq!(asset.status, 200, "{path}");
    assert_eq!(
        asset.header("cache-control").as_deref(),
        Some("public, max-age=31536000, immutable")
    );
    assert!(
        asset.header("etag").is_some(),
        "not the gateway's file: {path}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_demo_session_ctrl_c_and_restart() {
    demo_session_then_restart(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_demo_session_ctrl_c_and_restart() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    demo_session_then_restart(Some(&db.url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_from_the_environment_is_used_and_never_written() {
    let dir = TempDir::new();
    let mut up = Up::start(&dir.0, None, Some(ADMIN_TOKEN)).await;
    assert_eq!(up.token_note, "from $STAMPEDE_ADMIN_TOKEN");
    assert!(!dir.0.join("admin-token").exists());
    let stats = Api::admin(&up.url).get("/api/v1/admin/stats").await;
    assert_eq!(stats.status, 200, "{}", stats.text());
    // The gateway has the token too: its operations page reads the sale.
    let admin = up.ops.strip_suffix("/ops").expect("an /ops URL");
    let state = Api::admin(admin).get("/ops/state").await;
    assert_eq!(state.status, 200, "{}", state.text());
    let state = state.json();
    assert_eq!(
        state["pools"][0]["backends"].as_array().map(Vec::len),
        Some(NODES)
    );
    assert_eq!(state["sale"]["available"], true, "{state}");
    assert!(
        state["sale"]["skus"]
            .as_array()
            .is_some_and(|skus| skus.iter().any(|s| s["sku"] == "DEMO-001")),
        "{state}"
    );
    assert_eq!(Api::new(admin).get("/ops/state").await.status, 401);
    assert!(up.interrupt().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_dies_stops_the_cluster_and_is_named() {
    let dir = TempDir::new();
    let mut up = Up::start(&dir.0, None, None).await;
    signal("-KILL", up.pid_of("shop-2"));
    let status = up.process.wait_exit(STOP_LIMIT).await.expect("up ended");
    assert_eq!(status.code(), Some(1));
    let stderr = up.process.stderr();
    assert!(
        stderr.contains("stampede up: shop-2 stopped on its own (signal: 9 (SIGKILL))"),
        "{stderr}"
    );
    up.assert_children_gone();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_is_named_before_anything_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port();
    let dir = TempDir::new();
    let mut command = stampede("up");
    command
        .args(["--port", &port.to_string(), "--data-dir"])
        .arg(&dir.0);
    let mut process = Process::spawn(command, "stampede up");
    let status = process
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("up ended");
    assert_eq!(status.code(), Some(1));
    let stderr = process.stderr();
    assert!(
        stderr.contains(&format!("stampede up: port {port} on 127.0.0.1 is taken")),
        "{stderr}"
    );
}
