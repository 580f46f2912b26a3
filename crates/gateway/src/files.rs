//! Static files: a route with `static_dir` answers from a directory instead
//! of a pool, on the hyper path (the fast path hands such requests over;
//! it only relays bytes).
//!
//! tower-http's `ServeDir` does the HTTP of it: `Content-Type` from the
//! extension, `Last-Modified` and `If-Modified-Since`, `Range` (`206`,
//! `416`), and precompressed siblings (`app.js.br`, `.zst`, `.gz`) for
//! clients that accept them. Wrapped in its `Compression`, other
//! compressible answers are compressed on the fly (see [`Compressible`]).
//! What it leaves out is added here:
//!
//! - **Containment.** `ServeDir` refuses `..` segments (encoded ones
//!   included) but follows symlinks. Before it opens anything, the file (and
//!   any precompressed sibling) is resolved with every symlink followed and
//!   must lie under the canonical root; else `404`, as for a missing file,
//!   so that a probe learns nothing.
//! - **ETag.** A weak one from size and modification time (as nginx makes
//!   it), answered `304` on a matching `If-None-Match`. Weak, so one
//!   validator serves the plain and the compressed representations.
//! - **Cache headers** for browsers and a CDN in front: `Cache-Control`
//!   (long and `immutable` for fingerprinted names, see [`fingerprinted`];
//!   short otherwise, with `s-maxage` if configured) and `Vary:
//!   Accept-Encoding` wherever the encoding may differ between clients.
//!
//! Answers are counted in the request metrics under `pool="static:PREFIX"`,
//! `backend="files"`.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use tower::Service;
use tower_http::compression::Compression;
use tower_http::compression::predicate::Predicate;
use tower_http::services::ServeDir;

use crate::body::{BodyError, Exchange, ResponseBody};
use crate::config::{Algorithm, CacheConfig, CompressionConfig, RouteConfig};
use crate::error::GatewayError;
use crate::route::Matcher;
use crate::telemetry::RequestMetrics;

/// The extensions of precompressed siblings `ServeDir` looks for.
const SIBLINGS: [&str; 3] = ["br", "zst", "gz"];

/// A route serving the files of a directory.
pub(crate) struct Files {
    pub(crate) matcher: Matcher,
    /// Canonical (see `config::files`).
    root: Arc<PathBuf>,
    cache: CacheConfig,
    service: Compression<ServeDir, Compressible>,
    /// What on-the-fly compression applies to; `None` when it is off.
    compressing: Option<Compressible>,
    /// The `pool` label of its answers' metrics.
    label: Arc<str>,
    metrics: Arc<RequestMetrics>,
}

// By hand: tower-http's `Compression` is not `Debug`.
impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files")
            .field("matcher", &self.matcher)
            .field("root", &self.root)
            .field("compressing", &self.compressing)
            .finish_non_exhaustive()
    }
}

impl Files {
    /// The route of `config`, which has a (validated) `static_dir`;
    /// `compression` is the gateway's `[compression]`, if any.
    pub(crate) fn new(config: &RouteConfig, compression: Option<&CompressionConfig>) -> Self {
        let root = config.static_dir.clone().unwrap_or_default();
        let serve = ServeDir::new(&root)
            // Directories are not files: no index, no redirect to `dir/`
            // (whose Location would lack the route's prefix).
            .append_index_html_on_directories(false)
            .precompressed_br()
            .precompressed_zstd()
            .precompressed_gzip();
        let offers = |algorithm| compression.is_some_and(|c| c.offers(algorithm));
        let compressing = [Algorithm::Br, Algorithm::Zstd, Algorithm::Gzip]
            .into_iter()
            .any(offers)
            .then(|| Compressible {
                min_bytes: compression.map_or(0, |c| c.min_bytes),
            });
        let service = Compression::new(serve)
            .br(offers(Algorithm::Br))
            .zstd(offers(Algorithm::Zstd))
            .gzip(offers(Algorithm::Gzip))
            .compress_when(compressing.unwrap_or(Compressible {
                min_bytes: u64::MAX,
            }));
        let label: Arc<str> = format!("static:{}", config.path_prefix).into();
        Self {
            metrics: Arc::new(RequestMetrics::new(&label, "files")),
            label,
            matcher: Matcher::of(config),
            root: Arc::new(root),
            cache: config.cache.clone(),
            service,
            compressing,
        }
    }

