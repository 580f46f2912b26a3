//! The reverse proxy through hyper: one client request in, one backend
//! request out, and the backend's response streamed back. It serves what
//! the HTTP/1.1 fast path (`h1`) hands over: HTTP/2, upgrades, HTTP/1.0,
//! `Expect`, and pools that speak HTTP/2 to their backends. The worker's
//! state (routing, idle connections for `h1`) lives here too.
//!
//! The path of a request, in order:
//! 1. keep or create its `X-Request-Id`;
//! 2. find the route by Host and path, refuse oversized bodies (`413`);
//! 3. work out the client's address (trusted proxies), pass admission
//!    control's checks that need no waiting (the rate limit, the waiting
//!    room; see `admission`), and let the pool's strategy choose a backend;
//!    then wait for a place under the route's concurrency limit;
//! 4. rewrite headers (forwarding headers in, hop-by-hop headers out);
//! 5. send it under the route's timeouts, and stream the answer back while
//!    the backend's in-flight count and the request's metrics ride along in
//!    the response body until it ends.
//!
//! Failures become JSON answers in the contract's error shape
//! ([`GatewayError`]). Dropping the future (the client went away) drops the
//! backend request with it, which closes that backend connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderName, Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body, Incoming};
use stampede_balance::InFlight;

use crate::Shared;
use crate::admission::Admitted;
use crate::body::{BodyError, Exchange, RequestBody, ResponseBody};
use crate::cache::{self, Entry, NotKept, Outcome, ResponseCache, rules};
use crate::compress;
use crate::error::GatewayError;
use crate::fields::Fields;
use crate::forwarded::{Forwarding, Peer, strip_hop_by_hop};
use crate::h1::IdleConnections;
use crate::pool::{Choice, Pool};
use crate::retry::{self, Tried};
use crate::route::{Found, Route, host_without_port};
use crate::stored::Conditions;
use crate::telemetry::RequestMetrics;
use crate::upstream::{self, UpstreamClient};
use crate::{tls, upgrade};

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A worker thread's proxy: the shared routing state plus this thread's
/// connection pools, one client per route.
#[derive(Debug)]
pub(crate) struct Proxy {
    pub(crate) shared: Arc<Shared>,
    clients: Vec<UpstreamClient>,
    /// This worker's idle backend connections for the HTTP/1.1 fast path.
    pub(crate) idle: IdleConnections,
    /// The HTTPS listener's port, where the plain listener redirects when
    /// `tls.redirect_http` is on.
    https_port: Option<u16>,
}

impl Proxy {
    /// Builds a worker's proxy; must run inside the worker's runtime, where
    /// the clients will spawn their connections. `https_port` is the bound
    /// port of the HTTPS listener, if there is one.
    pub(crate) fn new(shared: Arc<Shared>, https_port: Option<u16>) -> Self {
        let clients = shared
            .router
            .routes()
            .iter()
            .map(|route| upstream::client(&route.pool, route.connect_timeout))
            .collect();
        let idle = IdleConnections::new(shared.pools.iter().map(|p| p.backends.len()));
        Self {
            shared,
            clients,
            idle,
            https_port,
        }
    }

    /// Describes a new client connection's peer for the requests it will
    /// send; `tls` when it came over TLS.
    pub(crate) fn peer(&self, addr: SocketAddr, tls: bool) -> Peer {
        self.shared.trusted.peer(addr, tls)
    }

    /// The HTTPS port that `peer`'s requests are redirected to: for plain
    /// connections while `tls.redirect_http` is on.
    pub(crate) fn redirects_to(&self, peer: &Peer) -> Option<u16> {
        let tls = self.shared.tls.as_ref()?;
        (!peer.is_tls() && tls.redirects_http())
            .then_some(self.https_port)
            .flatten()
    }

