//! The HTTP/1.1 fast path: one task owns the client's socket and, for the
//! length of an exchange, the backend's, and moves bytes between them.
//!
//! # Why not hyper here
//!
//! hyper serves the client in one task and drives each backend connection
//! in another, handing requests and responses across channels; every
//! message is parsed into a `HeaderMap`, re-encoded, and its body re-framed.
//! Measured on this project's benchmark (`bench/gateway.sh`), that cost the
//! gateway about 1.7× nginx's CPU per proxied request, almost all of it in
//! user space. A reverse proxy's own data path is the product, so, as nginx,
//! HAProxy and Pingora do, the common case is handled by hand:
//!
//! - heads are parsed in place with `httparse` and the forwarded head is
//!   written straight into one buffer, never into a `HeaderMap`;
//! - bodies are relayed as they are (chunked bytes included, see `chunked`),
//!   and the head goes out in the same write as the body's first bytes;
//! - a backend connection is taken from this worker's idle list and given
//!   back when its response has been read to the end; no extra task, no
//!   channel.
//!
//! Static files kept in memory are written from there (see `files`).
//! Everything else is handed to hyper with the bytes read so far
//! ([`Ended::Handoff`]): HTTP/2, HTTP/1.0, `Upgrade`, `Expect`, absolute-form
//! and `CONNECT` requests, pools that speak HTTP/2 to their backends, files
//! served from disk, and requests the plain listener redirects to HTTPS.
//! Connections over TLS never come here (see `tls`).
//! Both paths share routing, admission control, balancing, forwarding
//! headers, limits, errors and metrics, so a client sees the same gateway
//! either way.
//!
//! # Safety of the hand-written framing
//!
//! Ambiguous framing (both `Content-Length` and `Transfer-Encoding`,
//! disagreeing lengths, a last coding other than chunked) is refused with
//! `400` rather than guessed, which closes the request-smuggling gap a proxy
//! and a backend that disagree on body boundaries would open.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use http::HeaderValue;
use stampede_balance::{Backend, InFlight};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::admission::Entry;
use crate::body::Exchange;
use crate::cache::{self, Outcome, rules};
use crate::connection::Latest;
use crate::error::GatewayError;
use crate::fields::Fields;
use crate::files::{self, Answer, Files};
use crate::forwarded::{ForwardingCache, Peer};
use crate::pool::Choice;
use crate::proxy::{Proxy, request_id};
use crate::retry::{self, Tried};
use crate::route::{Found, Route, host_without_port};
use crate::stored::{Conditions, Reply};
use crate::telemetry::RequestMetrics;

mod chunked;
mod head;
mod idle;
mod prefixed;
mod relay;
mod timer;

use head::Framing;
pub(crate) use idle::IdleConnections;
use idle::Upstream;
pub(crate) use prefixed::Prefixed;
use relay::{BodyLimits, RelayError, relay};
use timer::Timer;

/// How the fast path finished with a connection.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The connection is closed (or should be).
    Closed,
    /// The next request needs hyper: here is the socket with the bytes
    /// already read from it.
    Handoff(Prefixed),
}

/// What one exchange leaves the connection to do next.
enum Next {
    Continue,
    Close,
    Handoff,
}

/// Serves HTTP/1.1 requests on `client` until it closes, the gateway
/// stops, or a request needs hyper.
pub(crate) async fn serve(
    mut client: TcpStream,
    peer: &Peer,
    latest: &mut Latest,
    stop: &watch::Receiver<bool>,
) -> Ended {
    let mut proxy = Arc::clone(&latest.get().proxy);
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut out = Vec::with_capacity(1024);
    let mut timer = Timer::new();
    let mut forwarding = ForwardingCache::default();
    let mut last_active = Instant::now();
    // One wait for the gateway's stop for the whole connection: a wait per
    // request would register with the channel's notifier every time.
    let mut stopping: Stopping = Box::pin(wait_for_stop(stop.clone()));
    loop {
        let mut exchange = Exchanging {
            client: &mut client,
            buf: &mut buf,
            out: &mut out,
            timer: &mut timer,
            forwarding: &mut forwarding,
            last_active: &mut last_active,
            peer,
            proxy: &mut proxy,
            latest,
        };
        match exchange.run(&mut stopping, stop).await {
            Next::Continue => {}
            Next::Close => return Ended::Closed,
            Next::Handoff => return Ended::Handoff(Prefixed::new(buf, client)),
        }
    }
}

/// Completes when the gateway starts to shut down (or is gone).
type Stopping = Pin<Box<dyn Future<Output = ()> + Send>>;

