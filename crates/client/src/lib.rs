//! A client of the flash-sale HTTP API (`shared/spec/flash-sale-api.md`).
//!
//! It speaks the contract, not stampede: anything that implements the spec
//! can be driven with it, which is the point of `stampede storm` (a load
//! test that also runs against other stacks). The calls split in two:
//!
//! - **setup and checks** ([`ShopClient::create_users`],
//!   [`ShopClient::create_product`], [`ShopClient::login`],
//!   [`ShopClient::orders`], [`ShopClient::stats`]) succeed or say what the
//!   server answered instead, as a [`ClientError`];
//! - **the hot path** ([`ShopClient::order`], [`ShopClient::product`], and
//!   the same on a [`Lane`], a connection of the caller's own)
//!   returns every answer as an [`Answer`], because under a crowd a
//!   `409 sold_out` or a `503 overloaded` is a result to count, not an error.
//!
//! Sessions are whatever cookies the login answer sets; they are sent back
//! as they came, so the client needs no knowledge of the server's cookie.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, HeaderValue, RETRY_AFTER, SET_COOKIE};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

mod answer;
mod lane;

pub use answer::{Answer, Outcome};
pub use lane::Lane;

/// The most users one `POST /api/v1/admin/users` may carry (the contract's).
pub const USERS_PER_CALL: usize = 10_000;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The target is not an `http://host:port` URL.
    #[error("target {url:?} is not an http://HOST:PORT URL: {reason}")]
    BadTarget {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No answer: the connection failed or broke.
    #[error("{what}: {detail}")]
    Transport {
        /// The call, e.g. `POST /api/v1/login`.
        what: String,
        /// What the HTTP client said.
        detail: String,
    },
    /// No answer within the call's timeout.
    #[error("{what}: no answer within {timeout:?}")]
    Timeout {
        /// The call.
        what: String,
        /// How long the client waited.
        timeout: Duration,
    },
    /// An answer other than the call's success.
    #[error("{what}: {status} {body}")]
    Refused {
        /// The call.
        what: String,
        /// The status the server answered.
        status: u16,
        /// The contract's error code, when the body had one.
        code: Option<String>,
        /// The body, as text.
        body: String,
    },
    /// A success whose body is not what the contract says.
    #[error("{what}: unexpected body: {detail}")]
    Malformed {
        /// The call.
        what: String,
        /// What did not parse.
        detail: String,
    },
}

impl ClientError {
    /// The contract's error code of a refusal (`exists`, `sold_out`, ...).
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// A user to create: username and password.
#[derive(Debug, Clone, Serialize)]
pub struct NewUser {
    /// The login name.
    pub username: String,
    /// The password, in clear (it is hashed by the server).
    pub password: String,
}

/// A product to create (`POST /api/v1/admin/products`).
#[derive(Debug, Clone, Serialize)]
pub struct NewProduct {
    /// The product's identifier.
    pub sku: String,
    /// Its display name.
    pub name: String,
    /// Its price in cents.
    pub price_cents: i64,
    /// Units on sale.
    pub stock: i64,
    /// Most live units one user may hold.
    pub per_user_limit: i64,
}

/// An order as the contract shows it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Order {
    /// Its identifier.
    pub order_id: String,
    /// The product ordered.
    pub sku: String,
    /// Units ordered.
    pub quantity: i64,
    /// `reserved`, `paying`, `paid`, `confirmed`, `expired`, ...
    pub status: String,
}

impl Order {
    /// Whether the order holds stock: reserved, paying, paid or confirmed.
    pub fn is_live(&self) -> bool {
        matches!(
            self.status.as_str(),
            "reserved" | "paying" | "paid" | "confirmed"
        )
    }
}

