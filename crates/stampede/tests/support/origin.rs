//! An origin whose answers the request's query describes, for the tests of
//! what the gateway does to answers (compression, cache headers, the
//! response cache): `GET /page?size=4000&cc=no-store&cookie=1` answers
//! 4000 bytes of text with `Cache-Control: no-store` and a cookie.
//!
//! Query keys (`%20`, `%2C`, `%3D` and `%22` decoded in values):
//! - `size=N`: the body's length (default 4096), text that compresses well;
//! - `type=T`: its `Content-Type` (default `text/html; charset=utf-8`);
//! - `status=N`: the status (default 200);
//! - `cc=V`, `vary=V`, `etag=V`, `encoding=V`, `range=V`: `Cache-Control`,
//!   `Vary`, `ETag`, `Content-Encoding`, `Content-Range`;
//! - `cookie=1`: a `Set-Cookie`;
//! - `chunked=1`: the body streamed without a `Content-Length`;
//! - `delay=MS`: wait before answering.
//!
//! Every answer carries `x-method` (the request's method) and
//! `x-accept-encoding` (what the request accepted, `-` for nothing).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{BackendBody, ChanBody, within};

/// The body of `size` bytes every answer of that size has.
pub(crate) fn text(size: usize) -> Vec<u8> {
    b"<li>flash sale: item in stock</li>\n"
        .iter()
        .copied()
        .cycle()
        .take(size)
        .collect()
}

/// A running origin; stops (closing its connections) when dropped.
#[derive(Debug)]
pub(crate) struct Origin {
    pub(crate) addr: SocketAddr,
    /// Requests received, by path and query.
    hits: Arc<Mutex<HashMap<String, usize>>>,
    stop: watch::Sender<bool>,
}

impl Origin {
    /// An origin on a free port.
    pub(crate) async fn start() -> Origin {
        Self::serve(TcpListener::bind("127.0.0.1:0").await.expect("bind"))
    }

    /// An origin at `addr`, where a stopped one was.
    pub(crate) async fn start_at(addr: SocketAddr) -> Origin {
        let listener = within(Duration::from_secs(5), "the address to be free", async {
            loop {
                match TcpListener::bind(addr).await {
                    Ok(listener) => return listener,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
        .await;
        Self::serve(listener)
    }

    fn serve(listener: TcpListener) -> Origin {
        let addr = listener.local_addr().expect("address");
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(accept(listener, Arc::clone(&hits), stopped));
        Origin { addr, hits, stop }
    }

    /// Requests received for `target` (path and query).
    pub(crate) fn hits(&self, target: &str) -> usize {
        self.hits
            .lock()
            .expect("hits")
            .get(target)
            .copied()
            .unwrap_or(0)
    }

    /// Stops listening and closes every connection.
    pub(crate) fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept(
    listener: TcpListener,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            _ = stopped.wait_for(|s| *s) => return,
        };
        let hits = Arc::clone(&hits);
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let hits = Arc::clone(&hits);
                async move { Ok::<_, Infallible>(answer(&hits, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = stopped.wait_for(|s| *s) => {}
            }
        });
    }
}

async fn answer(
    hits: &Mutex<HashMap<String, usize>>,
    req: Request<Incoming>,
) -> Response<BackendBody> {
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *hits.lock().expect("hits").entry(target).or_default() += 1;
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), decode(v)))
        .collect();
    let param = |key: &str| query.get(key).map(String::as_str);
    if let Some(ms) = param("delay").and_then(|ms| ms.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let size = param("size").and_then(|s| s.parse().ok()).unwrap_or(4096);
    let body = Bytes::from(text(size));
    let body = if param("chunked").is_some() {
        let (tx, streamed) = ChanBody::new(4);
        tokio::spawn(async move {
            for chunk in body_chunks(body) {
                if tx.send(chunk).await.is_err() {
                    return;
                }
            }
        });
        streamed.boxed()
    } else {
        Full::new(body).boxed()
    };
    let mut response = Response::new(body);
    *response.status_mut() = param("status")
        .and_then(|s| s.parse().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let accepted = req
        .headers()
        .get("accept-encoding")
        .map_or("-".to_owned(), |v| v.to_str().unwrap_or("?").to_owned());
    let mut fields = vec![
        (
            "content-type",
            param("type").unwrap_or("text/html; charset=utf-8"),
        ),
        ("x-method", req.method().as_str()),
        ("x-accept-encoding", &accepted),
    ];
    for (key, name) in [
        ("cc", "cache-control"),
        ("vary", "vary"),
        ("etag", "etag"),
        ("encoding", "content-encoding"),
        ("range", "content-range"),
    ] {
        if let Some(value) = param(key) {
            fields.push((name, value));
        }
    }
    if param("cookie").is_some() {
        fields.push(("set-cookie", "session=personal; Path=/"));
    }
    let headers = response.headers_mut();
    for (name, value) in fields {
        headers.append(name, value.parse().expect("a header value"));
    }
    response
}

/// `body` in chunks of at most 1000 bytes.
fn body_chunks(body: Bytes) -> Vec<Bytes> {
    (0..body.len())
        .step_by(1000)
        .map(|start| body.slice(start..(start + 1000).min(body.len())))
        .collect()
}

fn decode(value: &str) -> String {
    value
        .replace("%20", " ")
        .replace("%2C", ",")
        .replace("%3D", "=")
        .replace("%22", "\"")
}

/// `body` decoded from the content coding `coding` (`None`: as it is).
pub(crate) fn decoded(coding: Option<&str>, body: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    match coding {
        None => out.extend_from_slice(body),
        Some("gzip") => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .expect("gzip");
        }
        Some("br") => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .expect("br");
        }
        Some("zstd") => {
            zstd::stream::read::Decoder::new(body)
                .expect("zstd")
                .read_to_end(&mut out)
                .expect("zstd");
        }
        Some(other) => panic!("unexpected coding {other}"),
    }
    out
}