async fn wait_for_stop(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// One request and its response.
struct Exchanging<'a> {
    client: &'a mut TcpStream,
    buf: &'a mut BytesMut,
    out: &'a mut Vec<u8>,
    timer: &'a mut Timer,
    forwarding: &'a mut ForwardingCache,
    /// When the connection's last exchange ended: the idle timeout counts
    /// from here.
    last_active: &'a mut Instant,
    peer: &'a Peer,
    /// The proxy serving this request: the latest when its head arrived.
    proxy: &'a mut Arc<Proxy>,
    latest: &'a mut Latest,
}

/// A parsed request, ready to go upstream: its head is written in `out`.
struct Prepared {
    framing: Framing,
    keep_alive: bool,
    to_head: bool,
    /// Sending it twice does no harm: an idempotent method, or an
    /// `Idempotency-Key` (see the `retry` module).
    idempotent: bool,
    route: usize,
    choice: Choice,
    /// What admission control let it in with.
    entry: Entry,
    request_id: HeaderValue,
    /// The route's `Cache-Control` for answers that have none.
    cache_control: Option<HeaderValue>,
}

/// A request the gateway answers itself.
struct Refusal {
    error: GatewayError,
    counted_in: Option<(Arc<str>, Arc<RequestMetrics>)>,
    request_id: HeaderValue,
    /// The request's body was not read, so the connection cannot go on.
    close: bool,
}

/// A request for a static file: its head stays in the buffer until it is
/// known whether hyper has to serve it from disk.
struct FileRequest {
    files: Arc<Files>,
    method: http::Method,
    path: String,
    conditions: Conditions,
    keep_alive: bool,
    request_id: HeaderValue,
    head_len: usize,
}

/// A request a route's response cache answers: a hit. Misses go to
/// hyper, which fills the cache.
struct KeptRequest {
    kept: Arc<cache::Entry>,
    conditions: Conditions,
    head: bool,
    keep_alive: bool,
    request_id: HeaderValue,
    /// A waiting room's pass, when the request was let in without one.
    pass: Option<HeaderValue>,
    cache_control: Option<HeaderValue>,
    metrics: Arc<RequestMetrics>,
}

enum Parsed {
    Ready(Prepared),
    Refuse(Refusal),
    File(FileRequest),
    Kept(KeptRequest),
    Handoff,
}

