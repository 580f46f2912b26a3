//! Active health checks end to end: a backend that dies is taken out of
//! rotation after `fall` failed checks, so clients stop seeing its errors;
//! when it comes back it is put back after `rise` passed checks; the state
//! shows in `/metrics`. Both kinds of check: an HTTP `GET` of a path, and a
//! bare TCP connect.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use support::{Backend, Gateway, HttpClient, client, get, unused_addr, within};

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

/// `stampede_gateway_backend_up` of `backend`, if exported.
async fn up(client: &HttpClient, gateway: &Gateway, backend: SocketAddr) -> Option<f64> {
    let metrics = get(client, &gateway.admin_url("/metrics")).await.text();
    let label = format!("backend=\"{backend}\"");
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix("stampede_gateway_backend_up{")?;
        let (labels, value) = rest.split_once("} ")?;
        labels.contains(&label).then(|| value.trim().parse().ok())?
    })
}

async fn wait_up(client: &HttpClient, gateway: &Gateway, backend: SocketAddr, want: f64) {
    let what = format!("backend {backend} to be reported up={want}");
    within(Duration::from_secs(5), &what, async {
        while up(client, gateway, backend).await != Some(want) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// The backends that answered `n` requests; every answer must be a `200`.
async fn served_by(client: &HttpClient, gateway: &Gateway, n: usize) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for _ in 0..n {
        let reply = get(client, &gateway.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        names.insert(reply.text());
    }
    names
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
