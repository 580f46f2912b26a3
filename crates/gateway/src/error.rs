//! Errors the gateway answers itself, in the contract's error shape:
//! `{"error": "<code>", "message": "<human text>"}`, plus the `pool` when one
//! was chosen so that an operator reading a `502` knows where to look.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{ALLOW, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};

use crate::admission::Waiting;
use crate::body::{Exchange, ResponseBody};
use crate::telemetry::RequestMetrics;

/// Why the gateway answered instead of a backend.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum GatewayError {
    /// No route matches the Host and path.
    #[error("no route for this host and path")]
    NoRoute,
    /// A static route has no such file (or refuses to say it has).
    #[error("no such file")]
    NoFile,
    /// A static route answers `GET` and `HEAD` only.
    #[error("files are read with GET or HEAD")]
    MethodNotAllowed,
    /// The request URI could not be forwarded.
    #[error("the request URI cannot be forwarded")]
    BadRequest,
    /// The request head is not valid HTTP/1.1, or its body framing is
    /// ambiguous.
    #[error("malformed request")]
    MalformedRequest,
    /// The request head is larger than `limits.max_header_bytes`, or has
    /// too many fields.
    #[error("request head too large")]
    HeadTooLarge,
    /// The body is larger than `limits.max_body_bytes`.
    #[error("request body too large")]
    BodyTooLarge,
    /// The client stopped sending its body.
    #[error("request body not received in time")]
    BodyStalled,
    /// Every backend of the pool is unavailable.
    #[error("no backend of the pool is available")]
    NoBackend,
    /// The route's concurrency limit and queue are full.
    #[error("the route is at its concurrency limit; retry shortly")]
    Overloaded,
    /// The route is at capacity and the visitor waits in its waiting room.
    #[error("the shop is at capacity; you are number {} in line", .0.place)]
    Waiting(Waiting),
    /// The route's rate limit (or the client's share of it) is used up.
    #[error("too many requests; retry in {retry_after} s")]
    RateLimited {
        /// Whole seconds until a request would be admitted.
        retry_after: u64,
    },
    /// The backend could not be reached or broke off.
    #[error("backend {backend} failed: {reason}")]
    Upstream {
        /// The backend that failed.
        backend: SocketAddr,
        /// What happened.
        reason: String,
    },
    /// The backend answered with something that is not an HTTP response.
    #[error("the backend sent {0}")]
    BadResponse(String),
    /// The backend did not answer within the route's timeout.
    #[error("the backend did not answer in time")]
    Timeout,
}

impl GatewayError {
    /// Seconds the client should wait before trying again, where known.
    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Overloaded => Some(1),
            Self::RateLimited { retry_after } => Some(*retry_after),
            Self::Waiting(waiting) => Some(waiting.poll),
            _ => None,
        }
    }

    /// Whether the backend is to blame (it refused, broke off, answered
    /// garbage or too late), as opposed to the client or the gateway.
    pub(crate) fn is_backends_fault(&self) -> bool {
        matches!(
            self,
            Self::Upstream { .. } | Self::BadResponse(_) | Self::Timeout
        )
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::NoRoute | Self::NoFile => (StatusCode::NOT_FOUND, "not_found"),
            Self::BadRequest | Self::MalformedRequest => (StatusCode::BAD_REQUEST, "invalid"),
            Self::HeadTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "header_too_large",
            ),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::BodyStalled => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Self::NoBackend => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            Self::Waiting(_) => (StatusCode::SERVICE_UNAVAILABLE, "waiting_room"),
            Self::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::Upstream { .. } | Self::BadResponse(_) => {
                (StatusCode::BAD_GATEWAY, "bad_gateway")
            }
            Self::Timeout => (StatusCode::GATEWAY_TIMEOUT, "gateway_timeout"),
        }
    }

    /// The answer to the client, naming the pool when one was chosen
    /// (logging server-side failures, never the client's own mistakes, nor
    /// admission control doing its work: under a crowd that would be a line
    /// per request, and `stampede_gateway_admission_refused_total` counts
    /// them).
    pub(crate) fn answer(self, pool: Option<&str>) -> Answer {
        let (status, code) = self.status_and_code();
        if status.is_server_error() && !matches!(self, Self::Overloaded | Self::Waiting(_)) {
            tracing::warn!(pool, error = %self, "Answered {status}.");
        }
        let message = match pool {
            Some(name) => format!("pool `{name}`: {self}"),
            None => self.to_string(),
        };
        let error = error_body(code, &message, pool);
        let mut fields: Vec<_> = self
            .retry_after()
            .map(|seconds| (RETRY_AFTER, HeaderValue::from(seconds)))
            .into_iter()
            .collect();
        if let Self::MethodNotAllowed = self {
            fields.push((ALLOW, HeaderValue::from_static("GET, HEAD")));
        }
        let (content_type, body) = match &self {
            Self::Waiting(waiting) => {
                fields.extend(waiting.fields());
                waiting.body(error)
            }
            _ => ("application/json", format!("{error}\n")),
        };
        Answer {
            status,
            content_type,
            body,
            fields,
        }
    }

    /// The answer as a hyper response, counted in `metrics` when a pool
    /// was known (under the backend that failed, or "none").
    pub(crate) fn into_response(
        self,
        pool: Option<(&str, Arc<RequestMetrics>)>,
        started: Instant,
    ) -> Response<ResponseBody> {
        let answer = self.answer(pool.as_ref().map(|(name, _)| *name));
        let exchange =
            pool.map(|(_, metrics)| Exchange::new(metrics, answer.status.as_u16(), started, None));
        let mut response = Response::new(ResponseBody::full(answer.body, exchange));
        *response.status_mut() = answer.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(answer.content_type));
        for (name, value) in answer.fields {
            headers.append(name, value);
        }
        response
    }
}

/// An answer the gateway writes itself, built once for both paths (the
/// fast path writes it as bytes, hyper as a `Response`).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) content_type: &'static str,
    pub(crate) body: String,
    /// The fields besides `Content-Type` and `Content-Length`, such as
    /// `Retry-After`, and a waiting room's `Set-Cookie`.
    pub(crate) fields: Vec<(HeaderName, HeaderValue)>,
}

/// The contract's error object, with the pool when known.
fn error_body(code: &str, message: &str, pool: Option<&str>) -> serde_json::Value {
    let mut body = serde_json::json!({ "error": code, "message": message });
    if let Some(pool) = pool {
        body["pool"] = pool.into();
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_the_contract_shape() {
        assert_eq!(
            error_body("bad_gateway", "a \"b\"\n", Some("p")).to_string(),
            r#"{"error":"bad_gateway","message":"a \"b\"\n","pool":"p"}"#
        );
    }
}