impl Exchanging<'_> {
    async fn run(&mut self, stopping: &mut Stopping, stop: &watch::Receiver<bool>) -> Next {
        let limits = &self.proxy.shared.config.limits;
        // Like hyper's header timeout: the whole head must arrive within
        // the idle timeout of the last exchange's end, which also bounds
        // keep-alive idleness.
        let head_deadline = tokio::time::Instant::from_std(*self.last_active) + limits.idle_timeout;
        let parsed = loop {
            if self.buf.starts_with(b"PRI * HTTP/2") {
                return Next::Handoff;
            }
            if !self.buf.is_empty() {
                let mut storage = head::field_storage();
                let mut req = httparse::Request::new(&mut []);
                match req.parse_with_uninit_headers(self.buf, &mut storage) {
                    Ok(httparse::Status::Complete(len)) => {
                        self.latest.refresh(self.proxy);
                        let mut parsed =
                            Self::prepare(&req, self.out, self.forwarding, self.peer, self.proxy);
                        // hyper must see the head it is handed; anything else
                        // is done with it.
                        match &mut parsed {
                            Parsed::Handoff => {}
                            Parsed::File(file) => file.head_len = len,
                            _ => self.buf.advance(len),
                        }
                        break parsed;
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(httparse::Error::TooManyHeaders) => {
                        break self.refuse_head(GatewayError::HeadTooLarge);
                    }
                    Err(_) => break self.refuse_head(GatewayError::MalformedRequest),
                }
                if self.buf.len() >= limits.max_header_bytes {
                    break self.refuse_head(GatewayError::HeadTooLarge);
                }
            }
            tokio::select! {
                read = self.timer.run(head_deadline, read_some(self.client, self.buf)) => match read {
                    Some(Ok(n)) if n > 0 => {}
                    _ => return Next::Close,
                },
                () = stopping.as_mut() => return Next::Close,
            }
        };
        let started = Instant::now();
        match parsed {
            Parsed::Handoff => Next::Handoff,
            Parsed::Refuse(refusal) => self.answer(refusal, started).await,
            Parsed::File(file) => self.serve_file(file, started, stop).await,
            Parsed::Kept(kept) => self.serve_kept(kept, started, stop).await,
            Parsed::Ready(prepared) => self.forward(prepared, started, stop).await,
        }
    }

    fn refuse_head(&self, error: GatewayError) -> Parsed {
        Parsed::Refuse(Refusal {
            error,
            counted_in: None,
            request_id: request_id(None),
            close: true,
        })
    }

    /// Decides what to do with a parsed request and, when it goes upstream
    /// on this path, writes its head into `out`.
    fn prepare(
        req: &httparse::Request<'_, '_>,
        out: &mut Vec<u8>,
        forwarding: &mut ForwardingCache,
        peer: &Peer,
        proxy: &Proxy,
    ) -> Parsed {
        let fields: &[httparse::Header<'_>] = req.headers;
        let (Some(method), Some(path), Some(1)) = (req.method, req.path, req.version) else {
            return Parsed::Handoff;
        };
        // The redirect to HTTPS is rare traffic (browsers remember it, or
        // HSTS makes them): hyper answers it, the fast path stays simple.
        if !path.starts_with('/')
            || proxy.redirects_to(peer).is_some()
            || method == "CONNECT"
            || fields.field("upgrade").is_some()
            || fields.field("expect").is_some()
        {
            return Parsed::Handoff;
        }
        let request_id = request_id(fields.field("x-request-id"));
        let refuse = |error, counted_in, close| {
            Parsed::Refuse(Refusal {
                error,
                counted_in,
                request_id: request_id.clone(),
                close,
            })
        };
        let Ok(framing) = head::request_framing(fields) else {
            return refuse(GatewayError::MalformedRequest, None, true);
        };
        let has_body = framing != Framing::Empty;
        let host = fields.field("host");
        let shared = &proxy.shared;
        let route_path = path.split('?').next().unwrap_or(path);
        let host_name = host
            .and_then(|h| std::str::from_utf8(h).ok())
            .map(host_without_port);
        let route_index = match shared.router.find(host_name, route_path) {
            Some(Found::Pool(index)) => index,
            // Rare enough for hyper: a body to skip, a range from disk.
            Some(Found::Files(_)) if has_body || files::ranged(fields) => return Parsed::Handoff,
            Some(Found::Files(files)) => {
                return Parsed::File(FileRequest {
                    files: Arc::clone(files),
                    method: http::Method::from_bytes(method.as_bytes())
                        .unwrap_or(http::Method::POST),
                    path: route_path.to_owned(),
                    conditions: Conditions::of(fields),
                    keep_alive: head::wants_keep_alive(1, fields),
                    request_id,
                    head_len: 0,
                });
            }
            None => return refuse(GatewayError::NoRoute, None, has_body),
        };
        let route = &shared.router.routes()[route_index];
        let pool = &route.pool;
        let kept = route
            .cache
            .as_ref()
            .filter(|_| !has_body)
            .and_then(|cache| {
                let host = host.and_then(|h| std::str::from_utf8(h).ok());
                let key = cache::Key::of(method, host, path, fields)?;
                Some((cache, cache.peek(&key)?))
            });
        if kept.is_none() && (pool.http2 || route.needs_hyper(method, fields)) {
            return Parsed::Handoff;
        }
        let in_pool =
            |metrics: &Arc<RequestMetrics>| Some((Arc::clone(&pool.name), Arc::clone(metrics)));
        if let Framing::Length(n) = framing
            && n > shared.config.limits.max_body_bytes
        {
            return refuse(GatewayError::BodyTooLarge, in_pool(&pool.unassigned), true);
        }
        let client_ip = shared.trusted.client_ip(peer, fields);
        let entry = match route.enter(client_ip, fields) {
            Ok(entry) => entry,
            Err(error) => return refuse(error, in_pool(&pool.unassigned), has_body),
        };
        if let Some((cache, kept)) = kept {
            cache.count(Outcome::Hit);
            return Parsed::Kept(KeptRequest {
                kept,
                conditions: Conditions::of(fields),
                head: method == "HEAD",
                keep_alive: head::wants_keep_alive(1, fields),
                request_id,
                pass: entry.pass,
                cache_control: route.cache_control_for(method).cloned(),
                metrics: Arc::clone(&cache.requests),
            });
        }
        let Some(choice) = pool.choose(client_ip, route_path, fields) else {
            return refuse(GatewayError::NoBackend, in_pool(&pool.unassigned), has_body);
        };

        let forwarding = forwarding.get(fields, peer, client_ip, host);
        out.clear();
        out.extend_from_slice(method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        head::write_fields(
            out,
            fields,
            framing == Framing::Chunked,
            &head::REQUEST_REPLACED,
        );
        for (name, value) in forwarding.pairs() {
            head::write_header_value(out, name, value);
        }
        head::write_header_value(out, "x-request-id", &request_id);
        out.extend_from_slice(b"\r\n");
        Parsed::Ready(Prepared {
            framing,
            keep_alive: head::wants_keep_alive(1, fields),
            to_head: method == "HEAD",
            idempotent: retry::harmless_twice(method, fields),
            route: route_index,
            choice,
            entry,
            request_id,
            cache_control: route.cache_control_for(method).cloned(),
        })
    }

    /// Sends a prepared request to its backend and the answer to the client.
    async fn forward(
        &mut self,
        mut req: Prepared,
        started: Instant,
        stop: &watch::Receiver<bool>,
    ) -> Next {
        let shared = Arc::clone(&self.proxy.shared);
        let mut target = Target::new(&shared.router.routes()[req.route], &req, started);
        let admitted = match target.route.admit(req.entry.place.take()).await {
            Ok(admitted) => admitted,
            Err(error) => {
                let pool = &target.route.pool;
                let refusal = Refusal {
                    error,
                    counted_in: Some((Arc::clone(&pool.name), Arc::clone(&pool.unassigned))),
                    request_id: req.request_id.clone(),
                    // An unread body cannot be skipped: the connection ends.
                    close: req.framing != Framing::Empty,
                };
                return self.answer(refusal, started).await;
            }
        };
        if let Some(retries) = &target.route.pool.retries {
            retries.deposit();
        }
        let (mut upstream, response_head, in_flight) =
            match self.send(&req, &mut target, started, stop).await {
                Ok(answered) => answered,
                Err(next) => return next,
            };
        let exchange = Exchange::new(
            Arc::clone(target.metrics),
            response_head.status,
            started,
            Some(in_flight),
        )
        .hold(admitted);
        let response_body = BodyLimits {
            max: u64::MAX,
            // Like nginx's proxy_read_timeout: the longest silence between
            // two reads from the backend.
            stall: Some(target.route.first_byte_timeout),
            deadline: target.deadline,
        };
        let relayed = relay(
            self.out,
            &mut upstream.stream,
            &mut upstream.buf,
            self.client,
            response_head.framing,
            response_body,
        )
        .await;
        let end = Instant::now();
        exchange.finish(end);
        *self.last_active = end;
        if relayed.is_err() {
            // Mid-body: the status line is out, nothing more can be said.
            return Next::Close;
        }
        if response_head.reusable {
            let pool = &target.route.pool;
            let parking = (end, pool.idle_timeout);
            self.proxy
                .idle
                .put(target.slot, upstream, pool.max_idle_per_backend, parking);
        }
        if response_head.client_keeps && !*stop.borrow() {
            Next::Continue
        } else {
            Next::Close
        }
    }

    /// Sends the request (head, then body) to the chosen backend and reads
    /// its response head. When that fails, the client has been answered and
    /// `Err` says what the connection does next.
    ///
    /// A reused connection the backend closed meanwhile fails before any
    /// byte of the answer; a request without a body is then sent once more
    /// on a fresh connection, as nothing of it can have been processed.
    async fn send(
        &mut self,
        req: &Prepared,
        target: &mut Target<'_>,
        started: Instant,
        stop: &watch::Receiver<bool>,
    ) -> Result<(Upstream, ResponseHead, InFlight), Next> {
        let limits = &self.proxy.shared.config.limits;
        let request_body = BodyLimits {
            max: limits.max_body_bytes,
            stall: Some(limits.body_timeout),
            deadline: target.deadline,
        };
        // Before the request body is relayed the connection cannot go on
        // (its body is unread); after it, it can.
        let has_body = req.framing != Framing::Empty;
        // Sent but unanswered, it may go elsewhere only if sending it twice
        // does no harm and nothing of it was consumed.
        let resendable = req.idempotent && !has_body;
        let mut fresh_only = false;
        loop {
            let backend = target.backend.addr;
            let in_flight = target.backend.start();
            let reuse_at = (!fresh_only).then_some(started);
            let mut upstream = match self.connect(target, reuse_at).await {
                Ok(upstream) => upstream,
                Err(error) => {
                    target.observe(true);
                    // Nothing was sent: any request may go elsewhere.
                    if target.retry_elsewhere() {
                        fresh_only = false;
                        continue;
                    }
                    let refusal = target.refusal(req, error, has_body);
                    return Err(self.answer(refusal, started).await);
                }
            };
            let replayable = req.framing == Framing::Empty && upstream.reused;
            let head_len = self.out.len();
            let sent = relay(
                self.out,
                self.client,
                self.buf,
                &mut upstream.stream,
                req.framing,
                request_body,
            )
            .await;
            match sent {
                Ok(()) => {}
                Err(RelayError::Sink(_)) if replayable => {
                    self.out.truncate(head_len);
                    fresh_only = true;
                    continue;
                }
                Err(error) => {
                    // Only a backend that stopped reading counts against it.
                    target.observe(matches!(error, RelayError::Sink(_)));
                    let fail = |error, close| target.refusal(req, error, close);
                    return Err(self.request_failed(error, backend, fail, started).await);
                }
            }
            let sent_at = Instant::now();
            let first_byte =
                tokio::time::Instant::from_std(sent_at) + target.route.first_byte_timeout;
            let first_byte = target.deadline.map_or(first_byte, |d| d.min(first_byte));
            let answering = Answering {
                to_head: req.to_head,
                request_id: &req.request_id,
                set_cookie: target.set_cookie.as_ref(),
                pass: req.entry.pass.as_ref(),
                cache_control: req.cache_control.as_ref(),
                client_keeps: req.keep_alive && !*stop.borrow(),
            };
            let error = match self
                .await_response(&mut upstream, first_byte, &answering)
                .await
            {
                Ok(head) => {
                    let now = Instant::now();
                    target.backend.load.observe_latency_at(now - sent_at, now);
                    target.observe(head.status >= 500);
                    return Ok((upstream, head, in_flight));
                }
                Err(AwaitError::Stale) if replayable => {
                    self.out.truncate(head_len);
                    fresh_only = true;
                    continue;
                }
                Err(AwaitError::ClientGone) => return Err(Next::Close),
                Err(AwaitError::Stale) => GatewayError::Upstream {
                    backend,
                    reason: "connection closed before a response".into(),
                },
                Err(AwaitError::Failed(error)) => error,
            };
            target.observe(true);
            if resendable && target.retry_elsewhere() {
                self.out.truncate(head_len);
                fresh_only = false;
                continue;
            }
            let refusal = target.refusal(req, error, false);
            return Err(self.answer(refusal, started).await);
        }
    }

    /// Takes an idle connection to the chosen backend (when `reuse_at`,
    /// the current time, is given), or opens one.
    async fn connect(
        &self,
        target: &Target<'_>,
        reuse_at: Option<Instant>,
    ) -> Result<Upstream, GatewayError> {
        let (pool, route, slot) = (&target.route.pool, target.route, target.slot);
        if let Some(now) = reuse_at
            && let Some(upstream) = self.proxy.idle.take(slot, now, pool.idle_timeout)
        {
            return Ok(upstream);
        }
        let backend = pool.backends[slot.1].addr;
        let failed = |reason| GatewayError::Upstream { backend, reason };
        match tokio::time::timeout(route.connect_timeout, TcpStream::connect(backend)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                Ok(Upstream {
                    stream,
                    buf: BytesMut::with_capacity(8 * 1024),
                    reused: false,
                    _open: pool.metrics[slot.1].connection(),
                })
            }
            Ok(Err(error)) => Err(failed(format!("connect failed: {error}"))),
            Err(_) => Err(failed(format!(
                "connect timed out after {:?}",
                route.connect_timeout
            ))),
        }
    }

    /// Reads the backend's response head (passing informational `1xx`
    /// heads on to the client) and writes the client's head into `out`.
    async fn await_response(
        &mut self,
        upstream: &mut Upstream,
        first_byte: tokio::time::Instant,
        answering: &Answering<'_>,
    ) -> Result<ResponseHead, AwaitError> {
        let mut received_any = false;
        loop {
            if !upstream.buf.is_empty() {
                let mut storage = head::field_storage();
                let mut res = httparse::Response::new(&mut []);
                let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
                    &mut res,
                    &upstream.buf,
                    &mut storage,
                );
                match parsed {
                    Ok(httparse::Status::Complete(len)) => {
                        let status = res.code.unwrap_or(502);
                        if status == 101 {
                            return Err(AwaitError::Failed(bad_response("an unrequested 101")));
                        }
                        if (100..200).contains(&status) {
                            use tokio::io::AsyncWriteExt;
                            let informational = upstream.buf.split_to(len);
                            self.client
                                .write_all(&informational)
                                .await
                                .map_err(|_| AwaitError::ClientGone)?;
                            continue;
                        }
                        let head = write_response_head(self.out, &res, answering);
                        upstream.buf.advance(len);
                        return Ok(head);
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(error) => {
                        return Err(AwaitError::Failed(bad_response(&format!(
                            "a malformed response head ({error})"
                        ))));
                    }
                }
            }
            let read = tokio::select! {
                biased;
                read = self.timer.run(first_byte, read_some(&mut upstream.stream, &mut upstream.buf)) => read,
                () = client_closed(self.client) => return Err(AwaitError::ClientGone),
            };
            match read {
                Some(Ok(n)) if n > 0 => received_any = true,
                Some(_) if !received_any => return Err(AwaitError::Stale),
                None => return Err(AwaitError::Failed(GatewayError::Timeout)),
                Some(_) => {
                    return Err(AwaitError::Failed(bad_response(
                        "the connection closed inside the response head",
                    )));
                }
            }
        }
    }

    /// Maps a failure while sending the request to the client's answer.
    async fn request_failed(
        &mut self,
        error: RelayError,
        backend: std::net::SocketAddr,
        fail: impl Fn(GatewayError, bool) -> Refusal,
        started: Instant,
    ) -> Next {
        let error = match error {
            // The client went away mid-body: nobody to answer.
            RelayError::Source(_) => return Next::Close,
            RelayError::TooLarge(_) => GatewayError::BodyTooLarge,
            RelayError::Stalled => GatewayError::BodyStalled,
            RelayError::Deadline => GatewayError::Timeout,
            RelayError::Chunked(_) => GatewayError::MalformedRequest,
            RelayError::Sink(error) => GatewayError::Upstream {
                backend,
                reason: format!("sending the request failed: {error}"),
            },
        };
        self.answer(fail(error, true), started).await
    }

    /// Answers a request for a static file from memory; one that must be
    /// served from disk goes to hyper, its head still unread.
    async fn serve_file(
        &mut self,
        req: FileRequest,
        started: Instant,
        stop: &watch::Receiver<bool>,
    ) -> Next {
        let answer = req
            .files
            .answer(req.method.as_str().as_bytes(), &req.path, false);
        let stored = match answer.await {
            Answer::Disk(_) => return Next::Handoff,
            Answer::Refuse(error) => {
                self.buf.advance(req.head_len);
                let refusal = Refusal {
                    error,
                    counted_in: Some(req.files.counted_in()),
                    request_id: req.request_id,
                    close: false,
                };
                return self.answer(refusal, started).await;
            }
            Answer::Stored(stored) => stored,
        };
        self.buf.advance(req.head_len);
        let (_, metrics) = req.files.counted_in();
        let sending = Sending {
            head: req.method == http::Method::HEAD,
            keep_alive: req.keep_alive,
            request_id: &req.request_id,
            extra: &[],
            metrics: &metrics,
        };
        self.send_stored(&stored.reply(&req.conditions), &sending, started, stop)
            .await
    }

    /// Answers a request from its route's response cache, as hyper's path
    /// does (`proxy`): `Age`, `X-Cache-Status: HIT`, a waiting room's
    /// pass, and the route's `Cache-Control` when the answer has none.
    async fn serve_kept(
        &mut self,
        req: KeptRequest,
        started: Instant,
        stop: &watch::Receiver<bool>,
    ) -> Next {
        let reply = req.kept.stored.reply(&req.conditions);
        let (age, cache_status) = (req.kept.age(), cache::X_CACHE_STATUS);
        let mut extra = vec![
            ("age", age.as_bytes()),
            (cache_status.as_str(), Outcome::Hit.header_str().as_bytes()),
        ];
        if let Some(pass) = &req.pass {
            extra.push(("set-cookie", pass.as_bytes()));
        }
        if let Some(value) = &req.cache_control
            && req.pass.is_none()
            && rules::takes_default_cache_control(reply.status.as_u16(), &reply)
        {
            extra.push(("cache-control", value.as_bytes()));
        }
        let sending = Sending {
            head: req.head,
            keep_alive: req.keep_alive,
            request_id: &req.request_id,
            extra: &extra,
            metrics: &req.metrics,
        };
        self.send_stored(&reply, &sending, started, stop).await
    }

    /// Writes a stored answer (see `stored`) and counts it.
    async fn send_stored(
        &mut self,
        reply: &Reply<'_>,
        sending: &Sending<'_>,
        started: Instant,
        stop: &watch::Receiver<bool>,
    ) -> Next {
        let keep_alive = sending.keep_alive && !*stop.borrow();
        let body = if sending.head { &[][..] } else { reply.body() };
        write_reply_head(self.out, reply, sending, keep_alive);
        let written = self.write_with_body(body).await;
        let end = Instant::now();
        let status = reply.status.as_u16();
        Exchange::new(Arc::clone(sending.metrics), status, started, None).finish(end);
        *self.last_active = end;
        if written.is_ok() && keep_alive {
            Next::Continue
        } else {
            Next::Close
        }
    }

    /// Writes the head in `out` and then `body`, in one system call when the
    /// socket takes it all: a small body is copied behind the head, a large
    /// one goes beside it in a vectored write rather than being copied.
    async fn write_with_body(&mut self, body: &[u8]) -> std::io::Result<()> {
        use std::io::IoSlice;
        use tokio::io::AsyncWriteExt;
        const COPIED: usize = 8 * 1024;
        if body.len() <= COPIED {
            self.out.extend_from_slice(body);
            return self.client.write_all(self.out).await;
        }
        let mut slices = [IoSlice::new(self.out), IoSlice::new(body)];
        let mut left = &mut slices[..];
        while !left.is_empty() {
            let n = self.client.write_vectored(left).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut left, n);
        }
        Ok(())
    }

    /// Writes the gateway's own answer; the connection goes on only when the
    /// request was read completely.
    async fn answer(&mut self, refusal: Refusal, started: Instant) -> Next {
        use tokio::io::AsyncWriteExt;
        let pool = refusal.counted_in.as_ref().map(|(pool, _)| &**pool);
        let answer = refusal.error.answer(pool);
        let status = answer.status;
        let end = Instant::now();
        if let Some((_, metrics)) = refusal.counted_in {
            Exchange::new(metrics, status.as_u16(), started, None).finish(end);
        }
        *self.last_active = end;
        let out = &mut *self.out;
        out.clear();
        write_status_line(
            out,
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
        );
        head::write_field(out, "content-type", answer.content_type.as_bytes());
        head::write_field(
            out,
            "content-length",
            answer.body.len().to_string().as_bytes(),
        );
        head::write_header_value(out, "x-request-id", &refusal.request_id);
        for (name, value) in &answer.fields {
            head::write_header_value(out, name.as_str(), value);
        }
        if refusal.close {
            head::write_field(out, "connection", b"close");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(answer.body.as_bytes());
        if self.client.write_all(out).await.is_err() || refusal.close {
            return Next::Close;
        }
        Next::Continue
    }
}

/// Where a prepared request goes: its route, pool slot and backend, and
/// the exchange's overall deadline.
struct Target<'r> {
    route: &'r Route,
    slot: (usize, usize),
    backend: &'r Arc<Backend>,
    metrics: &'r Arc<RequestMetrics>,
    set_cookie: Option<HeaderValue>,
    deadline: Option<tokio::time::Instant>,
    /// Backends tried so far, the current one last.
    tried: Tried,
}

