//! Answers held in memory and sent from there: static files small enough
//! to keep (see `files`), and so any answer the gateway can give without
//! asking anyone.
//!
//! A [`Stored`] answer keeps its body once per content coding, compressed
//! when it was stored, so that sending it costs a lookup and a write on
//! either path: the fast path (`h1`) writes head and body straight into
//! the socket, hyper gets a `Response` with a full body. What depends on
//! the request is decided here, once for both paths ([`Stored::reply`]):
//!
//! - the coding, from `Accept-Encoding`: the gateway's preference (br,
//!   zstd, gzip) among the stored ones the client accepts;
//! - `304 Not Modified`, from `If-None-Match` compared weakly (RFC 9110
//!   §13.1.2), else `If-Modified-Since`.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use crate::body::{Exchange, ResponseBody};
use crate::config::{Algorithm, CompressionConfig};
use crate::fields::Fields;

pub(crate) mod coding;

use coding::Accepted;

/// An answer held in memory.
#[derive(Debug)]
pub(crate) struct Stored {
    /// Every field but `Content-Length` and `Content-Encoding`, which
    /// depend on the coding sent.
    fields: Vec<(HeaderName, HeaderValue)>,
    identity: Bytes,
    /// The compressed bodies, in the gateway's order of preference.
    encoded: Vec<Encoded>,
    etag: Option<HeaderValue>,
    /// Whole seconds, as `Last-Modified` says it.
    last_modified: Option<SystemTime>,
}

impl Stored {
    /// A `200` with `fields` and `body`; the validators among `fields`
    /// (`ETag`, `Last-Modified`) are what conditional requests compare.
    pub(crate) fn new(fields: Vec<(HeaderName, HeaderValue)>, body: Bytes) -> Self {
        let value = |name| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        let etag = value(&header::ETAG).cloned();
        let last_modified = value(&header::LAST_MODIFIED)
            .and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok());
        Self {
            fields,
            identity: body,
            encoded: Vec::new(),
            etag,
            last_modified,
        }
    }

    /// Adds the body as compressed with `algorithm` (a precompressed file).
    pub(crate) fn with_encoded(mut self, algorithm: Algorithm, body: Bytes) -> Self {
        self.encoded.push(Encoded {
            algorithm,
            body,
            ranges: true,
        });
        self.encoded.sort_by_key(|e| rank(e.algorithm));
        self
    }

    /// Compresses the body with each coding `compression` offers and none
    /// is stored for yet, when its type and size are worth it; then says
    /// `Vary: Accept-Encoding` if codings differ between clients. CPU-bound.
    pub(crate) fn compressed(mut self, compression: Option<&CompressionConfig>) -> Self {
        let worth_it = |c: &CompressionConfig| {
            self.identity.len() as u64 >= c.min_bytes
                && self
                    .field(&header::CONTENT_TYPE)
                    .is_some_and(|t| coding::compressible_type(t.as_bytes()))
        };
        if let Some(compression) = compression.filter(|c| worth_it(c)) {
            for algorithm in coding::PREFERENCE {
                let stored = self.encoded.iter().any(|e| e.algorithm == algorithm);
                if compression.offers(algorithm)
                    && !stored
                    && let Ok(packed) = coding::compress(algorithm, &self.identity)
                    // Incompressible after all: not worth a coding.
                    && packed.len() < self.identity.len()
                {
                    self.encoded.push(Encoded {
                        algorithm,
                        body: packed.into(),
                        ranges: false,
                    });
                }
            }
            self.encoded.sort_by_key(|e| rank(e.algorithm));
        }
        if !self.encoded.is_empty() && !varies_on_encoding(self.fields.iter().map(|(n, v)| (n, v)))
        {
            self.fields
                .push((header::VARY, HeaderValue::from_static("accept-encoding")));
        }
        self
    }

    /// The memory it takes, for a cache's weigher.
    pub(crate) fn weight(&self) -> usize {
        let fields: usize = self
            .fields
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len())
            .sum();
        let encoded: usize = self.encoded.iter().map(|e| e.body.len()).sum();
        self.identity.len() + encoded + fields + 128
    }

    fn field(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The answer to a request with `conditions`.
    pub(crate) fn reply(&self, conditions: &Conditions) -> Reply<'_> {
        // The client's highest quality wins; ties go to the gateway's
        // preference, the order `encoded` is in.
        let accepted = conditions.accepted;
        let coding = self
            .encoded
            .iter()
            .filter(|e| accepted.accepts(e.algorithm))
            .rev()
            .max_by_key(|e| accepted.quality(e.algorithm));
        let status = if self.not_modified(conditions) {
            StatusCode::NOT_MODIFIED
        } else {
            StatusCode::OK
        };
        Reply {
            stored: self,
            status,
            coding,
        }
    }

    fn not_modified(&self, conditions: &Conditions) -> bool {
        // RFC 9110 §13.2.2: If-None-Match, when present, is the condition;
        // If-Modified-Since is then ignored.
        if let Some(wanted) = &conditions.if_none_match {
            return self
                .etag
                .as_ref()
                .is_some_and(|etag| etag_matches(wanted, etag.as_bytes()));
        }
        match (conditions.if_modified_since, self.last_modified) {
            (Some(since), Some(modified)) => modified <= since,
            _ => false,
        }
    }
}