    /// Serves one request; never fails, since every error is an answer.
    pub(crate) async fn serve(
        &self,
        mut req: Request<Incoming>,
        peer: &Peer,
    ) -> Result<Response<ResponseBody>, std::convert::Infallible> {
        let started = Instant::now();
        let request_id = request_id(req.headers().field("x-request-id"));
        req.headers_mut().insert(X_REQUEST_ID, request_id.clone());
        let version = req.version();
        let answered = match self.redirects_to(peer) {
            Some(port) => tls::redirect(request_host(&req), req.uri(), port).map_err(Failure::from),
            None => self.forward(req, peer, started).await,
        };
        let mut response = match answered {
            Ok(response) => response,
            Err(Failure { error, counted_in }) => error.into_response(
                counted_in
                    .as_ref()
                    .map(|(pool, metrics)| (&**pool, Arc::clone(metrics))),
                started,
            ),
        };
        // Answer in the client's HTTP version, whatever the backend spoke.
        *response.version_mut() = version;
        let headers = response.headers_mut();
        headers.insert(X_REQUEST_ID, request_id);
        if let Some(hsts) = self.hsts(peer) {
            headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
        Ok(response)
    }

    /// The `Strict-Transport-Security` value for `peer`'s answers: on TLS
    /// connections when `tls.hsts` is set. It replaces a backend's own, so
    /// that clients see one policy, the gateway's.
    fn hsts(&self, peer: &Peer) -> Option<&HeaderValue> {
        let tls = self.shared.tls.as_ref()?;
        peer.is_tls().then(|| tls.hsts()).flatten()
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        peer: &Peer,
        started: Instant,
    ) -> Result<Response<ResponseBody>, Failure> {
        let host = request_host(&req).map(host_without_port);
        let route_index = match self.shared.router.find(host, req.uri().path()) {
            Some(Found::Pool(index)) => index,
            Some(Found::Files(files)) => return Ok(files.serve(req, started).await),
            None => return Err(GatewayError::NoRoute.into()),
        };
        let route = &self.shared.router.routes()[route_index];
        let pool = &route.pool;
        let fail = |error| Failure::in_pool(error, pool, &pool.unassigned);

        let limits = &self.shared.config.limits;
        if content_length(&req).is_some_and(|len| len > limits.max_body_bytes) {
            return Err(fail(GatewayError::BodyTooLarge));
        }

        let trusted = &self.shared.trusted;
        let client_ip = trusted.client_ip(peer, req.headers());
        let entry = route.enter(client_ip, req.headers()).map_err(fail)?;
        let routed = Routed {
            index: route_index,
            route,
            peer,
            client_ip,
            started,
        };
        let method = req.method().clone();
        let target = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
        let cached = route.cache.as_ref().map(|cache| {
            let key = cache::Key::of(method.as_str(), request_host(&req), target, req.headers());
            (cache, key)
        });
        let mut response = match cached {
            Some((cache, Some(key))) => {
                self.through_cache(&routed, cache, key, req, entry.place)
                    .await?
            }
            Some((cache, None)) => {
                cache.count(Outcome::Bypass);
                let response = self.fetched(&routed, req, entry.place).await?;
                with_cache_status(response, Some(Outcome::Bypass))
            }
            None => self.fetched(&routed, req, entry.place).await?,
        };
        // A switch of protocols is no answer to give a cookie with.
        if let Some(pass) = entry
            .pass
            .filter(|_| response.status() != StatusCode::SWITCHING_PROTOCOLS)
        {
            response.headers_mut().append(header::SET_COOKIE, pass);
        }
        if let Some(value) = route.cache_control_for(method.as_str())
            && rules::takes_default_cache_control(response.status().as_u16(), response.headers())
        {
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, value.clone());
        }
        Ok(response)
    }

    /// The backend's answer to `req`, with its sticky cookie, compressed
    /// when the route compresses and the client accepts it.
    async fn fetched(
        &self,
        routed: &Routed<'_>,
        req: Request<Incoming>,
        place: Admitted,
    ) -> Result<Response<ResponseBody>, Failure> {
        let codings = codings_to_offer(routed.route, &req);
        let (response, sticky) = self.upstream(routed, req, place).await?;
        Ok(outgoing(routed.route, response, sticky, codings).await)
    }

