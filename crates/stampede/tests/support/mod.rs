//! Shared helpers of the gateway's integration tests: real backend servers
//! in the test process, the real `stampede` binary as a child process (and
//! the config files it is given), a small HTTP client, and raw-TCP request
//! and response helpers. Everything talks to 127.0.0.1 only.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

pub(crate) mod browser;
pub(crate) mod origin;
mod process;
pub(crate) mod redis;
pub(crate) mod relay;
pub(crate) mod shop;
pub(crate) mod standby;

pub(crate) use process::{Process, stampede};

use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response, StatusCode, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// The default bound on any single wait of a test.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// Awaits `future`, panicking with `what` if it takes longer than `limit`.
pub(crate) async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

// ---------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------

/// How a backend behaves beyond its per-path answers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Behaviour {
    /// Sleep this long before answering every request.
    pub(crate) delay: Duration,
    /// Hold every request until [`Backend::release`] is called.
    pub(crate) hold: bool,
    /// Serve HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1.
    pub(crate) http2: bool,
}

impl Behaviour {
    /// Holds every request until [`Backend::release`].
    pub(crate) fn holding() -> Behaviour {
        Behaviour {
            hold: true,
            ..Behaviour::default()
        }
    }

    /// Sleeps `delay` before answering every request.
    pub(crate) fn delayed(delay: Duration) -> Behaviour {
        Behaviour {
            delay,
            ..Behaviour::default()
        }
    }

    /// Serves h2c instead of HTTP/1.1.
    pub(crate) fn http2() -> Behaviour {
        Behaviour {
            http2: true,
            ..Behaviour::default()
        }
    }
}

/// A backend HTTP server on 127.0.0.1 that answers with its own name.
///
/// Paths:
/// - any path: `200`, body = the name, header `x-backend: NAME`;
/// - `/headers`: the request headers as a JSON object of arrays, plus
///   `_version`, `_method` and `_path`;
/// - `/count`: reads the whole body and answers its length in bytes;
/// - `/delay/MS`: waits MS milliseconds first;
/// - `/stream?chunks=N&size=S`: streams N chunks of S bytes;
/// - `/gated`: sends `first-chunk`, waits for [`Backend::release`], sends `rest`;
/// - `/hang`: never answers; when the handler is dropped (its connection
///   closed), [`Backend::cancelled`] counts it;
/// - `/hop`: answers with hop-by-hop headers that must not reach the client;
/// - `/ws`: answers `101` to a WebSocket-style upgrade and echoes bytes.
#[derive(Debug)]
pub(crate) struct Backend {
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
    state: Arc<State>,
    stop: watch::Sender<bool>,
}

#[derive(Debug)]
struct State {
    name: String,
    behaviour: Behaviour,
    hits: watch::Sender<usize>,
    /// Requests being handled now, and the most there ever were at once.
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    cancelled: watch::Sender<usize>,
    released: watch::Sender<bool>,
}

impl Backend {
    /// A plain HTTP/1.1 backend.
    pub(crate) async fn start(name: &str) -> Backend {
        Self::start_with(name, Behaviour::default()).await
    }

