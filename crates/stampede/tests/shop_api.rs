//! The contract of `../shared/spec/flash-sale-api.md`, end to end through
//! the gateway: every endpoint, status and error code, the precedence of
//! refusals, idempotency, cookies, and the malformed requests (bad JSON, an
//! oversized body, a wrong content type, a missing session).

mod support;

use hyper::Method;
use serde_json::{Value, json};
use stampede_testkit::TestDb;
use support::shop::{Api, Cluster, PASSWORD};

/// One node behind the gateway on SQLite, failed logins limited to 3 per
/// user, with users `u0..u3` and product `VAX-001` (stock 3, limit 2).
async fn shop() -> (Cluster, Api) {
    shop_with("[login_limits]\nfailures_per_user = 3\n[limits]\nmax_body_bytes = 4096").await
}

/// The same, with `extra` config instead.
async fn shop_with(extra: &str) -> (Cluster, Api) {
    let cluster = Cluster::start(TestDb::sqlite().await, 1, extra).await;
    let mut admin = cluster.admin();
    assert_eq!(admin.create_users("u", 4).await.status, 201);
    assert_eq!(admin.create_product("VAX-001", 3, 2).await.status, 201);
    (cluster, admin)
}

async fn logged_in(cluster: &Cluster, user: &str) -> Api {
    let mut api = cluster.api();
    let reply = api.login(user, PASSWORD).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    api
}

