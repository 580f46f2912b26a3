//! Every balancing strategy, observed through the real gateway: which of
//! three real backends answers each request.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use support::{Backend, Behaviour, Gateway, TIMEOUT, client, get, get_req, send, toml_backends};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Sends `n` sequential GETs to `/` and counts answers by backend name.
async fn tally(client: &HttpClient, gateway: &Gateway, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let reply = get(client, &gateway.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        *counts.entry(reply.text()).or_default() += 1;
    }
    counts
}

fn count(counts: &BTreeMap<String, usize>, name: &str) -> usize {
    counts.get(name).copied().unwrap_or(0)
}

/// A GET of `/` with extra headers; returns the answering backend's name.
async fn who_answers(client: &HttpClient, url: &str, headers: &[(&str, &str)]) -> String {
    let mut req = get_req(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let reply = send(client, req.body(Full::default()).expect("request")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_is_even() {
    let b = Backend::start_many(3).await;
    let gateway = Gateway::quick(&[&b[0], &b[1], &b[2]], "round-robin").await;
    let counts = tally(&client(), &gateway, 300).await;
    for backend in &b {
        let n = count(&counts, &backend.name);
        assert!((99..=101).contains(&n), "{counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_follows_weights_exactly() {
    let b = Backend::start_many(3).await;
    let gateway = Gateway::with_config(&format!(
        r#"
listen = "127.0.0.1:0"
workers = 2
routes = [{{ pool = "web" }}]
[pools.web]
strategy = "weighted-round-robin"
backends = [
  {{ address = "{}", weight = 3 }},
  {{ address = "{}", weight = 1 }},
  {{ address = "{}", weight = 1 }},
]
"#,
        b[0].addr, b[1].addr, b[2].addr
    ))
    .await;
    let counts = tally(&client(), &gateway, 500).await;
    assert_eq!(count(&counts, "b0"), 300, "{counts:?}");
    assert_eq!(count(&counts, "b1"), 100, "{counts:?}");
    assert_eq!(count(&counts, "b2"), 100, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_is_roughly_weighted() {
    let b = Backend::start_many(3).await;
    let gateway = Gateway::with_config(&format!(
        r#"
listen = "127.0.0.1:0"
workers = 2
routes = [{{ pool = "web" }}]
[pools.web]
strategy = "random"
backends = [
  {{ address = "{}", weight = 2 }},
  {{ address = "{}", weight = 1 }},
  {{ address = "{}", weight = 1 }},
]
"#,
        b[0].addr, b[1].addr, b[2].addr
    ))
    .await;
    let counts = tally(&client(), &gateway, 400).await;
    // Expected 200/100/100; the bounds are about five standard deviations.
    assert!((150..=250).contains(&count(&counts, "b0")), "{counts:?}");
    assert!((50..=150).contains(&count(&counts, "b1")), "{counts:?}");
    assert!((50..=150).contains(&count(&counts, "b2")), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_prefers_idle_backends() {
    // b0 holds every request open until released; b1 and b2 answer at once.
    let busy = Backend::start_with(
        "busy",
        Behaviour {
            hold: true,
            ..Behaviour::default()
        },
    )
    .await;
    let idle = Backend::start_many(2).await;
    let gateway = Gateway::quick(&[&busy, &idle[0], &idle[1]], "least-conn").await;
    let client = client();
    let mut held = Vec::new();
    let mut answered = BTreeMap::<String, usize>::new();
    for _ in 0..30 {
        let hits_before = busy.hits();
        let request = {
            let client = client.clone();
            let url = gateway.url("/");
            tokio::spawn(async move { get(&client, &url).await })
        };
        // Each request either completes (an idle backend) or lands on the
        // busy one and stays open; either way the next starts after it.
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if request.is_finished() {
                let reply = request.await.unwrap();
                assert_eq!(reply.status, 200);
                *answered.entry(reply.text()).or_default() += 1;
                break;
            }
            if busy.hits() > hits_before {
                held.push(request);
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "request stuck");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    // Once the busy backend holds one request, it is never the least loaded.
    assert!(held.len() <= 1, "busy backend got {} requests", held.len());
    assert_eq!(answered.values().sum::<usize>() + held.len(), 30);
    assert!(count(&answered, "b0") >= 10, "{answered:?}");
    assert!(count(&answered, "b1") >= 10, "{answered:?}");
    busy.release();
    for request in held {
        let reply = support::within(TIMEOUT, "held request", request)
            .await
            .unwrap();
        assert_eq!(reply.text(), "busy");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2c_ewma_avoids_a_slow_backend() {
    let slow = Backend::start_with(
        "slow",
        Behaviour {
            delay: Duration::from_millis(50),
            ..Behaviour::default()
        },
    )
    .await;
    let fast = Backend::start_many(2).await;
    let gateway = Gateway::quick(&[&slow, &fast[0], &fast[1]], "p2c-ewma").await;
    let counts = tally(&client(), &gateway, 200).await;
    // Round-robin would send it 67; once measured it should lose every draw.
    assert!(count(&counts, "slow") <= 10, "{counts:?}");
    assert!(count(&counts, "b0") >= 50, "{counts:?}");
    assert!(count(&counts, "b1") >= 50, "{counts:?}");
}

/// A pool of three behind a gateway that trusts 127.0.0.1, so that
/// `X-Forwarded-For` can play different clients.
async fn hashing_gateway(b: &[Backend], pool_options: &str) -> Gateway {
    Gateway::with_config(&format!(
        r#"
listen = "127.0.0.1:0"
workers = 2
trusted_proxies = ["127.0.0.1/32"]
routes = [{{ pool = "web" }}]
[pools.web]
backends = {}
{pool_options}
"#,
        toml_backends(&[&b[0], &b[1], &b[2]])
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_hash_pins_each_client() {
    let b = Backend::start_many(3).await;
    let gateway = hashing_gateway(&b, r#"strategy = "ip-hash""#).await;
    let client = client();
    let url = gateway.url("/");

    // The test process itself: always the same backend.
    let first = who_answers(&client, &url, &[]).await;
    for _ in 0..20 {
        assert_eq!(who_answers(&client, &url, &[]).await, first);
    }

    // Clients behind the trusted proxy: each pinned, together spread.
    let mut used = BTreeSet::new();
    for i in 1..=30 {
        let ip = format!("198.51.100.{i}");
        let pinned = who_answers(&client, &url, &[("x-forwarded-for", &ip)]).await;
        for _ in 0..3 {
            let again = who_answers(&client, &url, &[("x-forwarded-for", &ip)]).await;
            assert_eq!(again, pinned, "client {ip} moved");
        }
        used.insert(pinned);
    }
    assert!(used.len() >= 2, "30 clients all on {used:?}");
}

async fn hash_on_header_pins_each_user(strategy: &str) {
    let b = Backend::start_many(3).await;
    let gateway = hashing_gateway(
        &b,
        &format!("strategy = \"{strategy}\"\nhash_on = \"header:X-User\""),
    )
    .await;
    let client = client();
    let url = gateway.url("/");
    let mut used = BTreeSet::new();
    for i in 0..30 {
        let user = format!("user-{i}");
        let pinned = who_answers(&client, &url, &[("x-user", &user)]).await;
        for j in 0..3 {
            // The same user from different client addresses: the header decides.
            let ip = format!("203.0.113.{j}");
            let again = who_answers(
                &client,
                &url,
                &[("x-user", &user), ("x-forwarded-for", &ip)],
            )
            .await;
            assert_eq!(again, pinned, "{strategy}: {user} moved");
        }
        used.insert(pinned);
    }
    assert!(used.len() >= 2, "{strategy}: 30 users all on {used:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_on_header_pins_each_user() {
    hash_on_header_pins_each_user("consistent-hash").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maglev_on_header_pins_each_user() {
    hash_on_header_pins_each_user("maglev").await;
}

/// The value of cookie `name` in a `Set-Cookie` header.
fn set_cookie_value(set_cookie: &str, name: &str) -> Option<String> {
    let pair = set_cookie.split(';').next()?;
    let (key, value) = pair.trim().split_once('=')?;
    (key == name).then(|| value.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_cookie_pins_and_repins_when_its_backend_leaves() {
    let b = Backend::start_many(3).await;
    let gateway = Gateway::with_config(&format!(
        r#"
listen = "127.0.0.1:0"
workers = 2
routes = [{{ pool = "web" }}]
[pools.web]
strategy = "round-robin"
backends = {}
sticky = {{ cookie = "sb" }}
"#,
        toml_backends(&[&b[0], &b[1], &b[2]])
    ))
    .await;
    let client = client();
    let url = gateway.url("/");

    // First visit: the gateway names the backend that answered.
    let first = get(&client, &url).await;
    assert_eq!(first.status, 200);
    let set_cookie = first.header("set-cookie").expect("a Set-Cookie");
    let cookie = set_cookie_value(&set_cookie, "sb").expect("the sb cookie");
    let pinned = b.iter().find(|x| x.name == first.text()).unwrap();
    assert_eq!(cookie, pinned.addr.to_string(), "cookie names the backend");

    // With the cookie: always that backend, and no new cookie.
    let with_cookie = || {
        get_req(&url)
            .header("cookie", format!("other=1; sb={cookie}"))
            .body(Full::default())
            .expect("request")
    };
    for _ in 0..10 {
        let reply = send(&client, with_cookie()).await;
        assert_eq!(reply.text(), pinned.name);
        assert_eq!(reply.header("set-cookie"), None);
    }

    // The pinned backend leaves the pool (the gateway restarts without it):
    // the old cookie is ignored, the strategy chooses, and the client is
    // re-pinned to the backend that answered.
    drop(gateway);
    let others: Vec<&Backend> = b.iter().filter(|x| x.name != pinned.name).collect();
    let gateway = Gateway::with_config(&format!(
        r#"
listen = "127.0.0.1:0"
routes = [{{ pool = "web" }}]
[pools.web]
backends = {}
sticky = {{ cookie = "sb" }}
"#,
        toml_backends(&others)
    ))
    .await;
    let url = gateway.url("/");
    let with_old_cookie = get_req(&url)
        .header("cookie", format!("sb={cookie}"))
        .body(Full::default())
        .expect("request");
    let reply = send(&client, with_old_cookie).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answered = others.iter().find(|x| x.name == reply.text()).unwrap();
    let renewed = reply
        .header("set-cookie")
        .and_then(|c| set_cookie_value(&c, "sb"))
        .expect("a new sb cookie");
    assert_eq!(renewed, answered.addr.to_string());
}
