//! Redirect (`[[redirect]]`) listeners, end to end against the real
//! binary: the `Location` follows the pool's strategy with the path and
//! query kept, `307` keeps a `POST` a `POST`, a dead backend never appears
//! once its health checks fail, and a pool with nothing available answers
//! `503` in the contract's shape.

mod support;

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use support::{
    Backend, Gateway, HttpClient, Reply, client, get, send, toml_addrs, unused_addr,
    wait_backend_up,
};

/// A gateway with one `[[redirect]]` over `backends` (round-robin; TCP
/// health checks every 100 ms), and the redirect listener's address.
async fn gateway(backends: &[SocketAddr]) -> (Gateway, SocketAddr) {
    let toml = format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
workers = 2
routes = [{{ pool = "web" }}]
[pools.web]
backends = {}
[pools.web.health_check]
interval = "100ms"
timeout = "100ms"
rise = 2
fall = 2
[[redirect]]
listen = "127.0.0.1:0"
pool = "web"
"#,
        toml_addrs(backends.iter().copied())
    );
    let mut gateway = Gateway::with_config(&toml).await;
    let addr = gateway.listener_addr("redirect", 0).await;
    (gateway, addr)
}

async fn redirected(client: &HttpClient, url: &str) -> Reply {
    let reply = get(client, url).await;
    assert_eq!(reply.status, 302, "{}", reply.text());
    assert_eq!(reply.header("cache-control").as_deref(), Some("no-store"));
    assert!(reply.body.is_empty());
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_location_follows_round_robin_and_keeps_path_and_query() {
    let backends = Backend::start_many(3).await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let (_gateway, addr) = gateway(&addrs).await;
    let client = client();
    let url = format!("http://{addr}/products/7?colour=red");
    let mut locations = Vec::new();
    for _ in 0..6 {
        locations.push(
            redirected(&client, &url)
                .await
                .header("location")
                .expect("Location"),
        );
    }
    let expected: Vec<String> = (0..6)
        .map(|i| format!("http://{}/products/7?colour=red", addrs[i % 3]))
        .collect();
    assert_eq!(locations, expected);
    // And the client gets its answer from the backend named.
    assert_eq!(get(&client, &locations[0]).await.text(), "b0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_is_sent_on_with_307() {
    let backend = Backend::start("b0").await;
    let (_gateway, addr) = gateway(&[backend.addr]).await;
    let request = Request::post(format!("http://{addr}/api/v1/orders"))
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("request");
    let reply = send(&client(), request).await;
    assert_eq!(reply.status, 307);
    assert_eq!(
        reply.header("location"),
        Some(format!("http://{}/api/v1/orders", backend.addr))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_never_appears_once_its_checks_fail() {
    let live = Backend::start_many(2).await;
    let dead = unused_addr();
    let (gateway, addr) = gateway(&[live[0].addr, dead, live[1].addr]).await;
    let client = client();
    wait_backend_up(&client, &gateway, dead, 0.0).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let location = redirected(&client, &format!("http://{addr}/"))
            .await
            .header("location")
            .expect("Location");
        seen.insert(location);
    }
    let expected = live.iter().map(|b| format!("http://{}/", b.addr)).collect();
    assert_eq!(seen, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_backend_available_the_answer_is_503_naming_the_pool() {
    let dead = unused_addr();
    let (gateway, addr) = gateway(&[dead]).await;
    let client = client();
    wait_backend_up(&client, &gateway, dead, 0.0).await;
    let reply = get(&client, &format!("http://{addr}/")).await;
    assert_eq!(reply.status, 503);
    let body = reply.json();
    assert_eq!(body["error"], "unavailable", "{body}");
    assert_eq!(body["pool"], "web", "{body}");
    assert_eq!(reply.header("location"), None);
}
