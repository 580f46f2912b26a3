//! A route's response cache (`routes[N].response_cache`): when a crowd
//! opens the same product page at once, the backend should render it once,
//! not once per client. This module owns the answers kept for that and the
//! one rule that makes a cache worth having under a crowd: concurrent
//! misses for one page make one backend request, and the others wait for
//! its answer (nginx's `proxy_cache_lock`), through moka's single-flight
//! `try_get_with`.
//!
//! What may be kept and for how long follows RFC 9111's rules for shared
//! caches (see [`rules`]); the route's `ttl` is a ceiling, so the backend
//! can only shorten it. A kept answer is a [`Stored`]: compressed once
//! per coding when the route compresses, and answered per request
//! (coding, `304`) by [`Stored::reply`], which either path can write.
//!
//! Failures are not kept: when the backend cannot be reached, the request
//! that went and every request waiting on it get the gateway's error
//! answer, and the next request tries again. An answer that may not be
//! kept (a cookie, `no-store`, too large) goes to the request that asked
//! for it, and those waiting on it ask the backend themselves, since it
//! may be personal.
//!
//! Every answer served from a cache adds to the staleness the backend
//! already has: a page the backend renders from a catalogue one second old
//! is up to `1 s + ttl` old when it reaches the client.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::Response;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use metrics::{Counter, counter};
use moka::Expiry;
use moka::future::Cache;

use crate::body::{BodyError, ResponseBody};
use crate::config::{CompressionConfig, ResponseCacheConfig};
use crate::fields::Fields;
use crate::stored::Stored;
use crate::telemetry::{RESPONSE_CACHE, RequestMetrics};

pub(crate) mod rules;

/// What a kept answer is found by: the Host and the path with its query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key(Box<str>);

impl Key {
    /// The key of a `method` request for `target` (path and query) at
    /// `host`; `None` when the request must bypass the cache (see
    /// [`rules::bypasses`]).
    pub(crate) fn of(
        method: &str,
        host: Option<&str>,
        target: &str,
        fields: &(impl Fields + ?Sized),
    ) -> Option<Self> {
        if rules::bypasses(method, fields) {
            return None;
        }
        let host = host.unwrap_or_default().to_ascii_lowercase();
        Some(Self(format!("{host}{target}").into()))
    }
}

/// A kept answer.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) stored: Stored,
    stored_at: Instant,
    /// The answer's `Age` when it arrived.
    age: Duration,
    ttl: Duration,
}

impl Entry {
    /// The `Age` to send with it now, in whole seconds (RFC 9111 §5.1).
    pub(crate) fn age(&self) -> HeaderValue {
        HeaderValue::from((self.age + self.stored_at.elapsed()).as_secs())
    }
}

/// Where an answer came from, as `X-Cache-Status` says and the metrics
/// count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// From memory: kept earlier, or fetched by a request this one waited on.
    Hit,
    /// This request went to the backend.
    Miss,
    /// The request may not be answered from a cache (see
    /// [`rules::bypasses`]).
    Bypass,
}

impl Outcome {
    /// The `X-Cache-Status` value, as nginx names it.
    pub(crate) fn header(self) -> HeaderValue {
        HeaderValue::from_static(self.header_str())
    }

    pub(crate) fn header_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
            Self::Bypass => "BYPASS",
        }
    }
}

/// `X-Cache-Status`, nginx's name, which dashboards and CDNs already read.
pub(crate) const X_CACHE_STATUS: HeaderName = HeaderName::from_static("x-cache-status");

/// Why a backend's answer was not kept.
#[derive(Debug)]
pub(crate) enum NotKept {
    /// The rules forbid it: here it is, body unread (or read so far and
    /// replayed), for the request that asked.
    Refused(Response<ResponseBody>),
    /// Its body broke off.
    Broken(BodyError),
}