impl<'r> Target<'r> {
    fn new(route: &'r Route, req: &Prepared, started: Instant) -> Self {
        let pool = &route.pool;
        Self {
            route,
            slot: (pool.index, req.choice.index),
            backend: &pool.backends[req.choice.index],
            metrics: &pool.metrics[req.choice.index].requests,
            set_cookie: req.choice.set_cookie.clone(),
            deadline: route
                .total_timeout
                .map(|t| tokio::time::Instant::from_std(started) + t),
            tried: Tried::first(req.choice.index),
        }
    }

    /// Moves the request to another backend, if the pool retries, the
    /// request has retries left, another backend is available and the
    /// budget allows (see the `retry` module).
    fn retry_elsewhere(&mut self) -> bool {
        let pool = &self.route.pool;
        let Some(choice) = pool.retry(&mut self.tried) else {
            return false;
        };
        self.slot.1 = choice.index;
        self.backend = &pool.backends[choice.index];
        self.metrics = &pool.metrics[choice.index].requests;
        self.set_cookie = choice.set_cookie;
        true
    }

    /// Counts the backend's answer for passive ejection: `failed` for a
    /// 5xx or none at all.
    fn observe(&self, failed: bool) {
        self.route.pool.observe(self.slot.1, failed);
    }

    /// The gateway's own answer to `req`, counted under this backend.
    fn refusal(&self, req: &Prepared, error: GatewayError, close: bool) -> Refusal {
        Refusal {
            error,
            counted_in: Some((Arc::clone(&self.route.pool.name), Arc::clone(self.metrics))),
            request_id: req.request_id.clone(),
            close,
        }
    }
}