fn rank(algorithm: Algorithm) -> usize {
    coding::PREFERENCE
        .iter()
        .position(|a| *a == algorithm)
        .unwrap_or(usize::MAX)
}

/// A body compressed with one coding.
#[derive(Debug)]
struct Encoded {
    algorithm: Algorithm,
    body: Bytes,
    /// Whether ranges of it can be asked for: a precompressed file's, which
    /// are served from disk, yes; one compressed by the gateway, no.
    ranges: bool,
}

/// What of a request decides a stored answer: owned, since the fast path
/// reads the next request into the buffer its head was parsed from.
#[derive(Debug, Default)]
pub(crate) struct Conditions {
    accepted: Accepted,
    if_none_match: Option<Box<[u8]>>,
    if_modified_since: Option<SystemTime>,
}

impl Conditions {
    /// The conditions of a request with `fields`.
    pub(crate) fn of(fields: &(impl Fields + ?Sized)) -> Self {
        Self {
            accepted: Accepted::of(fields),
            if_none_match: fields.field("if-none-match").map(Box::from),
            if_modified_since: fields
                .field("if-modified-since")
                .and_then(|v| httpdate::parse_http_date(std::str::from_utf8(v).ok()?).ok()),
        }
    }
}

/// A stored answer as one request gets it.
#[derive(Debug)]
pub(crate) struct Reply<'a> {
    stored: &'a Stored,
    pub(crate) status: StatusCode,
    /// `None`: the identity coding.
    coding: Option<&'a Encoded>,
}

impl Reply<'_> {
    /// The fields of the answer's head, framing included (`Content-Length`
    /// is the full body's even when answering `HEAD`, as a `GET` would get).
    pub(crate) fn fields(&self) -> impl Iterator<Item = (&str, &[u8])> {
        let modified = self.status == StatusCode::NOT_MODIFIED;
        // Ranges of a body the gateway compressed cannot be asked for.
        let no_ranges = self.coding.is_some_and(|e| !e.ranges);
        let stored = self
            .stored
            .fields
            .iter()
            .filter(move |(name, _)| !(no_ranges && name == header::ACCEPT_RANGES))
            .filter(move |(name, _)| !modified || for_revalidation(name))
            .map(|(name, value)| (name.as_str(), value.as_bytes()));
        let coding = self
            .coding
            .map(|e| ("content-encoding", coding::token(e.algorithm).as_bytes()));
        stored.chain(coding)
    }

    /// The body to send for a `GET` (empty for a `304`).
    pub(crate) fn body(&self) -> &[u8] {
        self.whole().map_or(&[], |body| body)
    }

    /// The body of the coding sent, unless this is a `304`.
    fn whole(&self) -> Option<&Bytes> {
        let body = self.coding.map_or(&self.stored.identity, |e| &e.body);
        (self.status != StatusCode::NOT_MODIFIED).then_some(body)
    }

    /// The answer for hyper, counted by `exchange` when it has been sent.
    pub(crate) fn into_response(self, exchange: Exchange) -> Response<ResponseBody> {
        let mut headers = HeaderMap::with_capacity(self.stored.fields.len() + 2);
        for (name, value) in self.fields() {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value),
            ) {
                headers.append(name, value);
            }
        }
        let body = self.whole().cloned().unwrap_or_default();
        let mut response = Response::new(ResponseBody::full(body, Some(exchange)));
        *response.status_mut() = self.status;
        *response.headers_mut() = headers;
        response
    }
}

/// Whether a `304` carries the field `name`: only what updates a cache's
/// stored copy (RFC 9110 §15.4.5); `Date` is added by the path.
fn for_revalidation(name: &HeaderName) -> bool {
    [
        header::CACHE_CONTROL,
        header::CONTENT_LOCATION,
        header::ETAG,
        header::EXPIRES,
        header::VARY,
    ]
    .contains(name)
}

/// A reply's fields, for the rules that read a response's fields.
impl Fields for Reply<'_> {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }
}

/// The `Last-Modified` value of `modified`, in whole seconds.
pub(crate) fn http_date(modified: SystemTime) -> HeaderValue {
    let whole = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(SystemTime::UNIX_EPOCH, |d| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(d.as_secs())
        });
    HeaderValue::try_from(httpdate::fmt_http_date(whole))
        .unwrap_or(HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
}

/// Whether an `If-None-Match` value matches `etag`: `*`, or one of its
/// comma-separated tags, compared weakly (RFC 9110 §8.8.3.2: `W/` aside).
pub(crate) fn etag_matches(wanted: &[u8], etag: &[u8]) -> bool {
    let opaque = |tag: &'_ [u8]| -> Vec<u8> {
        let tag = tag.trim_ascii();
        tag.strip_prefix(b"W/").unwrap_or(tag).to_vec()
    };
    let etag = opaque(etag);
    wanted
        .split(|&b| b == b',')
        .any(|tag| tag.trim_ascii() == b"*" || opaque(tag) == etag)
}