/// One entry of `GET /api/v1/admin/stats`: quantities from the source of
/// truth.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct SkuStats {
    /// The product.
    pub sku: String,
    /// Units it was created with.
    pub initial_stock: i64,
    /// Units still for sale.
    pub stock_left: i64,
    /// Units in reserved orders.
    pub reserved: i64,
    /// Units in orders being paid.
    pub paying: i64,
    /// Units in paid orders.
    pub paid: i64,
    /// Units in confirmed orders.
    pub confirmed: i64,
    /// Units in expired orders (returned to sale).
    pub expired: i64,
    /// Units in cancelled orders (returned to sale).
    pub cancelled: i64,
    /// Units in orders whose payment failed (returned to sale).
    pub payment_failed: i64,
}

impl SkuStats {
    /// Units held by live orders: reserved, paying, paid and confirmed.
    pub fn live(&self) -> i64 {
        self.reserved + self.paying + self.paid + self.confirmed
    }
}

/// The body of an order, encoded once: a crowd sends the same one many
/// times.
#[derive(Debug, Clone)]
pub struct OrderBody(Bytes);

impl OrderBody {
    /// `{"sku": sku, "quantity": quantity}`.
    pub fn new(sku: &str, quantity: i64) -> Self {
        let body = serde_json::json!({ "sku": sku, "quantity": quantity });
        Self(Bytes::from(body.to_string()))
    }
}

/// A logged-in user's session: the cookies the login answer set, ready to
/// send back.
#[derive(Debug, Clone)]
pub struct Session {
    cookie: HeaderValue,
}

/// A client of one server's flash-sale API.
#[derive(Debug, Clone)]
pub struct ShopClient {
    http: Client<HttpConnector, Full<Bytes>>,
    /// `http://host:port`, without a trailing slash.
    base: String,
    /// `host:port`, where a lane connects.
    authority: String,
    /// The `Host` header a lane sends.
    host: HeaderValue,
    admin: Option<HeaderValue>,
    timeout: Duration,
}

impl ShopClient {
    /// A client of the API at `target` (`http://HOST:PORT`), with the admin
    /// token if one is given, each call bounded by `timeout`. Connections
    /// are kept alive and reused, up to `max_idle` of them.
    pub fn new(
        target: &str,
        admin_token: Option<&str>,
        timeout: Duration,
        max_idle: usize,
    ) -> Result<Self, ClientError> {
        let base = validate_target(target)?;
        let authority = base.trim_start_matches("http://").to_owned();
        let host =
            HeaderValue::try_from(authority.as_str()).map_err(|_| ClientError::BadTarget {
                url: target.to_owned(),
                reason: "the host is not a valid header value".to_owned(),
            })?;
        let admin = admin_token
            .map(|token| HeaderValue::try_from(format!("Bearer {token}")))
            .transpose()
            .map_err(|_| ClientError::BadTarget {
                url: target.to_owned(),
                reason: "the admin token holds characters a header cannot".to_owned(),
            })?;
        let mut connector = HttpConnector::new();
        // Requests are small and answered at once: Nagle would only delay them.
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(max_idle)
            .build(connector);
        Ok(Self {
            http,
            base,
            authority,
            host,
            admin,
            timeout,
        })
    }

    /// The target, `http://host:port`.
    pub fn target(&self) -> &str {
        &self.base
    }

    /// Creates `users` in one call; the server's count of created users.
    pub async fn create_users(&self, users: &[NewUser]) -> Result<u64, ClientError> {
        #[derive(Deserialize)]
        struct Created {
            created: u64,
        }
        let body = serde_json::json!({ "users": users });
        let answer = self
            .call(Method::POST, "/api/v1/admin/users", Some(json(&body)), None)
            .await?;
        let created: Created = answer.expect(StatusCode::CREATED)?;
        Ok(created.created)
    }

    /// Creates a product, on sale now.
    pub async fn create_product(&self, product: &NewProduct) -> Result<(), ClientError> {
        let body = serde_json::to_value(product).map_err(|e| ClientError::Malformed {
            what: "encoding the product".to_owned(),
            detail: e.to_string(),
        })?;
        let answer = self
            .call(
                Method::POST,
                "/api/v1/admin/products",
                Some(json(&body)),
                None,
            )
            .await?;
        answer.expect::<serde_json::Value>(StatusCode::CREATED)?;
        Ok(())
    }

