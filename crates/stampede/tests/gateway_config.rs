//! Configuration errors: exit code 2 and one stderr line naming the key and
//! the problem; `--check` for a good file.

mod support;

use std::path::PathBuf;

use support::{Run, TempFile, run_gateway};

async fn run_config(toml: &str, check: bool) -> Run {
    let file = TempFile::new("toml", toml);
    let path = file.0.to_str().expect("utf-8 temp path").to_owned();
    let mut args = vec!["--config", path.as_str()];
    if check {
        args.push("--check");
    }
    run_gateway(&args).await
}

/// Exit code 2, and exactly one stderr line containing every one of `needles`.
#[track_caller]
fn assert_config_error(run: &Run, needles: &[&str]) {
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "expected one stderr line: {:?}", run.stderr);
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "stderr {:?} does not mention {needle:?}",
            lines[0]
        );
    }
}

/// Exit code 0 and `configuration ok` on stdout.
#[track_caller]
fn assert_config_ok(run: &Run) {
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    assert!(run.stdout.contains("configuration ok"), "{run:?}");
}

/// Runs the gateway on `toml` (with `--check` if `check`) and asserts
/// [`assert_config_error`] with `needles`.
async fn config_error(toml: &str, check: bool, needles: &[&str]) {
    assert_config_error(&run_config(toml, check).await, needles);
}

const LISTEN: &str = r#"listen = "127.0.0.1:0""#;
const ROUTE: &str = r#"routes = [{ pool = "web" }]"#;
const BACKEND: &str = r#"backends = ["127.0.0.1:9001"]"#;

/// A config file of the `top` lines, then `[pools.web]` and the `pool` lines.
fn web_config(top: &[&str], pool: &[&str]) -> String {
    format!("{}\n[pools.web]\n{}\n", top.join("\n"), pool.join("\n"))
}

const GOOD: &str = r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
workers = 2
drain_timeout = "1s"
trusted_proxies = ["10.0.0.0/8", "127.0.0.1"]
[limits]
max_header_bytes = 16384
max_body_bytes = 1048576
idle_timeout = "30s"
body_timeout = "10s"
[pools.web]
strategy = "maglev"
hash_on = "cookie:session"
backends = ["127.0.0.1:9001", { address = "127.0.0.1:9002", weight = 2 }]
sticky = { cookie = "sb" }
[pools.api]
strategy = "least-conn"
http2 = true
max_idle_per_backend = 8
idle_timeout = "20s"
backends = ["127.0.0.1:9003"]
[[routes]]
path_prefix = "/api"
pool = "api"
connect_timeout = "1s"
first_byte_timeout = "5s"
total_timeout = "30s"
[[routes]]
host = "shop.test"
pool = "web"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_accepts_a_good_config() {
    assert_config_ok(&run_config(GOOD, true).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_is_named() {
    let toml = web_config(&[LISTEN, ROUTE], &[BACKEND, r#"strategyy = "round-robin""#]);
    config_error(&toml, false, &["`pools.web.strategyy`", "unknown field"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_listen_address_is_named() {
    let toml = web_config(&[r#"listen = "127.0.0.1:notaport""#, ROUTE], &[BACKEND]);
    let needles = ["`listen`", "127.0.0.1:notaport", "not a valid address"];
    config_error(&toml, false, &needles).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_backend_address_is_named() {
    let toml = web_config(
        &[LISTEN, ROUTE],
        &[r#"backends = ["127.0.0.1:9001", "nowhere"]"#],
    );
    config_error(&toml, true, &["pools.web.backends", "nowhere"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_strategy_is_named() {
    let toml = web_config(&[LISTEN, ROUTE], &[r#"strategy = "fastest""#, BACKEND]);
    config_error(
        &toml,
        false,
        &["pools.web.strategy", "fastest", "round-robin"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_pool_is_named() {
    let toml = web_config(&[LISTEN, ROUTE], &["backends = []"]);
    config_error(&toml, false, &["pools.web.backends", "no backends"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_to_unknown_pool_is_named() {
    let routes = r#"routes = [{ pool = "web" }, { path_prefix = "/api", pool = "apii" }]"#;
    let toml = web_config(&[LISTEN, routes], &[BACKEND]);
    config_error(&toml, true, &["routes[1].pool", "apii"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_backend_flag_is_named() {
    let run = run_gateway(&["--listen", "127.0.0.1:0", "--backend", "not-an-address"]).await;
    assert_config_error(&run, &["--backend", "not-an-address"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_strategy_flag_is_named() {
    let run = run_gateway(&[
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "127.0.0.1:9001",
        "--strategy",
        "fastest",
    ])
    .await;
    assert_config_error(&run, &["--strategy", "fastest"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_accepts_good_flags() {
    let run = run_gateway(&[
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "127.0.0.1:9001",
        "--backend",
        "127.0.0.1:9002",
        "--strategy",
        "p2c-ewma",
        "--check",
    ])
    .await;
    assert_config_ok(&run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_config_passes_check() {
    let example: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "..",
        "examples",
        "gateway.toml",
    ]
    .iter()
    .collect();
    if !example.exists() {
        eprintln!("skipped: {} does not exist (yet)", example.display());
        return;
    }
    let path = example.to_str().expect("utf-8 path");
    assert_config_ok(&run_gateway(&["--check", "--config", path]).await);
}
