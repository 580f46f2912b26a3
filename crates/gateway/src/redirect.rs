//! Redirect listeners: each `[[redirect]]` answers every HTTP request with
//! a redirect to the backend its pool's strategy chooses, for clients that
//! then talk to the backend directly (the "HTTP redirect" balancing of the
//! Django scaling literature). The pool's health checks, drains and
//! ejections keep unavailable backends out of every `Location`.
//!
//! `302 Found` for `GET` and `HEAD`, `307 Temporary Redirect` for anything
//! else, since a `302` may turn a `POST` into a `GET`. The `Location` is
//! `{scheme}://{backend}{path}?{query}`, with `Cache-Control: no-store`: a
//! cached redirect would pin a client to a backend the gateway may take out
//! of rotation. With no backend available, `503` in the contract's error
//! shape, as the proxy answers.
//!
//! Served by hyper's HTTP/1.1 server (keep-alive, pipelining and limits come
//! with it, for less code than a hand-written one); each request reads the
//! current configuration, so a reload changes the next `Location`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{CACHE_CONTROL, HeaderValue, LOCATION, SET_COOKIE};
use http::{Method, Request, Response, StatusCode};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::Shared;
use crate::body::{Exchange, ResponseBody};
use crate::error::GatewayError;
use crate::server::{Current, Drain, accept_until_stopped};

/// Serves `redirect[index]` on `listener` until `stop`, then lets open
/// connections finish their request for the drain timeout.
pub(crate) async fn serve(
    listener: TcpListener,
    index: usize,
    follow: Current,
    stop: watch::Receiver<bool>,
) {
    let drain = Drain::new();
    accept_until_stopped(&listener, stop.clone(), |stream, peer| {
        let (follow, stop, hold) = (follow.clone(), stop.clone(), drain.hold());
        tokio::spawn(async move {
            connection(stream, peer, index, follow, stop).await;
            drop(hold);
        });
    })
    .await;
    drop(listener);
    let limit = follow.borrow().config.drain_timeout;
    drain.wait(limit).await;
}

/// One client connection; on shutdown it finishes the request under way
/// and closes.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    index: usize,
    follow: Current,
    mut stop: watch::Receiver<bool>,
) {
    let idle_timeout = follow.borrow().config.limits.idle_timeout;
    let service = service_fn(move |request| {
        let shared = Arc::clone(&follow.borrow());
        std::future::ready(Ok::<_, Infallible>(answer(&shared, index, peer, &request)))
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        // Hyper starts this timer whenever it waits for a request head, so
        // it is also the keep-alive idle timeout.
        .header_read_timeout(idle_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = stop.wait_for(|stop| *stop) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

/// The redirect to the backend chosen for `request`, or `503`.
fn answer<B>(
    shared: &Shared,
    index: usize,
    peer: SocketAddr,
    request: &Request<B>,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let listener = &shared.config.redirect[index];
    let Some(pool) = shared.pool(&listener.pool) else {
        unreachable!("validation makes every redirect listener's pool exist");
    };
    let headers = request.headers();
    let client_ip = shared
        .trusted
        .client_ip(&shared.trusted.peer(peer, false), headers);
    let Some(choice) = pool.choose(client_ip, request.uri().path(), headers) else {
        let counted = Some((&*pool.name, Arc::clone(&pool.unassigned)));
        return GatewayError::NoBackend.into_response(counted, started);
    };
    let status = redirect_status(request.method());
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = format!(
        "{}://{}{target}",
        listener.scheme, pool.authorities[choice.index]
    );
    let metrics = Arc::clone(&pool.metrics[choice.index].requests);
    let exchange = Exchange::new(metrics, status.as_u16(), started, None);
    let mut response = Response::new(ResponseBody::empty(Some(exchange)));
    *response.status_mut() = status;
    let fields = response.headers_mut();
    if let Ok(location) = HeaderValue::try_from(location) {
        fields.insert(LOCATION, location);
    }
    fields.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(cookie) = choice.set_cookie {
        fields.insert(SET_COOKIE, cookie);
    }
    response
}

/// `302` where a client may safely repeat the request as a `GET`, else
/// `307`, which keeps the method and body.
fn redirect_status(method: &Method) -> StatusCode {
    match *method {
        Method::GET | Method::HEAD => StatusCode::FOUND,
        _ => StatusCode::TEMPORARY_REDIRECT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_and_head_may_become_a_302() {
        assert_eq!(redirect_status(&Method::GET), StatusCode::FOUND);
        assert_eq!(redirect_status(&Method::HEAD), StatusCode::FOUND);
        assert_eq!(
            redirect_status(&Method::POST),
            StatusCode::TEMPORARY_REDIRECT
        );
        assert_eq!(
            redirect_status(&Method::DELETE),
            StatusCode::TEMPORARY_REDIRECT
        );
    }
}
