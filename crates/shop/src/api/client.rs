//! Who is on the other end: the client's IP (for login limits) and whether
//! it came over TLS (for the cookie's `Secure` flag). Forwarding headers
//! are believed only from the configured trusted proxies — the gateway
//! sets `X-Real-IP` and `X-Forwarded-Proto`; anyone else could forge them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use http::HeaderMap;
use http::request::Parts;

use super::error::ApiError;
use crate::App;

/// The client of a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Client {
    /// Its IP address.
    pub ip: IpAddr,
    /// Whether it reached the front door over TLS.
    pub https: bool,
    /// Whether the peer is a trusted proxy, whose forwarding headers count.
    pub trusted: bool,
}

impl FromRequestParts<Arc<App>> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
        let trusted = app
            .config
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&peer));
        Ok(if trusted {
            forwarded(&parts.headers, peer)
        } else {
            Client {
                ip: peer,
                https: false,
                trusted: false,
            }
        })
    }
}

fn forwarded(headers: &HeaderMap, peer: IpAddr) -> Client {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let ip = header("x-real-ip")
        .or_else(|| header("x-forwarded-for").and_then(|v| v.rsplit(',').next()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(peer);
    let https = header("x-forwarded-proto").is_some_and(|p| p.eq_ignore_ascii_case("https"));
    Client {
        ip,
        https,
        trusted: true,
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn a_trusted_proxy_names_the_client() {
        let peer = IpAddr::from([127, 0, 0, 1]);
        let mut headers = HeaderMap::new();
        assert_eq!(forwarded(&headers, peer).ip, peer);
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("10.0.0.1, 192.0.2.7"),
        );
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let client = forwarded(&headers, peer);
        assert_eq!(client.ip, IpAddr::from([192, 0, 2, 7]));
        assert!(client.https);
        headers.insert("x-real-ip", HeaderValue::from_static("198.51.100.1"));
        assert_eq!(
            forwarded(&headers, peer).ip,
            IpAddr::from([198, 51, 100, 1])
        );
    }
}
