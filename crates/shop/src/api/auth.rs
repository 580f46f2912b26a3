//! Logging in and out, and who am I.
//!
//! Failed logins are counted per client IP and per username in the shared
//! store (as django-axes does); once either count reaches its limit in the
//! current window, logins from that IP or for that user get `429` without
//! the password even being checked, until the window ends. Successful
//! logins are not counted, so a crowd of real buyers behind one address
//! is not locked out by its own success.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::json;
use stampede_store::{login_limits, now_ms, users};

use super::client::Client;
use super::error::ApiError;
use super::json::{self, Json};
use super::origin::SameOrigin;
use super::session::{self, CurrentUser};
use crate::App;

/// `POST /api/v1/login` body, and the login form's fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Credentials {
    pub(crate) username: String,
    pub(crate) password: String,
}

/// `POST /api/v1/login`.
pub(crate) async fn login(
    State(app): State<Arc<App>>,
    client: Client,
    headers: HeaderMap,
    Json(credentials, ..): Json<Credentials>,
) -> Result<Response, ApiError> {
    let cookie = log_in(&app, client, &headers, &credentials).await?;
    let mut response = json::response(StatusCode::OK, &json!({ "username": credentials.username }));
    session::set(response.headers_mut(), cookie);
    Ok(response)
}

/// Checks the credentials within the login limits and starts a session:
/// the one login path of the API and of the storefront's login form.
/// Returns the session's `Set-Cookie` value.
pub(crate) async fn log_in(
    app: &App,
    client: Client,
    headers: &HeaderMap,
    credentials: &Credentials,
) -> Result<HeaderValue, ApiError> {
    if credentials.username.is_empty() || credentials.password.is_empty() {
        return Err(ApiError::Invalid(
            "username and password must not be empty".into(),
        ));
    }
    let limits = &app.config.login_limits;
    let window = i64::try_from(limits.window.as_millis()).unwrap_or(i64::MAX);
    let now = now_ms();
    let window_start = now - now.rem_euclid(window);
    let buckets = [
        format!("ip:{}", client.ip),
        format!("user:{}", credentials.username),
    ];
    let buckets = [buckets[0].as_str(), buckets[1].as_str()];
    let counts = login_limits::failures(&app.db, &buckets, window_start).await?;
    if counts[0] >= limits.failures_per_ip || counts[1] >= limits.failures_per_user {
        let seconds = (window_start + window - now + 999) / 1000;
        return Err(ApiError::RateLimited(u64::try_from(seconds).unwrap_or(1)));
    }

    let hash = users::password_hash(&app.db, &credentials.username).await?;
    if !app
        .passwords
        .verify(credentials.password.clone(), hash)
        .await
    {
        login_limits::record_failure(&app.db, &buckets, window_start).await?;
        return Err(ApiError::BadCredentials);
    }
    // A new session id at every login (no session fixation): the old one,
    // if the client had one, ends.
    session::end(app, headers).await?;
    session::start(app, &credentials.username, client.https).await
}

/// `POST /api/v1/logout`: `204` whether or not there was a session.
pub(crate) async fn logout(
    State(app): State<Arc<App>>,
    _: SameOrigin,
    client: Client,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    session::end(&app, &headers).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    session::set(
        response.headers_mut(),
        session::cookie(session::COOKIE_NAME, "", 0, client.https),
    );
    Ok(response)
}

/// `GET /api/v1/me`.
pub(crate) async fn me(CurrentUser(username): CurrentUser) -> Response {
    json::response(StatusCode::OK, &json!({ "username": username }))
}