/// One route's kept answers.
pub(crate) struct ResponseCache {
    entries: Cache<Key, Arc<Entry>>,
    ttl: Duration,
    max_body_bytes: u64,
    /// The codings kept answers are compressed with: the gateway's, when
    /// the route has `compress = true`.
    compression: Option<CompressionConfig>,
    /// Answers from memory, in `stampede_gateway_requests_total` under
    /// `backend="cache"`.
    pub(crate) requests: Arc<RequestMetrics>,
    /// By [`Outcome`].
    outcomes: [Counter; 3],
}

// By hand: moka's `Cache` is not `Debug`.
impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("ttl", &self.ttl)
            .field("entries", &self.entries.entry_count())
            .finish_non_exhaustive()
    }
}

/// Each entry lives for its own TTL (the route's, or less).
struct OwnTtl;

impl Expiry<Key, Arc<Entry>> for OwnTtl {
    fn expire_after_create(&self, _: &Key, entry: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }
}

impl ResponseCache {
    /// The cache of the route labelled `route` (its host and prefix) of
    /// `pool`; `compression` is what kept answers are compressed with.
    pub(crate) fn new(
        config: &ResponseCacheConfig,
        compression: Option<&CompressionConfig>,
        pool: &str,
        route: &str,
    ) -> Self {
        let entries = Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|_: &Key, entry: &Arc<Entry>| {
                u32::try_from(entry.stored.weight()).unwrap_or(u32::MAX)
            })
            .expire_after(OwnTtl)
            .build();
        let outcome = |result: &'static str| {
            counter!(RESPONSE_CACHE,
                "pool" => pool.to_owned(), "route" => route.to_owned(), "result" => result)
        };
        Self {
            entries,
            ttl: config.ttl,
            max_body_bytes: config.max_body_bytes,
            compression: compression.cloned(),
            requests: Arc::new(RequestMetrics::new(pool, "cache")),
            outcomes: [outcome("hit"), outcome("miss"), outcome("bypass")],
        }
    }

    /// Counts a request's [`Outcome`].
    pub(crate) fn count(&self, outcome: Outcome) {
        self.outcomes[outcome as usize].increment(1);
    }

    /// The answer kept under `key`, if it is still fresh, without waiting:
    /// for the fast path, which decides before its first `.await` whether
    /// it serves a request or hands it to hyper. Not counted.
    pub(crate) fn peek(&self, key: &Key) -> Option<Arc<Entry>> {
        // moka's `get` is async only to share code with its loading calls;
        // it is ready at once unless its housekeeping is busy, and then the
        // request is simply served as a miss would be.
        let mut get = std::pin::pin!(self.entries.get(key));
        let mut context = Context::from_waker(std::task::Waker::noop());
        match get.as_mut().poll(&mut context) {
            Poll::Ready(entry) => entry,
            Poll::Pending => None,
        }
    }

    /// The answer kept under `key`, if it is still fresh; counted as a hit.
    pub(crate) async fn lookup(&self, key: &Key) -> Option<Arc<Entry>> {
        let entry = self.entries.get(key).await?;
        self.count(Outcome::Hit);
        Some(entry)
    }

    /// The answer under `key`: `fetch`ed and kept, when it succeeds, by the
    /// first caller for the key, while the others wait and share its
    /// outcome, error included (nothing is kept then). Should the fetching
    /// caller go away, a waiting one fetches instead.
    pub(crate) async fn fill<E: Send + Sync + 'static>(
        &self,
        key: Key,
        fetch: impl Future<Output = Result<Arc<Entry>, E>>,
    ) -> Result<Arc<Entry>, Arc<E>> {
        self.entries.try_get_with(key, fetch).await
    }

    /// Makes an entry of a backend's `response` if the rules allow (see
    /// [`rules::storable_for`]) and its body is small enough, reading the
    /// body whole; else gives the response back, none of its body lost.
    pub(crate) async fn keep(
        &self,
        response: Response<ResponseBody>,
    ) -> Result<Arc<Entry>, NotKept> {
        let (parts, mut body) = response.into_parts();
        let ttl = rules::storable_for(self.ttl, parts.status.as_u16(), &parts.headers);
        let too_long = parts
            .headers
            .field("content-length")
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
            .is_some_and(|len| len > self.max_body_bytes);
        let Some(ttl) = ttl.filter(|_| !too_long) else {
            return Err(NotKept::Refused(Response::from_parts(parts, body)));
        };
        let read = match read_at_most(&mut body, self.max_body_bytes).await {
            Ok(Ok(whole)) => whole,
            Ok(Err(partial)) => {
                let replayed = Replayed {
                    read: Some(partial),
                    rest: body,
                };
                let body = ResponseBody::boxed(replayed.boxed_unsync());
                return Err(NotKept::Refused(Response::from_parts(parts, body)));
            }
            Err(error) => return Err(NotKept::Broken(error)),
        };
        let stored = self.stored(kept_fields(&parts.headers), read).await;
        Ok(Arc::new(Entry {
            stored,
            stored_at: Instant::now(),
            age: rules::age(&parts.headers),
            ttl,
        }))
    }

    /// `body` with `fields` as a stored answer, compressed (off the event
    /// loop: it is CPU-bound) when the route compresses.
    async fn stored(&self, fields: Vec<(HeaderName, HeaderValue)>, body: Bytes) -> Stored {
        let Some(compression) = self.compression.clone() else {
            return Stored::new(fields, body);
        };
        let plain = Stored::new(fields.clone(), body.clone());
        tokio::task::spawn_blocking(move || {
            Stored::new(fields, body).compressed(Some(&compression))
        })
        .await
        // Compression panicked: the answer is still good plain.
        .unwrap_or(plain)
    }
}

