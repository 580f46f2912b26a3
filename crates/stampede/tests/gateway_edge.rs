//! What the gateway does to a pool's answers on their way out: compression
//! negotiated by `Accept-Encoding` (`routes[N].compress`) and a default
//! `Cache-Control` for a CDN in front (`routes[N].cache_control`), the same
//! over HTTP/1.1 (the fast path) and HTTP/2 (hyper).

mod support;

use http_body_util::Full;
use hyper::{Method, Request};
use support::origin::{Origin, decoded, text};
use support::{
    Gateway, GatewayToml, HttpClient, Reply, TIMEOUT, client, connect, get_with, h2_client,
    head_header, read_head, send, toml_addrs, within,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A gateway with the route `/c` compressing and `/n` not, both to `origin`.
async fn compressing(origin: &Origin) -> Gateway {
    Gateway::with_config(&format!(
        r#"
listen = "127.0.0.1:0"
workers = 2

[[routes]]
path_prefix = "/n"
pool = "web"

[[routes]]
path_prefix = "/c"
pool = "web"
compress = true

[compression]
min_bytes = 1024

[pools.web]
backends = {}
"#,
        toml_addrs([origin.addr])
    ))
    .await
}

fn clients() -> [(&'static str, HttpClient); 2] {
    [("HTTP/1.1", client()), ("h2c", h2_client())]
}

async fn fetch(client: &HttpClient, url: &str, accept: Option<&str>) -> Reply {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("accept-encoding", a)).into_iter().collect();
    get_with(client, url, &headers).await
}

/// How many times `Vary` names `Accept-Encoding`.
fn varies_on_encoding(reply: &Reply) -> usize {
    reply
        .header("vary")
        .unwrap_or_default()
        .split(',')
        .filter(|name| name.trim().eq_ignore_ascii_case("accept-encoding"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxied_answers_are_compressed_as_the_client_accepts() {
    let origin = Origin::start().await;
    let gateway = compressing(&origin).await;
    for (protocol, client) in clients() {
        for coding in ["gzip", "br", "zstd"] {
            let reply = fetch(&client, &gateway.url("/c/page?size=8000"), Some(coding)).await;
            assert_eq!(reply.status, 200, "{protocol} {coding}");
            assert_eq!(
                reply.header("content-encoding").as_deref(),
                Some(coding),
                "{protocol}"
            );
            assert_eq!(varies_on_encoding(&reply), 1, "{protocol} {coding}");
            assert!(reply.header("content-length").is_none_or(|l| l != "8000"));
            assert!(
                reply.body.len() < 8000 / 4,
                "{protocol} {coding}: {}",
                reply.body.len()
            );
            assert_eq!(
                decoded(Some(coding), &reply.body),
                text(8000),
                "{protocol} {coding}"
            );
        }
        let reply = fetch(&client, &gateway.url("/c/page?size=8000"), None).await;
        assert_eq!(
            reply.header("content-encoding"),
            None,
            "{protocol}: identity"
        );
        assert_eq!(reply.body, text(8000));
        assert_eq!(
            varies_on_encoding(&reply),
            1,
            "{protocol}: another client may differ"
        );
        let reply = fetch(
            &client,
            &gateway.url("/c/page?chunked=1&size=8000"),
            Some("gzip"),
        )
        .await;
        assert_eq!(
            reply.header("content-encoding").as_deref(),
            Some("gzip"),
            "{protocol}"
        );
        assert_eq!(decoded(Some("gzip"), &reply.body), text(8000));

        // The backend's Vary is kept, and Accept-Encoding named once.
        let reply = fetch(&client, &gateway.url("/c/page?vary=origin"), Some("gzip")).await;
        assert!(
            reply.header("vary").unwrap().contains("origin"),
            "{protocol}"
        );
        assert_eq!(varies_on_encoding(&reply), 1);
        let reply = fetch(
            &client,
            &gateway.url("/c/page?vary=Accept-Encoding"),
            Some("gzip"),
        )
        .await;
        assert_eq!(varies_on_encoding(&reply), 1, "{protocol}: not duplicated");
        assert_eq!(reply.header("content-encoding").as_deref(), Some("gzip"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_must_not_be_compressed_is_left_alone() {
    let origin = Origin::start().await;
    let gateway = compressing(&origin).await;
    let gzip = Some("gzip, br, zstd");
    for (protocol, client) in clients() {
        for target in [
            "/c/page?size=100",
            "/c/page?type=image/png",
            "/c/page?type=text/event-stream",
            "/c/page?cc=public%2C%20no-transform",
            "/c/page?status=206&range=bytes%200-4095/9000",
            "/n/page",
        ] {
            let reply = fetch(&client, &gateway.url(target), gzip).await;
            assert_eq!(
                reply.header("content-encoding"),
                None,
                "{protocol} {target}"
            );
            assert_eq!(varies_on_encoding(&reply), 0, "{protocol} {target}");
            assert_eq!(reply.body, text(reply.body.len()), "{protocol} {target}");
        }
        // Encoded already: passed on untouched.
        let reply = fetch(&client, &gateway.url("/c/page?encoding=gzip"), gzip).await;
        assert_eq!(
            reply.header("content-encoding").as_deref(),
            Some("gzip"),
            "{protocol}"
        );
        assert_eq!(reply.body, text(4096), "{protocol}: the backend's bytes");
        // A HEAD gets the head as it is.
        let head = Request::builder()
            .method(Method::HEAD)
            .uri(gateway.url("/c/page?size=8000"))
            .header("accept-encoding", "gzip")
            .body(Full::default())
            .unwrap();
        let reply = send(&client, head).await;
        assert_eq!(reply.status, 200, "{protocol}");
        assert_eq!(reply.header("content-encoding"), None, "{protocol}: HEAD");
    }
}

/// Reads a response with a Content-Length body as bytes: `(head, body)`.
async fn raw_response(stream: &mut tokio::net::TcpStream) -> (String, Vec<u8>) {
    let head = read_head(stream).await;
    let len: usize = head_header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
    let mut body = vec![0u8; len];
    within(TIMEOUT, "a body", stream.read_exact(&mut body))
        .await
        .expect("read body");
    (head, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_path_connection_is_handed_over_to_compress() {
    let origin = Origin::start().await;
    let gateway = compressing(&origin).await;
    let mut stream = connect(gateway.addr).await;
    // Identity on the fast path, then a request to compress on the same
    // connection.
    for accept in ["identity", "gzip"] {
        let request = format!(
            "GET /c/page?size=8000 HTTP/1.1\r\nHost: shop.test\r\nAccept-Encoding: {accept}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let head = read_head(&mut stream).await;
        let coding = head_header(&head, "content-encoding");
        let body = if coding.is_some() {
            chunked_body(&mut stream).await
        } else {
            let len: usize = head_header(&head, "content-length")
                .unwrap()
                .parse()
                .unwrap();
            let mut body = vec![0u8; len];
            stream.read_exact(&mut body).await.unwrap();
            body
        };
        assert_eq!(
            decoded(coding.as_deref(), &body),
            text(8000),
            "{accept}: {head}"
        );
        let expected = (accept == "gzip").then_some("gzip");
        assert_eq!(coding.as_deref(), expected, "{head}");
    }
    let (head, _) = {
        stream
            .write_all(b"GET /n/page HTTP/1.1\r\nHost: shop.test\r\nAccept-Encoding: gzip\r\n\r\n")
            .await
            .unwrap();
        raw_response(&mut stream).await
    };
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(head_header(&head, "content-encoding"), None);
}

/// Reads a chunked body to its end.
async fn chunked_body(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let size_line = read_head_line(stream).await;
        let size = usize::from_str_radix(size_line.trim(), 16).expect("a chunk size");
        let mut chunk = vec![0u8; size + 2];
        stream.read_exact(&mut chunk).await.expect("a chunk");
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

async fn read_head_line(stream: &mut tokio::net::TcpStream) -> String {
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        line.push(stream.read_u8().await.expect("a line"));
    }
    String::from_utf8(line).expect("a text line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_control_is_added_only_where_the_backend_said_nothing() {
    let origin = Origin::start().await;
    let default = "public, max-age=0, s-maxage=1";
    let gateway = GatewayToml::web(toml_addrs([origin.addr]))
        .route(&format!("cache_control = \"{default}\""))
        .start()
        .await;
    for (protocol, client) in clients() {
        let reply = fetch(&client, &gateway.url("/page"), None).await;
        assert_eq!(
            reply.header("cache-control").as_deref(),
            Some(default),
            "{protocol}"
        );
        let reply = fetch(&client, &gateway.url("/page?status=404"), None).await;
        assert_eq!(
            reply.header("cache-control").as_deref(),
            Some(default),
            "{protocol}"
        );
        let reply = fetch(&client, &gateway.url("/page?cc=no-store"), None).await;
        assert_eq!(
            reply.header("cache-control").as_deref(),
            Some("no-store"),
            "{protocol}"
        );
        for target in ["/page?cookie=1", "/page?status=500", "/page?status=201"] {
            let reply = fetch(&client, &gateway.url(target), None).await;
            assert_eq!(reply.header("cache-control"), None, "{protocol} {target}");
        }
        let post = Request::post(gateway.url("/page"))
            .body(Full::default())
            .unwrap();
        let reply = send(&client, post).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("cache-control"), None, "{protocol}: POST");
    }
}
