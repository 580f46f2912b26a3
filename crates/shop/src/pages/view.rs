//! What every page shares: the visitor (their user and CSRF secret), the
//! layout, redirects, money and times, and the error pages.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::response::{Html, IntoResponse, Redirect, Response};
use http::StatusCode;
use http::request::Parts;
use maud::{DOCTYPE, Markup, html};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::assets;
use super::csrf::{Csrf, FIELD};
use crate::App;
use crate::api::{ApiError, session};

/// Who is looking: their user, if logged in, and their CSRF secret.
#[derive(Debug)]
pub(super) struct Visitor {
    pub(super) user: Option<String>,
    pub(super) csrf: Csrf,
}

impl FromRequestParts<Arc<App>> for Visitor {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, PageError> {
        let csrf = Csrf::from_request_parts(parts, app).await?;
        let user = session::user(app, &parts.headers).await?;
        Ok(Self { user, csrf })
    }
}

impl Visitor {
    /// A page with `title` and `main`, in the layout.
    pub(super) fn page(&self, status: StatusCode, title: &str, main: &Markup) -> Response {
        let body = layout(title, Some(self), main);
        let mut response = (status, Html(body.into_string())).into_response();
        self.csrf.set_cookie(response.headers_mut());
        response
    }

    /// The hidden field every form carries.
    pub(super) fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name=(FIELD) value=(self.csrf.token()); }
    }

    /// The user, or a redirect to the login form that comes back to `here`.
    pub(super) fn user_or_login(&self, here: &str) -> Result<&str, LoginFirst> {
        self.user
            .as_deref()
            .ok_or_else(|| LoginFirst(here.to_owned()))
    }
}

/// A redirect to the login form that comes back to a path.
#[derive(Debug)]
pub(super) struct LoginFirst(String);

impl IntoResponse for LoginFirst {
    fn into_response(self) -> Response {
        to_login(&self.0)
    }
}

/// The page frame: the header with the visitor's name and logout button,
/// the stylesheet and the script.
fn layout(title: &str, visitor: Option<&Visitor>, main: &Markup) -> Markup {
    let user = visitor.and_then(|v| v.user.as_deref());
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · stampede" }
                link rel="icon" href=(assets::icon());
                link rel="stylesheet" href=(assets::css());
                script src=(assets::js()) defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "stampede" }
                    nav {
                        @if let (Some(user), Some(visitor)) = (user, visitor) {
                            a href="/orders" { "My orders" }
                            span.user { (user) }
                            form.inline method="post" action="/logout" {
                                (visitor.csrf_field())
                                button.link type="submit" { "Log out" }
                            }
                        } @else {
                            a href="/login" { "Log in" }
                        }
                    }
                }
                main { (main) }
            }
        }
    }
}

/// `303 See Other` to `path` (the POST-redirect-GET answer).
pub(super) fn see_other(path: &str) -> Response {
    Redirect::to(path).into_response()
}

/// The login form, coming back to `here` once logged in.
pub(super) fn to_login(here: &str) -> Response {
    see_other(&format!("/login?next={}", encode(here)))
}

/// What [`encode`] leaves as it is: RFC 3986's unreserved characters.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `text` percent-encoded for a path segment or a query value.
pub(super) fn encode(text: &str) -> String {
    utf8_percent_encode(text, UNRESERVED).to_string()
}

/// Cents as `$19.99`.
pub(super) fn price(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}${}.{:02}", cents / 100, cents % 100)
}

/// The query of a page a refused form redirected to: the API's error code.
#[derive(Debug, serde::Deserialize)]
pub(super) struct Refused {
    pub(super) error: Option<String>,
}

/// What a refusal means to a buyer, by the API's error code; `None` for
/// codes a page does not explain (they get the API's own message).
pub(super) fn explain(code: &str) -> Option<&'static str> {
    Some(match code {
        "sold_out" => {
            "Sold out: every unit is taken. Units of unpaid reservations come back when \
             they expire, so it may be worth another look in a few minutes."
        }
        "limit_exceeded" => "You already hold as many of these as one customer may buy.",
        "not_started" => "The sale has not started yet: wait for the countdown.",
        "overloaded" | "unavailable" => {
            "Too many buyers at once right now. Please try again in a moment."
        }
        "not_payable" => "This order cannot be paid any more: only a reservation can be paid.",
        "not_cancellable" => "This order cannot be cancelled: only a reservation can be.",
        _ => return None,
    })
}

/// A page's error answer.
#[derive(Debug, thiserror::Error)]
pub(super) enum PageError {
    /// No such product or order (`404`).
    #[error("{0}")]
    NotFound(&'static str),
    /// A form refused (`403`).
    #[error("{0}")]
    Forbidden(&'static str),
    /// A malformed request (`400`).
    #[error("{0}")]
    BadRequest(String),
    /// A bug or an outage; the details are logged (`500`).
    #[error("Something went wrong on our side. Please try again.")]
    Internal,
    /// The store is away or the node sheds load (`503`).
    #[error("Too many buyers at once right now. Please try again in a moment.")]
    Unavailable,
}

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::Overloaded | ApiError::Unavailable => Self::Unavailable,
            ApiError::NotFound(_) => Self::NotFound("There is nothing here."),
            other => {
                tracing::warn!(error = %other, "page failed");
                Self::Internal
            }
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        let title = status.canonical_reason().unwrap_or("Error");
        let main = html! {
            h1 { (title) }
            p.message.error { (self.to_string()) }
            p { a href="/" { "Back to the sale" } }
        };
        // No visitor: an error page carries no form, so no CSRF token.
        let body = layout(title, None, &main);
        (status, Html(body.into_string())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_dollars_and_cents() {
        assert_eq!(price(1999), "$19.99");
        assert_eq!(price(5), "$0.05");
        assert_eq!(price(-250), "-$2.50");
    }

    #[test]
    fn a_next_path_is_encoded() {
        assert_eq!(encode("/products/A-1 B"), "%2Fproducts%2FA-1%20B");
    }
}
