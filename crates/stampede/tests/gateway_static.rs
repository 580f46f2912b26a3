//! Static files and compression: routes with `static_dir` answered by the
//! gateway itself, with validators and `304`s, ranges, cache headers for a
//! CDN, precompressed siblings and on-the-fly compression by
//! `Accept-Encoding`, and no way out of the directory. Files kept in
//! memory must be answered exactly as files streamed from disk, on the
//! fast path as on hyper's, and follow the disk within `revalidate`.

mod support;

use http_body_util::Full;
use hyper::Request;
use std::time::Duration;

use support::origin::decoded;
use support::{
    Backend, Gateway, HttpClient, Reply, TempDir, assert_status, client, connect, get, get_with,
    h2_client, read_response, send, toml_backends, within,
};

/// Text that compresses well, above `min_bytes`.
fn page() -> String {
    "<p>flash sale: everything must go</p>\n".repeat(100)
}

/// What the precompressed sibling of `bundle.js` holds, once decoded: not
/// `bundle.js` itself, so that a test can tell which was sent.
const SIBLING: &str = "// the precompressed sibling\n";

fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder
        .write_all(text.as_bytes())
        .expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// A site: `public/` with a page, a fingerprinted stylesheet, an image, a
/// small file, a script with a precompressed sibling, a large text; and beside it a
/// secret that must never be served.
fn site() -> TempDir {
    let dir = TempDir::new();
    dir.write("public/index.html", page());
    dir.write(
        "public/css/app.3f9a2c1b.css",
        "body { color: red }\n".repeat(100),
    );
    dir.write("public/logo.png", vec![0x89u8; 4096]);
    dir.write("public/small.txt", "tiny");
    dir.write("public/bundle.js", "console.log('hi');\n".repeat(100));
    dir.write("public/bundle.js.gz", gzip(SIBLING));
    dir.write("public/big.txt", "0123456789abcdef\n".repeat(6000));
    dir.write("secret.txt", "the secret");
    dir
}

/// A gateway serving `site`'s `public/` under `/static` (with `cache` and
/// `[compression]`), and everything else from `backend`.
async fn gateway(site: &TempDir, backend: &Backend) -> Gateway {
    gateway_keeping(site, backend, "").await
}

/// [`gateway`] with `file_cache` as its `[file_cache]` keys.
async fn gateway_keeping(site: &TempDir, backend: &Backend, file_cache: &str) -> Gateway {
    let public = site.0.join("public");
    Gateway::with_config(&format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
workers = 2

[[routes]]
pool = "web"

[[routes]]
path_prefix = "/static"
static_dir = "{}"
cache = {{ max_age = "10m", s_maxage = "1h" }}

[compression]
min_bytes = 1024

[file_cache]
{}

[pools.web]
backends = {}
"#,
        public.display(),
        file_cache,
        toml_backends(&[backend]),
    ))
    .await
}

