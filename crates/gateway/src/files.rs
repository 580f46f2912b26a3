//! Static files: a route with `static_dir` answers from a directory instead
//! of a pool.
//!
//! Files up to `[file_cache] max_file_bytes` are answered from memory
//! (see `memory`), on the fast path as on hyper's, each compressed once
//! when read. The rest, and every `Range` request, go to tower-http's
//! `ServeDir` on the hyper path, which streams from disk: `Content-Type`
//! from the extension, `Last-Modified` and `If-Modified-Since`, `Range`
//! (`206`, `416`), and precompressed siblings (`app.js.br`, `.zst`, `.gz`)
//! for clients that accept them; wrapped in its `Compression`, other
//! compressible answers are compressed on the fly (see [`Compressible`]).
//! Both ways give the same fields, and add what `ServeDir` leaves out:
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
use std::time::{Instant, SystemTime};

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use tower::Service;
use tower_http::compression::Compression;
use tower_http::compression::predicate::Predicate;
use tower_http::services::ServeDir;

use crate::body::{BodyError, Exchange, ResponseBody};
use crate::config::{Algorithm, CacheConfig, CompressionConfig, FileCacheConfig, RouteConfig};
use crate::error::GatewayError;
use crate::fields::Fields;
use crate::route::Matcher;
use crate::stored::{Conditions, Stored, coding, etag_matches, varies_on_encoding};
use crate::telemetry::RequestMetrics;

mod memory;

use memory::{Memory, Source};

/// The precompressed siblings `ServeDir` looks for, by extension.
const SIBLINGS: [(Algorithm, &str); 3] = [
    (Algorithm::Br, "br"),
    (Algorithm::Zstd, "zst"),
    (Algorithm::Gzip, "gz"),
];

/// A route serving the files of a directory.
pub(crate) struct Files {
    pub(crate) matcher: Matcher,
    memory: Memory,
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
            .field("memory", &self.memory)
            .field("compressing", &self.compressing)
            .finish_non_exhaustive()
    }
}

/// How a request for a file is answered.
#[derive(Debug)]
pub(crate) enum Answer {
    /// From memory.
    Stored(Arc<Stored>),
    /// From disk, by `ServeDir` on the hyper path: a large file or a range.
    Disk(Found),
    /// The gateway's own error.
    Refuse(GatewayError),
}

impl Files {
    /// The route of `config`, which has a (validated) `static_dir`;
    /// `compression` is the gateway's `[compression]`, if any.
    pub(crate) fn new(
        config: &RouteConfig,
        compression: Option<&CompressionConfig>,
        limits: &FileCacheConfig,
    ) -> Self {
        let root = config.static_dir.clone().unwrap_or_default();
        let serve = ServeDir::new(&root)
            // Directories are not files: no index, no redirect to `dir/`
            // (whose Location would lack the route's prefix).
            .append_index_html_on_directories(false)
            .precompressed_br()
            .precompressed_zstd()
            .precompressed_gzip();
        let offers = |algorithm| compression.is_some_and(|c| c.offers(algorithm));
        let compressing = coding::PREFERENCE
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
        let memory = Memory::new(Source {
            root,
            cache: config.cache.clone(),
            compression: compression.filter(|_| compressing.is_some()).cloned(),
            limits: limits.clone(),
        });
        Self {
            metrics: Arc::new(RequestMetrics::new(&label, "files")),
            label,
            matcher: Matcher::of(config),
            memory,
            service,
            compressing,
        }
    }

    /// How to answer a request for `path` (as requested: under this
    /// route's prefix, percent-encoded, without the query); `ranged` when
    /// it asks for a `Range`, which only `ServeDir` serves.
    pub(crate) async fn answer(&self, method: &[u8], path: &str, ranged: bool) -> Answer {
        if !matches!(method, b"GET" | b"HEAD") {
            return Answer::Refuse(GatewayError::MethodNotAllowed);
        }
        let looked = self.memory.look(&path[self.matcher.prefix.len()..]).await;
        match (&looked.found, &looked.stored) {
            (None, _) => Answer::Refuse(GatewayError::NoFile),
            (Some(_), Some(stored)) if !ranged => Answer::Stored(Arc::clone(stored)),
            (Some(found), _) => Answer::Disk(found.clone()),
        }
    }

    /// Where this route's answers are counted: its label and metrics.
    pub(crate) fn counted_in(&self) -> (Arc<str>, Arc<RequestMetrics>) {
        (Arc::clone(&self.label), Arc::clone(&self.metrics))
    }

