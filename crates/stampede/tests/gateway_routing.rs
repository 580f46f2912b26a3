//! Routing by Host and path prefix, and the JSON errors the gateway answers
//! itself: no route (404), a dead backend (502), a slow one (504).

mod support;

use std::time::{Duration, Instant};

use support::{
    Backend, Gateway, GatewayToml, Reply, TIMEOUT, client, get, get_head, get_with, toml_backends,
    unused_addr, within,
};

/// Checks the contract's error shape and returns the body.
fn json_error(reply: &Reply, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json")
    );
    let body = reply.json();
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_backend_gets_502_naming_the_pool() {
    let dead = unused_addr();
    let gateway = Gateway::with_flags(&["--backend".into(), dead.to_string()]).await;
    let reply = get(&client(), &gateway.url("/")).await;
    let body = json_error(&reply, 502, "bad_gateway");
    assert_eq!(body["pool"], "default");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("default"), "{message}");
    assert!(message.contains(&dead.to_string()), "{message}");
    assert!(reply.header("x-request-id").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_gets_404() {
    let backend = Backend::start("only").await;
    let gateway = GatewayToml::web(toml_backends(&[&backend]))
        .route(r#"host = "only.test""#)
        .start()
        .await;
    let client = client();
    let url = gateway.url("/x");
    let reply = get_with(&client, &url, &[("host", "other.test")]).await;
    let body = json_error(&reply, 404, "not_found");
    assert_eq!(body.get("pool"), None, "no pool was chosen: {body}");
    assert!(reply.header("x-request-id").is_some());
    assert_eq!(backend.hits(), 0);

    // The route itself works, Host compared without port and case.
    let reply = get_with(&client, &url, &[("host", "Only.Test:8080")]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_path_prefix() {
    let api = Backend::start("api").await;
    let web = Backend::start("web").await;
    let host_a = Backend::start("host-a").await;
    let gateway = Gateway::with_config(&format!(
        r#"
listen = "127.0.0.1:0"
workers = 2

[[routes]]
path_prefix = "/"
pool = "web"

[[routes]]
path_prefix = "/api"
pool = "api"

[[routes]]
host = "a.test"
pool = "a"

[pools.api]
backends = ["{}"]
[pools.web]
backends = ["{}"]
[pools.a]
backends = ["{}"]
"#,
        api.addr, web.addr, host_a.addr
    ))
    .await;
    let client = client();
    let cases = [
        ("other.test", "/api", "api"),
        ("other.test", "/api/", "api"),
        ("other.test", "/api/orders/7?x=1", "api"),
        ("other.test", "/apix", "web"),
        ("other.test", "/apiary/api", "web"),
        ("other.test", "/", "web"),
        ("other.test", "/index.html", "web"),
        ("a.test", "/", "host-a"),
        ("a.test", "/api/orders", "host-a"),
        ("a.test:8080", "/x", "host-a"),
        ("b.a.test", "/api", "api"),
    ];
    for (host, path, expected) in cases {
        let reply = get_with(&client, &gateway.url(path), &[("host", host)]).await;
        assert_eq!(reply.status, 200, "{host}{path}: {}", reply.text());
        assert_eq!(reply.text(), expected, "{host}{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_byte_timeout_gets_504() {
    let backend = Backend::start("slow").await;
    let gateway = GatewayToml::web(toml_backends(&[&backend]))
        .named("slow")
        .route(r#"first_byte_timeout = "200ms""#)
        .start()
        .await;
    let started = Instant::now();
    let reply = get(&client(), &gateway.url("/delay/3000")).await;
    let elapsed = started.elapsed();
    let body = json_error(&reply, 504, "gateway_timeout");
    assert_eq!(body["pool"], "slow");
    assert!(
        elapsed >= Duration::from_millis(150) && elapsed < Duration::from_secs(2),
        "504 after {elapsed:?}, expected about 200ms"
    );
    // A fast answer on the same route is unaffected.
    let reply = get(&client(), &gateway.url("/delay/10")).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_timeout_cuts_a_slow_stream() {
    let backend = Backend::start("b0").await;
    let gateway = GatewayToml::web(toml_backends(&[&backend]))
        .route(r#"total_timeout = "300ms""#)
        .start()
        .await;
    // `/gated` sends its first chunk and then waits (forever: never released).
    let client = client();
    let started = Instant::now();
    let response = get_head(&client, &gateway.url("/gated")).await;
    assert_eq!(response.status(), 200);
    let body = within(TIMEOUT, "the cut", async {
        http_body_util::BodyExt::collect(response.into_body()).await
    })
    .await;
    assert!(body.is_err(), "the stream should be cut, got {body:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "cut after {:?}",
        started.elapsed()
    );
}