    /// Answers `req`, whose path is under this route's prefix.
    pub(crate) async fn serve(
        &self,
        req: Request<Incoming>,
        started: Instant,
    ) -> Response<ResponseBody> {
        let (parts, _) = req.into_parts();
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            return self.refuse(GatewayError::MethodNotAllowed, started);
        }
        let rest = &parts.uri.path()[self.matcher.prefix.len()..];
        let (root, relative) = (Arc::clone(&self.root), rest.to_owned());
        let found = tokio::task::spawn_blocking(move || look_up(&root, &relative))
            .await
            .ok()
            .flatten();
        let Some(file) = found else {
            return self.refuse(GatewayError::NoFile, started);
        };
        let mut headers = parts.headers;
        if let Some(wanted) = headers.get(header::IF_NONE_MATCH) {
            if etag_matches(wanted.as_bytes(), file.etag.as_bytes()) {
                let mut response = Response::new(ResponseBody::empty(None));
                *response.status_mut() = StatusCode::NOT_MODIFIED;
                return self.finish(response, &file, rest, started);
            }
            // RFC 9110 §13.2.2: If-None-Match, when present, is the
            // condition; If-Modified-Since is then ignored.
            headers.remove(header::IF_MODIFIED_SINCE);
        }
        let mut inner = Request::new(());
        *inner.method_mut() = parts.method;
        *inner.uri_mut() = Uri::try_from(rest).unwrap_or_else(|_| Uri::from_static("/"));
        *inner.headers_mut() = headers;
        let mut service = self.service.clone();
        let Ok(response) = service.call(inner).await;
        if response.status() == StatusCode::NOT_FOUND {
            return self.refuse(GatewayError::NoFile, started);
        }
        let response =
            response.map(|body| ResponseBody::boxed(body.map_err(BodyError::File).boxed_unsync()));
        self.finish(response, &file, rest, started)
    }

    /// Adds the validators and cache headers to an answer about `file` at
    /// `path`, and counts it.
    fn finish(
        &self,
        response: Response<ResponseBody>,
        file: &Found,
        path: &str,
        started: Instant,
    ) -> Response<ResponseBody> {
        let (mut parts, body) = response.into_parts();
        let status = parts.status;
        if matches!(
            status,
            StatusCode::OK | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
        ) {
            let headers = &mut parts.headers;
            headers.insert(header::ETAG, file.etag.clone());
            headers.insert(header::CACHE_CONTROL, cache_control(&self.cache, path));
            if self.encoding_varies(file, path) && !varies_on_encoding(headers) {
                headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
            }
        }
        let exchange = Exchange::new(Arc::clone(&self.metrics), status.as_u16(), started, None);
        Response::from_parts(parts, body.counted(exchange))
    }

    /// Whether clients asking with different `Accept-Encoding` may get
    /// different bodies for `file`: a cache in front must then keep them
    /// apart (and a `304` must say so as its `200` would).
    fn encoding_varies(&self, file: &Found, path: &str) -> bool {
        let guessed = mime_guess::from_path(path).first_raw().unwrap_or("");
        file.has_sibling
            || self
                .compressing
                .is_some_and(|c| file.len >= c.min_bytes && compressible_type(guessed.as_bytes()))
    }

    /// The answer in the contract's error shape, counted.
    fn refuse(&self, error: GatewayError, started: Instant) -> Response<ResponseBody> {
        let counted_in = Some((&*self.label, Arc::clone(&self.metrics)));
        error.into_response(counted_in, started)
    }
}

/// A file found under the root.
#[derive(Debug)]
struct Found {
    len: u64,
    etag: HeaderValue,
    /// A precompressed sibling exists.
    has_sibling: bool,
}