    /// Logs `username` in; the session its answer set.
    pub async fn login(&self, username: &str, password: &str) -> Result<Session, ClientError> {
        let body = serde_json::json!({ "username": username, "password": password });
        let answer = self
            .call(Method::POST, "/api/v1/login", Some(json(&body)), None)
            .await?;
        answer.expect::<serde_json::Value>(StatusCode::OK)?;
        let cookie = session_cookie(&answer.set_cookies).ok_or_else(|| ClientError::Malformed {
            what: answer.what.clone(),
            detail: "the login set no cookie".to_owned(),
        })?;
        Ok(Session { cookie })
    }

    /// Tries to place `order`: the answer, whatever it is.
    pub async fn order(&self, session: &Session, order: &OrderBody) -> Answer {
        let body = Some(order.0.clone());
        let call = self.call(Method::POST, "/api/v1/orders", body, Some(session));
        Answer::from_call(call.await, StatusCode::CREATED)
    }

    /// Reads a product page: the answer, whatever it is.
    pub async fn product(&self, sku: &str) -> Answer {
        let path = format!("/api/v1/products/{sku}");
        let call = self.call(Method::GET, &path, None, None).await;
        Answer::from_call(call, StatusCode::OK)
    }

    /// The user's own orders.
    pub async fn orders(&self, session: &Session) -> Result<Vec<Order>, ClientError> {
        #[derive(Deserialize)]
        struct Orders {
            orders: Vec<Order>,
        }
        let answer = self
            .call(Method::GET, "/api/v1/orders", None, Some(session))
            .await?;
        let orders: Orders = answer.expect(StatusCode::OK)?;
        Ok(orders.orders)
    }

    /// `GET /api/v1/admin/stats`: every sku's quantities.
    pub async fn stats(&self) -> Result<Vec<SkuStats>, ClientError> {
        #[derive(Deserialize)]
        struct Stats {
            skus: Vec<SkuStats>,
        }
        let answer = self
            .call(Method::GET, "/api/v1/admin/stats", None, None)
            .await?;
        let stats: Stats = answer.expect(StatusCode::OK)?;
        Ok(stats.skus)
    }

    /// Sends one request and reads its whole answer, within the timeout.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        session: Option<&Session>,
    ) -> Result<Raw, ClientError> {
        let (what, request) = self.request(method, path, body, session)?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(error_chain)?;
            Raw::read(response).await
        };
        self.answer(what, exchange).await
    }

    /// A request to `path` with the session's cookies, the admin token if
    /// this client has one, and `body` as JSON; and its name for messages.
    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        session: Option<&Session>,
    ) -> Result<(String, Request<Full<Bytes>>), ClientError> {
        let what = format!("{method} {path}");
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(admin) = &self.admin {
            request = request.header(AUTHORIZATION, admin.clone());
        }
        if let Some(session) = session {
            request = request.header(COOKIE, session.cookie.clone());
        }
        let body = match body {
            Some(body) => {
                request = request.header(CONTENT_TYPE, "application/json");
                Full::new(body)
            }
            None => Full::default(),
        };
        match request.body(body) {
            Ok(request) => Ok((what, request)),
            Err(e) => Err(ClientError::Transport {
                what,
                detail: e.to_string(),
            }),
        }
    }

    /// `exchange` within this client's timeout, its errors named `what`.
    async fn timed<T>(
        &self,
        what: &str,
        exchange: impl Future<Output = Result<T, String>>,
    ) -> Result<T, ClientError> {
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(detail)) => Err(ClientError::Transport {
                what: what.to_owned(),
                detail,
            }),
            Err(_) => Err(ClientError::Timeout {
                what: what.to_owned(),
                timeout: self.timeout,
            }),
        }
    }

    /// A whole answer to the call named `what`, within the timeout.
    async fn answer(
        &self,
        what: String,
        exchange: impl Future<Output = Result<Raw, String>>,
    ) -> Result<Raw, ClientError> {
        let raw = self.timed(&what, exchange).await?;
        Ok(Raw { what, ..raw })
    }
}