    /// A backend with the given behaviour.
    pub(crate) async fn start_with(name: &str, behaviour: Behaviour) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a backend");
        Self::serve(name, behaviour, listener)
    }

    /// A plain backend at `addr`, e.g. where a stopped one was (a backend
    /// coming back); waits up to 5 s for the address to be free.
    pub(crate) async fn start_at(name: &str, addr: SocketAddr) -> Backend {
        let listener = within(Duration::from_secs(5), "the address to be free", async {
            loop {
                match TcpListener::bind(addr).await {
                    Ok(listener) => return listener,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
        .await;
        Self::serve(name, Behaviour::default(), listener)
    }

    fn serve(name: &str, behaviour: Behaviour, listener: TcpListener) -> Backend {
        let addr = listener.local_addr().expect("backend address");
        let state = Arc::new(State {
            name: name.to_owned(),
            behaviour,
            hits: watch::Sender::new(0),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            cancelled: watch::Sender::new(0),
            released: watch::Sender::new(false),
        });
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(accept_loop(listener, Arc::clone(&state), stopped));
        Backend {
            name: name.to_owned(),
            addr,
            state,
            stop,
        }
    }

    /// Starts `n` plain backends named `b0`, `b1`, ...
    pub(crate) async fn start_many(n: usize) -> Vec<Backend> {
        let mut backends = Vec::new();
        for i in 0..n {
            backends.push(Backend::start(&format!("b{i}")).await);
        }
        backends
    }

    /// Stops listening and closes every open connection.
    pub(crate) fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Lets held (`hold`) and gated (`/gated`) requests go on.
    pub(crate) fn release(&self) {
        let _ = self.state.released.send(true);
    }

    /// Requests received so far.
    pub(crate) fn hits(&self) -> usize {
        *self.state.hits.borrow()
    }

    /// The most requests this backend was handling at once (from arrival
    /// to its response head).
    pub(crate) fn peak_concurrency(&self) -> usize {
        self.state.peak.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests have arrived.
    pub(crate) async fn wait_hits(&self, n: usize, limit: Duration) {
        let mut rx = self.state.hits.subscribe();
        within(
            limit,
            &format!("backend {} to receive {n} requests", self.name),
            rx.wait_for(|hits| *hits >= n),
        )
        .await
        .expect("hits channel open");
    }

    /// `/hang` handlers dropped so far.
    pub(crate) fn cancelled(&self) -> usize {
        *self.state.cancelled.borrow()
    }

    /// Waits until at least `n` `/hang` handlers have been dropped; false
    /// if that did not happen within `limit`.
    pub(crate) async fn wait_cancelled(&self, n: usize, limit: Duration) -> bool {
        let mut rx = self.state.cancelled.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|c| *c >= n))
            .await
            .is_ok()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, mut stopped: watch::Receiver<bool>) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            _ = stopped.wait_for(|s| *s) => return,
        };
        let state = Arc::clone(&state);
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let http2 = state.behaviour.http2;
            let service = service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(handle(state, req).await) }
            });
            let io = TokioIo::new(stream);
            // Dropping the connection future on stop closes its socket.
            if http2 {
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(io, service);
                tokio::select! {
                    _ = conn => {}
                    _ = stopped.wait_for(|s| *s) => {}
                }
            } else {
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .with_upgrades();
                tokio::select! {
                    _ = conn => {}
                    _ = stopped.wait_for(|s| *s) => {}
                }
            }
        });
    }
}

type BackendBody = BoxBody<Bytes, Infallible>;

fn full(body: impl Into<Bytes>) -> BackendBody {
    Full::new(body.into()).boxed()
}

/// Counts a dropped `/hang` handler.
struct DropSignal(Arc<State>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        self.0.cancelled.send_modify(|c| *c += 1);
    }
}

/// Counts a request in flight at the backend until dropped, keeping the
/// high-water mark.
struct Busy(Arc<State>);

