//! Reloading the gateway's configuration, end to end: on `SIGHUP` and with
//! `--watch`, under load with no failed request, on connections that stay
//! open across it, keeping the state of backends that stay, and refusing a
//! file that is invalid or changes what needs a restart (the running
//! configuration goes on serving).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use support::{
    Backend, Gateway, HttpClient, SteadyLoad, client, get, roundtrip, send, served_by, within,
};
use tokio::net::TcpStream;

/// A gateway file with an admin listener and one pool `web` of `backends`,
/// plus `extra` lines in the pool's table.
fn config(backends: &[&Backend], extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr)).collect();
    format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nworkers = 2\n\
         routes = [{{ pool = \"web\" }}]\n[pools.web]\n{extra}\nbackends = [{}]\n",
        list.join(", ")
    )
}

/// The backends the admin listener lists for pool `web`.
async fn listed(client: &HttpClient, gateway: &Gateway) -> BTreeSet<String> {
    let state = get(client, &gateway.admin_url("/backends")).await.json();
    state["pools"][0]["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["backend"].as_str().map(str::to_owned))
        .collect()
}

/// Waits until the gateway runs a configuration whose pool is `backends`.
async fn wait_listed(client: &HttpClient, gateway: &Gateway, backends: &[&Backend]) {
    let want: BTreeSet<String> = backends.iter().map(|b| b.addr.to_string()).collect();
    within(Duration::from_secs(5), "the new configuration", async {
        while listed(client, gateway).await != want {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Reloads `toml`, which must be refused: the `nth` refusal in the logs.
/// The logs so far.
async fn refused_reload(gateway: &Gateway, toml: &str, nth: usize) -> String {
    gateway.rewrite_config(toml);
    gateway.hangup();
    within(Duration::from_secs(5), "the reload to be refused", async {
        while gateway.stderr().matches("Reload refused").count() < nth {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    gateway.stderr()
}

fn names(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_load_fails_no_request_and_moves_the_traffic() {
    let backends = Backend::start_many(3).await;
    let [b0, b1, b2] = [&backends[0], &backends[1], &backends[2]];
    let gateway = Gateway::with_config(&config(&[b0, b1], "")).await;
    let client = client();
    let load = SteadyLoad::start(&client, &gateway.url("/"), 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    gateway.rewrite_config(&config(&[b1, b2], "strategy = \"least-conn\""));
    gateway.hangup();
    wait_listed(&client, &gateway, &[b1, b2]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let statuses = load.stop(100).await;
    assert!(
        statuses.iter().all(|&s| s == 200),
        "a client saw an error: {statuses:?}"
    );
    assert_eq!(served_by(&client, &gateway, 12).await, names(&["b1", "b2"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_open_across_a_reload_goes_on_with_the_new_configuration() {
    let (b0, b1) = (Backend::start("b0").await, Backend::start("b1").await);
    let gateway = Gateway::with_config(&config(&[&b0], "")).await;
    let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
    let request = "GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n";
    let (head, body) = roundtrip(&mut stream, request).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "b0");

    gateway.rewrite_config(&config(&[&b1], ""));
    gateway.hangup();
    wait_listed(&client(), &gateway, &[&b1]).await;
    let (head, body) = roundtrip(&mut stream, request).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "b1", "the same connection, the new pool");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_reload_is_refused_and_the_running_configuration_serves_on() {
    let (b0, b1) = (Backend::start("b0").await, Backend::start("b1").await);
    let gateway = Gateway::with_config(&config(&[&b0], "")).await;
    let client = client();

    let logs = refused_reload(&gateway, &config(&[&b1], "strategy = \"fastest\""), 1).await;
    assert!(logs.contains("pools.web.strategy"), "names the key: {logs}");
    assert_eq!(served_by(&client, &gateway, 4).await, names(&["b0"]));

    // Valid, but the listener cannot move without a restart.
    let moved = config(&[&b1], "").replace("127.0.0.1:0\"\nadmin", "127.0.0.1:1\"\nadmin");
    let logs = refused_reload(&gateway, &moved, 2).await;
    assert!(logs.contains("`listen` cannot change"), "{logs}");
    assert_eq!(served_by(&client, &gateway, 4).await, names(&["b0"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_that_stay_keep_their_drain_across_a_reload() {
    let backends = Backend::start_many(3).await;
    let [b0, b1, b2] = [&backends[0], &backends[1], &backends[2]];
    let gateway = Gateway::with_config(&config(&[b0, b1], "")).await;
    let client = client();
    let drain = Request::post(gateway.admin_url(&format!("/pools/web/backends/{}/drain", b0.addr)))
        .body(Full::<Bytes>::default())
        .expect("request");
    assert_eq!(send(&client, drain).await.status, 200);
    assert_eq!(served_by(&client, &gateway, 4).await, names(&["b1"]));

    // b0 stays (with another weight), b1 goes, b2 arrives.
    let reweighted = config(&[b2], "strategy = \"weighted-round-robin\"").replace(
        "backends = [",
        &format!("backends = [{{ address = \"{}\", weight = 3 }}, ", b0.addr),
    );
    gateway.rewrite_config(&reweighted);
    gateway.hangup();
    wait_listed(&client, &gateway, &[b0, b2]).await;
    assert_eq!(
        served_by(&client, &gateway, 8).await,
        names(&["b2"]),
        "b0 is still drained"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_watch_a_changed_file_is_reloaded_without_a_signal() {
    let (b0, b1) = (Backend::start("b0").await, Backend::start("b1").await);
    let gateway = Gateway::with_config_and(&config(&[&b0], ""), &["--watch"]).await;
    let client = client();
    assert_eq!(served_by(&client, &gateway, 2).await, names(&["b0"]));
    gateway.rewrite_config(&config(&[&b1], ""));
    wait_listed(&client, &gateway, &[&b1]).await;
    assert_eq!(served_by(&client, &gateway, 4).await, names(&["b1"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_whose_admission_settings_stay_keeps_its_places_across_a_reload() {
    let (b0, b1) = (Backend::start("b0").await, Backend::start("b1").await);
    let limited = |backends: &[&Backend]| {
        config(backends, "").replace(
            "routes = [{ pool = \"web\" }]",
            "routes = [{ pool = \"web\", max_concurrency = 1 }]",
        )
    };
    let gateway = Gateway::with_config(&limited(&[&b0])).await;
    let client = client();
    let slow = {
        let (client, url) = (client.clone(), gateway.url("/delay/1500"));
        tokio::spawn(async move { get(&client, &url).await })
    };
    b0.wait_hits(1, Duration::from_secs(5)).await;

    gateway.rewrite_config(&limited(&[&b0, &b1]));
    gateway.hangup();
    wait_listed(&client, &gateway, &[&b0, &b1]).await;
    let refused = get(&client, &gateway.url("/")).await;
    assert_eq!(
        (refused.status.as_u16(), refused.json()["error"].as_str()),
        (503, Some("overloaded")),
        "the one place is still taken by the request from before the reload"
    );
    assert_eq!(slow.await.expect("slow request").status, 200);
    assert_eq!(get(&client, &gateway.url("/")).await.status, 200);
}
