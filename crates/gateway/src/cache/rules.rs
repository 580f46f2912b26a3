//! The header rules of caching, read off a request or a backend's answer,
//! for both paths (the fast path reads parsed heads, hyper `HeaderMap`s,
//! both through [`Fields`]):
//!
//! - which requests a shared cache may answer, and under which key;
//! - which answers it may keep, and for how long (RFC 9111 §3, §4.2);
//! - which answers may take a route's default `Cache-Control`, so that a
//!   CDN in front caches what the backend said nothing about, and never
//!   what carries a cookie.

use std::time::Duration;

use crate::fields::Fields;

/// Whether an answer to a `GET` or `HEAD` may be given the route's
/// `cache_control`: the backend said nothing of its own, sets no cookie,
/// and the status is one a cache may keep without being told (RFC 9110
/// §15.1), or a `304`, which must say what its `200` would (§15.4.5).
pub(crate) fn takes_default_cache_control(status: u16, fields: &(impl Fields + ?Sized)) -> bool {
    matches!(status, 200 | 203 | 204 | 300 | 301 | 304 | 404 | 410)
        && fields.field("cache-control").is_none()
        && fields.field("set-cookie").is_none()
}

/// Whether a request must go to the backend whatever the cache holds: a
/// method other than `GET` and `HEAD`; credentials (RFC 9111 §3.5: an
/// answer to them is the user's own); a range or a precondition the
/// cache does not evaluate.
pub(crate) fn bypasses(method: &str, fields: &(impl Fields + ?Sized)) -> bool {
    const PERSONAL: [&str; 4] = ["authorization", "range", "if-match", "if-unmodified-since"];
    !matches!(method, "GET" | "HEAD") || PERSONAL.iter().any(|name| fields.field(name).is_some())
}

/// How long a backend's answer may be kept, at most `ttl`; `None` when it
/// may not be kept at all: anything but a `200` with an unencoded body; a
/// cookie; `private`, `no-store` or `no-cache`; a `Vary` on anything but
/// `Accept-Encoding` (the cache keys on the URL alone and does the coding
/// itself); or a lifetime the answer's `Age` has used up.
pub(crate) fn storable_for(
    ttl: Duration,
    status: u16,
    fields: &(impl Fields + ?Sized),
) -> Option<Duration> {
    let forbidden = |directive: &str| directives(fields).any(|(name, _)| name == directive);
    let kept = status == 200
        && fields.field("set-cookie").is_none()
        && fields.field("content-encoding").is_none()
        && !["private", "no-store", "no-cache"]
            .into_iter()
            .any(forbidden)
        && fields
            .tokens("vary")
            .all(|name| name.eq_ignore_ascii_case(b"accept-encoding"));
    if !kept {
        return None;
    }
    let left = match lifetime(fields) {
        Some(lifetime) => ttl.min(lifetime.saturating_sub(age(fields))),
        None => ttl,
    };
    (!left.is_zero()).then_some(left)
}

/// The freshness lifetime the answer gives shared caches: `s-maxage`,
/// else `max-age` (RFC 9111 §4.2.1).
fn lifetime(fields: &(impl Fields + ?Sized)) -> Option<Duration> {
    let seconds = |wanted: &str| {
        directives(fields)
            .find(|(name, _)| *name == wanted)
            .and_then(|(_, value)| value?.trim_matches('"').parse::<u64>().ok())
    };
    seconds("s-maxage")
        .or_else(|| seconds("max-age"))
        .map(Duration::from_secs)
}

/// The answer's `Age`: how long caches before this one kept it.
pub(crate) fn age(fields: &(impl Fields + ?Sized)) -> Duration {
    fields
        .field("age")
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok())
        .map_or(Duration::ZERO, Duration::from_secs)
}

/// The `Cache-Control` directives, lowercase, with their values.
fn directives<'a>(
    fields: &'a (impl Fields + ?Sized),
) -> impl Iterator<Item = (String, Option<&'a str>)> + 'a {
    fields
        .tokens("cache-control")
        .filter_map(|token| std::str::from_utf8(token).ok())
        .map(|token| match token.split_once('=') {
            Some((name, value)) => (name.trim().to_ascii_lowercase(), Some(value.trim())),
            None => (token.to_ascii_lowercase(), None),
        })
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::*;

    const TTL: Duration = Duration::from_millis(1500);

    fn head(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    fn kept(pairs: &[(&'static str, &'static str)]) -> Option<Duration> {
        storable_for(TTL, 200, &head(pairs))
    }

    #[test]
    fn plain_answers_are_kept_for_the_configured_ttl() {
        assert_eq!(kept(&[("content-type", "text/html")]), Some(TTL));
        assert_eq!(kept(&[("cache-control", "public, max-age=60")]), Some(TTL));
        assert_eq!(kept(&[("vary", "Accept-Encoding")]), Some(TTL));
    }

    #[test]
    fn personal_or_forbidden_answers_are_not_kept() {
        for pairs in [
            &[("set-cookie", "sid=1")][..],
            &[("cache-control", "private")],
            &[("cache-control", "public, No-Store")],
            &[("cache-control", "no-cache=\"set-cookie\"")],
            &[("vary", "accept-encoding, cookie")],
            &[("vary", "*")],
            &[("content-encoding", "gzip")],
            &[("cache-control", "max-age=5"), ("age", "5")],
        ] {
            assert_eq!(kept(pairs), None, "{pairs:?}");
        }
        for status in [201, 206, 302, 404, 500] {
            assert_eq!(storable_for(TTL, status, &head(&[])), None, "{status}");
        }
    }

    #[test]
    fn the_backends_lifetime_lowers_the_ttl_and_never_raises_it() {
        let second = Duration::from_secs(1);
        assert_eq!(kept(&[("cache-control", "max-age=1")]), Some(second));
        assert_eq!(
            kept(&[("cache-control", "max-age=100, s-maxage=1")]),
            Some(second),
            "s-maxage is the shared caches' own"
        );
        assert_eq!(
            kept(&[("cache-control", "s-maxage=100, max-age=1")]),
            Some(TTL)
        );
        assert_eq!(kept(&[("cache-control", "max-age=0")]), None);
        assert_eq!(
            kept(&[("cache-control", "max-age=3"), ("age", "2")]),
            Some(second),
            "what caches before used up"
        );
        assert_eq!(kept(&[("cache-control", "max-age=soon")]), Some(TTL));
    }

    #[test]
    fn credentials_ranges_and_writes_bypass() {
        assert!(!bypasses("GET", &head(&[("cookie", "a=1")])));
        assert!(!bypasses("HEAD", &head(&[("if-none-match", "\"x\"")])));
        assert!(bypasses("GET", &head(&[("authorization", "Bearer x")])));
        assert!(bypasses("GET", &head(&[("range", "bytes=0-1")])));
        assert!(bypasses("POST", &head(&[])));
    }

    #[test]
    fn the_default_cache_control_never_overrides_the_backend_or_a_cookie() {
        assert!(takes_default_cache_control(200, &head(&[])));
        assert!(takes_default_cache_control(404, &head(&[])));
        assert!(takes_default_cache_control(304, &head(&[])));
        assert!(!takes_default_cache_control(
            200,
            &head(&[("cache-control", "no-store")])
        ));
        assert!(!takes_default_cache_control(
            200,
            &head(&[("set-cookie", "a=1")])
        ));
        for status in [201, 302, 500, 503] {
            assert!(!takes_default_cache_control(status, &head(&[])), "{status}");
        }
    }
}
