//! Logging in and out with forms, over the API's own login (the same
//! login limits, password check and new session id).
//!
//! After login the visitor goes back where they came from (`next`), but
//! only to a path of this site: `//evil.test` or `https://...` would make
//! the login form an open redirect.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Query, State};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, StatusCode};
use maud::{Markup, html};
use serde::Deserialize;

use super::csrf::{Csrf, Empty, Form};
use super::view::{PageError, Visitor, see_other};
use crate::App;
use crate::api::auth::{Credentials, log_in};
use crate::api::client::Client;
use crate::api::{ApiError, session};

/// Where to go after logging in.
#[derive(Debug, Deserialize)]
pub(super) struct Next {
    next: Option<String>,
}

/// `GET /login`.
pub(super) async fn form(visitor: Visitor, Query(Next { next }): Query<Next>) -> Response {
    let next = safe_next(next.as_deref());
    visitor.page(
        StatusCode::OK,
        "Log in",
        &login_view(&visitor, next, "", None),
    )
}

fn login_view(visitor: &Visitor, next: &str, username: &str, problem: Option<&str>) -> Markup {
    html! {
        h1 { "Log in" }
        @if let Some(problem) = problem {
            p.message.error role="alert" { (problem) }
        }
        form.login method="post" action="/login" {
            (visitor.csrf_field())
            input type="hidden" name="next" value=(next);
            label { "Username" input name="username" autocomplete="username" required value=(username); }
            label { "Password" input name="password" type="password" autocomplete="current-password" required; }
            button.primary type="submit" { "Log in" }
        }
    }
}

/// A local path to go to after login, or `/`.
fn safe_next(next: Option<&str>) -> &str {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or("/")
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

/// What a login attempt needs from the request besides the form.
#[derive(Debug)]
pub(super) struct Attempt {
    client: Client,
    headers: HeaderMap,
}

impl FromRequestParts<Arc<App>> for Attempt {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, PageError> {
        let client = Client::from_request_parts(parts, app).await?;
        Ok(Self {
            client,
            headers: parts.headers.clone(),
        })
    }
}

/// `POST /login`: on success a new session and a new CSRF secret (as
/// Django rotates it), and on to `next`; else the form again, explained.
pub(super) async fn submit(
    State(app): State<Arc<App>>,
    visitor: Visitor,
    attempt: Attempt,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    let next = safe_next(Some(&form.next)).to_owned();
    let credentials = Credentials {
        username: form.username,
        password: form.password,
    };
    match log_in(&app, attempt.client, &attempt.headers, &credentials).await {
        Ok(cookie) => {
            let mut response = see_other(&next);
            session::set(response.headers_mut(), cookie);
            Csrf::fresh(attempt.client.https)?.set_cookie(response.headers_mut());
            Ok(response)
        }
        Err(error) => {
            let (status, problem) = match &error {
                ApiError::BadCredentials => (
                    StatusCode::UNAUTHORIZED,
                    "Wrong username or password.".to_owned(),
                ),
                ApiError::Invalid(_) => (
                    StatusCode::BAD_REQUEST,
                    "Enter both your username and your password.".to_owned(),
                ),
                ApiError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, format!("{error}.")),
                _ => return Err(error.into()),
            };
            let view = login_view(&visitor, &next, &credentials.username, Some(&problem));
            Ok(visitor.page(status, "Log in", &view))
        }
    }
}

/// `POST /logout`: the session ends on every node; a new CSRF secret.
pub(super) async fn logout(
    State(app): State<Arc<App>>,
    attempt: Attempt,
    Form(Empty {}): Form<Empty>,
) -> Result<Response, PageError> {
    session::end(&app, &attempt.headers).await?;
    let mut response = see_other("/");
    let https = attempt.client.https;
    session::set(
        response.headers_mut(),
        session::cookie(session::COOKIE_NAME, "", 0, https),
    );
    Csrf::fresh(https)?.set_cookie(response.headers_mut());
    Ok(response.into_response())
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(safe_next(Some("/orders")), "/orders");
        assert_eq!(safe_next(Some("//evil.test/x")), "/");
        assert_eq!(safe_next(Some("https://evil.test")), "/");
        assert_eq!(safe_next(Some("/\\evil.test")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