/// The fields kept with an answer: all but its framing and its `Age`,
/// which are the sender's to set.
fn kept_fields(headers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    headers
        .iter()
        .filter(|(name, _)| ![header::CONTENT_LENGTH, header::AGE].contains(name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// Reads `body` to its end if it holds at most `max` bytes: `Ok(whole)`;
/// else `Err` with what was read before the limit was passed. Trailers
/// are dropped (a page has none).
async fn read_at_most(
    body: &mut ResponseBody,
    max: u64,
) -> Result<Result<Bytes, Bytes>, BodyError> {
    let mut read = BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            read.extend_from_slice(&data);
            if read.len() as u64 > max {
                return Ok(Err(read.freeze()));
            }
        }
    }
    Ok(Ok(read.freeze()))
}

/// A body whose start was read already: that first, then the rest.
struct Replayed {
    read: Option<Bytes>,
    rest: ResponseBody,
}

impl Body for Replayed {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.read.take() {
            Some(read) => Poll::Ready(Some(Ok(Frame::data(read)))),
            None => Pin::new(&mut self.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_none() && self.rest.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_host_and_target_and_bypassing_requests_have_none() {
        let none = HeaderMap::new();
        let key = |host| Key::of("GET", host, "/p/1?x=2", &none);
        assert_eq!(key(Some("Shop.Test")), key(Some("shop.test")));
        assert_ne!(key(Some("shop.test")), key(Some("other.test")));
        assert_ne!(key(None), Key::of("GET", None, "/p/1?x=3", &none));
        assert_eq!(
            Key::of("HEAD", None, "/", &none),
            Key::of("GET", None, "/", &none)
        );
        let mut credentials = HeaderMap::new();
        credentials.insert("authorization", HeaderValue::from_static("Basic eA=="));
        assert_eq!(Key::of("GET", None, "/", &credentials), None);
    }

    #[test]
    fn framing_and_age_are_not_kept() {
        let mut headers = HeaderMap::new();
        headers.insert("content-length", HeaderValue::from_static("3"));
        headers.insert("age", HeaderValue::from_static("1"));
        headers.insert("etag", HeaderValue::from_static("\"v1\""));
        let kept = kept_fields(&headers);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].0, header::ETAG);
    }
}
