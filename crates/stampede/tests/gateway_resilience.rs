//! Backends in and out of rotation, end to end. Active health checks: a
//! backend that dies is taken out after `fall` failed checks, so clients
//! stop seeing its errors; when it comes back it is put back after `rise`
//! passed checks; the state shows in `/metrics`. Both kinds of check: an
//! HTTP `GET` of a path, and a bare TCP connect. Drains from the admin
//! listener: a drained backend gets no new requests but finishes the ones
//! it has, and comes back when undrained. Passive ejection. Retries on
//! another backend, and their budget when everything fails. Slow start of
//! a backend that comes back.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use serde_json::Value;
use support::{
    Backend, Gateway, HttpClient, SteadyLoad, client, get, h2_client, send, served_by,
    served_by_each, unused_addr,
};
use support::{backend_up as up, wait_backend_up as wait_up};

/// Checks every 100 ms, 2 results in a row change a backend's state.
fn config(backends: &[SocketAddr], check: &str) -> String {
    let list: Vec<String> = backends.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
workers = 2
routes = [{{ pool = "web" }}]
[pools.web]
backends = [{}]
[pools.web.health_check]
{check}
interval = "100ms"
timeout = "100ms"
rise = 2
fall = 2
"#,
        list.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_is_taken_out_and_put_back_when_it_returns() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let b_addr = b.addr;
    let gateway = Gateway::with_config(&config(&[a.addr, b_addr], "path = \"/healthz\"")).await;
    let client = client();
    wait_up(&client, &gateway, b_addr, 1.0).await;
    assert_eq!(
        served_by(&client, &gateway, 10).await,
        ["a", "b"].map(String::from).into()
    );

    b.stop();
    wait_up(&client, &gateway, b_addr, 0.0).await;
    // Out of rotation: every request goes to `a`, none fails.
    assert_eq!(
        served_by(&client, &gateway, 20).await,
        ["a".to_owned()].into()
    );

    let _b = Backend::start_at("b", b_addr).await;
    wait_up(&client, &gateway, b_addr, 1.0).await;
    assert_eq!(
        served_by(&client, &gateway, 10).await,
        ["a", "b"].map(String::from).into()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_check_takes_out_a_backend_that_never_listened() {
    let a = Backend::start("a").await;
    let dead = unused_addr();
    let gateway = Gateway::with_config(&config(&[a.addr, dead], "")).await;
    let client = client();
    assert_eq!(up(&client, &gateway, a.addr).await, Some(1.0));
    wait_up(&client, &gateway, dead, 0.0).await;
    assert_eq!(
        served_by(&client, &gateway, 10).await,
        ["a".to_owned()].into()
    );
    assert_eq!(
        up(&client, &gateway, a.addr).await,
        Some(1.0),
        "the live one stays up"
    );
}

/// `POST` to the admin listener; the status and the JSON answer.
async fn admin_post(client: &HttpClient, gateway: &Gateway, path: &str) -> (u16, Value) {
    let request = Request::post(gateway.admin_url(path))
        .body(Full::<Bytes>::default())
        .expect("request");
    let reply = send(client, request).await;
    (reply.status.as_u16(), reply.json())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_backend_finishes_its_requests_and_gets_no_new_ones() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let gateway = Gateway::with_config(&format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nworkers = 2\n\
         routes = [{{ pool = \"web\" }}]\n[pools.web]\nbackends = [\"{}\", \"{}\"]\n",
        a.addr, b.addr
    ))
    .await;
    let client = client();
    // Round-robin: of two slow requests, one is on `b` when it is drained.
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let (client, url) = (client.clone(), gateway.url("/delay/400"));
            tokio::spawn(async move { get(&client, &url).await })
        })
        .collect();
    b.wait_hits(1, Duration::from_secs(5)).await;

    let drain = format!("/pools/web/backends/{}/drain", b.addr);
    let (status, state) = admin_post(&client, &gateway, &drain).await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(
        (state["draining"].as_bool(), state["available"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(
        served_by(&client, &gateway, 10).await,
        ["a".to_owned()].into()
    );
    for request in slow {
        let reply = request.await.expect("slow request");
        assert_eq!(
            reply.status,
            200,
            "in-flight requests finish: {}",
            reply.text()
        );
    }
    let listed = get(&client, &gateway.admin_url("/backends")).await.json();
    assert_eq!(
        listed["pools"][0]["backends"][1]["draining"], true,
        "{listed}"
    );

    let undrain = format!("/pools/web/backends/{}/undrain", b.addr);
    assert_eq!(admin_post(&client, &gateway, &undrain).await.0, 200);
    assert_eq!(
        served_by(&client, &gateway, 10).await,
        ["a", "b"].map(String::from).into()
    );

    let (status, error) =
        admin_post(&client, &gateway, "/pools/web/backends/127.0.0.1:1/drain").await;
    assert_eq!((status, error["error"].as_str()), (404, Some("not_found")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_whose_answers_keep_failing_is_ejected_for_a_while() {
    let a = Backend::start("a").await;
    let dead = unused_addr();
    let gateway = Gateway::with_config(&format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nworkers = 1\n\
         routes = [{{ pool = \"web\" }}]\n[pools.web]\nbackends = [\"{}\", \"{dead}\"]\n\
         [pools.web.ejection]\nconsecutive_failures = 2\nbase_time = \"1s\"\nmax_time = \"10s\"\n",
        a.addr
    ))
    .await;
    let client = client();
    // Round-robin: every other request goes to the dead backend, whose
    // refused connections count against it; its second failure ejects it.
    let mut failed = 0;
    for _ in 0..4 {
        if get(&client, &gateway.url("/")).await.status == 502 {
            failed += 1;
        }
    }
    assert_eq!(failed, 2);
    assert_eq!(up(&client, &gateway, dead).await, Some(0.0));
    assert_eq!(
        served_by(&client, &gateway, 10).await,
        ["a".to_owned()].into()
    );
    // After base_time it is back, and fails again.
    wait_up(&client, &gateway, dead, 1.0).await;
    let statuses: BTreeSet<u16> = {
        let mut seen = BTreeSet::new();
        for _ in 0..2 {
            seen.insert(get(&client, &gateway.url("/")).await.status.as_u16());
        }
        seen
    };
    assert!(statuses.contains(&502), "back in rotation: {statuses:?}");
}

/// A pool of `backends` with `[pools.web.retries]` set to `retries`.
fn retrying(backends: &[SocketAddr], retries: &str) -> String {
    let list: Vec<String> = backends.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nworkers = 1\n\
         routes = [{{ pool = \"web\" }}]\n[pools.web]\nbackends = [{}]\n\
         [pools.web.retries]\n{retries}\n",
        list.join(", ")
    )
}

/// The value of a counter with `pool="web"`, 0 when not exported yet.
async fn counter(client: &HttpClient, gateway: &Gateway, name: &str) -> f64 {
    let metrics = get(client, &gateway.admin_url("/metrics")).await.text();
    metrics
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix("{pool=\"web\"} ")?;
            rest.trim().parse().ok()
        })
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_a_dead_backend_are_retried_on_a_live_one() {
    let a = Backend::start("a").await;
    let dead = unused_addr();
    let gateway = Gateway::with_config(&retrying(&[a.addr, dead], "max = 1")).await;
    let client = client();
    // Round-robin sends every other request to the dead backend first.
    assert_eq!(
        served_by(&client, &gateway, 10).await,
        ["a".to_owned()].into()
    );
    // Nothing was sent before the connect failed, so a POST goes too.
    let post = Request::post(gateway.url("/count"))
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from_static(b"12345")))
        .expect("request");
    for _ in 0..2 {
        let reply = send(&client, post.clone()).await;
        assert_eq!((reply.status.as_u16(), reply.text()), (200, "5".to_owned()));
    }
    let retried = counter(&client, &gateway, "stampede_gateway_retries_total").await;
    assert!(
        (5.0..=7.0).contains(&retried),
        "about one retry per two requests: {retried}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_without_a_body_are_retried_on_a_live_backend_too() {
    let a = Backend::start("a").await;
    let dead = unused_addr();
    let gateway = Gateway::with_config(&retrying(&[a.addr, dead], "max = 1")).await;
    // HTTP/2 clients are served through hyper, not the fast path.
    let h2 = h2_client();
    for _ in 0..6 {
        let reply = get(&h2, &gateway.url("/")).await;
        assert_eq!((reply.status.as_u16(), reply.text()), (200, "a".to_owned()));
    }
    // A body is streamed to the first backend as it arrives, so it cannot
    // be sent again: a POST that met the dead backend is answered 502.
    let statuses: Vec<u16> = posts_with_a_body(&h2, &gateway, 4).await;
    assert!(statuses.contains(&502), "{statuses:?}");
    let retried = counter(&client(), &gateway, "stampede_gateway_retries_total").await;
    assert!((2.0..=4.0).contains(&retried), "{retried}");
}

/// The statuses of `n` POSTs with a body, one after another.
async fn posts_with_a_body(client: &HttpClient, gateway: &Gateway, n: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..n {
        let post = Request::post(gateway.url("/count"))
            .body(Full::new(Bytes::from_static(b"12345")))
            .expect("request");
        statuses.push(send(client, post).await.status.as_u16());
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_backend_failing_retries_stay_within_the_budget() {
    let (dead0, dead1) = (unused_addr(), unused_addr());
    let config = retrying(
        &[dead0, dead1],
        "max = 1\nbudget_ratio = 0.1\nbudget_floor = 0",
    );
    let gateway = Gateway::with_config(&config).await;
    let client = client();
    for _ in 0..100 {
        assert_eq!(get(&client, &gateway.url("/")).await.status, 502);
    }
    let retried = counter(&client, &gateway, "stampede_gateway_retries_total").await;
    let refused = counter(&client, &gateway, "stampede_gateway_retries_refused_total").await;
    assert!(
        retried <= 10.0,
        "a tenth of 100 requests at most: {retried}"
    );
    assert!(retried >= 9.0, "but the budget is spent: {retried}");
    assert_eq!(retried + refused, 100.0, "every request wanted one retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_serves_only_while_the_primaries_are_down() {
    let primary = Backend::start("primary").await;
    let backup = Backend::start("backup").await;
    let primary_addr = primary.addr;
    let gateway = Gateway::with_config(&format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nworkers = 2\n\
         routes = [{{ pool = \"web\" }}]\n[pools.web]\n\
         backends = [\"{primary_addr}\", {{ address = \"{}\", backup = true }}]\n\
         [pools.web.health_check]\ninterval = \"100ms\"\ntimeout = \"100ms\"\nrise = 2\nfall = 2\n",
        backup.addr
    ))
    .await;
    let client = client();
    assert_eq!(
        served_by(&client, &gateway, 10).await,
        ["primary".to_owned()].into()
    );
    primary.stop();
    wait_up(&client, &gateway, primary_addr, 0.0).await;
    assert_eq!(
        served_by(&client, &gateway, 10).await,
        ["backup".to_owned()].into()
    );
    let _primary = Backend::start_at("primary", primary_addr).await;
    wait_up(&client, &gateway, primary_addr, 1.0).await;
    assert_eq!(
        served_by(&client, &gateway, 10).await,
        ["primary".to_owned()].into()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_three_backends_under_load_costs_clients_no_error() {
    let backends = Backend::start_many(3).await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    // Without the retries a client sees the killed backend's errors (tried).
    let config = format!(
        "{}[pools.web.retries]\nmax = 2\n",
        config(&addrs, "path = \"/healthz\"")
    )
    .replace("[pools.web]\n", "[pools.web]\nslow_start = \"2s\"\n");
    let gateway = Gateway::with_config(&config).await;
    let client = client();
    let load = SteadyLoad::start(&client, &gateway.url("/"), 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    backends[2].stop();
    wait_up(&client, &gateway, addrs[2], 0.0).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _back = Backend::start_at("b2", addrs[2]).await;
    wait_up(&client, &gateway, addrs[2], 1.0).await;
    // Back through slow start: at first a tenth or so of its picks, where
    // round-robin alone would give it a third of the traffic.
    let share = warming(&client, &gateway, addrs[2]).await;
    assert!(share.is_some_and(|w| w < 0.6), "{share:?}");
    let early = served_by_each(&client, &gateway, 40).await;
    assert!(early.get("b2").copied().unwrap_or(0) < 10, "{early:?}");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(
        warming(&client, &gateway, addrs[2]).await,
        None,
        "ramp over"
    );
    let statuses = load.stop(100).await;
    assert!(
        statuses.iter().all(|&s| s == 200),
        "a client saw an error: {statuses:?}"
    );
    assert_eq!(
        served_by(&client, &gateway, 12).await.len(),
        3,
        "all three serve again"
    );
}

/// The share of its picks `backend` takes in its slow start, per `GET /backends`.
async fn warming(client: &HttpClient, gateway: &Gateway, backend: SocketAddr) -> Option<f64> {
    let state = get(client, &gateway.admin_url("/backends")).await.json();
    let backends = state["pools"][0]["backends"].as_array().cloned();
    let id = backend.to_string();
    let entry = backends?
        .into_iter()
        .find(|b| b["backend"] == id.as_str())?;
    entry["warming"].as_f64()
}