#[track_caller]
fn assert_error(reply: &support::Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_users_are_created_all_or_nothing() {
    let (cluster, mut admin) = shop().await;
    let reply = admin.create_users("new", 3).await;
    assert_eq!(reply.json(), json!({ "created": 3 }));

    // One taken name rejects the whole call: `fresh` is not created.
    let users = json!({ "users": [
        { "username": "fresh", "password": "pw" },
        { "username": "u1", "password": "pw" },
    ]});
    assert_error(
        &admin.post("/api/v1/admin/users", &users).await,
        409,
        "exists",
    );
    assert_error(
        &cluster.api().login("fresh", "pw").await,
        401,
        "bad_credentials",
    );

    let twice = json!({ "users": [{ "username": "d", "password": "p" }, { "username": "d", "password": "p" }]});
    assert_error(
        &admin.post("/api/v1/admin/users", &twice).await,
        400,
        "invalid",
    );
    let bad_name = json!({ "users": [{ "username": "has space", "password": "p" }]});
    assert_error(
        &admin.post("/api/v1/admin/users", &bad_name).await,
        400,
        "invalid",
    );
    assert_error(
        &cluster.api().create_users("x", 1).await,
        401,
        "unauthorized",
    );
    let mut wrong = cluster.api();
    let reply = wrong
        .call(
            Method::POST,
            "/api/v1/admin/users",
            Some(&users),
            &[("authorization", "Bearer nope")],
        )
        .await;
    assert_error(&reply, 401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sets_the_contracts_cookie_and_a_new_session_each_time() {
    let (cluster, _) = shop().await;
    let mut api = cluster.api();
    let reply = api.login("u0", PASSWORD).await;
    assert_eq!(reply.json(), json!({ "username": "u0" }));
    let cookie = reply.header("set-cookie").expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert_eq!(
        api.get("/api/v1/me").await.json(),
        json!({ "username": "u0" })
    );

    let first = api.clone();
    api.login("u0", PASSWORD).await;
    assert_ne!(api.cookie, first.cookie, "a new session id at login");
    assert_error(&first.clone().get("/api/v1/me").await, 401, "unauthorized");

    assert_eq!(api.post("/api/v1/logout", &json!({})).await.status, 204);
    assert_error(&api.get("/api/v1/me").await, 401, "unauthorized");
    assert_eq!(
        cluster
            .api()
            .post("/api/v1/logout", &json!({}))
            .await
            .status,
        204
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_is_secure_behind_tls() {
    let (cluster, _) = shop().await;
    // A trusted proxy (loopback) says the client came over HTTPS.
    let mut api = Api::new(&cluster.nodes[0].url(""));
    let body = json!({ "username": "u0", "password": PASSWORD });
    let reply = api
        .call(
            Method::POST,
            "/api/v1/login",
            Some(&body),
            &[("x-forwarded-proto", "https")],
        )
        .await;
    let cookie = reply.header("set-cookie").expect("a session cookie");
    assert!(cookie.ends_with("; Secure"), "{cookie}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_rate_limited_per_user() {
    let (cluster, _) = shop().await;
    let mut api = cluster.api();
    assert_error(&api.login("u0", "wrong").await, 401, "bad_credentials");
    assert_error(&api.login("nobody", "wrong").await, 401, "bad_credentials");
    assert_error(
        &api.post("/api/v1/login", &json!({ "username": "u0" }))
            .await,
        400,
        "invalid",
    );
    for _ in 0..2 {
        api.login("u0", "wrong").await;
    }
    // Now even the right password is refused, with a time to come back.
    let reply = api.login("u0", PASSWORD).await;
    assert_error(&reply, 429, "rate_limited");
    let retry: u64 = reply
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=300).contains(&retry), "{retry}");
    // Another user from the same address is not locked out.
    assert_eq!(api.login("u1", PASSWORD).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_rate_limited_per_ip() {
    let (cluster, _) =
        shop_with("[login_limits]\nfailures_per_ip = 3\nfailures_per_user = 100").await;
    let mut api = cluster.api();
    for user in ["u0", "u1", "nobody"] {
        assert_error(&api.login(user, "wrong").await, 401, "bad_credentials");
    }
    // The gateway passes the client's address (X-Real-IP) to the node.
    assert_error(&api.login("u3", PASSWORD).await, 429, "rate_limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_are_created_listed_and_read() {
    let (cluster, mut admin) = shop().await;
    let later = json!({
        "sku": "LATER-1", "name": "Later", "price_cents": 500, "stock": 0,
        "per_user_limit": 1, "sale_starts_at": "2099-01-01T10:00:00+01:00",
    });
    let reply = admin.post("/api/v1/admin/products", &later).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({
            "sku": "LATER-1", "name": "Later", "price_cents": 500, "stock_left": 0,
            "sold_out": true, "per_user_limit": 1, "sale_starts_at": "2099-01-01T09:00:00Z",
        })
    );
    assert_error(
        &admin.post("/api/v1/admin/products", &later).await,
        409,
        "exists",
    );
    assert_error(
        &cluster.api().post("/api/v1/admin/products", &later).await,
        401,
        "unauthorized",
    );
    for (field, value) in [
        ("stock", json!(-1)),
        ("sku", json!("")),
        ("sale_starts_at", json!("soon")),
    ] {
        let mut bad = later.clone();
        bad["sku"] = json!("BAD-1");
        bad[field] = value;
        assert_error(
            &admin.post("/api/v1/admin/products", &bad).await,
            400,
            "invalid",
        );
    }

    let mut api = cluster.api();
    let listed = api.get("/api/v1/products").await.json();
    let skus: Vec<&Value> = listed["products"]
        .as_array()
        .expect("products")
        .iter()
        .map(|p| &p["sku"])
        .collect();
    assert_eq!(skus, [&json!("LATER-1"), &json!("VAX-001")]);
    let vax = api.get("/api/v1/products/VAX-001").await.json();
    assert_eq!(vax["stock_left"], 3);
    assert_eq!(vax["sold_out"], false);
    assert!(
        vax["sale_starts_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{vax}"
    );
    assert_error(&api.get("/api/v1/products/NOPE").await, 404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_reserved_and_its_key_replayed() {
    let (cluster, mut admin) = shop().await;
    let mut api = logged_in(&cluster, "u0").await;
    let reply = api.order("VAX-001", 1, Some("key-1")).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let order = reply.json();
    assert_eq!(order["status"], "reserved");
    assert_eq!(order["sku"], "VAX-001");
    assert_eq!(order["quantity"], 1);
    let id = order["order_id"].as_str().expect("order_id").to_owned();
    for field in ["created_at", "expires_at"] {
        assert!(
            order[field].as_str().is_some_and(|t| t.ends_with('Z')),
            "{order}"
        );
    }

    let again = api.order("VAX-001", 1, Some("key-1")).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body, reply.body, "the same body again");
    assert_error(
        &api.order("VAX-001", 2, Some("key-1")).await,
        422,
        "idempotency_mismatch",
    );
    assert_eq!(
        admin.stats("VAX-001").await["reserved"],
        1,
        "no second reservation"
    );

    assert_eq!(api.get(&format!("/api/v1/orders/{id}")).await.json(), order);
    let listed = api.get("/api/v1/orders").await.json();
    assert_eq!(listed["orders"], json!([order]));
    let mut other = logged_in(&cluster, "u1").await;
    assert_error(
        &other.get(&format!("/api/v1/orders/{id}")).await,
        404,
        "not_found",
    );
    assert_eq!(
        other.get("/api/v1/orders").await.json(),
        json!({ "orders": [] })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_their_codes_in_the_contracts_order() {
    let (cluster, mut admin) = shop().await;
    let later = json!({
        "sku": "LATER-0", "name": "Later", "price_cents": 1, "stock": 0,
        "per_user_limit": 1, "sale_starts_at": "2099-01-01T00:00:00Z",
    });
    assert_eq!(
        admin.post("/api/v1/admin/products", &later).await.status,
        201
    );
    let mut anonymous = cluster.api();
    let mut api = logged_in(&cluster, "u0").await;

    // 401 beats 400, 400 beats 404, 404 beats the rest.
    assert_error(
        &anonymous.order("VAX-001", 0, None).await,
        401,
        "unauthorized",
    );
    assert_error(&api.order("NOPE", 0, None).await, 400, "invalid");
    assert_error(&api.order("NOPE", 1, None).await, 404, "not_found");
    // 403 not_started beats sold out (LATER-0 has no stock either).
    assert_error(&api.order("LATER-0", 1, None).await, 403, "not_started");
    // sold_out beats limit_exceeded: 4 units exceed both stock 3 and limit 2.
    assert_error(&api.order("VAX-001", 4, None).await, 409, "sold_out");
    assert_error(&api.order("VAX-001", 3, None).await, 409, "limit_exceeded");
    assert_eq!(api.order("VAX-001", 2, None).await.status, 201);
    assert_error(&api.order("VAX-001", 1, None).await, 409, "limit_exceeded");
    let mut other = logged_in(&cluster, "u1").await;
    assert_eq!(other.order("VAX-001", 1, None).await.status, 201);
    assert_error(&other.order("VAX-001", 1, None).await, 409, "sold_out");

    // A refused attempt is decided afresh when retried with its key.
    let mut third = logged_in(&cluster, "u2").await;
    assert_error(
        &third.order("VAX-001", 1, Some("retry")).await,
        409,
        "sold_out",
    );
    let first = api.get("/api/v1/orders").await.json();
    let id = first["orders"][0]["order_id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        api.post(&format!("/api/v1/orders/{id}/cancel"), &json!({}))
            .await
            .status,
        200
    );
    // The catalogue may be up to a second stale: wait it out.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(third.order("VAX-001", 1, Some("retry")).await.status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_orders_are_refused_with_the_error_body() {
    let (cluster, _) = shop().await;
    let mut api = logged_in(&cluster, "u0").await;
    let huge = format!(
        "{{\"sku\": \"{}\", \"quantity\": 1}}",
        "x".repeat(256 * 1024)
    );
    let json = "application/json";
    for (body, content_type, status, code) in [
        ("{\"sku\": ", json, 400, "invalid"),
        ("{\"sku\": \"VAX-001\"}", json, 400, "invalid"),
        (
            "{\"sku\": \"VAX-001\", \"quantity\": 1.5}",
            json,
            400,
            "invalid",
        ),
        (
            "{\"sku\": \"VAX-001\", \"quantity\": 1}",
            "text/plain",
            415,
            "unsupported_media_type",
        ),
        (huge.as_str(), json, 413, "payload_too_large"),
    ] {
        let reply = api
            .clone()
            .post_raw("/api/v1/orders", body.to_owned(), content_type)
            .await;
        assert_error(&reply, status, code);
    }
    let long_key = "k".repeat(256);
    assert_error(
        &api.order("VAX-001", 1, Some(&long_key)).await,
        400,
        "invalid",
    );
    assert_error(
        &api.order("VAX-001", 1, Some("tab\there")).await,
        400,
        "invalid",
    );
    assert_error(&api.get("/api/v1/nothing-here").await, 404, "not_found");
    assert_error(
        &api.call(Method::DELETE, "/api/v1/orders", None, &[]).await,
        405,
        "method_not_allowed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_paid_or_cancelled_once() {
    let (cluster, mut admin) = shop().await;
    let mut api = logged_in(&cluster, "u0").await;
    let first = api.order("VAX-001", 1, None).await.json();
    let second = api.order("VAX-001", 1, None).await.json();
    let (paid, cancelled) = (
        first["order_id"].as_str().expect("id"),
        second["order_id"].as_str().expect("id"),
    );

    let pay = |id: &str| format!("/api/v1/orders/{id}/pay");
    let cancel = |id: &str| format!("/api/v1/orders/{id}/cancel");
    let token = json!({ "payment_token": "tok_ok" });
    let reply = api.post(&pay(paid), &token).await;
    assert_eq!(
        (reply.status.as_u16(), reply.json()),
        (202, json!({ "status": "paying" }))
    );
    assert_error(&api.post(&pay(paid), &token).await, 409, "not_payable");
    assert_error(
        &api.post(&cancel(paid), &json!({})).await,
        409,
        "not_cancellable",
    );
    assert_error(&api.post(&pay(paid), &json!({})).await, 400, "invalid");

    let reply = api.post(&cancel(cancelled), &json!({})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["status"], "cancelled");
    assert_error(
        &api.post(&cancel(cancelled), &json!({})).await,
        409,
        "not_cancellable",
    );
    assert_error(&api.post(&pay(cancelled), &token).await, 409, "not_payable");

    let mut other = logged_in(&cluster, "u1").await;
    assert_error(&other.post(&pay(paid), &token).await, 404, "not_found");
    assert_error(
        &other.post(&cancel("ord_nope"), &json!({})).await,
        404,
        "not_found",
    );
    assert_error(
        &cluster.api().post(&cancel(paid), &json!({})).await,
        401,
        "unauthorized",
    );

    let stats = admin.stats("VAX-001").await;
    assert_eq!(
        stats,
        json!({
            "sku": "VAX-001", "initial_stock": 3, "stock_left": 2, "reserved": 0, "paying": 1,
            "paid": 0, "confirmed": 0, "expired": 0, "cancelled": 1, "payment_failed": 0,
        })
    );
    assert_error(
        &cluster.api().get("/api/v1/admin/stats").await,
        401,
        "unauthorized",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_overloaded() {
    let (cluster, _) = shop_with("[orders]\nmax_batch = 1\nmax_waiting = 1").await;
    let buyers = [
        logged_in(&cluster, "u0").await,
        logged_in(&cluster, "u1").await,
        logged_in(&cluster, "u2").await,
    ];
    // Another writer holds the database, so the first batch waits on it.
    let mut blocker = cluster
        .db
        .db
        .begin_write()
        .await
        .expect("take the write lock");
    sqlx::query("UPDATE products SET name = name")
        .execute(&mut *blocker)
        .await
        .expect("write");
    let mut waiting = Vec::new();
    for buyer in &buyers[..2] {
        let mut buyer = buyer.clone();
        waiting.push(tokio::spawn(async move {
            buyer.order("VAX-001", 1, None).await
        }));
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let shed = buyers[2].clone().order("VAX-001", 1, None).await;
    assert_error(&shed, 503, "overloaded");
    assert_eq!(shed.header("retry-after").as_deref(), Some("1"));

    blocker.rollback().await.expect("release the lock");
    for task in waiting {
        let reply = task.await.expect("order task");
        assert_eq!(reply.status, 201, "{}", reply.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    let (cluster, _) = shop().await;
    let mut api = cluster.api();
    assert_eq!(api.get("/healthz").await.status, 200);
    assert_eq!(api.get("/readyz").await.status, 200);
}
