//! The sale as the operations page shows it: stock and orders per sku
//! (`GET /api/v1/admin/stats`) and the job queues' depths (`GET
//! /api/v1/admin/queues`), asked of a shop node in rotation in `[ops]
//! shop_pool`, with the admin token.
//!
//! One answer serves every page for [`FRESH_FOR`], and only one fetch runs
//! at a time (the others wait for it), so a room full of open pages costs
//! the shop two admin calls a second. A shop that does not answer within
//! [`DEADLINE`] shows as unavailable, and that too is kept for
//! [`FRESH_FOR`], so a dead shop is not asked again by every page.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONNECTION, HOST, USER_AGENT};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::Shared;

/// How long one reading of the sale is shown.
const FRESH_FOR: Duration = Duration::from_secs(1);
/// The longest a page waits for the shop.
const DEADLINE: Duration = Duration::from_millis(1500);
/// The largest answer read from the shop.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// The last reading of the sale.
#[derive(Debug, Default)]
pub(super) struct Sale {
    last: Mutex<Option<(Instant, Arc<Value>)>>,
}

impl Sale {
    /// The sale for the page: `null` without `[ops]`, `{"available":
    /// false, "error": ...}` when no shop answered, else `{"available":
    /// true, "skus": [...], "queues": [...]}`.
    pub(super) async fn read(&self, shared: &Shared) -> Arc<Value> {
        let (Some(ops), Some(token)) = (&shared.config.ops, &shared.config.admin_token) else {
            return Arc::new(Value::Null);
        };
        let mut last = self.last.lock().await;
        if let Some((at, sale)) = &*last
            && at.elapsed() < FRESH_FOR
        {
            return Arc::clone(sale);
        }
        let addrs: Vec<SocketAddr> = shared
            .pool(&ops.shop_pool)
            .map(|pool| pool.in_rotation().iter().map(|b| b.addr).collect())
            .unwrap_or_default();
        let sale = match tokio::time::timeout(DEADLINE, fetch(&addrs, token.secret())).await {
            Ok(Ok(sale)) => sale,
            Ok(Err(error)) => unavailable(&error),
            Err(_) => unavailable(&format!(
                "no shop node of pool `{}` answered within {DEADLINE:?}",
                ops.shop_pool
            )),
        };
        let sale = Arc::new(sale);
        *last = Some((Instant::now(), Arc::clone(&sale)));
        sale
    }
}

fn unavailable(error: &str) -> Value {
    json!({ "available": false, "error": error })
}

/// Both readings from the first of `addrs` that gives them.
async fn fetch(addrs: &[SocketAddr], token: &str) -> Result<Value, String> {
    let mut error = "no shop node is in rotation".to_owned();
    for &addr in addrs {
        let both = tokio::try_join!(
            get_json(addr, "/api/v1/admin/stats", token),
            get_json(addr, "/api/v1/admin/queues", token),
        );
        match both {
            Ok((stats, queues)) => {
                return Ok(json!({
                    "available": true,
                    "node": addr.to_string(),
                    "skus": stats["skus"],
                    "queues": queues["queues"],
                }));
            }
            Err(e) => error = format!("{addr}: {e}"),
        }
    }
    Err(error)
}

/// `GET path` on the shop node at `addr`, its JSON answer.
async fn get_json(addr: SocketAddr, path: &str, token: &str) -> Result<Value, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, connection) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let request = Request::get(path)
        .header(HOST, addr.to_string())
        .header(USER_AGENT, "stampede-gateway-ops")
        .header(ACCEPT, "application/json")
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header(CONNECTION, "close")
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let answer = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading {path}: {e}"))?
            .to_bytes();
        if status != StatusCode::OK {
            return Err(format!("{path} answered {status}"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("{path}: not JSON: {e}"))
    }
    .await;
    driver.abort();
    answer
}