impl Busy {
    fn enter(state: &Arc<State>) -> Busy {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.peak.fetch_max(now, Ordering::SeqCst);
        Busy(Arc::clone(state))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(state: Arc<State>, mut req: Request<Incoming>) -> Response<BackendBody> {
    let _busy = Busy::enter(&state);
    state.hits.send_modify(|h| *h += 1);
    if !state.behaviour.delay.is_zero() {
        tokio::time::sleep(state.behaviour.delay).await;
    }
    if state.behaviour.hold {
        let mut released = state.released.subscribe();
        let _ = released.wait_for(|r| *r).await;
    }
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let name = state.name.clone();
    let mut response = match path.as_str() {
        "/headers" => {
            let mut map = serde_json::Map::new();
            for (key, value) in req.headers() {
                let entry = map
                    .entry(key.as_str().to_owned())
                    .or_insert_with(|| serde_json::Value::Array(Vec::new()));
                if let serde_json::Value::Array(values) = entry {
                    values.push(
                        String::from_utf8_lossy(value.as_bytes())
                            .into_owned()
                            .into(),
                    );
                }
            }
            map.insert("_version".into(), format!("{:?}", req.version()).into());
            map.insert("_method".into(), req.method().as_str().into());
            map.insert("_path".into(), path.clone().into());
            let mut response = Response::new(full(serde_json::Value::Object(map).to_string()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        "/count" => {
            let version = format!("{:?}", req.version());
            let mut body = req.into_body();
            let mut count = 0usize;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => count += frame.data_ref().map_or(0, Bytes::len),
                    Err(error) => {
                        let mut response = Response::new(full(format!("body error: {error}")));
                        *response.status_mut() = StatusCode::BAD_REQUEST;
                        return response;
                    }
                }
            }
            let mut response = Response::new(full(count.to_string()));
            response.headers_mut().insert(
                "x-version",
                HeaderValue::from_str(&version).expect("version"),
            );
            response
        }
        "/stream" => {
            let param = |key: &str| -> usize {
                query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1)
            };
            let (chunks, size) = (param("chunks"), param("size"));
            let (tx, body) = ChanBody::new(4);
            tokio::spawn(async move {
                let chunk = Bytes::from(vec![b'x'; size]);
                for _ in 0..chunks {
                    if tx.send(chunk.clone()).await.is_err() {
                        return;
                    }
                }
            });
            Response::new(body.boxed())
        }
        "/gated" => {
            let (tx, body) = ChanBody::new(4);
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                if tx.send(Bytes::from_static(b"first-chunk")).await.is_err() {
                    return;
                }
                let mut released = state.released.subscribe();
                let _ = released.wait_for(|r| *r).await;
                let _ = tx.send(Bytes::from_static(b"rest")).await;
            });
            Response::new(body.boxed())
        }
        "/hang" => {
            let _signal = DropSignal(Arc::clone(&state));
            std::future::pending::<()>().await;
            unreachable!("pending never resolves")
        }
        "/hop" => {
            let mut response = Response::new(full(name.clone()));
            let headers = response.headers_mut();
            headers.insert(header::CONNECTION, HeaderValue::from_static("x-resp-hop"));
            headers.insert("x-resp-hop", HeaderValue::from_static("secret"));
            headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
            headers.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
            headers.insert("x-end-to-end", HeaderValue::from_static("kept"));
            response
        }
        "/ws" => {
            let wants = |name: header::HeaderName, token: &str| {
                req.headers().get_all(name).iter().any(|v| {
                    v.to_str()
                        .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                })
            };
            if !(wants(header::CONNECTION, "upgrade") && wants(header::UPGRADE, "websocket")) {
                let mut response = Response::new(full("upgrade headers missing"));
                *response.status_mut() = StatusCode::BAD_REQUEST;
                return response;
            }
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(upgraded) = on_upgrade.await else {
                    return;
                };
                let mut io = TokioIo::new(upgraded);
                let mut buf = vec![0u8; 4096];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if io.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
            let mut response = Response::new(Empty::new().boxed());
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let headers = response.headers_mut();
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(
                "sec-websocket-accept",
                HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            );
            response
        }
        _ => {
            if let Some(ms) = path.strip_prefix("/delay/").and_then(|ms| ms.parse().ok()) {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Response::new(full(name.clone()))
        }
    };
    response
        .headers_mut()
        .insert("x-backend", HeaderValue::from_str(&name).expect("name"));
    response
}

/// A response body fed through a channel, chunk by chunk.
pub(crate) struct ChanBody(mpsc::Receiver<Bytes>);

impl ChanBody {
    pub(crate) fn new(buffer: usize) -> (mpsc::Sender<Bytes>, ChanBody) {
        let (tx, rx) = mpsc::channel(buffer);
        (tx, ChanBody(rx))
    }
}

impl Body for ChanBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

/// A request body of `count` copies of one chunk, produced as it is sent.
pub(crate) struct RepeatBody {
    chunk: Bytes,
    remaining: usize,
}

impl RepeatBody {
    pub(crate) fn new(chunk_size: usize, count: usize) -> Self {
        Self {
            chunk: Bytes::from(vec![b'u'; chunk_size]),
            remaining: count,
        }
    }
}

impl Body for RepeatBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        self.remaining -= 1;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.clone()))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        // Unknown on purpose: sent chunked, like a client streaming a file.
        SizeHint::default()
    }
}

