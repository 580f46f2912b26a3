//! Every error a client can get, as the contract writes it:
//! `{"error": "<code>", "message": "<human text>"}` with the right status;
//! and how the details a client is not told are logged.
//!
//! Errors are logged where a handler gives up, inside the request's span
//! (see `observe`), so each line carries the request's id and route; the
//! error is written with its whole chain of causes ([`Chain`]).

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{self, HeaderValue};
use stampede_store::StoreError;

use super::json;

/// An answer other than success.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ApiError {
    /// No valid session, or no valid admin token (`401 unauthorized`).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Wrong username or password (`401 bad_credentials`).
    #[error("wrong username or password")]
    BadCredentials,
    /// The request is malformed (`400 invalid`).
    #[error("{0}")]
    Invalid(String),
    /// Nothing here (`404 not_found`).
    #[error("{0}")]
    NotFound(String),
    /// The thing to create exists (`409 exists`).
    #[error("{0}")]
    Exists(String),
    /// A cookie-authenticated call from another site (`403 forbidden`).
    #[error("{0}")]
    Forbidden(&'static str),
    /// The sale has not started (`403 not_started`).
    #[error("the sale of this product has not started yet")]
    NotStarted,
    /// Not enough stock (`409 sold_out`).
    #[error("not enough stock left")]
    SoldOut,
    /// Over the per-user limit (`409 limit_exceeded`).
    #[error("this would exceed the per-user limit of this product")]
    LimitExceeded,
    /// The idempotency key was used for another request (`422`).
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyMismatch,
    /// The order cannot be paid in its state (`409 not_payable`).
    #[error("{0}")]
    NotPayable(String),
    /// The order cannot be cancelled in its state (`409 not_cancellable`).
    #[error("{0}")]
    NotCancellable(String),
    /// Too many failed logins (`429 rate_limited`), retry after n seconds.
    #[error("too many failed logins; try again in {0} s")]
    RateLimited(u64),
    /// Shedding load (`503 overloaded`).
    #[error("too many requests are waiting; retry shortly")]
    Overloaded,
    /// The store cannot be reached (`503 unavailable`).
    #[error("the store is unavailable; retry shortly")]
    Unavailable,
    /// The body is over the limit (`413 payload_too_large`).
    #[error("the request body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    /// The body is not JSON (`415 unsupported_media_type`).
    #[error("the request body must be JSON, sent with Content-Type: application/json")]
    UnsupportedMediaType,
    /// The method is not served at this path (`405 method_not_allowed`).
    #[error("this method is not allowed here")]
    MethodNotAllowed,
    /// A bug or corrupt data; details are logged, not sent (`500 internal`).
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// The contract's error code, such as `sold_out`.
    pub(crate) fn code(&self) -> &'static str {
        self.status_and_code().1
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            Self::Unauthorized(_) => (S::UNAUTHORIZED, "unauthorized"),
            Self::BadCredentials => (S::UNAUTHORIZED, "bad_credentials"),
            Self::Invalid(_) => (S::BAD_REQUEST, "invalid"),
            Self::NotFound(_) => (S::NOT_FOUND, "not_found"),
            Self::Exists(_) => (S::CONFLICT, "exists"),
            Self::Forbidden(_) => (S::FORBIDDEN, "forbidden"),
            Self::NotStarted => (S::FORBIDDEN, "not_started"),
            Self::SoldOut => (S::CONFLICT, "sold_out"),
            Self::LimitExceeded => (S::CONFLICT, "limit_exceeded"),
            Self::IdempotencyMismatch => (S::UNPROCESSABLE_ENTITY, "idempotency_mismatch"),
            Self::NotPayable(_) => (S::CONFLICT, "not_payable"),
            Self::NotCancellable(_) => (S::CONFLICT, "not_cancellable"),
            Self::RateLimited(_) => (S::TOO_MANY_REQUESTS, "rate_limited"),
            Self::Overloaded => (S::SERVICE_UNAVAILABLE, "overloaded"),
            Self::Unavailable => (S::SERVICE_UNAVAILABLE, "unavailable"),
            Self::PayloadTooLarge(_) => (S::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnsupportedMediaType => (S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            Self::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::Internal => (S::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// Seconds a client should wait before retrying, where that is known.
    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited(seconds) => Some((*seconds).max(1)),
            Self::Overloaded | Self::Unavailable => Some(1),
            _ => None,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict => Self::Exists("already exists".into()),
            other => store_failure(&other),
        }
    }
}

impl From<std::sync::Arc<StoreError>> for ApiError {
    /// Errors of loads shared by several requests (the catalogue's).
    fn from(error: std::sync::Arc<StoreError>) -> Self {
        store_failure(&error)
    }
}

/// `503` for an outage (logged at WARN: the node is fine, its store is
/// not), `500` for anything else (at ERROR); the details go to the log.
pub(crate) fn store_failure(error: &StoreError) -> ApiError {
    let chain = Chain(error);
    if let StoreError::Unavailable(_) = error {
        tracing::warn!(error = %chain, "store unavailable");
        ApiError::Unavailable
    } else {
        tracing::error!(error = %chain, "store error");
        ApiError::Internal
    }
}

/// An error with its causes, `outer: inner: innermost`, for the log. A
/// cause whose text its wrapper already shows (`{0}` in a `thiserror`
/// message) is not repeated.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(error) = cause {
            let text = error.to_string();
            if !shown.contains(&text) {
                shown.push_str(": ");
                shown.push_str(&text);
            }
            cause = error.source();
        }
        f.write_str(&shown)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = serde_json::json!({ "error": code, "message": self.to_string() });
        let mut response = json::response(status, &body);
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if matches!(self, Self::Unauthorized(_)) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("placing the order failed")]
        Quiet(#[source] std::io::Error),
        #[error("the store is away: {0}")]
        Telling(#[source] std::io::Error),
    }

    fn io(text: &str) -> std::io::Error {
        std::io::Error::other(text.to_owned())
    }

    #[test]
    fn a_chain_shows_every_cause_once() {
        let quiet = Outer::Quiet(io("connection refused"));
        assert_eq!(
            Chain(&quiet).to_string(),
            "placing the order failed: connection refused"
        );
        let telling = Outer::Telling(io("connection refused"));
        assert_eq!(
            Chain(&telling).to_string(),
            "the store is away: connection refused"
        );
        assert_eq!(Chain(&io("alone")).to_string(), "alone");
    }
}
