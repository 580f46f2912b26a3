//! A lane: one keep-alive connection, owned and driven by the task that
//! sends on it.
//!
//! The pooled client hands each request to a connection task over a
//! channel and gets the answer back over another: task wake-ups and pool
//! locking on every request, which made the load generator one of the
//! biggest CPU users on the machine it measured. A closed-loop user sends
//! one request at a time, so, as wrk does, it can own its connection and
//! poll it itself: the request, the connection and the answer all move in
//! one task.

use std::pin::Pin;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1;
use hyper::header::HOST;
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::{Answer, ClientError, OrderBody, Raw, Session, ShopClient, error_chain};

type Driver = Pin<Box<http1::Connection<TokioIo<TcpStream>, Full<Bytes>>>>;

/// One connection to the target, reopened after it fails.
pub struct Lane {
    client: ShopClient,
    open: Option<(http1::SendRequest<Full<Bytes>>, Driver)>,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("target", &self.client.base)
            .field("open", &self.open.is_some())
            .finish()
    }
}

impl Lane {
    /// A lane to `client`'s target (its timeout and admin token apply),
    /// connected now.
    pub async fn open(client: &ShopClient) -> Result<Lane, ClientError> {
        let mut lane = Lane {
            client: client.clone(),
            open: None,
        };
        let what = format!("connecting to {}", client.base);
        client.timed(&what, lane.connect()).await?;
        Ok(lane)
    }

    /// Tries to place `order`: the answer, whatever it is.
    pub async fn order(&mut self, session: &Session, order: &OrderBody) -> Answer {
        let body = Some(order.0.clone());
        let call = self.call(Method::POST, "/api/v1/orders", body, Some(session));
        Answer::from_call(call.await, StatusCode::CREATED)
    }

    /// Reads a product page: the answer, whatever it is.
    pub async fn product(&mut self, sku: &str) -> Answer {
        let path = format!("/api/v1/products/{sku}");
        let call = self.call(Method::GET, &path, None, None).await;
        Answer::from_call(call, StatusCode::OK)
    }

    async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        session: Option<&Session>,
    ) -> Result<Raw, ClientError> {
        let (what, mut request) = self.client.request(method, path, body, session)?;
        // A connection of our own speaks origin-form with a Host header, as
        // browsers do; the pooled client does this rewrite itself.
        *request.uri_mut() = Uri::try_from(path).map_err(|e| ClientError::Transport {
            what: what.clone(),
            detail: e.to_string(),
        })?;
        let host = self.client.host.clone();
        request.headers_mut().insert(HOST, host);
        let client = self.client.clone();
        let result = client.answer(what, self.exchange(request)).await;
        if result.is_err() {
            // Whatever broke (or timed out), the connection's state is
            // unknown: the next call starts on a new one.
            self.open = None;
        }
        result
    }

    async fn exchange(&mut self, request: Request<Full<Bytes>>) -> Result<Raw, String> {
        if let Some((sender, driver)) = &mut self.open {
            // A connection the server closed while it sat idle (keep-alive
            // timeout, `Connection: close`) is replaced before anything is
            // sent on it, so this never retries a request.
            let alive = tokio::select! {
                biased;
                _ = driver.as_mut() => false,
                ready = sender.ready() => ready.is_ok(),
            };
            if !alive {
                self.open = None;
            }
        }
        if self.open.is_none() {
            self.connect().await?;
        }
        let Some((mut sender, mut driver)) = self.open.take() else {
            return Err("no connection".to_owned());
        };
        let (result, ended) = {
            let answer = async {
                let response = sender.send_request(request).await.map_err(error_chain)?;
                Raw::read(response).await
            };
            tokio::pin!(answer);
            tokio::select! {
                biased;
                answer = &mut answer => (answer, false),
                ended = driver.as_mut() => {
                    // The connection is done, but an answer that arrived
                    // before it closed is still there to read.
                    let result = match ended {
                        Ok(()) => answer.await,
                        Err(e) => Err(error_chain(e)),
                    };
                    (result, true)
                }
            }
        };
        // A finished connection must not be polled again: only a live one
        // goes back.
        if !ended {
            self.open = Some((sender, driver));
        }
        result
    }

    async fn connect(&mut self) -> Result<(), String> {
        let stream = TcpStream::connect(&self.client.authority)
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.client.authority))?;
        // Requests are small and answered at once: Nagle would only delay them.
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, driver) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(error_chain)?;
        self.open = Some((sender, Box::pin(driver)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use axum::Router;
    use axum::http::header::CONNECTION;
    use axum::routing::get;

    use super::*;
    use crate::Outcome;

    /// A server whose every answer closes its connection; how many
    /// connections it accepted.
    async fn closing_server() -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        let app = Router::new().route(
            "/api/v1/products/{sku}",
            get(|| async { ([(CONNECTION, "close")], "{}") }),
        );
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                counted.fetch_add(1, Ordering::Relaxed);
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        (format!("http://{addr}"), accepted)
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced_before_sending() {
        let (target, accepted) = closing_server().await;
        let client = ShopClient::new(&target, None, Duration::from_secs(5), 1).expect("client");
        let mut lane = Lane::open(&client).await.expect("lane");
        for _ in 0..3 {
            let answer = lane.product("X").await;
            assert_eq!(answer.outcome, Outcome::Read, "{:?}", answer.detail);
        }
        assert_eq!(
            accepted.load(Ordering::Relaxed),
            3,
            "one connection per answer"
        );
    }

    #[tokio::test]
    async fn an_unreachable_target_fails_to_open() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let client = ShopClient::new(&format!("http://{addr}"), None, Duration::from_secs(5), 1)
            .expect("client");
        let error = Lane::open(&client).await.expect_err("nothing listens");
        assert!(error.to_string().contains("connecting to"), "{error}");
    }
}
