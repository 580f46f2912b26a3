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
    let run = run_config(GOOD, true).await;
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    assert!(run.stdout.contains("configuration ok"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_is_named() {
    let toml = r#"
listen = "127.0.0.1:0"
routes = [{ pool = "web" }]
[pools.web]
backends = ["127.0.0.1:9001"]
strategyy = "round-robin"
"#;
    let run = run_config(toml, false).await;
    assert_config_error(&run, &["`pools.web.strategyy`", "unknown field"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_listen_address_is_named() {
    let toml = r#"
listen = "127.0.0.1:notaport"
routes = [{ pool = "web" }]
[pools.web]
backends = ["127.0.0.1:9001"]
"#;
    let run = run_config(toml, false).await;
    assert_config_error(
        &run,
        &["`listen`", "127.0.0.1:notaport", "not a valid address"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_backend_address_is_named() {
    let toml = r#"
listen = "127.0.0.1:0"
routes = [{ pool = "web" }]
[pools.web]
backends = ["127.0.0.1:9001", "nowhere"]
"#;
    let run = run_config(toml, true).await;
    assert_config_error(&run, &["pools.web.backends", "nowhere"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_strategy_is_named() {
    let toml = r#"
listen = "127.0.0.1:0"
routes = [{ pool = "web" }]
[pools.web]
strategy = "fastest"
backends = ["127.0.0.1:9001"]
"#;
    let run = run_config(toml, false).await;
    assert_config_error(&run, &["pools.web.strategy", "fastest", "round-robin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_pool_is_named() {
    let toml = r#"
listen = "127.0.0.1:0"
routes = [{ pool = "web" }]
[pools.web]
backends = []
"#;
    let run = run_config(toml, false).await;
    assert_config_error(&run, &["pools.web.backends", "no backends"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_to_unknown_pool_is_named() {
    let toml = r#"
listen = "127.0.0.1:0"
routes = [{ pool = "web" }, { path_prefix = "/api", pool = "apii" }]
[pools.web]
backends = ["127.0.0.1:9001"]
"#;
    let run = run_config(toml, true).await;
    assert_config_error(&run, &["routes[1].pool", "apii"]);
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
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    assert!(run.stdout.contains("configuration ok"), "{run:?}");
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
    let run = run_gateway(&["--check", "--config", path]).await;
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    assert!(run.stdout.contains("configuration ok"), "{run:?}");
}
