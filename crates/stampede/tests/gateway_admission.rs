//! Admission control, end to end: a route's concurrency limit and its
//! short queue hold a burst at the limit, and what is beyond them is told to
//! come back (`503 overloaded` with `Retry-After`) without reaching a
//! backend; rate limits answer `429 rate_limited` beyond their bucket, per
//! route or per client address; a waiting room lines up the visitors that
//! come while the route is full and lets them in, in turn, with a pass.

mod support;

use std::time::Duration;

use support::{
    Backend, Behaviour, Gateway, GatewayToml, HttpClient, client, get, get_with, h2_client,
    toml_backends,
};

/// A gateway whose one route admits `limit` requests at once and queues
/// `queue` more, in front of `backend`.
async fn limited(backend: &Backend, limit: usize, queue: usize) -> Gateway {
    Gateway::with_config(&format!(
        "listen = \"127.0.0.1:0\"\nworkers = 2\n\
         routes = [{{ pool = \"web\", max_concurrency = {limit}, max_queue = {queue}, queue_timeout = \"5s\" }}]\n\
         [pools.web]\nbackends = [\"{}\"]\n",
        backend.addr
    ))
    .await
}

/// Sends `n` slow requests at once; their answers.
async fn burst(gateway: &Gateway, n: usize) -> Vec<support::Reply> {
    burst_over(&client(), gateway, n).await
}

