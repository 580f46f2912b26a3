//! A pool route's response cache (`routes[N].response_cache`): one backend
//! request however many clients ask at once, hits until the TTL passes,
//! nothing personal or failed kept, `HEAD` and `304` answered from memory,
//! compression done once, and the outcome counted.

mod support;

use std::time::Duration;

use http_body_util::Full;
use hyper::{Method, Request};
use support::origin::{Origin, decoded, text};
use support::{Gateway, Reply, client, get, get_with, h2_client, send, toml_addrs};

/// A gateway caching `/` for `ttl`, compressing, with an admin listener.
async fn caching(origin: &Origin, ttl: &str) -> Gateway {
    caching_with(origin, ttl, "").await
}

/// [`caching`] with more keys for the route.
async fn caching_with(origin: &Origin, ttl: &str, route: &str) -> Gateway {
    Gateway::with_config(&format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
workers = 2

[[routes]]
pool = "web"
compress = true
response_cache = {{ ttl = "{ttl}" }}
{route}

[compression]

[pools.web]
backends = {}
"#,
        toml_addrs([origin.addr])
    ))
    .await
}

fn status(reply: &Reply) -> String {
    reply.header("x-cache-status").unwrap_or_default()
}

/// Runs every future at once, each in its own task; their outputs in order.
async fn join_all<T: Send + 'static>(
    futures: impl IntoIterator<Item = impl Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let tasks: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_make_one_backend_request() {
    let origin = Origin::start().await;
    let gateway = caching(&origin, "5s").await;
    let target = "/product?delay=300&size=5000";
    let url = gateway.url(target);
    let replies = join_all((0..50).map(|i| {
        let url = url.clone();
        async move {
            // Both protocols, on connections of their own.
            let client = if i % 2 == 0 { client() } else { h2_client() };
            get(&client, &url).await
        }
    }))
    .await;
    assert_eq!(origin.hits(target), 1, "one backend request for 50 clients");
    for reply in &replies {
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, text(5000));
    }
    let misses = replies.iter().filter(|r| status(r) == "MISS").count();
    let hits = replies.iter().filter(|r| status(r) == "HIT").count();
    assert_eq!((misses, hits), (1, 49));

    let metrics = get(&client(), &gateway.admin_url("/metrics")).await.text();
    for (result, count) in [("hit", 49), ("miss", 1)] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with("stampede_gateway_response_cache_requests_total")
                    && l.contains(&format!("result=\"{result}\""))
            })
            .unwrap_or_else(|| panic!("no {result} line in {metrics}"));
        assert!(line.ends_with(&format!(" {count}")), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_last_the_ttl_and_then_the_backend_is_asked_again() {
    let origin = Origin::start().await;
    let gateway = caching(&origin, "600ms").await;
    let client = client();
    let target = "/product?size=2000";
    let first = get(&client, &gateway.url(target)).await;
    assert_eq!(status(&first), "MISS");
    assert_eq!(first.header("age"), None);
    let second = get(&client, &gateway.url(target)).await;
    assert_eq!(status(&second), "HIT");
    assert_eq!(second.header("age").as_deref(), Some("0"));
    assert_eq!(second.body, first.body);
    assert_eq!(origin.hits(target), 1);

    tokio::time::sleep(Duration::from_millis(800)).await;
    let third = get(&client, &gateway.url(target)).await;
    assert_eq!(status(&third), "MISS");
    assert_eq!(origin.hits(target), 2, "expired after the TTL");

    // The backend's own lifetime shortens the TTL.
    let gateway = caching(&origin, "1h").await;
    let short = "/product?cc=max-age%3D1";
    get(&client, &gateway.url(short)).await;
    assert_eq!(status(&get(&client, &gateway.url(short)).await), "HIT");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(status(&get(&client, &gateway.url(short)).await), "MISS");
    assert_eq!(origin.hits(short), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_answers_are_never_kept_nor_served_to_others() {
    let origin = Origin::start().await;
    let gateway = caching(&origin, "5s").await;
    let client = client();
    for target in [
        "/me?cookie=1",
        "/me?cc=no-store",
        "/me?cc=private",
        "/me?vary=cookie",
        "/me?size=2000000",
        "/me?size=2000000&chunked=1",
    ] {
        for _ in 0..2 {
            let reply = get(&client, &gateway.url(target)).await;
            assert_eq!(reply.status, 200, "{target}");
            assert_eq!(status(&reply), "MISS", "{target}");
        }
        assert_eq!(origin.hits(target), 2, "{target}: asked each time");
    }
    let reply = get(&client, &gateway.url("/me?size=2000000&chunked=1")).await;
    assert_eq!(
        reply.body,
        text(2_000_000),
        "a body too large is passed on whole"
    );

    // Concurrent requests for a page that may not be kept each get their
    // own answer: the cookie is not shared.
    let url = gateway.url("/me?cookie=1&delay=200");
    let replies = join_all((0..5).map(|_| {
        let url = url.clone();
        async move { get(&support::client(), &url).await }
    }))
    .await;
    assert!(replies.iter().all(|r| r.header("set-cookie").is_some()));
    assert_eq!(origin.hits("/me?cookie=1&delay=200"), 5);

    // Credentials bypass what is kept.
    let page = "/page";
    get(&client, &gateway.url(page)).await;
    let reply = get_with(
        &client,
        &gateway.url(page),
        &[("authorization", "Bearer x")],
    )
    .await;
    assert_eq!(status(&reply), "BYPASS");
    assert_eq!(origin.hits(page), 2);
    assert_eq!(status(&get(&client, &gateway.url(page)).await), "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_backend_is_not_cached_and_everyone_waiting_hears_of_it() {
    let origin = Origin::start().await;
    let addr = origin.addr;
    let gateway = caching(&origin, "5s").await;
    origin.stop();
    drop(origin);
    let url = gateway.url("/product");
    let replies = join_all((0..10).map(|_| {
        let url = url.clone();
        async move { get(&client(), &url).await }
    }))
    .await;
    for reply in &replies {
        assert_eq!(reply.status, 502, "{}", reply.text());
        assert_eq!(reply.json()["error"], "bad_gateway");
        assert_eq!(reply.json()["pool"], "web");
    }

    let origin = Origin::start_at(addr).await;
    let reply = get(&client(), &url).await;
    assert_eq!(reply.status, 200, "the failure was not kept");
    assert_eq!(status(&reply), "MISS");
    assert_eq!(status(&get(&client(), &url).await), "HIT");
    assert_eq!(origin.hits("/product"), 1);

    // A backend too slow to answer: the one request that went times out,
    // and everyone who waited on it gets its answer without going.
    let gateway = caching_with(&origin, "5s", "first_byte_timeout = \"300ms\"").await;
    let slow = "/slow?delay=1000";
    let url = gateway.url(slow);
    let replies = join_all((0..10).map(|_| {
        let url = url.clone();
        async move { get(&client(), &url).await }
    }))
    .await;
    for reply in &replies {
        assert_eq!(reply.status, 504, "{}", reply.text());
        assert_eq!(reply.json()["error"], "gateway_timeout");
    }
    assert_eq!(origin.hits(slow), 1, "the waiters shared the failure");
    assert_eq!(get(&client(), &url).await.status, 504);
    assert_eq!(origin.hits(slow), 2, "the failure was not kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_revalidation_are_answered_from_the_get_entry() {
    let origin = Origin::start().await;
    let gateway = caching(&origin, "5s").await;
    for (protocol, client) in [("HTTP/1.1", client()), ("h2c", h2_client())] {
        let target = format!("/item?size=3000&etag=%22v1%22&p={protocol}");
        let url = gateway.url(&target);
        let head = || {
            Request::builder()
                .method(Method::HEAD)
                .uri(&url)
                .body(Full::default())
                .unwrap()
        };
        // A HEAD first: the cache asks the backend with a GET.
        let reply = send(&client, head()).await;
        assert_eq!(reply.status, 200, "{protocol}");
        assert_eq!(status(&reply), "MISS");
        assert_eq!(
            reply.header("x-method").as_deref(),
            Some("GET"),
            "{protocol}"
        );
        assert_eq!(
            reply.header("content-length").as_deref(),
            Some("3000"),
            "{protocol}"
        );
        let reply = get(&client, &url).await;
        assert_eq!((status(&reply), reply.body.len()), ("HIT".into(), 3000));
        let reply = send(&client, head()).await;
        assert_eq!(status(&reply), "HIT", "{protocol}");
        assert_eq!(
            reply.header("content-length").as_deref(),
            Some("3000"),
            "{protocol}"
        );

        let reply = get_with(&client, &url, &[("if-none-match", "\"v1\"")]).await;
        assert_eq!(reply.status, 304, "{protocol}");
        assert!(reply.body.is_empty());
        assert_eq!(reply.header("etag").as_deref(), Some("\"v1\""));
        let reply = get_with(&client, &url, &[("if-none-match", "\"v0\"")]).await;
        assert_eq!(reply.status, 200, "{protocol}");
        assert_eq!(origin.hits(&target), 1, "{protocol}");
    }
    // A conditional miss fills with the whole page, then answers 304.
    let reply = get_with(
        &client(),
        &gateway.url("/fresh?etag=%22v2%22"),
        &[("if-none-match", "\"v2\"")],
    )
    .await;
    assert_eq!(
        (reply.status.as_u16(), status(&reply)),
        (304, "MISS".into())
    );
    assert_eq!(
        status(&get(&client(), &gateway.url("/fresh?etag=%22v2%22")).await),
        "HIT"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_pages_are_compressed_once_for_every_coding() {
    let origin = Origin::start().await;
    let gateway = caching(&origin, "5s").await;
    let client = client();
    let target = "/list?size=20000";
    let plain = get(&client, &gateway.url(target)).await;
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary").as_deref(), Some("accept-encoding"));
    for coding in ["gzip", "br", "zstd"] {
        let reply = get_with(
            &client,
            &gateway.url(target),
            &[("accept-encoding", coding)],
        )
        .await;
        assert_eq!(status(&reply), "HIT");
        assert_eq!(reply.header("content-encoding").as_deref(), Some(coding));
        assert!(reply.body.len() < 20000 / 4, "{coding}");
        assert_eq!(decoded(Some(coding), &reply.body), text(20000), "{coding}");
    }
    assert_eq!(origin.hits(target), 1);
    let reply = get(&client, &gateway.url(target)).await;
    assert_eq!(
        reply.header("x-accept-encoding").as_deref(),
        Some("-"),
        "the cache asks for the plain body, and codes it itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_is_the_same_answer_on_either_path() {
    let origin = Origin::start().await;
    let default = r#"cache_control = "public, max-age=0, s-maxage=1""#;
    let gateway = caching_with(&origin, "5s", default).await;
    let target = "/product?size=3000&etag=%22v1%22";
    let url = gateway.url(target);
    assert_eq!(status(&get(&client(), &url).await), "MISS");
    // On the HTTP/1.1 fast path, and on hyper's (h2c).
    let (h1, h2) = (client(), h2_client());
    for headers in [
        &[][..],
        &[("accept-encoding", "gzip")][..],
        &[("accept-encoding", "br;q=0.5, zstd")][..],
        &[("if-none-match", "\"v1\"")][..],
    ] {
        let (fast, hyper) = (
            get_with(&h1, &url, headers).await,
            get_with(&h2, &url, headers).await,
        );
        assert_eq!(status(&fast), "HIT", "{headers:?}");
        assert_eq!(
            fast.comparable_fields(),
            hyper.comparable_fields(),
            "{headers:?}"
        );
        assert!(fast.body == hyper.body, "{headers:?}: the bodies differ");
        assert!(fast.header("age").is_some(), "{headers:?}");
        assert_eq!(
            fast.header("cache-control").as_deref(),
            Some("public, max-age=0, s-maxage=1"),
            "the route's default, on a hit as on a miss"
        );
    }
    assert_eq!(origin.hits(target), 1);
}
