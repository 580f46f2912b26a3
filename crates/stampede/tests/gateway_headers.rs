//! What the gateway tells backends about the client (forwarding headers),
//! what it keeps from crossing (hop-by-hop headers), and request ids.

mod support;

use support::{
    Backend, Gateway, GatewayToml, Reply, assert_echoed, client, echoed, get, get_with,
    toml_backends,
};

/// GET `/headers` through `gateway` with these request headers.
async fn echo(gateway: &Gateway, headers: &[(&str, &str)]) -> (Reply, serde_json::Value) {
    let reply = get_with(&client(), &gateway.url("/headers"), headers).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let json = reply.json();
    (reply, json)
}

const SPOOFED: &[(&str, &str)] = &[
    ("host", "shop.test"),
    ("x-forwarded-for", "6.6.6.6"),
    ("x-real-ip", "6.6.6.6"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "evil.test"),
    ("forwarded", "for=6.6.6.6;proto=https"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_peer_forwarding_headers_are_replaced() {
    let backend = Backend::start("b0").await;
    let gateway = Gateway::quick(&[&backend], "round-robin").await;
    let (_, seen) = echo(&gateway, SPOOFED).await;
    assert_echoed(
        &seen,
        &[
            ("x-forwarded-for", "127.0.0.1"),
            ("x-real-ip", "127.0.0.1"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "shop.test"),
            ("forwarded", "for=127.0.0.1;host=shop.test;proto=http"),
            ("host", "shop.test"),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_without_any_incoming() {
    let backend = Backend::start("b0").await;
    let gateway = Gateway::quick(&[&backend], "round-robin").await;
    let (_, seen) = echo(&gateway, &[]).await;
    // The client (hyper) sends Host: 127.0.0.1:PORT; a port makes it a quoted value.
    let host = gateway.addr.to_string();
    assert_echoed(
        &seen,
        &[
            ("x-forwarded-for", "127.0.0.1"),
            ("x-real-ip", "127.0.0.1"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", &host),
            (
                "forwarded",
                &format!("for=127.0.0.1;host=\"{host}\";proto=http"),
            ),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_peer_forwarding_headers_are_appended() {
    let backend = Backend::start("b0").await;
    let gateway = GatewayToml::web(toml_backends(&[&backend]))
        .top(r#"trusted_proxies = ["127.0.0.1/32"]"#)
        .start()
        .await;
    let (_, seen) = echo(
        &gateway,
        &[
            ("host", "shop.test"),
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=203.0.113.9"),
        ],
    )
    .await;
    assert_echoed(
        &seen,
        &[
            ("x-forwarded-for", "203.0.113.9, 127.0.0.1"),
            // The client is the rightmost untrusted hop.
            ("x-real-ip", "203.0.113.9"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "shop.test"),
            (
                "forwarded",
                "for=203.0.113.9, for=127.0.0.1;host=shop.test;proto=http",
            ),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_request_headers_do_not_reach_the_backend() {
    let backend = Backend::start("b0").await;
    let gateway = Gateway::quick(&[&backend], "round-robin").await;
    let (_, seen) = echo(
        &gateway,
        &[
            ("connection", "x-custom"),
            ("x-custom", "secret"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip"),
            ("x-end-to-end", "kept"),
        ],
    )
    .await;
    for name in ["x-custom", "keep-alive", "proxy-connection", "te"] {
        assert_eq!(
            echoed(&seen, name),
            None,
            "{name} reached the backend: {seen}"
        );
    }
    if let Some(connection) = echoed(&seen, "connection") {
        assert!(!connection.contains("x-custom"), "{connection}");
    }
    assert_echoed(&seen, &[("x-end-to-end", "kept")]);

    // `TE: trailers` is the one TE value that crosses (gRPC needs it).
    let (_, seen) = echo(&gateway, &[("te", "trailers")]).await;
    assert_echoed(&seen, &[("te", "trailers")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_response_headers_do_not_reach_the_client() {
    let backend = Backend::start("b0").await;
    let gateway = Gateway::quick(&[&backend], "round-robin").await;
    let reply = get(&client(), &gateway.url("/hop")).await;
    assert_eq!(reply.status, 200);
    for name in ["x-resp-hop", "keep-alive", "proxy-connection"] {
        assert_eq!(reply.header(name), None, "{name} reached the client");
    }
    if let Some(connection) = reply.header("connection") {
        assert!(!connection.contains("x-resp-hop"), "{connection}");
    }
    assert_eq!(reply.header("x-end-to-end").as_deref(), Some("kept"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_created_when_absent() {
    let backend = Backend::start("b0").await;
    let gateway = Gateway::quick(&[&backend], "round-robin").await;
    let (reply, seen) = echo(&gateway, &[]).await;
    let id = reply
        .header("x-request-id")
        .expect("X-Request-Id on the response");
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id} is not hex");
    assert_eq!(echoed(&seen, "x-request-id"), Some(id.clone()));

    let (again, _) = echo(&gateway, &[]).await;
    assert_ne!(again.header("x-request-id"), Some(id), "ids must be fresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_kept_when_sent() {
    let backend = Backend::start("b0").await;
    let gateway = Gateway::quick(&[&backend], "round-robin").await;
    let (reply, seen) = echo(&gateway, &[("x-request-id", "client-id-123")]).await;
    assert_echoed(&seen, &[("x-request-id", "client-id-123")]);
    assert_eq!(
        reply.header("x-request-id").as_deref(),
        Some("client-id-123")
    );
}