/// Sends `n` slow requests at once through `client`; their answers.
async fn burst_over(client: &HttpClient, gateway: &Gateway, n: usize) -> Vec<support::Reply> {
    let requests: Vec<_> = (0..n)
        .map(|_| {
            let (client, url) = (client.clone(), gateway.url("/delay/300"));
            tokio::spawn(async move { get(&client, &url).await })
        })
        .collect();
    let mut replies = Vec::new();
    for request in requests {
        replies.push(request.await.expect("request"));
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_its_concurrency_limit_a_route_answers_503_with_retry_after() {
    let backend = Backend::start("b").await;
    let gateway = limited(&backend, 2, 0).await;
    let replies = burst(&gateway, 6).await;
    let (ok, refused): (Vec<_>, Vec<_>) = replies.iter().partition(|r| r.status == 200);
    assert_eq!((ok.len(), refused.len()), (2, 4));
    for reply in refused {
        assert_eq!(reply.status, 503);
        assert_eq!(reply.headers["retry-after"], "1");
        assert_eq!(reply.json()["error"], "overloaded", "{}", reply.text());
    }
    assert_eq!(backend.hits(), 2, "the backend saw only what was admitted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_holds_the_burst_at_the_limit_and_serves_it_in_turn() {
    let backend = Backend::start("b").await;
    let gateway = limited(&backend, 2, 4).await;
    let started = std::time::Instant::now();
    let replies = burst(&gateway, 6).await;
    assert!(replies.iter().all(|r| r.status == 200));
    // Six 300 ms requests, two at a time: three rounds.
    assert!(
        started.elapsed() >= Duration::from_millis(850),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_control_holds_the_backends_concurrency_at_the_limit_under_a_burst() {
    let backend = Backend::start("b").await;
    let gateway = limited(&backend, 3, 32).await;
    // Half over HTTP/1.1 (the fast path), half over h2c (hyper): one limit.
    let (h1_client, h2_client) = (client(), h2_client());
    let (h1, h2) = tokio::join!(
        burst_over(&h1_client, &gateway, 12),
        burst_over(&h2_client, &gateway, 12)
    );
    for reply in h1.iter().chain(&h2) {
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert_eq!(backend.hits(), 24);
    assert_eq!(
        backend.peak_concurrency(),
        3,
        "the backend never had more than the limit at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_client_leaves_the_queue_gives_its_spot_back() {
    let backend = Backend::start_with("b", Behaviour::holding()).await;
    let gateway = limited(&backend, 1, 1).await;
    // h2c, so that the hyper path serves it and a client that gives up
    // cancels its request (RST_STREAM) rather than closing a connection.
    let client = h2_client();
    let request = |client: &HttpClient| {
        let (client, url) = (client.clone(), gateway.url("/"));
        tokio::spawn(async move { get(&client, &url).await })
    };
    let first = request(&client);
    backend.wait_hits(1, Duration::from_secs(5)).await;
    let gives_up = request(&client);
    tokio::time::sleep(Duration::from_millis(200)).await;
    gives_up.abort();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The queue's one spot is free again: the next request waits in it.
    let queued = request(&client);
    tokio::time::sleep(Duration::from_millis(200)).await;
    backend.release();
    for reply in [first, queued] {
        let reply = reply.await.expect("request");
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
}

/// `stampede_gateway_admission_refused_total` for pool `web` and `reason`.
async fn refused(gateway: &Gateway, reason: &str) -> Option<f64> {
    let metrics = get(&client(), &gateway.admin_url("/metrics")).await.text();
    let labels = format!("{{pool=\"web\",reason=\"{reason}\"}} ");
    metrics.lines().find_map(|line| {
        let value = line
            .strip_prefix("stampede_gateway_admission_refused_total")?
            .strip_prefix(&labels)?;
        value.trim().parse().ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_its_rate_limit_a_route_answers_429_and_the_backend_sees_only_what_was_allowed() {
    let backend = Backend::start("b").await;
    // A token every two seconds, three at once.
    let gateway = GatewayToml::web(toml_backends(&[&backend]))
        .top("admin_listen = \"127.0.0.1:0\"")
        .route("rate_limit = { rate = 0.5, burst = 3 }")
        .start()
        .await;
    // Both paths, in turn: HTTP/1.1 (the fast path) and h2c (hyper).
    let (h1, h2) = (client(), h2_client());
    let mut replies = Vec::new();
    for i in 0..6 {
        let client = if i % 2 == 0 { &h1 } else { &h2 };
        replies.push(get(client, &gateway.url("/")).await);
    }
    let statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    for reply in &replies[3..] {
        assert_eq!(reply.header("retry-after").as_deref(), Some("2"));
        let body = reply.json();
        assert_eq!(
            (body["error"].as_str(), body["pool"].as_str()),
            (Some("rate_limited"), Some("web"))
        );
    }
    assert_eq!(
        backend.hits(),
        3,
        "the backend saw only the allowed requests"
    );
    assert_eq!(refused(&gateway, "rate_limited").await, Some(3.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_client_ip_every_client_behind_a_trusted_proxy_has_its_own_bucket() {
    let backend = Backend::start("b").await;
    let gateway = GatewayToml::web(toml_backends(&[&backend]))
        .top("trusted_proxies = [\"127.0.0.1\"]")
        .route("rate_limit = { rate = 0.5, burst = 2, per = \"client_ip\" }")
        .start()
        .await;
    let client = client();
    let from = |ip: &'static str| {
        let (client, url) = (client.clone(), gateway.url("/"));
        async move {
            get_with(&client, &url, &[("x-forwarded-for", ip)])
                .await
                .status
                .as_u16()
        }
    };
    for _ in 0..2 {
        assert_eq!(from("203.0.113.1").await, 200);
    }
    assert_eq!(
        from("203.0.113.1").await,
        429,
        "the first client's bucket is empty"
    );
    for _ in 0..2 {
        assert_eq!(
            from("203.0.113.2").await,
            200,
            "the second client has its own"
        );
    }
    assert_eq!(from("203.0.113.2").await, 429);
    assert_eq!(backend.hits(), 4);
}

/// The `name=value` of the waiting room's `Set-Cookie` in `reply`, if any.
fn room_cookie(reply: &support::Reply) -> Option<String> {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .find_map(|value| {
            let pair = value.to_str().ok()?.split(';').next()?;
            pair.starts_with("stampede_room=").then(|| pair.to_owned())
        })
}

const BROWSER: (&str, &str) = ("accept", "text/html,application/xhtml+xml,*/*;q=0.8");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_room_lines_visitors_up_and_lets_them_in_in_turn_with_a_pass() {
    let backend = Backend::start_with("b", Behaviour::holding()).await;
    // Sticky too, so that a response may carry two cookies.
    let gateway = GatewayToml::web(toml_backends(&[&backend]))
        .route("max_concurrency = 1, waiting_room = { poll_interval = \"2s\" }")
        .pool("sticky = { cookie = \"sb\" }")
        .start()
        .await;
    let url = gateway.url("/");
    // Both paths: HTTP/1.1 (the fast path) and h2c (hyper).
    let (h1, h2) = (client(), h2_client());
    let first = {
        let (h1, url) = (h1.clone(), url.clone());
        tokio::spawn(async move { get(&h1, &url).await })
    };
    backend.wait_hits(1, Duration::from_secs(5)).await;

    // The route is full: the next visitor gets a ticket and its place.
    let second = get(&h2, &url).await;
    assert_eq!(second.status, 503, "{}", second.text());
    assert_eq!(second.header("retry-after").as_deref(), Some("2"));
    let body = second.json();
    assert_eq!(body["error"], "waiting_room", "{body}");
    assert_eq!(body["place"], 1, "{body}");
    assert!(
        body["estimated_wait_seconds"].is_u64(),
        "one let in already: {body}"
    );
    let ticket = room_cookie(&second).expect("a ticket");

    // Browsers get a page that reloads itself, on either path.
    for (client, place) in [(&h1, "2"), (&h2, "3")] {
        let page = get_with(client, &url, &[BROWSER]).await;
        assert_eq!(page.status, 503);
        assert_eq!(
            page.header("content-type").as_deref(),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(page.header("refresh").as_deref(), Some("2"));
        assert!(room_cookie(&page).is_some(), "a ticket for the browser too");
        let text = page.text();
        assert!(
            text.contains(&format!("<strong>{place}</strong>")),
            "{text}"
        );
    }

    // The first visitor is done and got a pass; the second's turn has come.
    backend.release();
    let first = first.await.expect("first visitor");
    assert_eq!(first.status, 200);
    let first_pass = room_cookie(&first).expect("a pass for the first visitor");
    assert!(first_pass.starts_with("stampede_room=p."), "{first_pass}");
    assert!(
        first
            .header("set-cookie")
            .is_some_and(|c| c.contains("sb=")),
        "and the sticky cookie"
    );
    let second = get_with(&h2, &url, &[("cookie", &ticket)]).await;
    assert_eq!(second.status, 200, "{}", second.text());
    let second_pass = room_cookie(&second).expect("a pass for the second visitor");
    assert!(second_pass.starts_with("stampede_room=p."), "{second_pass}");

    // A pass goes through as it is; an altered one counts as none.
    let again = get_with(&h1, &url, &[("cookie", &first_pass)]).await;
    assert_eq!((again.status.as_u16(), room_cookie(&again)), (200, None));
    let forged = first_pass.replacen("p.", "p.9", 1);
    for client in [&h1, &h2] {
        let refused = get_with(client, &url, &[("cookie", &forged)]).await;
        assert_eq!(refused.status, 503);
        assert_eq!(refused.json()["error"], "waiting_room");
    }
    assert_eq!(backend.hits(), 3, "the two let in, and the pass used again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_visitors_are_let_in_first_come_first_served() {
    let backend = Backend::start_with("b", Behaviour::delayed(Duration::from_millis(150))).await;
    let gateway = GatewayToml::web(toml_backends(&[&backend]))
        .route("max_concurrency = 1, waiting_room = { poll_interval = \"1s\" }")
        .start()
        .await;
    let (client, url) = (client(), gateway.url("/"));
    // Someone inside, so that everyone after waits.
    let inside = {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move { get(&client, &url).await })
    };
    backend.wait_hits(1, Duration::from_secs(5)).await;
    let mut tickets = Vec::new();
    for place in 1..=4 {
        let reply = get(&client, &url).await;
        assert_eq!(reply.json()["place"], place, "{}", reply.text());
        tickets.push(room_cookie(&reply).expect("a ticket"));
    }
    // All keep asking, more often than told to, the last in line first.
    let (done, mut let_in) = tokio::sync::mpsc::unbounded_channel();
    for (i, ticket) in tickets.into_iter().enumerate().rev() {
        let (client, url, done) = (client.clone(), url.clone(), done.clone());
        tokio::spawn(async move {
            while get_with(&client, &url, &[("cookie", &ticket)]).await.status != 200 {
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            let _ = done.send(i);
        });
    }
    drop(done);
    let mut order = Vec::new();
    while let Some(i) = let_in.recv().await {
        order.push(i);
    }
    assert_eq!(order, [0, 1, 2, 3]);
    assert_eq!(inside.await.expect("inside").status, 200);
    assert_eq!(backend.peak_concurrency(), 1);
}
