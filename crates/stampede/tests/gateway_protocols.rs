//! HTTP/2 on both sides, WebSocket-style upgrades, bodies streamed both ways
//! without buffering, and cancellation when the client goes away.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Version};
use support::{
    Backend, Behaviour, Gateway, GatewayToml, HttpClient, RepeatBody, Reply, TIMEOUT,
    assert_echoed, assert_status, client, connect, get, get_head, h2_client, head_header,
    request_head, send, toml_backends, within,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// POSTs `len` bytes to `/count` (which answers how many arrived).
async fn post_count(client: &HttpClient, gateway: &Gateway, len: usize) -> Reply {
    let body = Full::new(Bytes::from(vec![b'z'; len]));
    let req = Request::post(gateway.url("/count"))
        .body(body)
        .expect("request");
    send(client, req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_client() {
    let backend = Backend::start("b0").await;
    let gateway = Gateway::quick(&[&backend], "round-robin").await;
    let h2 = h2_client::<Full<Bytes>>();

    let reply = get(&h2, &gateway.url("/")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.version, Version::HTTP_2);
    assert_eq!(reply.text(), "b0");

    // The backend speaks HTTP/1.1 and still learns the host the client asked for.
    let reply = get(&h2, &gateway.url("/headers")).await;
    assert_eq!(reply.version, Version::HTTP_2);
    let seen = reply.json();
    assert_eq!(seen["_version"], "HTTP/1.1");
    let authority = gateway.addr.to_string();
    assert_echoed(
        &seen,
        &[("host", &authority), ("x-forwarded-host", &authority)],
    );

    // A request body over h2 arrives whole.
    let reply = post_count(&h2, &gateway, 100_000).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "100000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_to_an_h2c_backend() {
    let backend = Backend::start_with("h2", Behaviour::http2()).await;
    let gateway = GatewayToml::web(toml_backends(&[&backend]))
        .named("h2")
        .pool("http2 = true")
        .start()
        .await;
    let h1 = client::<Full<Bytes>>();
    let reply = get(&h1, &gateway.url("/headers")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.version,
        Version::HTTP_11,
        "answered in the client's version"
    );
    assert_eq!(reply.json()["_version"], "HTTP/2.0");

    let reply = post_count(&h1, &gateway, 300_000).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "300000");
    assert_eq!(reply.header("x-version").as_deref(), Some("HTTP/2.0"));

    // And HTTP/2 all the way.
    let reply = get(&h2_client::<Full<Bytes>>(), &gateway.url("/")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.version, Version::HTTP_2);
    assert_eq!(reply.text(), "h2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_passes_through() {
    let backend = Backend::start("b0").await;
    let gateway = Gateway::quick(&[&backend], "round-robin").await;
    let mut stream = connect(gateway.addr).await;
    let head = request_head(
        &mut stream,
        "GET /ws HTTP/1.1\r\n\
         Host: chat.test\r\n\
         Connection: Upgrade\r\n\
         Upgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert_status(&head, "HTTP/1.1 101");
    assert_eq!(
        head_header(&head, "upgrade").map(|v| v.to_ascii_lowercase()),
        Some("websocket".to_owned())
    );
    assert!(
        head_header(&head, "connection").is_some_and(|v| v.eq_ignore_ascii_case("upgrade")),
        "{head:?}"
    );

    for message in [
        &b"hello through the gateway"[..],
        &[0u8, 1, 2, 255, 254],
        b"bye",
    ] {
        stream.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        within(TIMEOUT, "the echo", stream.read_exact(&mut echoed))
            .await
            .unwrap();
        assert_eq!(echoed, message);
    }
}

async fn large_gateway(backend: &Backend) -> Gateway {
    GatewayToml::web(toml_backends(&[backend]))
        .table("[limits]\nmax_body_bytes = 134217728")
        .start()
        .await
}

const CHUNK: usize = 64 * 1024;
const CHUNKS: usize = 1024;
const LARGE: usize = CHUNK * CHUNKS; // 64 MiB

/// Peak memory the gateway may reach while 64 MiB cross it: well under the
/// body, so that holding a whole body (upload or download) fails the test.
const PEAK_RSS_LIMIT: u64 = 48 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways() {
    let backend = Backend::start("b0").await;
    let gateway = large_gateway(&backend).await;

    // Upload: 64 MiB, chunked, produced while it is sent.
    let uploader = client::<RepeatBody>();
    let started = Instant::now();
    let reply = send(
        &uploader,
        Request::post(gateway.url("/count"))
            .body(RepeatBody::new(CHUNK, CHUNKS))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), LARGE.to_string());
    let upload = started.elapsed();

    // Download: 64 MiB streamed by the backend, counted as it arrives.
    let downloader = client::<Full<Bytes>>();
    let started = Instant::now();
    let url = gateway.url(&format!("/stream?chunks={CHUNKS}&size={CHUNK}"));
    let response = get_head(&downloader, &url).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = 0usize;
    within(TIMEOUT, "the whole download", async {
        while let Some(frame) = body.frame().await {
            received += frame.unwrap().data_ref().map_or(0, Bytes::len);
        }
    })
    .await;
    assert_eq!(received, LARGE);
    let download = started.elapsed();

    let peak = gateway.peak_rss().expect("/proc/PID/status");
    assert!(
        peak < PEAK_RSS_LIMIT,
        "gateway peaked at {} MiB moving 64 MiB each way (upload {upload:?}, download {download:?})",
        peak / (1024 * 1024)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_chunk_arrives_before_the_backend_finishes() {
    let backend = Backend::start("b0").await;
    let gateway = Gateway::quick(&[&backend], "round-robin").await;
    let client = client::<Full<Bytes>>();
    let response = get_head(&client, &gateway.url("/gated")).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();

    // The backend is now waiting for release(); its first chunk must be here.
    let first = within(
        Duration::from_secs(3),
        "the first chunk while the backend waits",
        body.frame(),
    )
    .await
    .expect("a frame")
    .unwrap();
    assert_eq!(first.data_ref().map(|d| &d[..]), Some(&b"first-chunk"[..]));

    backend.release();
    let rest = within(TIMEOUT, "the rest", body.collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&rest[..], b"rest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_cancels_the_upstream_request() {
    let backend = Backend::start("b0").await;
    let gateway = Gateway::quick(&[&backend], "round-robin").await;
    let mut stream = connect(gateway.addr).await;
    stream
        .write_all(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    backend.wait_hits(1, TIMEOUT).await;
    assert_eq!(backend.cancelled(), 0);

    drop(stream);
    assert!(
        backend.wait_cancelled(1, Duration::from_secs(1)).await,
        "the backend request was still open a second after the client left"
    );
}