/// What the client's response head needs besides the backend's head.
struct Answering<'a> {
    to_head: bool,
    request_id: &'a HeaderValue,
    /// The sticky backend's cookie, when the client is not pinned to it.
    set_cookie: Option<&'a HeaderValue>,
    /// A waiting room's pass, when the request was let in without one.
    pass: Option<&'a HeaderValue>,
    /// The route's `Cache-Control` for answers without one.
    cache_control: Option<&'a HeaderValue>,
    client_keeps: bool,
}

/// The backend's response head, as relayed.
struct ResponseHead {
    status: u16,
    framing: Framing,
    /// The backend connection can serve another request after this body.
    reusable: bool,
    /// The client connection goes on after this response.
    client_keeps: bool,
}

enum AwaitError {
    /// Nothing came back: the connection may have been closed while idle.
    Stale,
    /// The client closed its connection while waiting.
    ClientGone,
    /// The backend failed or timed out.
    Failed(GatewayError),
}

fn bad_response(what: &str) -> GatewayError {
    GatewayError::BadResponse(what.to_owned())
}

/// Writes the client's head for a backend response into `out`.
fn write_response_head(
    out: &mut Vec<u8>,
    res: &httparse::Response<'_, '_>,
    answering: &Answering<'_>,
) -> ResponseHead {
    let fields: &[httparse::Header<'_>] = res.headers;
    let status = res.code.unwrap_or(502);
    let framing = head::response_framing(status, answering.to_head, fields);
    let backend_keeps = head::wants_keep_alive(res.version.unwrap_or(1), fields);
    let client_keeps = answering.client_keeps && framing != Framing::UntilClose;
    out.clear();
    write_status_line(out, status, res.reason.unwrap_or(""));
    head::write_fields(
        out,
        fields,
        framing == Framing::Chunked,
        &head::RESPONSE_REPLACED,
    );
    head::write_header_value(out, "x-request-id", answering.request_id);
    let cookies = [answering.set_cookie, answering.pass];
    for cookie in cookies.into_iter().flatten() {
        head::write_header_value(out, "set-cookie", cookie);
    }
    if let Some(value) = answering.cache_control
        && cookies.iter().all(Option::is_none)
        && rules::takes_default_cache_control(status, fields)
    {
        head::write_header_value(out, "cache-control", value);
    }
    if !client_keeps {
        head::write_field(out, "connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    ResponseHead {
        status,
        framing,
        reusable: backend_keeps && framing != Framing::UntilClose,
        client_keeps,
    }
}

/// How a stored answer goes out on this connection.
struct Sending<'a> {
    /// A `HEAD`: the head a `GET` would get, without the body.
    head: bool,
    keep_alive: bool,
    request_id: &'a HeaderValue,
    /// Fields besides the answer's own.
    extra: &'a [(&'a str, &'a [u8])],
    /// Where the answer is counted.
    metrics: &'a Arc<RequestMetrics>,
}

/// Writes the head of a stored answer into `out`. Its `Content-Length` is
/// the body's even for `HEAD`, as `GET` would get; a `304` has none.
fn write_reply_head(out: &mut Vec<u8>, reply: &Reply<'_>, sending: &Sending<'_>, keep: bool) {
    use std::io::Write;
    let status = reply.status;
    out.clear();
    write_status_line(
        out,
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
    );
    for (name, value) in reply.fields().chain(sending.extra.iter().copied()) {
        head::write_field(out, name, value);
    }
    if status != http::StatusCode::NOT_MODIFIED {
        let _ = write!(out, "content-length: {}\r\n", reply.body().len());
    }
    // As hyper does for the same answer on the other path.
    let _ = write!(
        out,
        "date: {}\r\n",
        httpdate::HttpDate::from(std::time::SystemTime::now())
    );
    head::write_header_value(out, "x-request-id", sending.request_id);
    if !keep {
        head::write_field(out, "connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
}

fn write_status_line(out: &mut Vec<u8>, status: u16, reason: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    let status = status.clamp(100, 999);
    out.extend_from_slice(&[
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Reads what `stream` has next into `buf`; 0 at end of stream.
async fn read_some(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    use tokio::io::AsyncReadExt;
    buf.reserve(4096);
    stream.read_buf(buf).await
}

/// Completes when the client closes its connection (or it fails). Peeking
/// consumes nothing; a client that pipelines its next request is not gone,
/// so then this never completes.
async fn client_closed(client: &TcpStream) {
    let mut probe = [0u8; 1];
    match client.peek(&mut probe).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}
