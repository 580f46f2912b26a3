//! Every balancing strategy, observed through the real gateway: which of
//! three real backends answers each request.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::time::Duration;

use support::{
    Backend, Behaviour, Gateway, GatewayToml, HttpClient, Reply, TIMEOUT, client, get, get_with,
    toml_backends,
};

type Counts = BTreeMap<String, usize>;

/// Counts a `200` reply under the name of the backend that sent it.
fn record(counts: &mut Counts, reply: &Reply) {
    assert_eq!(reply.status, 200, "{}", reply.text());
    *counts.entry(reply.text()).or_default() += 1;
}

/// Asserts that each named backend answered a number of times in its range.
#[track_caller]
fn assert_counts(counts: &Counts, expected: &[(&str, RangeInclusive<usize>)]) {
    for (name, range) in expected {
        let n = counts.get(*name).copied().unwrap_or(0);
        assert!(
            range.contains(&n),
            "{name}: {n} not in {range:?}: {counts:?}"
        );
    }
}

/// Sends `n` sequential GETs to `/`, counts answers by backend name, and
/// checks the counts with [`assert_counts`].
async fn assert_spread(gateway: &Gateway, n: usize, expected: &[(&str, RangeInclusive<usize>)]) {
    let client = client();
    let mut counts = Counts::new();
    for _ in 0..n {
        record(&mut counts, &get(&client, &gateway.url("/")).await);
    }
    assert_counts(&counts, expected);
}

/// A GET of `/` with extra headers; returns the answering backend's name.
async fn who_answers(client: &HttpClient, url: &str, headers: &[(&str, &str)]) -> String {
    let reply = get_with(client, url, headers).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

/// Three backends in one pool of `strategy` with these weights.
async fn weighted_gateway(b: &[Backend], strategy: &str, weights: [u32; 3]) -> Gateway {
    let items: Vec<String> = b
        .iter()
        .zip(weights)
        .map(|(backend, weight)| {
            format!(r#"{{ address = "{}", weight = {weight} }}"#, backend.addr)
        })
        .collect();
    GatewayToml::web(format!("[{}]", items.join(", ")))
        .pool(&format!(r#"strategy = "{strategy}""#))
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_is_even() {
    let b = Backend::start_many(3).await;
    let gateway = Gateway::quick(&[&b[0], &b[1], &b[2]], "round-robin").await;
    assert_spread(
        &gateway,
        300,
        &[("b0", 99..=101), ("b1", 99..=101), ("b2", 99..=101)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_follows_weights_exactly() {
    let b = Backend::start_many(3).await;
    let gateway = weighted_gateway(&b, "weighted-round-robin", [3, 1, 1]).await;
    assert_spread(
        &gateway,
        500,
        &[("b0", 300..=300), ("b1", 100..=100), ("b2", 100..=100)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_is_roughly_weighted() {
    let b = Backend::start_many(3).await;
    let gateway = weighted_gateway(&b, "random", [2, 1, 1]).await;
    // Expected 200/100/100; the bounds are about five standard deviations.
    assert_spread(
        &gateway,
        400,
        &[("b0", 150..=250), ("b1", 50..=150), ("b2", 50..=150)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_prefers_idle_backends() {
    // b0 holds every request open until released; b1 and b2 answer at once.
    let busy = Backend::start_with("busy", Behaviour::holding()).await;
    let idle = Backend::start_many(2).await;
    let gateway = Gateway::quick(&[&busy, &idle[0], &idle[1]], "least-conn").await;
    let client = client();
    let mut held = Vec::new();
    let mut answered = Counts::new();
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
                record(&mut answered, &request.await.unwrap());
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
    // At least 10 each (of 30 in all).
    assert_counts(&answered, &[("b0", 10..=30), ("b1", 10..=30)]);
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
    let slow = Backend::start_with("slow", Behaviour::delayed(Duration::from_millis(50))).await;
    let fast = Backend::start_many(2).await;
    let gateway = Gateway::quick(&[&slow, &fast[0], &fast[1]], "p2c-ewma").await;
    // Round-robin would send it 67; once measured it should lose every draw.
    // At most 10 for it and at least 50 for each other (of 200 in all).
    assert_spread(
        &gateway,
        200,
        &[("slow", 0..=10), ("b0", 50..=200), ("b1", 50..=200)],
    )
    .await;
}

/// A pool of three behind a gateway that trusts 127.0.0.1, so that
/// `X-Forwarded-For` can play different clients.
async fn hashing_gateway(b: &[Backend], pool_options: &str) -> Gateway {
    GatewayToml::web(toml_backends(&[&b[0], &b[1], &b[2]]))
        .top(r#"trusted_proxies = ["127.0.0.1/32"]"#)
        .pool(pool_options)
        .start()
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
    let sticky = |backends: &[&Backend]| {
        GatewayToml::web(toml_backends(backends)).pool(r#"sticky = { cookie = "sb" }"#)
    };
    let gateway = sticky(&[&b[0], &b[1], &b[2]])
        .pool(r#"strategy = "round-robin""#)
        .start()
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
    let with_cookie = format!("other=1; sb={cookie}");
    for _ in 0..10 {
        let reply = get_with(&client, &url, &[("cookie", &with_cookie)]).await;
        assert_eq!(reply.text(), pinned.name);
        assert_eq!(reply.header("set-cookie"), None);
    }

    // The pinned backend leaves the pool (the gateway restarts without it):
    // the old cookie is ignored, the strategy chooses, and the client is
    // re-pinned to the backend that answered.
    drop(gateway);
    let others: Vec<&Backend> = b.iter().filter(|x| x.name != pinned.name).collect();
    let gateway = sticky(&others).default_workers().start().await;
    let url = gateway.url("/");
    let old_cookie = format!("sb={cookie}");
    let reply = get_with(&client, &url, &[("cookie", &old_cookie)]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answered = others.iter().find(|x| x.name == reply.text()).unwrap();
    let renewed = reply
        .header("set-cookie")
        .and_then(|c| set_cookie_value(&c, "sb"))
        .expect("a new sb cookie");
    assert_eq!(renewed, answered.addr.to_string());
}
