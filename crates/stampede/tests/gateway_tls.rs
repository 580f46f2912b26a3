//! TLS termination, end to end: a test CA and server certificates made at
//! test time, HTTP/1.1 and HTTP/2 over TLS (by ALPN), the certificate chosen
//! by SNI, what the backend is told, HSTS, the plain listener's redirect,
//! and certificates renewed (or broken) on disk and reloaded with `SIGHUP`.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use support::{
    Backend, Gateway, TIMEOUT, TempFile, assert_echoed, connect, head_header, parse_json,
    request_head, status_line, within,
};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A certificate authority made for one test.
struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca(CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA"))
    }

    /// A server certificate for `names` (DNS names or IP addresses): its
    /// DER, and its certificate and key as PEM.
    fn issue(&self, names: &[&str]) -> Issued {
        let names: Vec<String> = names.iter().map(|&n| n.to_owned()).collect();
        let key = KeyPair::generate().expect("server key");
        let cert = CertificateParams::new(names)
            .expect("server params")
            .signed_by(&key, &self.0)
            .expect("server certificate");
        Issued {
            der: cert.der().clone(),
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A TLS client trusting only this CA, offering `alpn`.
    fn client(&self, alpn: &[&str]) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.0.der().clone()).expect("trust the CA");
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        TlsConnector::from(Arc::new(config))
    }
}

/// An issued certificate.
struct Issued {
    der: CertificateDer<'static>,
    cert: String,
    key: String,
}

/// A certificate's two files, as the gateway reads them.
struct Files {
    cert: TempFile,
    key: TempFile,
}

impl Files {
    fn new(issued: &Issued) -> Files {
        Files {
            cert: TempFile::new("pem", &issued.cert),
            key: TempFile::new("key", &issued.key),
        }
    }

    /// Replaces both files' contents, as a renewal does.
    fn replace(&self, issued: &Issued) {
        std::fs::write(&self.cert.0, &issued.cert).expect("write the certificate");
        std::fs::write(&self.key.0, &issued.key).expect("write the key");
    }

    fn toml(&self) -> String {
        format!("{{ cert = {:?}, key = {:?} }}", self.cert.0, self.key.0)
    }
}

/// A gateway with one pool of `backend` and `[tls]` serving `certificates`,
/// plus `extra` lines in the table.
fn config(backend: &Backend, certificates: &[&Files], extra: &str) -> String {
    let list: Vec<String> = certificates.iter().map(|f| f.toml()).collect();
    format!(
        "listen = \"127.0.0.1:0\"\nworkers = 2\nroutes = [{{ pool = \"web\" }}]\n\
         [pools.web]\nbackends = [\"{}\"]\n\
         [tls]\nlisten = \"127.0.0.1:0\"\ncertificates = [{}]\n{extra}\n",
        backend.addr,
        list.join(", ")
    )
}

/// A TLS connection to `addr` asking for `name` (sent as SNI unless it is
/// an IP address).
async fn handshake(connector: &TlsConnector, addr: SocketAddr, name: &str) -> TlsStream<TcpStream> {
    let name = match name.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(name.to_owned()).expect("a DNS name"),
    };
    let tcp = TcpStream::connect(addr).await.expect("connect");
    within(TIMEOUT, "the TLS handshake", connector.connect(name, tcp))
        .await
        .expect("TLS handshake")
}

