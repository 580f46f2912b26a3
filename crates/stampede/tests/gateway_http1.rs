//! The HTTP/1.1 fast path byte by byte: pipelining, framing (chunked,
//! until-close, HEAD), refused smuggling shapes, informational responses,
//! stale keep-alive connections, and the requests it hands to hyper
//! (HTTP/1.0, `Expect: 100-continue`). Spoken over raw TCP, against the
//! test backends and against scripted ones that misbehave on purpose.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::{
    Backend, Gateway, GatewayToml, TIMEOUT, assert_status, client, connect, get, head_header,
    parse_json, read_body, read_head, read_response, request_head, roundtrip, status_line,
    toml_addrs, toml_backends, within,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn gateway(backend: SocketAddr) -> Gateway {
    GatewayToml::web(toml_addrs([backend]))
        .top(r#"admin_listen = "127.0.0.1:0""#)
        .start()
        .await
}

/// A bodiless `GET /` with `Host: x`.
const GET: &str = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

async fn read_to_end(stream: &mut TcpStream) -> String {
    let mut rest = Vec::new();
    within(
        TIMEOUT,
        "the end of the stream",
        stream.read_to_end(&mut rest),
    )
    .await
    .expect("read to end");
    String::from_utf8_lossy(&rest).into_owned()
}

/// A backend that answers every connection with `reply` after reading one
/// request head, then closes the connection: what a backend whose
/// keep-alive timeout just passed looks like.
async fn scripted_backend(reply: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a scripted backend");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = read_head(&mut stream).await;
                let _ = stream.write_all(reply).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let backend = Backend::start("b0").await;
    let gateway = gateway(backend.addr).await;
    let mut stream = connect(gateway.addr).await;
    stream
        .write_all(
            b"GET /headers HTTP/1.1\r\nHost: x\r\nX-Seq: 1\r\n\r\n\
              GET /headers HTTP/1.1\r\nHost: x\r\nX-Seq: 2\r\n\r\n",
        )
        .await
        .unwrap();
    for seq in ["1", "2"] {
        let (head, body) = read_response(&mut stream).await;
        assert_status(&head, "HTTP/1.1 200");
        assert_eq!(parse_json(&body)["x-seq"][0], seq);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_framing_is_refused_before_the_backend() {
    let backend = Backend::start("b0").await;
    let gateway = gateway(backend.addr).await;
    for framing in [
        "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        "Content-Length: 4\r\nContent-Length: 5\r\n",
        "Transfer-Encoding: chunked, identity\r\n",
    ] {
        let mut stream = connect(gateway.addr).await;
        let request = format!("POST /count HTTP/1.1\r\nHost: x\r\n{framing}\r\n0\r\n\r\n");
        let head = request_head(&mut stream, request).await;
        assert!(
            status_line(&head).starts_with("HTTP/1.1 400"),
            "{framing:?}: {head}"
        );
        let body = parse_json(&read_body(&mut stream, &head).await);
        assert_eq!(body["error"], "invalid");
    }
    assert_eq!(backend.hits(), 0, "no smuggling shape reached the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_request_bodies_pass_through() {
    let backend = Backend::start("b0").await;
    let gateway = gateway(backend.addr).await;
    let mut stream = connect(gateway.addr).await;
    let (head, body) = roundtrip(
        &mut stream,
        b"POST /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
    )
    .await;
    assert_status(&head, "HTTP/1.1 200");
    assert_eq!(body, "11");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_closing_its_idle_connection_costs_no_error() {
    // Each connection serves one response without saying it will close, then
    // closes: the gateway parks it, finds it dead on reuse, and must send the
    // (bodiless) request again on a fresh connection.
    let backend = scripted_backend(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    let gateway = gateway(backend).await;
    let client = client();
    for _ in 0..5 {
        let reply = get(&client, &gateway.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.text(), "ok");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_delimited_by_close_closes_the_client_connection() {
    let backend =
        scripted_backend(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil-the-end").await;
    let gateway = gateway(backend).await;
    let mut stream = connect(gateway.addr).await;
    let head = request_head(&mut stream, GET).await;
    assert_status(&head, "HTTP/1.1 200");
    assert_eq!(head_header(&head, "connection").as_deref(), Some("close"));
    assert_eq!(read_to_end(&mut stream).await, "until-the-end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn informational_responses_are_forwarded() {
    let backend = scripted_backend(
        b"HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n\
          HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    let gateway = gateway(backend).await;
    let mut stream = connect(gateway.addr).await;
    let early = request_head(&mut stream, GET).await;
    assert_status(&early, "HTTP/1.1 103");
    let (head, body) = read_response(&mut stream).await;
    assert_status(&head, "HTTP/1.1 200");
    assert_eq!(body, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_responses_carry_no_body_and_the_connection_goes_on() {
    let backend = Backend::start("b0").await;
    let gateway = gateway(backend.addr).await;
    let mut stream = connect(gateway.addr).await;
    let head = request_head(&mut stream, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_status(&head, "HTTP/1.1 200");
    assert_eq!(head_header(&head, "content-length").as_deref(), Some("2"));
    let (head, body) = roundtrip(&mut stream, GET).await;
    assert_status(&head, "HTTP/1.1 200");
    assert_eq!(body, "b0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_clients_are_served_and_closed() {
    let backend = Backend::start("b0").await;
    let gateway = gateway(backend.addr).await;
    let mut stream = connect(gateway.addr).await;
    let head = request_head(&mut stream, "GET / HTTP/1.0\r\nHost: x\r\n\r\n").await;
    assert!(status_line(&head).contains(" 200"), "{head}");
    assert_eq!(read_to_end(&mut stream).await, "b0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_honoured() {
    let backend = Backend::start("b0").await;
    let gateway = gateway(backend.addr).await;
    let mut stream = connect(gateway.addr).await;
    let interim = request_head(
        &mut stream,
        "POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    assert_status(&interim, "HTTP/1.1 100");
    let (head, body) = roundtrip(&mut stream, "hello").await;
    assert_status(&head, "HTTP/1.1 200");
    assert_eq!(body, "5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_reuses_one_backend_connection() {
    let backend = Backend::start("b0").await;
    let gateway = gateway(backend.addr).await;
    let mut stream = connect(gateway.addr).await;
    for _ in 0..20 {
        let (_, body) = roundtrip(&mut stream, GET).await;
        assert_eq!(body, "b0");
    }
    let client = client();
    let metrics = get(&client, &gateway.admin_url("/metrics")).await.text();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("stampede_gateway_backend_connections")
                && l.contains(&backend.addr.to_string())
        })
        .unwrap_or_else(|| panic!("no connection gauge in\n{metrics}"));
    assert!(
        line.ends_with(" 1"),
        "20 sequential requests, one backend connection: {line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_leaves_the_connection_usable() {
    let backend = Backend::start("b0").await;
    let gateway = GatewayToml::web(toml_backends(&[&backend]))
        .default_workers()
        .route(r#"host = "shop.test""#)
        .start()
        .await;
    let mut stream = connect(gateway.addr).await;
    let (head, _) = roundtrip(
        &mut stream,
        "GET / HTTP/1.1\r\nHost: elsewhere.test\r\n\r\n",
    )
    .await;
    assert_status(&head, "HTTP/1.1 404");
    let (head, body) = roundtrip(&mut stream, "GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n").await;
    assert_status(&head, "HTTP/1.1 200");
    assert_eq!(body, "b0");
}
