//! Graceful shutdown on SIGTERM: in-flight requests finish, new connections
//! are refused, and the process exits 0 within the drain timeout.

mod support;

use std::time::{Duration, Instant};

use support::{Backend, Gateway, GatewayToml, TIMEOUT, client, get, toml_backends, within};

async fn gateway_with_drain(backend: &Backend, drain: &str) -> Gateway {
    GatewayToml::web(toml_backends(&[backend]))
        .top(&format!(r#"drain_timeout = "{drain}""#))
        .start()
        .await
}

/// Waits up to `limit` for the gateway to exit, and asserts it exited 0.
async fn assert_exits_cleanly(gateway: &mut Gateway, limit: Duration) {
    let status = gateway.wait_exit(limit).await;
    let status = status.unwrap_or_else(|| panic!("still running; stderr:\n{}", gateway.stderr()));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", gateway.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    let backend = Backend::start("b0").await;
    let mut gateway = gateway_with_drain(&backend, "5s").await;
    let in_flight = {
        let url = gateway.url("/delay/1000");
        tokio::spawn(async move { get(&client(), &url).await })
    };
    backend.wait_hits(1, TIMEOUT).await;
    let signalled = Instant::now();
    gateway.terminate();

    // New connections are refused while the old request is still running.
    let refused = within(
        Duration::from_secs(3),
        "new connections to be refused",
        async {
            loop {
                match tokio::net::TcpStream::connect(gateway.addr).await {
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return true,
                    // Reset: caught in the backlog of the closing listener.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(e) => panic!("unexpected connect error: {e}"),
                    // Accepted before the listener closed (or in its backlog): retry.
                    Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        },
    )
    .await;
    assert!(refused);
    assert!(
        !in_flight.is_finished(),
        "the slow request finished before the listener closed"
    );

    let reply = within(TIMEOUT, "the in-flight request", in_flight)
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "b0");

    assert_exits_cleanly(&mut gateway, Duration::from_secs(5)).await;
    // It waited for the request (1 s) but not for the whole drain timeout (5 s).
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(4), "exit {took:?} after SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_bounds_the_shutdown() {
    let backend = Backend::start("b0").await;
    let mut gateway = gateway_with_drain(&backend, "300ms").await;
    let in_flight = {
        let url = gateway.url("/delay/5000");
        tokio::spawn(async move {
            let client = client::<http_body_util::Full<bytes::Bytes>>();
            let req = support::get_req(&url)
                .body(http_body_util::Full::default())
                .unwrap();
            tokio::time::timeout(TIMEOUT, client.request(req)).await
        })
    };
    backend.wait_hits(1, TIMEOUT).await;
    let signalled = Instant::now();
    gateway.terminate();

    assert_exits_cleanly(&mut gateway, Duration::from_secs(3)).await;
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "exited {took:?} after SIGTERM with a 300ms drain timeout"
    );
    // The cut request did not get a 200.
    let outcome = within(TIMEOUT, "the cut request", in_flight).await.unwrap();
    let outcome = outcome.expect("the client saw the connection end");
    assert!(
        outcome.is_err() || outcome.as_ref().is_ok_and(|r| r.status() != 200),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_when_idle_exits_at_once() {
    let backend = Backend::start("b0").await;
    let mut gateway = gateway_with_drain(&backend, "10s").await;
    // An idle kept-alive connection must not hold the shutdown for the drain timeout.
    let client = client();
    assert_eq!(get(&client, &gateway.url("/")).await.status, 200);
    let signalled = Instant::now();
    gateway.terminate();
    assert_exits_cleanly(&mut gateway, Duration::from_secs(5)).await;
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "exit {:?} after SIGTERM",
        signalled.elapsed()
    );
}

/// Starts the gateway under `sh`, reads its "listening" line from a FIFO and
/// sends SIGTERM at once, as a supervisor waiting for readiness would; prints
/// the line and exits with the gateway's exit status (143 = killed by SIGTERM).
const STOP_WHEN_READY: &str = r#"
dir=$(mktemp -d) || exit 100
mkfifo "$dir/out" || exit 101
"$STAMPEDE" gateway --listen 127.0.0.1:0 --backend "$BACKEND" --workers 1 >"$dir/out" 2>/dev/null &
pid=$!
read -r line <"$dir/out"
kill -TERM "$pid"
wait "$pid"
code=$?
rm -rf "$dir"
echo "$line"
exit "$code"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_right_after_startup_is_graceful() {
    // A supervisor may stop the gateway as soon as it has announced its
    // address; the signal must already be handled by then.
    let backend = Backend::start("b0").await;
    for attempt in 0..5 {
        let mut sh = std::process::Command::new("sh")
            .arg("-c")
            .arg(STOP_WHEN_READY)
            .env("STAMPEDE", env!("CARGO_BIN_EXE_stampede"))
            .env("BACKEND", backend.addr.to_string())
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run sh");
        let deadline = Instant::now() + TIMEOUT;
        while sh.try_wait().expect("try_wait").is_none() {
            if Instant::now() > deadline {
                let _ = sh.kill();
                panic!("attempt {attempt}: the gateway did not start and stop in time");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let output = sh.wait_with_output().expect("sh output");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.starts_with("stampede gateway listening on http://127.0.0.1:"),
            "attempt {attempt}: {output:?}"
        );
        assert_eq!(
            output.status.code(),
            Some(0),
            "attempt {attempt}: exit status {} (143: killed by SIGTERM's default \
             action, before the gateway handled the signal)",
            output.status.code().unwrap_or(-1)
        );
    }
}