/// The file `path` (as the request gave it, percent-encoded, relative to
/// the route's prefix) names under `root`, when it is a regular file
/// that, symlinks followed, lies under `root`, as do its precompressed
/// siblings. Blocking: run it off the event loop.
fn look_up(root: &Path, path: &str) -> Option<Found> {
    let decoded = percent_decode_str(path).decode_utf8().ok()?;
    let mut candidate = root.to_path_buf();
    for component in Path::new(&*decoded).components() {
        match component {
            Component::Normal(part) => candidate.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    let inside = |path: &Path| path.canonicalize().ok().filter(|c| c.starts_with(root));
    let metadata = inside(&candidate)?.metadata().ok()?;
    if !metadata.is_file() {
        return None;
    }
    let mut has_sibling = false;
    for extension in SIBLINGS {
        let mut sibling = candidate.clone().into_os_string();
        sibling.push(".");
        sibling.push(extension);
        let sibling = PathBuf::from(sibling);
        if sibling.symlink_metadata().is_ok() {
            // A sibling leading out of the root would be served in its place.
            inside(&sibling)?;
            has_sibling = true;
        }
    }
    let modified = metadata
        .modified()
        .ok()
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let etag = format!("W/\"{:x}-{modified:x}\"", metadata.len());
    Some(Found {
        len: metadata.len(),
        etag: HeaderValue::try_from(etag).ok()?,
        has_sibling,
    })
}

/// Whether an `If-None-Match` value matches `etag`: `*`, or one of its
/// comma-separated tags, compared weakly (RFC 9110 §8.8.3.2: `W/` aside).
fn etag_matches(wanted: &[u8], etag: &[u8]) -> bool {
    let opaque = |tag: &[u8]| -> Vec<u8> {
        let tag = tag.trim_ascii();
        tag.strip_prefix(b"W/").unwrap_or(tag).to_vec()
    };
    let etag = opaque(etag);
    wanted
        .split(|&b| b == b',')
        .any(|tag| tag.trim_ascii() == b"*" || opaque(tag) == etag)
}

/// The `Cache-Control` of the file at `path`.
fn cache_control(cache: &CacheConfig, path: &str) -> HeaderValue {
    let name = path.rsplit('/').next().unwrap_or(path);
    let value = if fingerprinted(name) {
        format!(
            "public, max-age={}, immutable",
            cache.immutable_max_age.as_secs()
        )
    } else {
        let shared = cache
            .s_maxage
            .map(|s| format!(", s-maxage={}", s.as_secs()))
            .unwrap_or_default();
        format!("public, max-age={}{shared}", cache.max_age.as_secs())
    };
    HeaderValue::try_from(value).unwrap_or(HeaderValue::from_static("no-cache"))
}

/// Whether a file name carries a content hash, so that its content never
/// changes under it: a part of at least 8 hex digits, one a digit at
/// least, between dots, dashes or underscores before the extension
/// (`app.3f9a2c1b.css`, `chunk-0a1b2c3d4e.js`). Bundlers name their output
/// so; a word like `deadbeef` has no digit and is not taken for a hash.
fn fingerprinted(name: &str) -> bool {
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    stem.split(['.', '-', '_']).skip(1).any(|part| {
        part.len() >= 8
            && part.bytes().all(|b| b.is_ascii_hexdigit())
            && part.bytes().any(|b| b.is_ascii_digit())
    })
}

/// Whether the `Vary` fields already name `Accept-Encoding`.
fn varies_on_encoding(headers: &HeaderMap) -> bool {
    headers.get_all(header::VARY).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|name| name.trim_ascii().eq_ignore_ascii_case(b"accept-encoding"))
    })
}

/// When an answer is compressed on the fly: a `200` of a compressible
/// type (see [`compressible_type`]) whose length, when known, is at least
/// `min_bytes`. Answers already encoded and ranges are left alone by
/// `Compression` itself.
#[derive(Debug, Clone, Copy)]
struct Compressible {
    min_bytes: u64,
}

