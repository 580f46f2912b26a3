//! The cross-site check of cookie-authenticated calls: a browser sends
//! the session cookie with a `SameSite=Lax` exemption for top-level
//! navigations only, but a page on another site can still make the
//! browser send a request; its `Origin` header gives it away. Such a call
//! (`Origin` present and not this site's scheme, host and port) is
//! refused `403 forbidden` before the session is even looked up.
//!
//! Requests without `Origin` (curl, `stampede storm`, any non-browser
//! client) pass unchanged, so the check costs the order path one header
//! lookup. `Origin: null` (a sandboxed frame, a redirect across sites) is
//! refused: it names no site, so it cannot be this one.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use http::HeaderMap;
use http::header::{HOST, ORIGIN};
use http::request::Parts;

use super::client::Client;
use super::error::ApiError;
use crate::App;

/// A request that came from this site or from no browser page at all.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SameOrigin;

impl FromRequestParts<Arc<App>> for SameOrigin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let Some(origin) = parts.headers.get(ORIGIN).cloned() else {
            return Ok(Self);
        };
        let client = Client::from_request_parts(parts, app).await?;
        let host = addressed_host(&parts.headers, client.trusted);
        let origin = origin.to_str().unwrap_or_default();
        if host.is_some_and(|host| same_site(origin, client.https, host)) {
            Ok(Self)
        } else {
            Err(ApiError::Forbidden(
                "cross-site request refused: its Origin is not this site",
            ))
        }
    }
}

/// The host (and port) the client addressed: the gateway's
/// `X-Forwarded-Host` when the peer is a trusted proxy, else `Host`.
fn addressed_host(headers: &HeaderMap, trusted: bool) -> Option<&str> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let forwarded = trusted
        .then(|| header("x-forwarded-host"))
        .flatten()
        .and_then(|v| v.split(',').next())
        .map(str::trim);
    forwarded.or_else(|| header(HOST.as_str()))
}

/// Whether `origin` (`scheme://host[:port]`) is `host` over the request's
/// scheme; a default port written or left out is the same origin.
fn same_site(origin: &str, https: bool, host: &str) -> bool {
    let (scheme, default_port) = if https {
        ("https://", ":443")
    } else {
        ("http://", ":80")
    };
    let Some(origin_host) = strip_prefix_ignore_case(origin, scheme) else {
        return false;
    };
    let bare = |h: &str| {
        let h = h.trim_end_matches('.');
        h.strip_suffix(default_port)
            .unwrap_or(h)
            .to_ascii_lowercase()
    };
    bare(origin_host) == bare(host)
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// The check for the storefront's forms, which answer HTML: whether a
/// request with these parts may go on.
pub(crate) async fn allowed(parts: &mut Parts, app: &Arc<App>) -> bool {
    SameOrigin::from_request_parts(parts, app).await.is_ok()
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn an_origin_matches_its_own_scheme_host_and_port() {
        assert!(same_site("http://shop.test:8080", false, "shop.test:8080"));
        assert!(same_site("HTTP://Shop.Test", false, "shop.test:80"));
        assert!(same_site("https://shop.test", true, "shop.test"));
        assert!(!same_site("http://shop.test", true, "shop.test"));
        assert!(!same_site("https://shop.test", false, "shop.test"));
        assert!(!same_site("http://evil.test", false, "shop.test"));
        assert!(!same_site("http://shop.test:8081", false, "shop.test:8080"));
        assert!(!same_site("null", false, "shop.test"));
        assert!(!same_site("", false, "shop.test"));
    }

    #[test]
    fn the_forwarded_host_counts_only_from_a_trusted_proxy() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("10.0.0.5:8000"));
        headers.insert("x-forwarded-host", HeaderValue::from_static("shop.test"));
        assert_eq!(addressed_host(&headers, true), Some("shop.test"));
        assert_eq!(addressed_host(&headers, false), Some("10.0.0.5:8000"));
        headers.remove("x-forwarded-host");
        assert_eq!(addressed_host(&headers, true), Some("10.0.0.5:8000"));
    }
}
