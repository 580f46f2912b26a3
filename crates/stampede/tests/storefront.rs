//! The storefront's safety, without a browser: every page carries the
//! security headers and a CSRF token, a form posted without the token (or
//! with another visitor's, or from another site) is refused and changes
//! nothing, cookie-authenticated JSON writes from another site are refused
//! `403 forbidden` while clients that send no `Origin` pass, user-supplied
//! text is escaped, and the fingerprinted assets are served for a year.

mod support;

use hyper::Method;
use serde_json::json;
use stampede_testkit::TestDb;
use support::Reply;
use support::shop::{Api, Cluster, PASSWORD};

/// One node behind a gateway, a user `u0` and a product `SKU-1` on sale.
async fn cluster() -> Cluster {
    let cluster = Cluster::start(TestDb::sqlite().await, 1, "").await;
    let mut admin = cluster.admin();
    assert_eq!(admin.create_users("u", 2).await.status, 201);
    assert_eq!(admin.create_product("SKU-1", 5, 1).await.status, 201);
    cluster
}

/// The CSRF token of the first form of a page.
fn csrf_token(page: &Reply) -> String {
    let text = page.text();
    let (_, rest) = text
        .split_once(r#"name="csrf_token" value=""#)
        .unwrap_or_else(|| panic!("no CSRF field in {text}"));
    rest.split('"').next().unwrap_or_default().to_owned()
}

/// A visitor of the storefront logged in as `u0` through the login form.
async fn logged_in(cluster: &Cluster) -> Api {
    let mut visitor = cluster.api();
    let form = visitor.get("/login").await;
    let token = csrf_token(&form);
    let fields = [
        ("csrf_token", token.as_str()),
        ("username", "u0"),
        ("password", PASSWORD),
        ("next", "/orders"),
    ];
    let reply = visitor.post_form("/login", &fields, &[]).await;
    assert_eq!(reply.status, 303, "{}", reply.text());
    assert_eq!(reply.header("location").as_deref(), Some("/orders"));
    assert!(visitor.cookie.is_some(), "no session cookie");
    visitor
}

fn assert_secure_page(reply: &Reply) {
    let header = |name: &str| reply.header(name).unwrap_or_default();
    let csp = header("content-security-policy");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "object-src 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp:?}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("referrer-policy"), "same-origin");
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("cache-control"), "no-store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_the_security_headers_and_link_fingerprinted_assets() {
    let cluster = cluster().await;
    let mut visitor = cluster.api();
    for path in ["/", "/products/SKU-1", "/login", "/products/NOPE"] {
        let reply = visitor.get(path).await;
        assert_secure_page(&reply);
        let expected = if path == "/products/NOPE" { 404 } else { 200 };
        assert_eq!(reply.status, expected, "{path}");
        assert!(
            reply
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/html")),
            "{path}"
        );
    }
    // Logged out, "my orders" is the login form that comes back.
    let reply = visitor.get("/orders").await;
    assert_eq!(reply.status, 303);
    assert_eq!(
        reply.header("location").as_deref(),
        Some("/login?next=%2Forders")
    );
    assert_secure_page(&reply);

    let page = visitor.get("/").await.text();
    for extension in ["css", "js"] {
        let marker = format!(".{extension}\"");
        let end = page.find(&marker).expect("an asset link");
        let start = page[..end]
            .rfind("/assets/app.")
            .expect("a fingerprinted name");
        let path = &page[start..end + marker.len() - 1];
        let asset = visitor.get(path).await;
        assert_eq!(asset.status, 200, "{path}");
        assert_eq!(
            asset.header("cache-control").as_deref(),
            Some("public, max-age=31536000, immutable")
        );
        assert!(!asset.body.is_empty());
    }
    assert_eq!(visitor.get("/assets/app.0000000000.js").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_without_the_visitors_token_is_refused_and_changes_nothing() {
    let cluster = cluster().await;
    let mut visitor = cluster.api();
    let login_page = visitor.get("/login").await;
    assert!(
        login_page
            .header("set-cookie")
            .is_some_and(|c| c.contains("stampede_csrf=")),
        "no CSRF cookie"
    );
    let credentials = [("username", "u0"), ("password", PASSWORD)];
    // No token at all.
    let reply = visitor.post_form("/login", &credentials, &[]).await;
    assert_eq!(reply.status, 403);
    assert_secure_page(&reply);
    assert!(visitor.cookie.is_none(), "logged in without a token");
    // Another visitor's token, valid for their cookie only.
    let mut other = cluster.api();
    let theirs = csrf_token(&other.get("/login").await);
    let mut fields = vec![("csrf_token", theirs.as_str())];
    fields.extend(credentials);
    assert_eq!(visitor.post_form("/login", &fields, &[]).await.status, 403);
    assert!(visitor.cookie.is_none());

    // Logged in, a buy without the token reserves nothing.
    let mut buyer = logged_in(&cluster).await;
    let reply = buyer.post_form("/products/SKU-1/buy", &[], &[]).await;
    assert_eq!(reply.status, 403);
    assert!(
        reply.text().contains("could not be accepted"),
        "{}",
        reply.text()
    );
    // Nor with the right token from another site.
    let token = csrf_token(&buyer.get("/products/SKU-1").await);
    let fields = [("csrf_token", token.as_str())];
    let evil = [("origin", "http://evil.test")];
    let reply = buyer.post_form("/products/SKU-1/buy", &fields, &evil).await;
    assert_eq!(reply.status, 403);
    let mut admin = cluster.admin();
    assert_eq!(admin.stats("SKU-1").await["reserved"], 0);

    // With it, from this site: reserved, and the order page says so.
    let origin = cluster.gateway.url("");
    let same = [("origin", origin.as_str())];
    let reply = buyer.post_form("/products/SKU-1/buy", &fields, &same).await;
    assert_eq!(reply.status, 303, "{}", reply.text());
    let location = reply.header("location").expect("a redirect");
    assert!(location.starts_with("/orders/ord"), "{location}");
    let page = buyer.get(&location).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("left to pay"), "{}", page.text());
    assert_eq!(admin.stats("SKU-1").await["reserved"], 1);

    // A second buy meets the limit, explained on the product page.
    let reply = buyer.post_form("/products/SKU-1/buy", &fields, &[]).await;
    assert_eq!(
        reply.header("location").as_deref(),
        Some("/products/SKU-1?error=limit_exceeded")
    );
    assert_eq!(admin.stats("SKU-1").await["reserved"], 1);

    // Logging out needs the token too.
    assert_eq!(buyer.post_form("/logout", &[], &[]).await.status, 403);
    assert_eq!(buyer.get("/api/v1/me").await.status, 200);
    let reply = buyer.post_form("/logout", &fields, &[]).await;
    assert_eq!(reply.status, 303);
    assert_eq!(buyer.get("/api/v1/me").await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_authenticated_json_writes_from_another_site_are_forbidden() {
    let cluster = cluster().await;
    let mut admin = cluster.admin();
    assert_eq!(admin.create_product("SKU-2", 5, 1).await.status, 201);
    let mut buyer = cluster.api();
    assert_eq!(buyer.login("u0", PASSWORD).await.status, 200);
    let order = json!({ "sku": "SKU-1", "quantity": 1 });
    for (path, body, origin) in [
        ("/api/v1/orders", Some(&order), "http://evil.test"),
        ("/api/v1/orders", Some(&order), "null"),
        ("/api/v1/logout", None, "http://evil.test"),
    ] {
        let reply = buyer
            .call(Method::POST, path, body, &[("origin", origin)])
            .await;
        assert_eq!(reply.status, 403, "{path} from {origin}");
        assert_eq!(reply.json()["error"], "forbidden", "{path}");
    }
    assert_eq!(admin.stats("SKU-1").await["reserved"], 0);
    assert_eq!(buyer.get("/api/v1/me").await.status, 200, "still logged in");

    // This site's own origin, and no origin at all (curl, storm), pass.
    let own = cluster.gateway.url("");
    let reply = buyer
        .call(
            Method::POST,
            "/api/v1/orders",
            Some(&order),
            &[("origin", &own)],
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let reply = buyer.order("SKU-2", 1, None).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let id = reply.json()["order_id"].as_str().expect("an id").to_owned();
    let pay = format!("/api/v1/orders/{id}/pay");
    let token = json!({ "payment_token": "tok_ok" });
    let evil = [("origin", "https://evil.test")];
    let reply = buyer.call(Method::POST, &pay, Some(&token), &evil).await;
    assert_eq!(reply.status, 403);
    let cancel = format!("/api/v1/orders/{id}/cancel");
    let reply = buyer.call(Method::POST, &cancel, None, &evil).await;
    assert_eq!(reply.status, 403);
    assert_eq!(buyer.post(&pay, &token).await.status, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_supplied_text_is_escaped() {
    let cluster = cluster().await;
    let mut admin = cluster.admin();
    let product = json!({
        "sku": "XSS-1", "name": "<script>alert(1)</script>", "price_cents": 100,
        "stock": 1, "per_user_limit": 1,
    });
    assert_eq!(
        admin.post("/api/v1/admin/products", &product).await.status,
        201
    );
    let mut visitor = cluster.api();
    for path in ["/", "/products/XSS-1"] {
        let page = visitor.get(path).await.text();
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{path}: {page}"
        );
        assert!(!page.contains("<script>alert"), "{path}: {page}");
    }
}
