//! The admin listener's Prometheus metrics after real traffic.

mod support;

use std::time::Duration;

use support::{Backend, Gateway, client, get, unused_addr, within};

/// The value of the sample of `metric` whose labels include all of `labels`.
fn sample(metrics: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(metric)?;
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(rest) => rest.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        labels
            .iter()
            .all(|(k, v)| label_text.split(',').any(|kv| kv == format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().ok())?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_pool_backend_and_status() {
    let b0 = Backend::start("b0").await;
    let b1 = Backend::start("b1").await;
    let dead = unused_addr();
    let gateway = Gateway::with_config(&format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
workers = 2
routes = [{{ pool = "web" }}, {{ path_prefix = "/dead", pool = "dead" }}]
[pools.web]
backends = ["{}", "{}"]
[pools.dead]
backends = ["{dead}"]
"#,
        b0.addr, b1.addr
    ))
    .await;
    let client = client();
    for _ in 0..6 {
        assert_eq!(get(&client, &gateway.url("/")).await.status, 200);
    }
    for _ in 0..2 {
        assert_eq!(get(&client, &gateway.url("/dead/x")).await.status, 502);
    }

    let (web0, web1, dead) = (b0.addr.to_string(), b1.addr.to_string(), dead.to_string());
    let requests = "stampede_gateway_requests_total";
    let expected = [
        (&web0, "web", "200", 3.0),
        (&web1, "web", "200", 3.0),
        (&dead, "dead", "502", 2.0),
    ];
    // Requests are counted when their response body ends, which may be a
    // moment after the client has it: poll briefly.
    let metrics = within(Duration::from_secs(5), "the expected counts", async {
        loop {
            let reply = get(&client, &gateway.admin_url("/metrics")).await;
            assert_eq!(reply.status, 200);
            let text = reply.text();
            let all = expected.iter().all(|(backend, pool, status, n)| {
                let labels = [
                    ("pool", *pool),
                    ("backend", backend.as_str()),
                    ("status", *status),
                ];
                sample(&text, requests, &labels) == Some(*n)
            });
            if all {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    // Nothing counted under statuses that did not happen.
    assert_eq!(
        sample(&metrics, requests, &[("backend", &web0), ("status", "502")]),
        None,
        "{metrics}"
    );

    // Latency histogram with buckets, one sample per request.
    let bucket = "stampede_gateway_request_duration_seconds_bucket";
    for backend in [&web0, &web1] {
        let labels = [
            ("pool", "web"),
            ("backend", backend.as_str()),
            ("le", "+Inf"),
        ];
        assert_eq!(sample(&metrics, bucket, &labels), Some(3.0), "{metrics}");
        let count = "stampede_gateway_request_duration_seconds_count";
        let labels = [("pool", "web"), ("backend", backend.as_str())];
        assert_eq!(sample(&metrics, count, &labels), Some(3.0), "{metrics}");
    }

    // Kept-alive connections to the live backends are open and counted.
    let connections = "stampede_gateway_backend_connections";
    for backend in [&web0, &web1] {
        let labels = [("pool", "web"), ("backend", backend.as_str())];
        let open = sample(&metrics, connections, &labels);
        assert!(
            open.is_some_and(|n| n >= 1.0),
            "{connections} for {backend}: {open:?}\n{metrics}"
        );
    }
    let labels = [("pool", "dead"), ("backend", dead.as_str())];
    assert_eq!(
        sample(&metrics, connections, &labels),
        Some(0.0),
        "{metrics}"
    );

    let health = get(&client, &gateway.admin_url("/healthz")).await;
    assert_eq!(health.status, 200);
}
