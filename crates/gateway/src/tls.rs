//! TLS termination: the HTTPS listener's handshakes, the certificate each
//! one gets (by SNI), and what HTTPS changes in the answers: HSTS on the
//! HTTPS listener, the redirect on the plain one.
//!
//! The certificates are part of the shared state a reload replaces (see
//! `server`): a reload re-reads the files (`config::tls`) and builds a new
//! [`Tls`], so a renewed certificate serves every handshake that starts
//! after the reload, while connections already open keep the session they
//! have. No lock is taken per handshake: a connection takes the `Tls` of
//! the configuration current when it was accepted.
//!
//! A connection that completed its handshake is served by hyper (HTTP/2 when
//! ALPN chose `h2`, else HTTP/1.1), not by the hand-written HTTP/1.1 fast
//! path: that path is written against `TcpStream` and notices a client that
//! left while its backend thinks by peeking at the socket, which a TLS stream
//! cannot do without consuming records (see `connection`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Response, StatusCode, Uri};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig};
use rustls::sign::CertifiedKey;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::body::ResponseBody;
use crate::config::{Certificate, TlsConfig};
use crate::error::GatewayError;
use crate::route::host_without_port;
use crate::telemetry::TLS_HANDSHAKES;

/// The one crypto provider of the gateway: ring, which builds without a C
/// toolchain's extras (aws-lc-rs needs cmake).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// One configuration's TLS state.
#[derive(Debug)]
pub(crate) struct Tls {
    server: Arc<ServerConfig>,
    handshake_timeout: Duration,
    hsts: Option<HeaderValue>,
    redirect_http: bool,
}

impl Tls {
    /// The state `config` (validated, its certificates read) describes.
    pub(crate) fn new(config: &TlsConfig) -> Self {
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("ring supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Certificates::new(&config.loaded)));
        server.alpn_protocols = config.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Self {
            server: Arc::new(server),
            handshake_timeout: config.handshake_timeout,
            hsts: config
                .hsts
                .as_deref()
                .and_then(|v| HeaderValue::from_str(v).ok()),
            redirect_http: config.redirect_http,
        }
    }

    /// Completes the handshake of a connection accepted on the HTTPS
    /// listener, within the handshake timeout; `None` when it failed.
    pub(crate) async fn accept(&self, stream: TcpStream) -> Option<TlsStream<TcpStream>> {
        let acceptor = TlsAcceptor::from(Arc::clone(&self.server));
        let handshake = tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream));
        let (stream, outcome) = match handshake.await {
            Ok(Ok(stream)) => (Some(stream), "ok"),
            Ok(Err(error)) => {
                // A scanner, an old client, a client that does not trust
                // the certificate: the client's business, not a log line
                // per attempt at the default level.
                tracing::debug!(%error, "TLS handshake failed.");
                (None, "failed")
            }
            Err(_) => (None, "timeout"),
        };
        metrics::counter!(TLS_HANDSHAKES, "outcome" => outcome).increment(1);
        stream
    }

    /// The `Strict-Transport-Security` value for HTTPS answers, if any.
    pub(crate) fn hsts(&self) -> Option<&HeaderValue> {
        self.hsts.as_ref()
    }

    /// Whether the plain listener redirects to this one.
    pub(crate) fn redirects_http(&self) -> bool {
        self.redirect_http
    }
}

/// The plain listener's answer when `redirect_http` is on: `308` to the
/// same host, path and query on the HTTPS listener's `port`. 308 rather
/// than the 301 nginx configurations usually give: it keeps the method and
/// body, so a form posted over plain HTTP is not silently turned into a
/// `GET` (Caddy answers 308 too).
pub(crate) fn redirect(
    host: Option<&str>,
    uri: &Uri,
    port: u16,
) -> Result<Response<ResponseBody>, GatewayError> {
    let location = host
        .map(host_without_port)
        .and_then(|host| https_location(host, port, uri))
        .ok_or(GatewayError::MalformedRequest)?;
    let mut response = Response::new(ResponseBody::full("", None));
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

/// `https://host[:port]/path?query`, the port left out when it is 443;
/// `None` when `host` is not a host name or address.
fn https_location(host: &str, port: u16, uri: &Uri) -> Option<HeaderValue> {
    let is_host = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
    if !is_host {
        return None;
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let location = match port {
        443 => format!("https://{host}{path}"),
        port => format!("https://{host}:{port}{path}"),
    };
    HeaderValue::from_str(&location).ok()
}

/// The certificates of one configuration, by the names they serve.
#[derive(Debug)]
struct Certificates {
    /// Exact names and `*.parent` wildcards, lowercase; the first
    /// certificate listing a name serves it.
    by_name: HashMap<String, Arc<CertifiedKey>>,
    /// The first certificate: for clients that send no name (SNI), or one
    /// no certificate has.
    default: Arc<CertifiedKey>,
}

impl Certificates {
    fn new(loaded: &[Certificate]) -> Self {
        let mut by_name = HashMap::new();
        for certificate in loaded {
            for name in &certificate.names {
                by_name
                    .entry(name.clone())
                    .or_insert_with(|| Arc::clone(&certificate.key));
            }
        }
        Self {
            by_name,
            // Validation refuses an empty list.
            default: Arc::clone(&loaded[0].key),
        }
    }

    /// The certificate for `name`: an exact match, else a wildcard for its
    /// parent (`*.example.com` serves `a.example.com`, not `example.com`
    /// nor `a.b.example.com`, as clients check).
    fn find(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        let name = name.to_ascii_lowercase();
        self.by_name.get(&name).or_else(|| {
            let (_, parent) = name.split_once('.')?;
            self.by_name.get(&format!("*.{parent}"))
        })
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let found = hello.server_name().and_then(|name| self.find(name));
        Some(Arc::clone(found.unwrap_or(&self.default)))
    }
}

#[cfg(test)]
mod tests;