    /// Answers a `GET` or `HEAD` of a route with a response cache: from
    /// memory when the page is kept, else from one backend request shared
    /// with every request for the page meanwhile (see `cache`).
    async fn through_cache(
        &self,
        routed: &Routed<'_>,
        cache: &ResponseCache,
        key: cache::Key,
        req: Request<Incoming>,
        place: Admitted,
    ) -> Result<Response<ResponseBody>, Failure> {
        let asked = Asked {
            conditions: Conditions::of(req.headers()),
            head: req.method() == Method::HEAD,
            codings: codings_to_offer(routed.route, &req),
            started: routed.started,
        };
        if let Some(entry) = cache.lookup(&key).await {
            return Ok(asked.answer_kept(cache, &entry, Outcome::Hit));
        }
        // Taken by this request's own fetch, if it is the one that goes.
        let mut asking = Some((req, place));
        let mut refused = None;
        let fetch = self.fetch_to_keep(routed, cache, &mut asking, &mut refused);
        let failed = match cache.fill(key, fetch).await {
            Ok(entry) => {
                let outcome = match asking {
                    None => Outcome::Miss,
                    Some(_) => Outcome::Hit,
                };
                cache.count(outcome);
                return Ok(asked.answer_kept(cache, &entry, outcome));
            }
            Err(failed) => failed,
        };
        cache.count(Outcome::Miss);
        let response = match (&*failed, refused, asking) {
            (Fill::Failed(failure), _, _) => return Err(failure.clone()),
            (Fill::Refused, Some((response, sticky)), _) => {
                let response = outgoing(routed.route, response, sticky, asked.codings).await;
                if asked.head {
                    without_body(response)
                } else {
                    response
                }
            }
            // Not kept, so perhaps personal: this request asks for its own.
            (Fill::Refused, None, Some((req, place))) => self.fetched(routed, req, place).await?,
            (Fill::Refused, None, None) => {
                unreachable!("a fetch that ran and was refused leaves its answer")
            }
        };
        Ok(with_cache_status(response, Some(Outcome::Miss)))
    }

    /// The fetch a cache fills itself with, run for one request of those
    /// waiting (`asking` has its request): the backend's answer, kept; or
    /// why nothing was kept, with an answer that may not be kept left in
    /// `refused` for that request alone.
    async fn fetch_to_keep(
        &self,
        routed: &Routed<'_>,
        cache: &ResponseCache,
        asking: &mut Option<(Request<Incoming>, Admitted)>,
        refused: &mut Option<(Response<ResponseBody>, Option<HeaderValue>)>,
    ) -> Result<Arc<Entry>, Fill> {
        let (req, place) = asking.take().ok_or(Fill::Refused)?;
        let (response, sticky) = self
            .upstream(routed, for_filling(req), place)
            .await
            .map_err(Fill::Failed)?;
        match cache.keep(response).await {
            Ok(entry) => Ok(entry),
            Err(NotKept::Refused(response)) => {
                *refused = Some((response, sticky));
                Err(Fill::Refused)
            }
            Err(NotKept::Broken(error)) => {
                let pool = &routed.route.pool;
                let error = GatewayError::BadResponse(format!("a body that broke off ({error})"));
                Err(Fill::Failed(Failure::in_pool(
                    error,
                    pool,
                    &pool.unassigned,
                )))
            }
        }
    }