/// An address on 127.0.0.1 where nothing listens (bound, read, released).
pub(crate) fn unused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address")
}

/// `["127.0.0.1:1", "127.0.0.1:2"]`, for a TOML `backends` list.
pub(crate) fn toml_backends(backends: &[&Backend]) -> String {
    toml_addrs(backends.iter().map(|b| b.addr))
}

/// [`toml_backends`] for bare addresses.
pub(crate) fn toml_addrs(addrs: impl IntoIterator<Item = SocketAddr>) -> String {
    let items: Vec<String> = addrs.into_iter().map(|a| format!("\"{a}\"")).collect();
    format!("[{}]", items.join(", "))
}

/// The TOML of a gateway with one pool, for [`Gateway::with_config`]. As
/// [`GatewayToml::web`] makes it, it listens on 127.0.0.1:0 with two
/// workers and routes every request to the pool `web`:
///
/// ```toml
/// listen = "127.0.0.1:0"
/// workers = 2
/// # .top(...) lines
/// routes = [{ pool = "web" }] # .route(...) adds keys after `pool`
/// # .table(...) tables
/// [pools.web]
/// # .pool(...) lines
/// backends = BACKENDS
/// ```
#[derive(Debug, Clone)]
pub(crate) struct GatewayToml {
    name: String,
    workers: bool,
    top: Vec<String>,
    route: Vec<String>,
    tables: Vec<String>,
    pool: Vec<String>,
    backends: String,
}

impl GatewayToml {
    /// The pool `web` with `backends`, a TOML array (see [`toml_backends`]).
    pub(crate) fn web(backends: impl Into<String>) -> GatewayToml {
        GatewayToml {
            name: "web".to_owned(),
            workers: true,
            top: Vec::new(),
            route: Vec::new(),
            tables: Vec::new(),
            pool: Vec::new(),
            backends: backends.into(),
        }
    }

    /// Names the pool (and its route's pool) `name` instead of `web`.
    pub(crate) fn named(mut self, name: &str) -> GatewayToml {
        name.clone_into(&mut self.name);
        self
    }

    /// Leaves out `workers = 2`: one worker per core.
    pub(crate) fn default_workers(mut self) -> GatewayToml {
        self.workers = false;
        self
    }

    /// Adds a top-level line, such as `admin_listen = "127.0.0.1:0"`.
    pub(crate) fn top(mut self, line: &str) -> GatewayToml {
        self.top.push(line.to_owned());
        self
    }

    /// Adds keys to the one route, such as `host = "shop.test"`.
    pub(crate) fn route(mut self, keys: &str) -> GatewayToml {
        self.route.push(keys.to_owned());
        self
    }

    /// Adds a table before the pool's, such as `[limits]` and its lines.
    pub(crate) fn table(mut self, toml: &str) -> GatewayToml {
        self.tables.push(toml.to_owned());
        self
    }

    /// Adds a line to the pool's table, such as `strategy = "random"`.
    pub(crate) fn pool(mut self, line: &str) -> GatewayToml {
        self.pool.push(line.to_owned());
        self
    }