    /// Answers `req`, whose path is under this route's prefix, on the
    /// hyper path.
    pub(crate) async fn serve(
        &self,
        req: Request<Incoming>,
        started: Instant,
    ) -> Response<ResponseBody> {
        let (parts, _) = req.into_parts();
        let ranged = parts.headers.contains_key(header::RANGE);
        let path = parts.uri.path();
        match self
            .answer(parts.method.as_str().as_bytes(), path, ranged)
            .await
        {
            Answer::Stored(stored) => {
                let reply = stored.reply(&Conditions::of(&parts.headers));
                let exchange = Exchange::new(
                    Arc::clone(&self.metrics),
                    reply.status.as_u16(),
                    started,
                    None,
                );
                reply.into_response(exchange)
            }
            Answer::Disk(file) => self.serve_from_disk(parts, file, started).await,
            Answer::Refuse(error) => self.refuse(error, started),
        }
    }

    /// Answers from disk with `ServeDir`.
    async fn serve_from_disk(
        &self,
        parts: http::request::Parts,
        file: Found,
        started: Instant,
    ) -> Response<ResponseBody> {
        let rest = &parts.uri.path()[self.matcher.prefix.len()..];
        let mut headers = parts.headers.clone();
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
        *inner.method_mut() = parts.method.clone();
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
            headers.insert(
                header::CACHE_CONTROL,
                cache_control(self.memory.cache(), path),
            );
            if self.encoding_varies(file, path) && !varies_on_encoding(headers.iter()) {
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
        !file.siblings.is_empty()
            || self.compressing.is_some_and(|c| {
                file.len >= c.min_bytes && coding::compressible_type(guessed.as_bytes())
            })
    }

    /// The answer in the contract's error shape, counted.
    fn refuse(&self, error: GatewayError, started: Instant) -> Response<ResponseBody> {
        let counted_in = Some((&*self.label, Arc::clone(&self.metrics)));
        error.into_response(counted_in, started)
    }
}

/// Whether a request asks for a range, which only `ServeDir` serves.
pub(crate) fn ranged(fields: &(impl Fields + ?Sized)) -> bool {
    fields.field("range").is_some()
}

/// A file found under the root.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Found {
    path: PathBuf,
    len: u64,
    modified: SystemTime,
    etag: HeaderValue,
    siblings: Vec<Sibling>,
}

/// A precompressed copy of a file: `app.js.br` beside `app.js`.
#[derive(Debug, Clone, PartialEq)]
struct Sibling {
    algorithm: Algorithm,
    path: PathBuf,
    len: u64,
    modified: SystemTime,
}

impl Found {
    /// Whether `other` is the same version of the file: same size and
    /// modification time, same siblings.
    fn same_version(&self, other: &Found) -> bool {
        self == other
    }
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
    let mut siblings = Vec::new();
    for (algorithm, extension) in SIBLINGS {
        let mut sibling = candidate.clone().into_os_string();
        sibling.push(".");
        sibling.push(extension);
        let sibling = PathBuf::from(sibling);
        if sibling.symlink_metadata().is_ok() {
            // A sibling leading out of the root would be served in its place.
            let metadata = inside(&sibling)?.metadata().ok()?;
            siblings.push(Sibling {
                algorithm,
                path: sibling,
                len: metadata.len(),
                modified: metadata.modified().ok()?,
            });
        }
    }
    let modified = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let seconds = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let etag = format!("W/\"{:x}-{seconds:x}\"", metadata.len());
    Some(Found {
        path: candidate,
        len: metadata.len(),
        modified,
        etag: HeaderValue::try_from(etag).ok()?,
        siblings,
    })
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

/// When an answer is compressed on the fly: a `200` of a compressible
/// type (see [`coding::compressible_type`]) whose length, when known, is at least
/// `min_bytes`. Answers already encoded and ranges are left alone by
/// `Compression` itself.
#[derive(Debug, Clone, Copy)]
struct Compressible {
    min_bytes: u64,
}

impl Predicate for Compressible {
    fn should_compress<B: Body>(&self, response: &Response<B>) -> bool {
        response.status() == StatusCode::OK
            && coding::worth_compressing(response.headers(), self.min_bytes)
    }
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
        assert!(found.siblings.is_empty());
        assert!(look_up(&root, "/%2e%2e/secret").is_none(), "encoded ..");
        assert!(look_up(&root, "/").is_none(), "a directory");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
