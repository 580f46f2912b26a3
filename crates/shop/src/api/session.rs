//! Session cookies: issuing them at login, finding the user of a request,
//! and ending them at logout.
//!
//! The cookie holds 32 random bytes; the store keeps only their BLAKE2
//! hash, so a copy of the sessions table opens no account. Sessions live
//! in the shared store, or in Redis when the node has a `redis_url` (see
//! `session_lookups`): shared either way, which is what makes a session
//! made through one node valid on every other and a logout effective
//! everywhere at once.

use std::sync::Arc;

use super::error::{ApiError, Chain, store_failure};
use crate::App;
use crate::session_lookups::{LookupError, SessionError};
use axum::extract::FromRequestParts;
use blake2::{Blake2s256, Digest};
use http::HeaderMap;
use http::header::{COOKIE, HeaderValue, SET_COOKIE};
use http::request::Parts;

/// The session cookie's name.
pub(crate) const COOKIE_NAME: &str = "stampede_session";

/// The logged-in user of a request; extracting it answers `401` without a
/// live session.
#[derive(Debug, Clone)]
pub(crate) struct CurrentUser(pub String);

impl FromRequestParts<Arc<App>> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let user = user(app, &parts.headers).await?;
        user.map(CurrentUser).ok_or(ApiError::Unauthorized(
            "log in first: no valid session cookie",
        ))
    }
}

/// The user of the request's live session, if it has one.
pub(crate) async fn user(app: &App, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match token(headers) {
        Some(token) => Ok(app.sessions.username(hash(token)).await?),
        None => Ok(None),
    }
}

impl From<LookupError> for ApiError {
    fn from(error: LookupError) -> Self {
        match error {
            LookupError::Overloaded => ApiError::Overloaded,
            LookupError::Stopped => ApiError::Unavailable,
            LookupError::Store(error) => session_failure(&error),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(error: SessionError) -> Self {
        session_failure(&error)
    }
}

/// `503` when the store or Redis is away, `500` for anything else; the
/// details go to the log.
fn session_failure(error: &SessionError) -> ApiError {
    match error {
        SessionError::Store(error) => store_failure(error),
        SessionError::Redis(error) => {
            tracing::warn!(error = %Chain(error), "sessions unavailable");
            ApiError::Unavailable
        }
    }
}

/// The session token the request carries, if any.
pub(crate) fn token(headers: &HeaderMap) -> Option<&str> {
    cookie_value(headers, COOKIE_NAME)
}

/// The value of the request's cookie `name`, if it has a non-empty one.
pub(crate) fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|value| !value.is_empty())
}

/// The store's key for a token.
pub(crate) fn hash(token: &str) -> String {
    hex::encode(Blake2s256::digest(token.as_bytes()))
}

/// Starts a session for `username`; returns its `Set-Cookie` value.
pub(crate) async fn start(
    app: &App,
    username: &str,
    secure: bool,
) -> Result<HeaderValue, ApiError> {
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| {
        tracing::error!(error = %Chain(&e), "no randomness for a session token");
        ApiError::Internal
    })?;
    let token = hex::encode(random);
    let ttl = app.config.sessions.ttl;
    app.sessions
        .store()
        .create(&hash(&token), username, ttl)
        .await?;
    Ok(cookie(COOKIE_NAME, &token, ttl.as_secs(), secure))
}

/// Ends the request's session, if any, on every node.
pub(crate) async fn end(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(token) = token(headers) {
        app.sessions.store().delete(&hash(token)).await?;
    }
    Ok(())
}

/// A `Set-Cookie` value with the contract's flags (those of the session
/// cookie, which every cookie of the shop shares).
pub(crate) fn cookie(name: &str, value: &str, max_age_secs: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text =
        format!("{name}={value}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age_secs}{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Adds `Set-Cookie` to response headers.
pub(crate) fn set(headers: &mut HeaderMap, value: HeaderValue) {
    headers.append(SET_COOKIE, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=1; stampede_session=abc; b=2"),
        );
        assert_eq!(token(&headers), Some("abc"));
        headers.insert(COOKIE, HeaderValue::from_static("stampede_session="));
        assert_eq!(token(&headers), None);
    }

    #[test]
    fn cookies_carry_the_contracts_flags() {
        let plain = cookie(COOKIE_NAME, "t", 60, false);
        assert_eq!(
            plain,
            "stampede_session=t; HttpOnly; SameSite=Lax; Path=/; Max-Age=60"
        );
        let tls = cookie(COOKIE_NAME, "t", 60, true);
        assert!(tls.to_str().is_ok_and(|v| v.ends_with("; Secure")));
    }

    #[test]
    fn hashes_are_hex_and_stable() {
        assert_eq!(hash("x"), hash("x"));
        assert_eq!(hash("x").len(), 64);
        assert_ne!(hash("x"), hash("y"));
    }
}
