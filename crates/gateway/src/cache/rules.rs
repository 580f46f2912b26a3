//! The header rules of caching, read off a backend's answer, for both
//! paths (the fast path reads parsed heads, hyper `HeaderMap`s, both
//! through [`Fields`]): which answers may take a route's default
//! `Cache-Control`, so that a CDN in front caches what the backend said
//! nothing about, and never what carries a cookie.

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

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::*;

    fn head(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
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