impl Predicate for Compressible {
    fn should_compress<B: Body>(&self, response: &Response<B>) -> bool {
        let headers = response.headers();
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        response.status() == StatusCode::OK
            && headers
                .get(header::CONTENT_TYPE)
                .is_some_and(|t| compressible_type(t.as_bytes()))
            && length.is_none_or(|n| n >= self.min_bytes)
    }
}

/// Whether a `Content-Type` is text that compresses well: `text/*` but
/// event streams (compression would hold events back), JSON, JavaScript,
/// XML, SVG, WebAssembly. Images, video, audio, fonts in WOFF2 and
/// archives are compressed already.
fn compressible_type(content_type: &[u8]) -> bool {
    let essence = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii()
        .to_ascii_lowercase();
    let essence = essence.as_slice();
    (essence.starts_with(b"text/") && essence != b"text/event-stream")
        || matches!(
            essence,
            b"application/json"
                | b"application/javascript"
                | b"application/xml"
                | b"application/wasm"
                | b"image/svg+xml"
        )
        || essence.ends_with(b"+json")
        || essence.ends_with(b"+xml")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn fingerprints_are_hex_hashes_in_the_name() {
        assert!(fingerprinted("app.3f9a2c1b.css"));
        assert!(fingerprinted("chunk-0a1b2c3d4e.js"));
        assert!(fingerprinted("vendor_1234567890abcdef.min.js"));
        assert!(!fingerprinted("app.css"));
        assert!(!fingerprinted("app.3f9a2c1.css"), "7 digits");
        assert!(!fingerprinted("logo.deadbeef.png"), "no digit");
        assert!(!fingerprinted("12345678.css"), "the whole stem");
    }

    #[test]
    fn cache_control_by_name() {
        let cache = CacheConfig {
            max_age: Duration::from_secs(600),
            immutable_max_age: Duration::from_secs(31_536_000),
            s_maxage: Some(Duration::from_secs(3600)),
        };
        assert_eq!(
            cache_control(&cache, "/css/app.3f9a2c1b.css"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(
            cache_control(&cache, "/index.html"),
            "public, max-age=600, s-maxage=3600"
        );
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
    fn text_compresses_media_does_not() {
        for yes in [
            "text/html; charset=utf-8",
            "text/css",
            "application/json",
            "application/javascript",
            "image/svg+xml",
            "application/ld+json",
        ] {
            assert!(compressible_type(yes.as_bytes()), "{yes}");
        }
        for no in [
            "image/png",
            "video/mp4",
            "font/woff2",
            "application/zip",
            "text/event-stream",
        ] {
            assert!(!compressible_type(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn vary_lists_are_read_whole() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::VARY,
            HeaderValue::from_static("origin, Accept-Encoding"),
        );
        assert!(varies_on_encoding(&headers));
        headers.clear();
        headers.append(header::VARY, HeaderValue::from_static("accept-language"));
        assert!(!varies_on_encoding(&headers));
    }

    #[test]
    fn look_up_stays_inside_the_root() {
        let dir = std::env::temp_dir().join(format!("stampede-files-{}", std::process::id()));
        let root = dir.join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("a.txt"), "hello").unwrap();
        std::fs::write(dir.join("secret"), "no").unwrap();
        std::os::unix::fs::symlink(dir.join("secret"), root.join("out")).unwrap();
        std::os::unix::fs::symlink(dir.join("secret"), root.join("a.txt.gz")).unwrap();
        let root = root.canonicalize().unwrap();

        assert!(look_up(&root, "/b.txt").is_none(), "missing");
        assert!(look_up(&root, "/out").is_none(), "symlink out of the root");
        assert!(look_up(&root, "/a.txt").is_none(), "its .gz leads out");
        std::fs::remove_file(root.join("a.txt.gz")).unwrap();
        let found = look_up(&root, "/%61.txt").unwrap();
        assert_eq!(found.len, 5);
        assert!(!found.has_sibling);
        assert!(look_up(&root, "/%2e%2e/secret").is_none(), "encoded ..");
        assert!(look_up(&root, "/").is_none(), "a directory");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