    /// Chooses a backend for `req` (which has passed the route's checks
    /// that need no waiting), waits for a place under the route's limit
    /// unless it has its `place`, and sends it. The answer, with hop-by-hop
    /// fields gone, and the sticky cookie it should carry.
    async fn upstream(
        &self,
        routed: &Routed<'_>,
        req: Request<Incoming>,
        place: Admitted,
    ) -> Result<(Response<ResponseBody>, Option<HeaderValue>), Failure> {
        let Routed {
            index: route_index,
            route,
            peer,
            client_ip,
            started,
        } = *routed;
        let pool = &route.pool;
        let fail = |error| Failure::in_pool(error, pool, &pool.unassigned);
        let limits = &self.shared.config.limits;
        let choice = pool
            .choose(client_ip, req.uri().path(), req.headers())
            .ok_or_else(|| fail(GatewayError::NoBackend))?;
        let admitted = route.admit(place).await.map_err(fail)?;
        if let Some(retries) = &pool.retries {
            retries.deposit();
        }

        let mut req = req;
        let upgrade = upgrade::requested(req.headers()).then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let upgrade_protocol = parts.headers.get(header::UPGRADE).cloned();
        let host_header = parts.headers.get(header::HOST).cloned().or_else(|| {
            let authority = parts.uri.authority()?;
            HeaderValue::from_str(authority.as_str()).ok()
        });
        let forwarding = Forwarding::new(
            &parts.headers,
            peer,
            client_ip,
            host_header.as_ref().map(HeaderValue::as_bytes),
        );
        strip_hop_by_hop(&mut parts.headers);
        forwarding.apply(&mut parts.headers);
        if let Some(host) = host_header {
            parts.headers.insert(header::HOST, host);
        }
        if let (Some(_), Some(protocol)) = (&upgrade, upgrade_protocol) {
            upgrade::restore_request_headers(&mut parts.headers, protocol);
        }
        parts.uri = upstream_uri(&pool.authorities[choice.index], &parts.uri)
            .map_err(|_| fail(GatewayError::BadRequest))?;
        parts.version = if pool.http2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        // Without a body the request can be sent again as it is.
        let replay = (pool.retries.is_some() && body.is_end_stream()).then(|| Replay::of(&parts));
        let body = match replay {
            Some(_) => RequestBody::empty(),
            None => RequestBody::new(body, limits.max_body_bytes, limits.body_timeout),
        };
        let deadline = route
            .total_timeout
            .map(|t| tokio::time::Instant::from_std(started) + t);
        let first = Request::from_parts(parts, body);
        let (response, choice, in_flight) = self
            .send(route_index, first, replay, choice, deadline)
            .await
            .map_err(|(error, index)| {
                Failure::in_pool(error, pool, &pool.metrics[index].requests)
            })?;
        let metrics = &pool.metrics[choice.index].requests;

        let mut response = response;
        let exchange = Exchange::new(
            Arc::clone(metrics),
            response.status().as_u16(),
            started,
            Some(in_flight),
        )
        .hold(admitted);
        if let (StatusCode::SWITCHING_PROTOCOLS, Some(client_side)) = (response.status(), upgrade) {
            let upstream_side = hyper::upgrade::on(&mut response);
            upgrade::splice(client_side, upstream_side);
            let (parts, _) = response.into_parts();
            let response = Response::from_parts(parts, ResponseBody::empty(Some(exchange)));
            return Ok((response, None));
        }
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let response =
            Response::from_parts(parts, ResponseBody::upstream(body, deadline, exchange));
        Ok((response, choice.set_cookie))
    }

    /// Sends `first` to the chosen backend and, when that fails where a
    /// retry is safe, a `replay` of it to others (see the `retry` module).
    /// The answer, with the choice that gave it and its in-flight mark; or
    /// the last error, with the backend it came from.
    async fn send(
        &self,
        route_index: usize,
        first: Request<RequestBody>,
        replay: Option<Replay>,
        mut choice: Choice,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<(Response<Incoming>, Choice, InFlight), (GatewayError, usize)> {
        let route = &self.shared.router.routes()[route_index];
        let pool = &route.pool;
        let mut tried = Tried::first(choice.index);
        let mut request = first;
        loop {
            let backend = &pool.backends[choice.index];
            let in_flight = backend.start();
            let first_byte = tokio::time::Instant::now() + route.first_byte_timeout;
            let first_byte = deadline.map_or(first_byte, |d| d.min(first_byte));
            let sent_at = Instant::now();
            let answer =
                tokio::time::timeout_at(first_byte, self.clients[route_index].request(request))
                    .await
                    .map_err(|_| (GatewayError::Timeout, false))
                    .and_then(|answer| {
                        answer.map_err(|e| (classify(&e, route, backend.addr), e.is_connect()))
                    });
            let (error, unsent) = match answer {
                Ok(answer) => {
                    pool.observe(choice.index, answer.status().is_server_error());
                    backend.load.observe_latency(sent_at.elapsed());
                    return Ok((answer, choice, in_flight));
                }
                Err(failed) => failed,
            };
            pool.observe(choice.index, error.is_backends_fault());
            // Unsent, any request may go elsewhere; unanswered, only one
            // that does no harm twice.
            let again = replay
                .as_ref()
                .filter(|r| error.is_backends_fault() && (unsent || r.idempotent));
            let Some((replay, next)) = again.and_then(|r| Some((r, pool.retry(&mut tried)?)))
            else {
                return Err((error, choice.index));
            };
            request = replay.to(&pool.authorities[next.index]);
            choice = next;
        }
    }
}

/// A request on a pool's route, past the checks that need no waiting.
#[derive(Clone, Copy)]
struct Routed<'a> {
    index: usize,
    route: &'a Route,
    peer: &'a Peer,
    client_ip: IpAddr,
    started: Instant,
}