/// A whole answer, before anyone decided what it means.
#[derive(Debug)]
pub(crate) struct Raw {
    what: String,
    status: StatusCode,
    retry_after: Option<Duration>,
    set_cookies: Vec<HeaderValue>,
    body: Bytes,
}

impl Raw {
    /// Reads a response to its end.
    async fn read(response: hyper::Response<hyper::body::Incoming>) -> Result<Raw, String> {
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(error_chain)?.to_bytes();
        let retry_after = parts
            .headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_secs);
        Ok(Raw {
            what: String::new(),
            status: parts.status,
            retry_after,
            set_cookies: parts.headers.get_all(SET_COOKIE).iter().cloned().collect(),
            body,
        })
    }

    /// The body as `T` if the status is `expected`; otherwise what the
    /// server said instead.
    fn expect<T: serde::de::DeserializeOwned>(
        &self,
        expected: StatusCode,
    ) -> Result<T, ClientError> {
        if self.status != expected {
            return Err(ClientError::Refused {
                what: self.what.clone(),
                status: self.status.as_u16(),
                code: error_code(&self.body),
                body: String::from_utf8_lossy(&self.body).into_owned(),
            });
        }
        serde_json::from_slice(&self.body).map_err(|e| ClientError::Malformed {
            what: self.what.clone(),
            detail: e.to_string(),
        })
    }
}

fn json(value: &serde_json::Value) -> Bytes {
    Bytes::from(value.to_string())
}

/// `http://host:port[/]` becomes `http://host:port`; anything else is
/// refused before a crowd is sent at it.
fn validate_target(url: &str) -> Result<String, ClientError> {
    let bad = |reason: &str| ClientError::BadTarget {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("only http:// is supported"));
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(bad("give the server's root, without a path"));
    }
    Ok(format!("http://{authority}"))
}

/// The `Cookie` header that sends back every cookie the answer set: the
/// `name=value` part of each `Set-Cookie`.
fn session_cookie(set_cookies: &[HeaderValue]) -> Option<HeaderValue> {
    let pairs: Vec<&str> = set_cookies
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::trim)
        .filter(|pair| pair.contains('='))
        .collect();
    if pairs.is_empty() {
        return None;
    }
    HeaderValue::try_from(pairs.join("; ")).ok()
}

/// The `error` field of a contract error body.
pub(crate) fn error_code(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
    }
    serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .map(|e| e.error)
}

/// An error and its causes on one line: hyper's top-level message alone
/// ("client error (Connect)") does not say what happened.
fn error_chain(error: impl std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_the_servers_root_over_http() {
        assert_eq!(
            validate_target("http://127.0.0.1:8080/").ok().as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            validate_target("http://localhost:1").ok().as_deref(),
            Some("http://localhost:1")
        );
        for bad in [
            "https://a:1",
            "127.0.0.1:8080",
            "http://a:1/api",
            "nonsense url",
        ] {
            assert!(validate_target(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_session_sends_back_each_cookie_without_its_attributes() {
        let set = [
            HeaderValue::from_static("stampede_session=abc; HttpOnly; Path=/; SameSite=Lax"),
            HeaderValue::from_static("other=1"),
        ];
        assert_eq!(
            session_cookie(&set).unwrap(),
            HeaderValue::from_static("stampede_session=abc; other=1")
        );
        assert!(session_cookie(&[]).is_none());
    }

    #[test]
    fn reads_the_error_code_of_a_contract_body() {
        let body = br#"{"error": "exists", "message": "sku DEMO-001 exists"}"#;
        assert_eq!(error_code(body).as_deref(), Some("exists"));
        assert_eq!(error_code(b"not json"), None);
    }
}