    /// The whole file.
    pub(crate) fn render(&self) -> String {
        let mut route = vec![format!("pool = \"{}\"", self.name)];
        route.extend(self.route.iter().cloned());
        let mut lines = vec![r#"listen = "127.0.0.1:0""#.to_owned()];
        if self.workers {
            lines.push("workers = 2".to_owned());
        }
        lines.extend(self.top.iter().cloned());
        lines.push(format!("routes = [{{ {} }}]", route.join(", ")));
        lines.extend(self.tables.iter().cloned());
        lines.push(format!("[pools.{}]", self.name));
        lines.extend(self.pool.iter().cloned());
        lines.push(format!("backends = {}", self.backends));
        lines.join("\n") + "\n"
    }

    /// Starts `stampede gateway` with this file.
    pub(crate) async fn start(&self) -> Gateway {
        Gateway::with_config(&self.render()).await
    }
}

// ---------------------------------------------------------------------------
// The gateway process
// ---------------------------------------------------------------------------

/// A file in the temp directory, removed on drop.
#[derive(Debug)]
pub(crate) struct TempFile(pub(crate) PathBuf);

impl TempFile {
    pub(crate) fn new(extension: &str, contents: &str) -> TempFile {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "stampede-test-{}-{}-{nanos}.{extension}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
        ));
        std::fs::write(&path, contents).expect("write temp file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A directory in the temp directory, removed with its contents on drop.
#[derive(Debug)]
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new() -> TempDir {
        let marker = TempFile::new("dir", "");
        let path = marker.0.with_extension("d");
        std::fs::create_dir(&path).expect("create temp dir");
        TempDir(path)
    }

    /// Writes `contents` to `name` inside, creating its directories.
    pub(crate) fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dirs");
        }
        std::fs::write(&path, contents).expect("write file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `stampede gateway`, killed when dropped.
#[derive(Debug)]
pub(crate) struct Gateway {
    process: Process,
    /// Where clients connect.
    pub(crate) addr: SocketAddr,
    /// The HTTPS listener, when `[tls]` is configured.
    pub(crate) tls: Option<SocketAddr>,
    /// The admin listener, when configured.
    pub(crate) admin: Option<SocketAddr>,
    /// The DNS responder (UDP and TCP), when `[dns]` is configured.
    pub(crate) dns: Option<SocketAddr>,
    config: Option<TempFile>,
}

impl Gateway {
    /// `stampede gateway --listen 127.0.0.1:0 --workers 2 ARGS...`.
    pub(crate) async fn with_flags(args: &[String]) -> Gateway {
        let mut command = stampede("gateway");
        command
            .args(["--listen", "127.0.0.1:0", "--workers", "2"])
            .args(args);
        let admin = args.iter().any(|a| a == "--admin-listen");
        Self::spawn(command, false, admin, false, None).await
    }

    /// Quick flags: these backends and this strategy.
    pub(crate) async fn quick(backends: &[&Backend], strategy: &str) -> Gateway {
        let mut args = vec!["--strategy".to_owned(), strategy.to_owned()];
        for backend in backends {
            args.push("--backend".into());
            args.push(backend.addr.to_string());
        }
        Self::with_flags(&args).await
    }

    /// `stampede gateway --config FILE` with this TOML (which should listen
    /// on `127.0.0.1:0`).
    pub(crate) async fn with_config(toml: &str) -> Gateway {
        Self::with_config_and(toml, &[]).await
    }

    /// [`Gateway::with_config`] with more arguments, such as `--watch`.
    pub(crate) async fn with_config_and(toml: &str, args: &[&str]) -> Gateway {
        let file = TempFile::new("toml", toml);
        let mut command = stampede("gateway");
        command.arg("--config").arg(&file.0).args(args);
        let has = |start: &str| toml.lines().any(|l| l.trim_start().starts_with(start));
        let (tls, admin, dns) = (has("[tls]"), has("admin_listen"), has("[dns]"));
        Self::spawn(command, tls, admin, dns, Some(file)).await
    }

    /// Starts `command` and reads the addresses it prints: the listener's,
    /// then the HTTPS listener's, the admin listener's and the DNS
    /// responder's when asked for.
    async fn spawn(
        command: Command,
        tls: bool,
        admin: bool,
        dns: bool,
        config: Option<TempFile>,
    ) -> Gateway {
        let mut process = Process::spawn(command, "gateway");
        let addr = process
            .addr_after("stampede gateway listening on http://")
            .await;
        let tls = match tls {
            false => None,
            true => Some(
                process
                    .addr_after("stampede gateway listening on https://")
                    .await,
            ),
        };
        let admin = match admin {
            false => None,
            true => Some(process.admin_addr().await),
        };
        let dns = match dns {
            false => None,
            true => Some(process.addr_after("dns on ").await),
        };
        Gateway {
            process,
            addr,
            tls,
            admin,
            dns,
            config,
        }
    }

    /// The address a `[[tcp]]` (`kind = "tcp"`) or `[[redirect]]` listener
    /// listens on, from the line the gateway prints for it; ask in the
    /// order they are printed (every tcp before any redirect).
    pub(crate) async fn listener_addr(&mut self, kind: &str, index: usize) -> SocketAddr {
        let scheme = if kind == "redirect" { "http://" } else { "" };
        let prefix = format!("{kind}[{index}] listening on {scheme}");
        self.process.addr_after(&prefix).await
    }

    /// Replaces the configuration file's contents (the gateway notices on
    /// `SIGHUP`, or by itself with `--watch`).
    pub(crate) fn rewrite_config(&self, toml: &str) {
        let file = self.config.as_ref().expect("started with a config file");
        std::fs::write(&file.0, toml).expect("rewrite the config file");
    }

    /// Sends `SIGHUP`: reload the configuration file.
    pub(crate) fn hangup(&self) {
        self.process.signal("HUP");
    }

    /// Everything the gateway wrote to stderr (its logs) so far.
    pub(crate) fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// `http://ADDR/PATH`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://ADMIN/PATH`.
    pub(crate) fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin.expect("admin listener"))
    }