/// How a cache's fill ended, when it kept nothing.
#[derive(Debug)]
enum Fill {
    /// The backend could not be asked, or broke off: every request waiting
    /// gets this answer.
    Failed(Failure),
    /// The answer may not be kept (see `cache::rules`).
    Refused,
}

/// The client's `Accept-Encoding` when its answer may be compressed: the
/// route compresses and the request is no `HEAD` (whose empty body some
/// codings would still put bytes in).
fn codings_to_offer(route: &Route, req: &Request<Incoming>) -> Option<HeaderMap> {
    route
        .compress
        .as_ref()
        .filter(|_| req.method() != Method::HEAD)
        .map(|_| compress::accepted_codings(req.headers()))
}

/// A backend's answer as it goes out: with its sticky cookie, and
/// compressed for `codings` (see [`codings_to_offer`]).
async fn outgoing(
    route: &Route,
    mut response: Response<ResponseBody>,
    sticky: Option<HeaderValue>,
    codings: Option<HeaderMap>,
) -> Response<ResponseBody> {
    if let Some(cookie) = sticky {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    match (&route.compress, codings) {
        (Some(compression), Some(codings)) => {
            compress::compress(response, codings, compression).await
        }
        _ => response,
    }
}

/// The request a cache sends to fill itself: a `GET` (a `HEAD` is
/// answered from it) for the whole, unencoded body, which the cache
/// compresses and compares with validators itself.
fn for_filling(mut req: Request<Incoming>) -> Request<Incoming> {
    *req.method_mut() = Method::GET;
    let headers = req.headers_mut();
    for name in [
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::ACCEPT_ENCODING,
    ] {
        headers.remove(name);
    }
    req
}

/// What of a request decides how a cache answers it.
struct Asked {
    conditions: Conditions,
    head: bool,
    /// See [`codings_to_offer`].
    codings: Option<HeaderMap>,
    started: Instant,
}

impl Asked {
    /// A kept answer as this request gets it.
    fn answer_kept(
        &self,
        cache: &ResponseCache,
        entry: &Entry,
        outcome: Outcome,
    ) -> Response<ResponseBody> {
        let reply = entry.stored.reply(&self.conditions);
        let status = reply.status.as_u16();
        let exchange = Exchange::new(Arc::clone(&cache.requests), status, self.started, None);
        let mut response = reply.into_response(exchange);
        if outcome == Outcome::Hit {
            response.headers_mut().insert(header::AGE, entry.age());
        }
        let response = if self.head {
            without_body(response)
        } else {
            response
        };
        with_cache_status(response, Some(outcome))
    }
}

/// The answer to a `HEAD`: the head a `GET` would get, its
/// `Content-Length` included, and no body.
fn without_body(response: Response<ResponseBody>) -> Response<ResponseBody> {
    let (mut parts, body) = response.into_parts();
    if let Some(length) = body.size_hint().exact() {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    Response::from_parts(parts, ResponseBody::empty(None))
}

/// `response` saying where it came from, on routes with a cache.
fn with_cache_status(
    mut response: Response<ResponseBody>,
    outcome: Option<Outcome>,
) -> Response<ResponseBody> {
    if let Some(outcome) = outcome {
        response
            .headers_mut()
            .insert(cache::X_CACHE_STATUS, outcome.header());
    }
    response
}

/// A request without a body, kept to be sent again to another backend.
#[derive(Debug)]
struct Replay {
    method: Method,
    uri: Uri,
    version: Version,
    headers: http::HeaderMap,
    /// Sending it twice does no harm: an idempotent method, or an
    /// `Idempotency-Key`.
    idempotent: bool,
}

impl Replay {
    fn of(parts: &http::request::Parts) -> Self {
        Self {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
            idempotent: retry::harmless_twice(parts.method.as_str(), &parts.headers),
        }
    }

    /// The request again, addressed to `backend`.
    fn to(&self, backend: &Authority) -> Request<RequestBody> {
        let mut request = Request::new(RequestBody::empty());
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = upstream_uri(backend, &self.uri).unwrap_or_else(|_| self.uri.clone());
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// A request the gateway answers itself, and where to count it.
#[derive(Debug, Clone)]
struct Failure {
    error: GatewayError,
    counted_in: Option<(Arc<str>, Arc<RequestMetrics>)>,
}

impl From<GatewayError> for Failure {
    /// An answer counted in no pool.
    fn from(error: GatewayError) -> Self {
        Self {
            error,
            counted_in: None,
        }
    }
}

impl Failure {
    fn in_pool(error: GatewayError, pool: &Pool, metrics: &Arc<RequestMetrics>) -> Self {
        Self {
            error,
            counted_in: Some((Arc::clone(&pool.name), Arc::clone(metrics))),
        }
    }
}

/// The incoming `X-Request-Id` when it is sane (1–200 visible ASCII
/// characters), else a fresh 128-bit random id in hex.
pub(crate) fn request_id(incoming: Option<&[u8]>) -> HeaderValue {
    if let Some(bytes) = incoming
        && (1..=200).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_graphic())
        && let Ok(id) = HeaderValue::from_bytes(bytes)
    {
        return id;
    }
    let mut id = [0u8; 32];
    let bits = fastrand::u128(..);
    for (i, digit) in id.iter_mut().enumerate() {
        *digit = b"0123456789abcdef"[((bits >> (4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&id).unwrap_or(HeaderValue::from_static("0"))
}

/// The Host the client asked for: the `Host` header (HTTP/1.1) or the
/// `:authority` (HTTP/2).
fn request_host(req: &Request<Incoming>) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
}

fn content_length(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// `http://backend` + the request's path and query: the URI tells the
/// client where to connect, and is the key of its connection pool. Built
/// from parts that are shared buffers, so nothing is copied or parsed.
fn upstream_uri(backend: &Authority, original: &Uri) -> Result<Uri, http::uri::InvalidUriParts> {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(backend.clone());
    parts.path_and_query = Some(
        original
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    Uri::from_parts(parts)
}

/// Sorts a client error into what the client is told: our own body limits
/// are the client's fault (`413`, `408`), the rest the backend's (`502`).
fn classify(
    error: &hyper_util::client::legacy::Error,
    route: &Route,
    backend: SocketAddr,
) -> GatewayError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(body) = e.downcast_ref::<BodyError>() {
            return match body {
                BodyError::TooLarge(_) => GatewayError::BodyTooLarge,
                BodyError::Stalled(_) => GatewayError::BodyStalled,
                _ => GatewayError::Upstream {
                    backend,
                    reason: body.to_string(),
                },
            };
        }
        source = e.source();
    }
    let chain = error_chain(error);
    let reason = if error.is_connect() && chain.contains("timed out") {
        format!("connect timed out after {:?}", route.connect_timeout)
    } else {
        chain
    };
    GatewayError::Upstream { backend, reason }
}

/// "outer: cause: root cause", skipping causes that repeat their parent.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
