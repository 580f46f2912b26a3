//! What the gateway does to a pool's answers on their way out: a default
//! `Cache-Control` for a CDN in front (`routes[N].cache_control`), the same
//! over HTTP/1.1 (the fast path) and HTTP/2 (hyper).

mod support;

use http_body_util::Full;
use hyper::Request;
use support::origin::Origin;
use support::{GatewayToml, HttpClient, Reply, client, get_with, h2_client, send, toml_addrs};

fn clients() -> [(&'static str, HttpClient); 2] {
    [("HTTP/1.1", client()), ("h2c", h2_client())]
}

async fn fetch(client: &HttpClient, url: &str, accept: Option<&str>) -> Reply {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("accept-encoding", a)).into_iter().collect();
    get_with(client, url, &headers).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_control_is_added_only_where_the_backend_said_nothing() {
    let origin = Origin::start().await;
    let default = "public, max-age=0, s-maxage=1";
    let gateway = GatewayToml::web(toml_addrs([origin.addr]))
        .route(&format!("cache_control = \"{default}\""))
        .start()
        .await;
    for (protocol, client) in clients() {
        let reply = fetch(&client, &gateway.url("/page"), None).await;
        assert_eq!(
            reply.header("cache-control").as_deref(),
            Some(default),
            "{protocol}"
        );
        let reply = fetch(&client, &gateway.url("/page?status=404"), None).await;
        assert_eq!(
            reply.header("cache-control").as_deref(),
            Some(default),
            "{protocol}"
        );
        let reply = fetch(&client, &gateway.url("/page?cc=no-store"), None).await;
        assert_eq!(
            reply.header("cache-control").as_deref(),
            Some("no-store"),
            "{protocol}"
        );
        for target in ["/page?cookie=1", "/page?status=500", "/page?status=201"] {
            let reply = fetch(&client, &gateway.url(target), None).await;
            assert_eq!(reply.header("cache-control"), None, "{protocol} {target}");
        }
        let post = Request::post(gateway.url("/page"))
            .body(Full::default())
            .unwrap();
        let reply = send(&client, post).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("cache-control"), None, "{protocol}: POST");
    }
}