async fn fetch(
    client: &HttpClient,
    gateway: &Gateway,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    get_with(client, &gateway.url(path), headers).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_carry_validators_and_cache_headers_and_revalidate_with_304() {
    let (site, backend) = (site(), Backend::start("web").await);
    let gateway = gateway(&site, &backend).await;
    let client = client();

    let reply = fetch(&client, &gateway, "/static/index.html", &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), page());
    assert_eq!(reply.header("content-type").as_deref(), Some("text/html"));
    assert_eq!(
        reply.header("cache-control").as_deref(),
        Some("public, max-age=600, s-maxage=3600")
    );
    assert_eq!(reply.header("vary").as_deref(), Some("accept-encoding"));
    let etag = reply.header("etag").expect("an ETag");
    assert!(etag.starts_with("W/\""), "{etag}");
    let modified = reply.header("last-modified").expect("a Last-Modified");

    for (name, value) in [
        ("if-none-match", etag.as_str()),
        ("if-modified-since", &modified),
    ] {
        let reply = fetch(&client, &gateway, "/static/index.html", &[(name, value)]).await;
        assert_eq!(reply.status, 304, "{name}");
        assert!(reply.body.is_empty());
        assert_eq!(reply.header("etag").as_deref(), Some(etag.as_str()));
        assert!(reply.header("cache-control").is_some(), "{name}");
    }
    // If-None-Match decides when present: a stale tag gets the file, even
    // with a matching date.
    let stale = [
        ("if-none-match", "W/\"0-0\""),
        ("if-modified-since", &modified),
    ];
    let reply = fetch(&client, &gateway, "/static/index.html", &stale).await;
    assert_eq!(reply.status, 200);

    let reply = fetch(&client, &gateway, "/static/css/app.3f9a2c1b.css", &[]).await;
    assert_eq!(
        reply.header("cache-control").as_deref(),
        Some("public, max-age=31536000, immutable")
    );

    let reply = fetch(&client, &gateway, "/static/nothing.txt", &[]).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"], "not_found");
    assert_eq!(reply.json()["pool"], "static:/static");

    let post = Request::post(gateway.url("/static/index.html"))
        .body(Full::default())
        .unwrap();
    let reply = send(&client, post).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.json()["error"], "method_not_allowed");
    assert_eq!(reply.header("allow").as_deref(), Some("GET, HEAD"));

    // The pool's route is untouched, and static answers are counted.
    assert_eq!(get(&client, &gateway.url("/api")).await.text(), "web");
    let metrics = get(&client, &gateway.admin_url("/metrics")).await.text();
    let counted = metrics.lines().any(|line| {
        line.starts_with("stampede_gateway_requests_total")
            && line.contains(r#"pool="static:/static""#)
            && line.contains(r#"status="304""#)
    });
    assert!(counted, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_are_served_in_part() {
    let (site, backend) = (site(), Backend::start("web").await);
    let gateway = gateway(&site, &backend).await;
    let client = client();
    let len = page().len();

    let reply = fetch(
        &client,
        &gateway,
        "/static/index.html",
        &[("range", "bytes=3-9")],
    )
    .await;
    assert_eq!(reply.status, 206);
    assert_eq!(reply.text(), &page()[3..10]);
    assert_eq!(
        reply.header("content-range"),
        Some(format!("bytes 3-9/{len}"))
    );
    assert!(
        reply.header("content-encoding").is_none(),
        "ranges are never compressed"
    );

    let beyond = format!("bytes={}-", len + 10);
    let reply = fetch(
        &client,
        &gateway,
        "/static/index.html",
        &[("range", &beyond)],
    )
    .await;
    assert_eq!(reply.status, 416);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_out_of_the_directory_is_refused() {
    let (site, backend) = (site(), Backend::start("web").await);
    let public = site.0.join("public");
    std::os::unix::fs::symlink("/etc", public.join("etc")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", public.join("passwd")).unwrap();
    std::os::unix::fs::symlink(site.0.join("secret.txt"), public.join("secret.txt")).unwrap();
    let gateway = gateway(&site, &backend).await;

    for path in [
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/%2E%2E/secret.txt",
        "/static/..%2fsecret.txt",
        "/static/%2e%2e%2fsecret.txt",
        "/static/css/..%2f..%2fsecret.txt",
        "/static/etc/passwd",
        "/static/passwd",
        "/static/secret.txt",
    ] {
        let mut stream = connect(gateway.addr).await;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n");
        tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
            .await
            .unwrap();
        let (head, body) = read_response(&mut stream).await;
        assert_status(&head, "HTTP/1.1 404");
        assert!(
            !body.contains("secret") && !body.contains("root:"),
            "{path}: {body}"
        );
    }
    assert_eq!(backend.hits(), 0, "nothing fell through to the pool");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_follows_accept_encoding_for_compressible_types() {
    let (site, backend) = (site(), Backend::start("web").await);
    let gateway = gateway(&site, &backend).await;
    let client = client();
    let plain = page().len();

    for (accept, encoding, magic) in [
        ("gzip", "gzip", &[0x1f_u8, 0x8b][..]),
        ("zstd", "zstd", &[0x28, 0xb5, 0x2f, 0xfd][..]),
        ("br", "br", &[][..]),
        ("br;q=0.5, gzip", "gzip", &[0x1f, 0x8b][..]),
    ] {
        let reply = fetch(
            &client,
            &gateway,
            "/static/index.html",
            &[("accept-encoding", accept)],
        )
        .await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.header("content-encoding").as_deref(),
            Some(encoding),
            "{accept}"
        );
        assert_eq!(
            reply.header("vary").as_deref(),
            Some("accept-encoding"),
            "{accept}"
        );
        assert!(reply.body.starts_with(magic), "{accept}");
        assert!(
            reply.body.len() < plain / 4,
            "{accept}: {} bytes of {plain}",
            reply.body.len()
        );
        assert!(reply.header("etag").is_some());
    }

    // Already compressed, or too small to gain: as it is, and the same for
    // every client, so no Vary.
    for path in ["/static/logo.png", "/static/small.txt"] {
        let reply = fetch(&client, &gateway, path, &[("accept-encoding", "gzip, br")]).await;
        assert_eq!(reply.status, 200, "{path}");
        assert!(reply.header("content-encoding").is_none(), "{path}");
        assert!(reply.header("vary").is_none(), "{path}");
    }

    // A precompressed sibling is served as it is to clients that take it.
    let reply = fetch(
        &client,
        &gateway,
        "/static/bundle.js",
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(reply.header("content-encoding").as_deref(), Some("gzip"));
    assert_eq!(decoded(Some("gzip"), &reply.body), SIBLING.as_bytes());
    assert_eq!(reply.header("vary").as_deref(), Some("accept-encoding"));
    let reply = fetch(&client, &gateway, "/static/bundle.js", &[]).await;
    assert!(reply.header("content-encoding").is_none());
    assert!(reply.text().starts_with("console.log"));
    assert_eq!(reply.header("vary").as_deref(), Some("accept-encoding"));
}

/// A reply's status, fields (see [`Reply::comparable_fields`]) and
/// decoded body: a file compressed while streamed from disk is chunked,
/// from memory it has a length, and their compressed bytes differ.
fn comparable(reply: &Reply) -> Comparable {
    let coding = reply.header("content-encoding");
    let body = decoded(coding.as_deref(), &reply.body);
    (reply.status.as_u16(), reply.comparable_fields(), body)
}

type Comparable = (u16, Vec<(String, String)>, Vec<u8>);

/// Asserts two answers are the same, printing fields but not bodies.
fn assert_same(found: &Comparable, wanted: &Comparable, what: &str) {
    assert_eq!((found.0, &found.1), (wanted.0, &wanted.1), "{what}");
    assert!(found.2 == wanted.2, "{what}: the decoded bodies differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_answers_as_the_disk_does_on_both_paths() {
    let (site, backend) = (site(), Backend::start("web").await);
    let memory = gateway_keeping(&site, &backend, "").await;
    let disk = gateway_keeping(&site, &backend, "max_bytes = 0").await;
    let (h1, h2) = (client(), h2_client());
    let etag = get(&h1, &memory.url("/static/index.html")).await;
    let etag = etag.header("etag").expect("an ETag");

    for path in [
        "/static/index.html",
        "/static/bundle.js",
        "/static/logo.png",
    ] {
        for headers in [
            &[][..],
            &[("accept-encoding", "gzip")][..],
            &[("accept-encoding", "br;q=0.9, zstd")][..],
            &[("if-none-match", etag.as_str())][..],
        ] {
            let from_disk = comparable(&get_with(&h1, &disk.url(path), headers).await);
            for client in [&h1, &h2] {
                let from_memory = comparable(&get_with(client, &memory.url(path), headers).await);
                assert_same(&from_memory, &from_disk, &format!("{path} {headers:?}"));
            }
        }
    }
    // HEAD says what GET would, body aside.
    let head = |gateway: &Gateway| {
        let req = hyper::Request::head(gateway.url("/static/index.html"))
            .body(Full::default())
            .unwrap();
        send(&h1, req)
    };
    let (from_memory, from_disk) = (head(&memory).await, head(&disk).await);
    assert_same(&comparable(&from_memory), &comparable(&from_disk), "HEAD");
    assert_eq!(
        from_memory.header("content-length"),
        Some(page().len().to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_in_memory_follow_the_disk_within_revalidate() {
    let (site, backend) = (site(), Backend::start("web").await);
    let gateway = gateway_keeping(&site, &backend, r#"revalidate = "200ms""#).await;
    let client = client();
    let url = gateway.url("/static/small.txt");
    assert_eq!(get(&client, &url).await.text(), "tiny");

    site.write("public/small.txt", "changed");
    let changed = within(Duration::from_secs(3), "the change served", async {
        while get(&client, &url).await.text() != "changed" {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    changed.await;

    std::fs::remove_file(site.0.join("public/small.txt")).unwrap();
    let gone = within(Duration::from_secs(3), "the removal served", async {
        while get(&client, &url).await.status != 404 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    gone.await;
    assert_eq!(backend.hits(), 0);
}