/// Whether `Vary` fields already name `Accept-Encoding`.
pub(crate) fn varies_on_encoding<'a>(
    fields: impl Iterator<Item = (&'a HeaderName, &'a HeaderValue)>,
) -> bool {
    fields
        .filter(|(name, _)| *name == header::VARY)
        .any(|(_, value)| {
            value
                .as_bytes()
                .split(|&b| b == b',')
                .any(|name| name.trim_ascii().eq_ignore_ascii_case(b"accept-encoding"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> Stored {
        let fields = vec![
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html")),
            (header::ETAG, HeaderValue::from_static("W/\"1f-65\"")),
            (
                header::LAST_MODIFIED,
                HeaderValue::from_static("Sun, 22 Nov 2026 10:00:00 GMT"),
            ),
        ];
        let config = CompressionConfig::default();
        Stored::new(fields, Bytes::from("<p>sale</p>".repeat(200))).compressed(Some(&config))
    }

    fn conditions(pairs: &[(&'static str, &'static str)]) -> Conditions {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        Conditions::of(&headers)
    }

    fn field<'a>(reply: &'a Reply<'_>, name: &str) -> Option<&'a [u8]> {
        reply.fields().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    #[test]
    fn the_preferred_accepted_coding_is_sent() {
        let page = page();
        let plain = page.reply(&conditions(&[]));
        assert_eq!(plain.body().len(), 2200);
        assert_eq!(field(&plain, "content-encoding"), None);
        assert_eq!(field(&plain, "vary"), Some(&b"accept-encoding"[..]));
        let gzip = page.reply(&conditions(&[("accept-encoding", "gzip, br;q=0")]));
        assert_eq!(field(&gzip, "content-encoding"), Some(&b"gzip"[..]));
        assert!(gzip.body().len() < 200);
        let br = page.reply(&conditions(&[("accept-encoding", "gzip, zstd, br")]));
        assert_eq!(field(&br, "content-encoding"), Some(&b"br"[..]));
        let ranked = page.reply(&conditions(&[("accept-encoding", "br;q=0.5, gzip")]));
        assert_eq!(field(&ranked, "content-encoding"), Some(&b"gzip"[..]));
    }

    #[test]
    fn small_or_binary_bodies_are_not_compressed() {
        let config = CompressionConfig::default();
        let html = vec![(header::CONTENT_TYPE, HeaderValue::from_static("text/html"))];
        let small = Stored::new(html, Bytes::from_static(b"<p>hi</p>")).compressed(Some(&config));
        let png = vec![(header::CONTENT_TYPE, HeaderValue::from_static("image/png"))];
        let image = Stored::new(png, Bytes::from(vec![7u8; 4096])).compressed(Some(&config));
        for stored in [small, image] {
            let reply = stored.reply(&conditions(&[("accept-encoding", "gzip")]));
            assert_eq!(field(&reply, "content-encoding"), None);
            assert_eq!(field(&reply, "vary"), None);
        }
    }

    #[test]
    fn validators_answer_not_modified() {
        let page = page();
        let etag = page.reply(&conditions(&[("if-none-match", "\"x\", \"1f-65\"")]));
        assert_eq!(etag.status, StatusCode::NOT_MODIFIED);
        assert!(etag.body().is_empty());
        assert_eq!(field(&etag, "content-type"), None);
        assert_eq!(field(&etag, "etag"), Some(&b"W/\"1f-65\""[..]));
        let other = page.reply(&conditions(&[
            ("if-none-match", "W/\"1f-66\""),
            ("if-modified-since", "Mon, 23 Nov 2026 10:00:00 GMT"),
        ]));
        assert_eq!(other.status, StatusCode::OK, "If-None-Match decides alone");
        let since = page.reply(&conditions(&[(
            "if-modified-since",
            "Sun, 22 Nov 2026 10:00:00 GMT",
        )]));
        assert_eq!(since.status, StatusCode::NOT_MODIFIED);
        let before = page.reply(&conditions(&[(
            "if-modified-since",
            "Sun, 22 Nov 2026 09:59:59 GMT",
        )]));
        assert_eq!(before.status, StatusCode::OK);
    }

    #[test]
    fn etags_compare_weakly_in_lists() {
        let etag = b"W/\"1f-65\"";
        assert!(etag_matches(b"W/\"1f-65\"", etag));
        assert!(etag_matches(b"\"1f-65\"", etag));
        assert!(etag_matches(b"\"x\", W/\"1f-65\"", etag));
        assert!(etag_matches(b"*", etag));
        assert!(!etag_matches(b"W/\"1f-66\"", etag));
    }

    #[test]
    fn vary_lists_are_read_whole() {
        let vary = |v| vec![(header::VARY, HeaderValue::from_static(v))];
        let varies = |v| varies_on_encoding(vary(v).iter().map(|(n, v)| (n, v)));
        assert!(varies("origin, Accept-Encoding"));
        assert!(!varies("accept-language"));
    }
}