    /// The peak resident set size of the process in bytes (Linux).
    pub(crate) fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }
}

/// What a short-lived `stampede gateway ...` run (`--check`, a bad config)
/// did: exit status, stdout, stderr.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `stampede gateway ARGS...` to completion (killed after [`TIMEOUT`]).
pub(crate) async fn run_gateway(args: &[&str]) -> Run {
    let mut command = stampede("gateway");
    command.args(args);
    run_to_end(command, &format!("stampede gateway {}", args.join(" "))).await
}

/// Runs `command` to completion (killed after [`TIMEOUT`]); `what` names it.
pub(crate) async fn run_to_end(mut command: Command, what: &str) -> Run {
    let mut child = command.spawn().expect("spawn stampede");
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{what}` did not exit within {TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout).expect("read stdout");
    }
    if let Some(mut err) = child.stderr.take() {
        err.read_to_string(&mut stderr).expect("read stderr");
    }
    Run {
        status,
        stdout,
        stderr,
    }
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

/// A pooled HTTP/1.1 client.
pub(crate) fn client<B>() -> Client<HttpConnector, B>
where
    B: Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 client with prior knowledge (h2c).
pub(crate) fn h2_client<B>() -> Client<HttpConnector, B>
where
    B: Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A whole response.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    /// Its fields but those that differ between two equal answers (`date`,
    /// `x-request-id`) and the framing, which may differ by path and
    /// protocol (hyper gives an h2 `304` a `content-length: 0`), sorted.
    pub(crate) fn comparable_fields(&self) -> Vec<(String, String)> {
        const VARYING: [&str; 4] = [
            "date",
            "x-request-id",
            "transfer-encoding",
            "content-length",
        ];
        let mut fields: Vec<(String, String)> = self
            .headers
            .iter()
            .filter(|(name, _)| !VARYING.contains(&name.as_str()))
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_owned()))
            .collect();
        fields.sort();
        fields
    }

    /// A response header as text (all values joined by ", ").
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }
}

/// Sends a request and reads the whole response, within [`TIMEOUT`].
pub(crate) async fn send<B>(client: &Client<HttpConnector, B>, req: Request<B>) -> Reply
where
    B: Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let uri = req.uri().clone();
    within(TIMEOUT, &format!("response from {uri}"), async {
        let response = client
            .request(req)
            .await
            .unwrap_or_else(|e| panic!("request to {uri} failed: {e:?}"));
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .unwrap_or_else(|e| panic!("body from {uri} failed: {e:?}"))
            .to_bytes();
        Reply {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        }
    })
    .await
}

/// The client the tests use most: HTTP/1.1 ([`client`]) or h2c ([`h2_client`])
/// with whole request bodies.
pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// `GET url`.
pub(crate) async fn get(client: &HttpClient, url: &str) -> Reply {
    get_with(client, url, &[]).await
}

/// The backends (by the names they answer with) that served `n` requests
/// for `/` through `gateway`; every answer must be a `200`.
pub(crate) async fn served_by(
    client: &HttpClient,
    gateway: &Gateway,
    n: usize,
) -> std::collections::BTreeSet<String> {
    served_by_each(client, gateway, n)
        .await
        .into_keys()
        .collect()
}

/// How many of `n` requests for `/` each backend answered; every answer
/// must be a `200`.
pub(crate) async fn served_by_each(
    client: &HttpClient,
    gateway: &Gateway,
    n: usize,
) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..n {
        let reply = get(client, &gateway.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        *counts.entry(reply.text()).or_default() += 1;
    }
    counts
}

/// `clients` loops of `GET url`, one after another on each, until
/// [`SteadyLoad::stop`]: steady traffic to break something under.
pub(crate) struct SteadyLoad {
    stop: watch::Sender<bool>,
    loops: Vec<tokio::task::JoinHandle<Vec<u16>>>,
}

impl SteadyLoad {
    pub(crate) fn start(client: &HttpClient, url: &str, clients: usize) -> SteadyLoad {
        let (stop, stopped) = watch::channel(false);
        let loops = (0..clients)
            .map(|_| {
                let (client, url, stopped) = (client.clone(), url.to_owned(), stopped.clone());
                tokio::spawn(async move {
                    let mut statuses = Vec::new();
                    while !*stopped.borrow() {
                        statuses.push(get(&client, &url).await.status.as_u16());
                    }
                    statuses
                })
            })
            .collect();
        SteadyLoad { stop, loops }
    }

    /// Stops the loops; every status they saw, asserting that more than
    /// `at_least` requests were made.
    pub(crate) async fn stop(self, at_least: usize) -> Vec<u16> {
        let _ = self.stop.send(true);
        let mut statuses = Vec::new();
        for each in self.loops {
            statuses.extend(each.await.expect("load loop"));
        }
        assert!(
            statuses.len() > at_least,
            "the load ran: {} requests",
            statuses.len()
        );
        statuses
    }
}

/// `stampede_gateway_backend_up` of `backend` on the admin listener, if
/// exported.
pub(crate) async fn backend_up(
    client: &HttpClient,
    gateway: &Gateway,
    backend: SocketAddr,
) -> Option<f64> {
    let metrics = get(client, &gateway.admin_url("/metrics")).await.text();
    let label = format!("backend=\"{backend}\"");
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix("stampede_gateway_backend_up{")?;
        let (labels, value) = rest.split_once("} ")?;
        labels.contains(&label).then(|| value.trim().parse().ok())?
    })
}

/// Waits up to 5 s for [`backend_up`] to say `want`.
pub(crate) async fn wait_backend_up(
    client: &HttpClient,
    gateway: &Gateway,
    backend: SocketAddr,
    want: f64,
) {
    let what = format!("backend {backend} to be reported up={want}");
    within(Duration::from_secs(5), &what, async {
        while backend_up(client, gateway, backend).await != Some(want) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// `GET url` with these request headers.
pub(crate) async fn get_with(client: &HttpClient, url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = get_req(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    send(client, req.body(Full::default()).expect("request")).await
}

/// `GET url` up to the response head, within [`TIMEOUT`]; the body is left
/// to the caller.
pub(crate) async fn get_head(client: &HttpClient, url: &str) -> Response<Incoming> {
    let req = get_req(url).body(Full::default()).expect("request");
    within(TIMEOUT, "response head", client.request(req))
        .await
        .unwrap_or_else(|e| panic!("request to {url} failed: {e:?}"))
}

/// A request builder for `GET url`.
pub(crate) fn get_req(url: &str) -> hyper::http::request::Builder {
    Request::builder().uri(url)
}

/// A header of a `/headers` echo, all values joined by ", ".
pub(crate) fn echoed(json: &serde_json::Value, name: &str) -> Option<String> {
    let values = json.get(name)?.as_array()?;
    let values: Vec<&str> = values.iter().filter_map(|v| v.as_str()).collect();
    Some(values.join(", "))
}

/// Asserts that a `/headers` echo shows each `(name, value)` pair.
#[track_caller]
pub(crate) fn assert_echoed(json: &serde_json::Value, expected: &[(&str, &str)]) {
    for (name, value) in expected {
        assert_eq!(
            echoed(json, name).as_deref(),
            Some(*value),
            "header {name} as the backend saw it: {json}"
        );
    }
}

/// Parses `text` as JSON, panicking with the text if it is not.
#[track_caller]
pub(crate) fn parse_json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

// ---------------------------------------------------------------------------
// Raw TCP
// ---------------------------------------------------------------------------

/// Connects to `addr` with a plain TCP stream.
pub(crate) async fn connect(addr: SocketAddr) -> TcpStream {
    within(TIMEOUT, "TCP connect", TcpStream::connect(addr))
        .await
        .expect("connect")
}

/// Reads a response head (through the blank line); returns what was read,
/// even when the connection ended or failed before the head was complete.
pub(crate) async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    within(TIMEOUT, "a response head", async {
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
    })
    .await;
    String::from_utf8_lossy(&head).into_owned()
}

/// The value of `name` in a raw response head (case-insensitive), if any.
pub(crate) fn head_header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

/// Reads the body that a raw response head announced with Content-Length.
pub(crate) async fn read_body(stream: &mut TcpStream, head: &str) -> String {
    let len: usize = head_header(head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
    let mut body = vec![0u8; len];
    within(TIMEOUT, "a response body", stream.read_exact(&mut body))
        .await
        .expect("read body");
    String::from_utf8_lossy(&body).into_owned()
}

/// Reads a response with a Content-Length body: `(head, body)`.
pub(crate) async fn read_response(stream: &mut TcpStream) -> (String, String) {
    let head = read_head(stream).await;
    let body = read_body(stream, &head).await;
    (head, body)
}

/// Writes `request` and reads the response head.
pub(crate) async fn request_head(stream: &mut TcpStream, request: impl AsRef<[u8]>) -> String {
    stream
        .write_all(request.as_ref())
        .await
        .expect("write a request");
    read_head(stream).await
}

/// Writes `request` and reads a response with a Content-Length body:
/// `(head, body)`.
pub(crate) async fn roundtrip(
    stream: &mut TcpStream,
    request: impl AsRef<[u8]>,
) -> (String, String) {
    let head = request_head(stream, request).await;
    let body = read_body(stream, &head).await;
    (head, body)
}

/// The first line of a raw response head.
pub(crate) fn status_line(head: &str) -> &str {
    head.lines().next().unwrap_or("")
}

/// Asserts that a raw response head's status line starts with `expected`,
/// such as `HTTP/1.1 200`.
#[track_caller]
pub(crate) fn assert_status(head: &str, expected: &str) {
    assert!(
        status_line(head).starts_with(expected),
        "expected {expected:?}, got {head:?}"
    );
}
