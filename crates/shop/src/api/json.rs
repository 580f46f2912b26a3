//! JSON in and out. The body extractor checks the content type and the
//! size limit and maps every failure to the contract's error body — axum's
//! own `Json` would answer some of them in plain text.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderValue};
use http_body_util::BodyExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::App;

/// Which size limit a body is held to.
pub(crate) trait Limit {
    /// The limit, from the configuration.
    fn bytes(app: &App) -> usize;
}

/// `limits.max_body_bytes`: every ordinary call.
#[derive(Debug)]
pub(crate) struct Ordinary;

/// `limits.max_admin_body_bytes`: bulk admin calls.
#[derive(Debug)]
pub(crate) struct Admin;

impl Limit for Ordinary {
    fn bytes(app: &App) -> usize {
        app.config.limits.max_body_bytes
    }
}

impl Limit for Admin {
    fn bytes(app: &App) -> usize {
        app.config.limits.max_admin_body_bytes
    }
}

/// A JSON body parsed into `T`, held to the size limit `L`.
#[derive(Debug)]
pub(crate) struct Json<T, L = Ordinary>(pub T, pub PhantomData<L>);

impl<T: DeserializeOwned, L: Limit> FromRequest<Arc<App>> for Json<T, L> {
    type Rejection = ApiError;

    async fn from_request(request: Request, app: &Arc<App>) -> Result<Self, ApiError> {
        if !is_json(request.headers().get(CONTENT_TYPE)) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = collect(request.into_body(), L::bytes(app)).await?;
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::Invalid(format!("malformed JSON body: {e}")))?;
        Ok(Self(value, PhantomData))
    }
}

/// The whole body, or `413` once it grows past `limit`.
async fn collect(mut body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut buffer = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::Invalid(format!("the request body could not be read: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buffer.len() + data.len() > limit {
            linger(body).await;
            return Err(ApiError::PayloadTooLarge(limit));
        }
        buffer.extend_from_slice(&data);
    }
    Ok(buffer.freeze())
}

/// Most of an oversized body read and thrown away before answering `413`.
const LINGER_BYTES: usize = 1 << 20;

/// How long an oversized body is read and thrown away, at most.
const LINGER_TIME: Duration = Duration::from_secs(1);

/// Reads and discards the rest of an oversized body (within bounds), as
/// nginx's lingering close does: a server that answers and closes while
/// the client (or the gateway) is still sending makes the kernel reset
/// the connection, and the reset destroys the `413` before it is read.
async fn linger(mut body: Body) {
    let drain = async {
        let mut left = LINGER_BYTES;
        while let Some(Ok(frame)) = body.frame().await {
            let size = frame.data_ref().map_or(0, Bytes::len);
            if size >= left {
                return;
            }
            left -= size;
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

/// `application/json`, with or without parameters such as a charset.
fn is_json(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// A response with `value` as its JSON body.
pub(crate) fn response(status: StatusCode, value: &impl Serialize) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    raw(status, body)
}

/// A response whose body is already JSON text (a replayed `201`).
pub(crate) fn raw(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::is_json;
    use http::HeaderValue;

    #[test]
    fn json_content_types() {
        let check = |v: &str| is_json(Some(&HeaderValue::from_str(v).expect("header")));
        assert!(check("application/json"));
        assert!(check("Application/JSON; charset=utf-8"));
        assert!(!check("text/plain"));
        assert!(!check("application/jsonp"));
        assert!(!is_json(None));
    }
}