/// Waits for the gateway to log that it refused a reload.
async fn refused(gateway: &Gateway) {
    within(Duration::from_secs(5), "the reload to be refused", async {
        while !gateway.stderr().contains("Reload refused") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// The certificate the gateway presented on `stream`.
fn presented(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    let (_, session) = stream.get_ref();
    session.peer_certificates().expect("a certificate")[0].clone()
}

/// The certificate a new handshake asking for `name` gets.
async fn served_certificate(ca: &Ca, addr: SocketAddr, name: &str) -> CertificateDer<'static> {
    presented(&handshake(&ca.client(&["http/1.1"]), addr, name).await)
}

/// `GET https://shop.test/headers` on `stream` in the HTTP version ALPN chose.
async fn get_headers(stream: TlsStream<TcpStream>) -> Response<Bytes> {
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(stream);
    let request = Request::get("https://shop.test/headers")
        .header("host", "shop.test")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .expect("HTTP/2 handshake");
        tokio::spawn(conn);
        sender.send_request(request).await
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(conn);
        sender.send_request(request).await
    };
    let (parts, body) = response.expect("a response").into_parts();
    let body = body.collect().await.expect("the body").to_bytes();
    Response::from_parts(parts, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_http2_over_tls_reach_the_backend_as_https_with_hsts() {
    let backend = Backend::start("b0").await;
    let ca = Ca::new();
    let shop = Files::new(&ca.issue(&["shop.test"]));
    let toml = config(&backend, &[&shop], "hsts = \"max-age=31536000\"");
    let gateway = Gateway::with_config(&toml).await;
    let tls = gateway.tls.expect("an HTTPS listener");

    for (alpn, version) in [("http/1.1", Version::HTTP_11), ("h2", Version::HTTP_2)] {
        let stream = handshake(&ca.client(&[alpn]), tls, "shop.test").await;
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(alpn.as_bytes()));
        let response = get_headers(stream).await;
        assert_eq!(response.status(), 200, "{alpn}");
        assert_eq!(response.version(), version, "{alpn}");
        assert_eq!(
            response.headers()["strict-transport-security"],
            "max-age=31536000"
        );
        let echo = parse_json(std::str::from_utf8(response.body()).expect("UTF-8"));
        assert_echoed(&echo, &[("x-forwarded-proto", "https")]);
        let forwarded = support::echoed(&echo, "forwarded").expect("Forwarded");
        assert!(forwarded.ends_with(";proto=https"), "{forwarded}");
    }

    // Plain HTTP is still plain, and gets no HSTS (RFC 6797 §7.2).
    let mut stream = connect(gateway.addr).await;
    let head = request_head(&mut stream, "GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(head_header(&head, "strict-transport-security"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_chooses_the_certificate_and_a_client_without_sni_gets_the_first() {
    let backend = Backend::start("b0").await;
    let ca = Ca::new();
    let (shop, admin) = (
        ca.issue(&["shop.test", "127.0.0.1"]),
        ca.issue(&["admin.test"]),
    );
    let (shop_files, admin_files) = (Files::new(&shop), Files::new(&admin));
    let gateway = Gateway::with_config(&config(&backend, &[&shop_files, &admin_files], "")).await;
    let tls = gateway.tls.expect("an HTTPS listener");

    assert_eq!(served_certificate(&ca, tls, "admin.test").await, admin.der);
    assert_eq!(served_certificate(&ca, tls, "shop.test").await, shop.der);
    // A client connecting to an address sends no SNI.
    assert_eq!(served_certificate(&ca, tls, "127.0.0.1").await, shop.der);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plain_listener_redirects_to_https_keeping_method_path_and_query() {
    let backend = Backend::start("b0").await;
    let ca = Ca::new();
    let shop = Files::new(&ca.issue(&["shop.test"]));
    let gateway = Gateway::with_config(&config(&backend, &[&shop], "redirect_http = true")).await;
    let port = gateway.tls.expect("an HTTPS listener").port();

    let mut stream = connect(gateway.addr).await;
    for method in ["GET", "POST"] {
        let request = format!(
            "{method} /cart?item=7 HTTP/1.1\r\nHost: shop.test:8080\r\nContent-Length: 0\r\n\r\n"
        );
        let head = request_head(&mut stream, request).await;
        assert_eq!(status_line(&head), "HTTP/1.1 308 Permanent Redirect");
        assert_eq!(
            head_header(&head, "location").as_deref(),
            Some(format!("https://shop.test:{port}/cart?item=7").as_str()),
        );
    }
    assert_eq!(backend.hits(), 0, "nothing reached the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_serves_new_handshakes_after_sighup() {
    let backend = Backend::start("b0").await;
    let ca = Ca::new();
    let (old, new) = (ca.issue(&["shop.test"]), ca.issue(&["shop.test"]));
    let files = Files::new(&old);
    let gateway = Gateway::with_config(&config(&backend, &[&files], "")).await;
    let tls = gateway.tls.expect("an HTTPS listener");
    let connector = ca.client(&["h2"]);
    let open = handshake(&connector, tls, "shop.test").await;
    assert_eq!(presented(&open), old.der);

    files.replace(&new);
    gateway.hangup();
    within(Duration::from_secs(5), "the renewed certificate", async {
        while served_certificate(&ca, tls, "shop.test").await != new.der {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // The connection opened before the reload serves on.
    assert_eq!(get_headers(open).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_certificate_on_reload_is_refused_and_the_old_one_serves_on() {
    let backend = Backend::start("b0").await;
    let ca = Ca::new();
    let shop = ca.issue(&["shop.test"]);
    let files = Files::new(&shop);
    let gateway = Gateway::with_config(&config(&backend, &[&files], "")).await;
    let tls = gateway.tls.expect("an HTTPS listener");

    // A renewal caught halfway: the new certificate, the old key.
    std::fs::write(&files.cert.0, ca.issue(&["shop.test"]).cert).expect("write");
    gateway.hangup();
    refused(&gateway).await;
    let logs = gateway.stderr();
    assert!(
        logs.contains("tls.certificates[0].key") && logs.contains("is not the key of"),
        "names the key and the problem: {logs}"
    );
    assert_eq!(served_certificate(&ca, tls, "shop.test").await, shop.der);
    let stream = handshake(&ca.client(&["http/1.1"]), tls, "shop.test").await;
    assert_eq!(get_headers(stream).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_completes_its_handshake_is_cut_off() {
    let backend = Backend::start("b0").await;
    let ca = Ca::new();
    let shop = Files::new(&ca.issue(&["shop.test"]));
    let toml = config(&backend, &[&shop], "handshake_timeout = \"200ms\"");
    let gateway = Gateway::with_config(&toml).await;
    let mut silent = TcpStream::connect(gateway.tls.expect("an HTTPS listener"))
        .await
        .expect("connect");
    let mut rest = Vec::new();
    let read = within(
        Duration::from_secs(3),
        "the gateway to close",
        silent.read_to_end(&mut rest),
    )
    .await;
    assert!(read.is_ok_and(|n| n == 0), "closed without a word");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_the_https_listener_needs_a_restart() {
    let backend = Backend::start("b0").await;
    let ca = Ca::new();
    let shop = ca.issue(&["shop.test"]);
    let files = Files::new(&shop);
    let toml = config(&backend, &[&files], "");
    let gateway = Gateway::with_config(&toml).await;
    let tls = gateway.tls.expect("an HTTPS listener");

    let moved = toml.replace(
        "[tls]\nlisten = \"127.0.0.1:0\"",
        "[tls]\nlisten = \"127.0.0.1:1\"",
    );
    gateway.rewrite_config(&moved);
    gateway.hangup();
    refused(&gateway).await;
    assert!(
        gateway.stderr().contains("`tls.listen` cannot change"),
        "{}",
        gateway.stderr()
    );
    assert_eq!(served_certificate(&ca, tls, "shop.test").await, shop.der);
}
