//! JSON in and out. The body extractor checks the content type and the
//! size limit and maps every failure to the contract's error body — axum's
//! own `Json` would answer some of them in plain text.

use std::marker::PhantomData;
use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{FromRequest, Request};
use axum::response::Response;
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderValue};
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
        let limit = L::bytes(app);
        let bytes = to_bytes(request.into_body(), limit)
            .await
            .map_err(|_| ApiError::PayloadTooLarge(limit))?;
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::Invalid(format!("malformed JSON body: {e}")))?;
        Ok(Self(value, PhantomData))
    }
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
