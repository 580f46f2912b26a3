//! Compressing a pool route's answers as they stream from the backend
//! (`routes[N].compress`), on the hyper path, with the codings and size
//! threshold of `[compression]`.
//!
//! tower-http's `Compression` does the streaming (its encoders are the
//! async-compression crate's): it negotiates the coding from the client's
//! `Accept-Encoding`, leaves answers with a `Content-Encoding` or a
//! `Content-Range` alone, drops the `Content-Length` it would falsify and
//! adds `Vary: Accept-Encoding` to the backend's `Vary` whenever the body
//! depends on the client's codings. [`Proxied`] decides the rest: what is
//! worth compressing, and what a proxy must not touch.
//!
//! The fast path (`h1`) never compresses: it relays the backend's bytes as
//! they are. A request it would have to compress goes to hyper instead
//! (see [`negotiable`]), so a client that accepts no coding, and every
//! route without `compress`, keep the fast path.

use std::convert::Infallible;
use std::task::{Context, Poll};

use http::header::{self, HeaderMap};
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use tower::Service;
use tower_http::compression::Compression;
use tower_http::compression::predicate::Predicate;

use crate::body::{BodyError, ResponseBody};
use crate::config::{Algorithm, CompressionConfig};
use crate::fields::Fields;
use crate::stored::coding::{self, Accepted};

/// Whether a request with `fields` accepts a coding `compression`
/// offers, so that its answer may be compressed.
pub(crate) fn negotiable(compression: &CompressionConfig, fields: &(impl Fields + ?Sized)) -> bool {
    let accepted = Accepted::of(fields);
    coding::PREFERENCE
        .into_iter()
        .any(|algorithm| compression.offers(algorithm) && accepted.accepts(algorithm))
}

/// The `Accept-Encoding` of a request, kept to compress its answer with
/// once the request itself has gone upstream.
pub(crate) fn accepted_codings(headers: &HeaderMap) -> HeaderMap {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .map(|value| (header::ACCEPT_ENCODING, value.clone()))
        .collect()
}

/// `response` compressed for a client that sent `accept_encoding`, when
/// [`Proxied`] allows it.
pub(crate) async fn compress(
    response: Response<ResponseBody>,
    accept_encoding: HeaderMap,
    compression: &CompressionConfig,
) -> Response<ResponseBody> {
    let offers = |algorithm| compression.offers(algorithm);
    let mut service = Compression::new(Answered(Some(response)))
        .br(offers(Algorithm::Br))
        .zstd(offers(Algorithm::Zstd))
        .gzip(offers(Algorithm::Gzip))
        .compress_when(Proxied {
            min_bytes: compression.min_bytes,
        });
    let mut request = Request::new(());
    *request.headers_mut() = accept_encoding;
    let Ok(compressed) = service.call(request).await;
    compressed.map(|body| ResponseBody::boxed(body.map_err(BodyError::Compressing).boxed_unsync()))
}

/// A service whose one answer is ready: the backend's, to be wrapped.
struct Answered(Option<Response<ResponseBody>>);

impl Service<Request<()>> for Answered {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        // Called once, by `compress`.
        let response = self
            .0
            .take()
            .unwrap_or_else(|| Response::new(ResponseBody::empty(None)));
        std::future::ready(Ok(response))
    }
}

/// Which proxied answers are compressed: those with a body of a type worth
/// it (see [`coding::compressible_type`]: no event streams, which would be
/// held back), at least `min_bytes` long when the length is known; never
/// a part of a body (`206`), nor an answer whose sender forbade it
/// (`Cache-Control: no-transform`, RFC 9111 §5.2.2.6).
#[derive(Debug, Clone, Copy)]
struct Proxied {
    min_bytes: u64,
}

impl Predicate for Proxied {
    fn should_compress<B: Body>(&self, response: &Response<B>) -> bool {
        let headers = response.headers();
        !matches!(
            response.status(),
            StatusCode::PARTIAL_CONTENT | StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
        ) && !headers.has_token("cache-control", "no-transform")
            && coding::worth_compressing(headers, self.min_bytes)
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn answer(status: u16, pairs: &[(&'static str, &'static str)]) -> Response<ResponseBody> {
        let mut response = Response::new(ResponseBody::empty(None));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        for (name, value) in pairs {
            response
                .headers_mut()
                .append(*name, HeaderValue::from_static(value));
        }
        response
    }

    #[test]
    fn only_whole_text_bodies_the_sender_lets_us_touch_are_compressed() {
        let proxied = Proxied { min_bytes: 1024 };
        let html = ("content-type", "text/html");
        assert!(
            proxied.should_compress(&answer(200, &[html])),
            "length unknown"
        );
        assert!(proxied.should_compress(&answer(404, &[html, ("content-length", "2048")])));
        for (status, pairs) in [
            (200, &[html, ("content-length", "10")][..]),
            (200, &[("content-type", "image/png")]),
            (200, &[("content-type", "text/event-stream")]),
            (200, &[html, ("cache-control", "public, no-transform")]),
            (206, &[html]),
            (304, &[html]),
        ] {
            assert!(
                !proxied.should_compress(&answer(status, pairs)),
                "{status} {pairs:?}"
            );
        }
    }

    #[test]
    fn a_coding_must_be_both_offered_and_accepted() {
        let gzip_only = CompressionConfig {
            algorithms: vec![Algorithm::Gzip],
            ..CompressionConfig::default()
        };
        let accepts = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(value));
            headers
        };
        assert!(negotiable(&gzip_only, &accepts("br, gzip")));
        assert!(!negotiable(&gzip_only, &accepts("br, zstd")));
        assert!(!negotiable(&gzip_only, &HeaderMap::new()));
    }
}
