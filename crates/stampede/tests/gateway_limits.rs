//! The client limits: header size (431), body size (413), idle keep-alive
//! connections, and stalled bodies (408). Spoken over raw TCP so that the
//! test controls every byte.

mod support;

use std::time::{Duration, Instant};

use support::{
    Backend, Gateway, GatewayToml, assert_status, connect, head_header, parse_json, read_body,
    read_head, request_head, roundtrip, toml_backends, within,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn gateway_with_limits(backend: &Backend, limits: &str) -> Gateway {
    GatewayToml::web(toml_backends(&[backend]))
        .table(&format!("[limits]\n{limits}"))
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_header_gets_431() {
    let backend = Backend::start("b0").await;
    let gateway = gateway_with_limits(&backend, "max_header_bytes = 8192").await;
    let mut stream = connect(gateway.addr).await;
    let big = "a".repeat(20 * 1024);
    let request = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    // The gateway may stop reading (and reset) before all of it is written.
    let _ = stream.write_all(request.as_bytes()).await;
    let head = read_head(&mut stream).await;
    assert_status(&head, "HTTP/1.1 431");
    assert_eq!(backend.hits(), 0);

    // A header under the limit still passes.
    let mut stream = connect(gateway.addr).await;
    let fine = "a".repeat(4 * 1024);
    let request = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {fine}\r\n\r\n");
    assert_status(&request_head(&mut stream, request).await, "HTTP/1.1 200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_over_limit_gets_413_without_the_backend() {
    let backend = Backend::start("b0").await;
    let gateway = gateway_with_limits(&backend, "max_body_bytes = 1024").await;
    let mut stream = connect(gateway.addr).await;
    let (head, body) = roundtrip(
        &mut stream,
        "POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",
    )
    .await;
    assert_status(&head, "HTTP/1.1 413");
    assert_eq!(
        head_header(&head, "content-type").as_deref(),
        Some("application/json")
    );
    let body = parse_json(&body);
    assert_eq!(body["error"], "payload_too_large");
    assert_eq!(body["pool"], "web");
    assert_eq!(backend.hits(), 0, "the backend must not be asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_over_limit_gets_413() {
    let backend = Backend::start("b0").await;
    let gateway = gateway_with_limits(&backend, "max_body_bytes = 1024").await;
    let mut stream = connect(gateway.addr).await;
    stream
        .write_all(b"POST /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let chunk = format!("3e8\r\n{}\r\n", "c".repeat(1000));
    for _ in 0..5 {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    assert_status(&read_head(&mut stream).await, "HTTP/1.1 413");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_under_limit_passes() {
    let backend = Backend::start("b0").await;
    let gateway = gateway_with_limits(&backend, "max_body_bytes = 1024").await;
    let mut stream = connect(gateway.addr).await;
    let body = "d".repeat(1024);
    let request = format!("POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\n\r\n{body}");
    let (head, body) = roundtrip(&mut stream, request).await;
    assert_status(&head, "HTTP/1.1 200");
    assert_eq!(body, "1024");
}

/// Reads until EOF; returns how long it took and whether it was a clean EOF.
async fn time_to_eof(stream: &mut tokio::net::TcpStream) -> (Duration, bool) {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    // Generous against the 500ms configured, short enough to keep the suite fast.
    let limit = Duration::from_secs(3);
    let clean = within(limit, "the gateway to close an idle connection", async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    })
    .await;
    (start.elapsed(), clean)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connection_is_closed() {
    let backend = Backend::start("b0").await;
    let gateway = gateway_with_limits(&backend, r#"idle_timeout = "500ms""#).await;

    // After a request, the kept-alive connection is closed once idle.
    let mut stream = connect(gateway.addr).await;
    let (head, body) = roundtrip(&mut stream, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_status(&head, "HTTP/1.1 200");
    assert_eq!(body, "b0");
    let (idle, clean) = time_to_eof(&mut stream).await;
    assert!(clean, "connection reset instead of closed");
    assert!(
        idle >= Duration::from_millis(300) && idle <= Duration::from_millis(2500),
        "closed after {idle:?}, expected about 500ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_is_closed() {
    // `idle_timeout` also bounds the wait for the first request head, so a
    // client that connects and sends nothing cannot hold a connection open.
    let backend = Backend::start("b0").await;
    let gateway = gateway_with_limits(&backend, r#"idle_timeout = "500ms""#).await;
    let mut silent = connect(gateway.addr).await;
    let (idle, _) = time_to_eof(&mut silent).await;
    assert!(
        idle <= Duration::from_millis(2500),
        "silent connection closed after {idle:?}, expected about 500ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_body_gets_408() {
    let backend = Backend::start("b0").await;
    let gateway = gateway_with_limits(&backend, r#"body_timeout = "300ms""#).await;
    let mut stream = connect(gateway.addr).await;
    stream
        .write_all(b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let started = Instant::now();
    let head = read_head(&mut stream).await;
    assert_status(&head, "HTTP/1.1 408");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "408 after {:?}",
        started.elapsed()
    );
    let body = parse_json(&read_body(&mut stream, &head).await);
    assert_eq!(body["error"], "request_timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connection_is_closed() {
    // An h2c client that opens its connection (preface and SETTINGS) and then
    // sits idle is held to `idle_timeout` like an HTTP/1.1 one.
    let backend = Backend::start("b0").await;
    let gateway = gateway_with_limits(&backend, r#"idle_timeout = "500ms""#).await;
    let mut stream = connect(gateway.addr).await;
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let (idle, _) = time_to_eof(&mut stream).await;
    assert!(
        idle <= Duration::from_millis(2500),
        "idle h2 connection closed after {idle:?}, expected about 500ms"
    );
}
