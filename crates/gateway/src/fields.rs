//! A read-only view of a request's header fields, shared by the two
//! protocol paths: hyper's `HeaderMap` (HTTP/2, upgrades) and the parsed
//! head of the HTTP/1.1 fast path (`h1`), which never builds a `HeaderMap`.
//!
//! Code that only reads headers (choosing a backend, finding the client's
//! address, computing forwarding headers) is written once against
//! [`Fields`] and serves both.

use http::HeaderMap;

/// Header fields that can be looked up by lowercase name.
pub(crate) trait Fields {
    /// Every value of the field `name` (lowercase), in order of appearance.
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a;

    /// The first value of `name`.
    fn field<'a>(&'a self, name: &'a str) -> Option<&'a [u8]> {
        self.values(name).next()
    }

    /// Every value of `name` joined by ", ", as a proxy that merges repeated
    /// fields would see them; `None` when absent or not text.
    fn joined(&self, name: &str) -> Option<String> {
        let mut out: Option<String> = None;
        for value in self.values(name) {
            let text = std::str::from_utf8(value).ok()?;
            match &mut out {
                Some(out) => {
                    out.push_str(", ");
                    out.push_str(text);
                }
                None => out = Some(text.to_owned()),
            }
        }
        out
    }

    /// The comma-separated tokens of every value of `name`, trimmed.
    fn tokens<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.values(name)
            .flat_map(|value| value.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|token| !token.is_empty())
    }

    /// Whether some token of `name` equals `token`, ignoring ASCII case
    /// (`Connection: keep-alive, Upgrade` has the token `upgrade`).
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.tokens(name)
            .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
    }

    /// The value of cookie `name` in the `Cookie` fields.
    fn cookie<'a>(&'a self, name: &str) -> Option<&'a str> {
        self.values("cookie")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                (key == name).then_some(value.trim_matches('"'))
            })
    }
}

impl Fields for HeaderMap {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.get_all(name).into_iter().map(|v| v.as_bytes())
    }
}

impl Fields for [httparse::Header<'_>] {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// Whether a field is hop-by-hop (RFC 9110 §7.6.1): it describes one
/// connection and must not be forwarded. Fields named by the message's own
/// `Connection` field are hop-by-hop too; the caller checks those.
/// `TE: trailers` is forwarded, since gRPC needs it end to end.
pub(crate) fn is_hop_by_hop(name: &str, value: &[u8]) -> bool {
    const FIXED: [&str; 6] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    if name.eq_ignore_ascii_case("te") {
        return !value.eq_ignore_ascii_case(b"trailers");
    }
    FIXED.iter().any(|h| name.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed<'b>(raw: &'b [u8], storage: &mut [httparse::Header<'b>; 16]) -> usize {
        let mut req = httparse::Request::new(storage);
        let _ = req.parse(raw).unwrap();
        req.headers.len()
    }

    #[test]
    fn both_views_agree() {
        let raw = b"GET / HTTP/1.1\r\nConnection: keep-alive, X-Secret\r\nCookie: a=1; sid=\"xyz\"\r\nX-Many: 1\r\nx-many: 2\r\n\r\n";
        let mut storage = [httparse::EMPTY_HEADER; 16];
        let n = parsed(raw, &mut storage);
        let slice = &storage[..n];
        let mut map = HeaderMap::new();
        for h in slice {
            map.append(
                http::HeaderName::from_bytes(h.name.as_bytes()).unwrap(),
                http::HeaderValue::from_bytes(h.value).unwrap(),
            );
        }
        check(&map);
        check(slice);
    }

    fn check(fields: &(impl Fields + ?Sized)) {
        assert_eq!(fields.joined("x-many").as_deref(), Some("1, 2"));
        assert!(fields.has_token("connection", "x-secret"));
        assert!(!fields.has_token("connection", "close"));
        assert_eq!(fields.cookie("sid"), Some("xyz"));
        assert_eq!(fields.cookie("none"), None);
        assert_eq!(fields.field("absent"), None);
    }

    #[test]
    fn hop_by_hop_fields() {
        assert!(is_hop_by_hop("Keep-Alive", b"timeout=5"));
        assert!(is_hop_by_hop("te", b"gzip"));
        assert!(!is_hop_by_hop("te", b"trailers"));
        assert!(!is_hop_by_hop("content-length", b"3"));
    }
}
