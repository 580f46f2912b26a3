//! Cross-site request forgery protection, as Django does it: a random
//! secret in the `stampede_csrf` cookie, and in every form a token made of
//! that secret masked with fresh random bytes (so that no two pages carry
//! the same token and compression leaks nothing, BREACH). A page POST is
//! served only when its token unmasks to the cookie's secret (compared in
//! constant time) and, if the browser sent an `Origin`, that origin is
//! this site. Another site can make a browser post a form here, but it
//! can neither read the cookie nor a page holding a token.
//!
//! The cookie is set on the first page a visitor sees (the login form
//! included, against login CSRF) and replaced at login and logout.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, HeaderValue};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use super::view::PageError;
use crate::App;
use crate::api::client::Client;
use crate::api::{origin, session};

/// The cookie's name.
pub(super) const COOKIE_NAME: &str = "stampede_csrf";

/// The form field's name.
pub(super) const FIELD: &str = "csrf_token";

/// Bytes of the secret (and of each mask).
const SECRET_BYTES: usize = 32;

/// The cookie lives a year, as Django's: it guards forms, not a session.
const COOKIE_MAX_AGE: u64 = 365 * 24 * 60 * 60;

/// A visitor's CSRF secret, and the cookie to set when it is new.
#[derive(Debug, Clone)]
pub(super) struct Csrf {
    secret: [u8; SECRET_BYTES],
    set_cookie: Option<HeaderValue>,
}

impl Csrf {
    /// A new secret, to be set as the cookie.
    pub(super) fn fresh(https: bool) -> Result<Self, PageError> {
        let secret: [u8; SECRET_BYTES] = random()?;
        let cookie = session::cookie(COOKIE_NAME, &hex::encode(secret), COOKIE_MAX_AGE, https);
        Ok(Self {
            secret,
            set_cookie: Some(cookie),
        })
    }

    /// A token for one form: the secret masked with new random bytes.
    pub(super) fn token(&self) -> String {
        let mask: [u8; SECRET_BYTES] = random().unwrap_or([0; SECRET_BYTES]);
        let masked: Vec<u8> = mask.iter().zip(&self.secret).map(|(m, s)| m ^ s).collect();
        format!("{}{}", hex::encode(mask), hex::encode(masked))
    }

    /// Sets the cookie on `response` if the secret is new.
    pub(super) fn set_cookie(&self, headers: &mut HeaderMap) {
        if let Some(cookie) = &self.set_cookie {
            session::set(headers, cookie.clone());
        }
    }

    /// Whether `token` unmasks to the secret.
    fn accepts(&self, token: &str) -> bool {
        let Ok(bytes) = hex::decode(token) else {
            return false;
        };
        if bytes.len() != 2 * SECRET_BYTES {
            return false;
        }
        let (mask, masked) = bytes.split_at(SECRET_BYTES);
        let unmasked: Vec<u8> = mask.iter().zip(masked).map(|(m, c)| m ^ c).collect();
        unmasked.ct_eq(&self.secret).into()
    }
}

/// The secret of the request's cookie, if it has a well-formed one.
fn from_cookie(headers: &HeaderMap) -> Option<Csrf> {
    let value = session::cookie_value(headers, COOKIE_NAME)?;
    let secret = hex::decode(value).ok()?.try_into().ok()?;
    Some(Csrf {
        secret,
        set_cookie: None,
    })
}

fn random<const N: usize>() -> Result<[u8; N], PageError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|error| {
        tracing::error!(%error, "no randomness for a CSRF secret");
        PageError::Internal
    })?;
    Ok(bytes)
}

/// On a page: the visitor's secret, or a new one.
impl FromRequestParts<Arc<App>> for Csrf {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, PageError> {
        match from_cookie(&parts.headers) {
            Some(csrf) => Ok(csrf),
            None => {
                let client = Client::from_request_parts(parts, app).await?;
                Self::fresh(client.https)
            }
        }
    }
}

/// A form's fields with its token.
#[derive(Debug, Deserialize)]
struct Posted<T> {
    #[serde(rename = "csrf_token", default)]
    token: String,
    #[serde(flatten)]
    fields: T,
}

/// A form with no fields but its token (the path names what it acts on).
#[derive(Debug, Deserialize)]
pub(super) struct Empty {}

/// A posted form, served only from this site with the visitor's token:
/// the only way page handlers read a form, so none can forget the check.
#[derive(Debug)]
pub(super) struct Form<T>(pub(super) T);

/// Why a form was refused: the same answer for every case, so that a
/// forger learns nothing.
const REFUSED: &str = "This form could not be accepted: it came from another site, or it \
     has expired. Go back, reload the page and try again.";

impl<T: DeserializeOwned> FromRequest<Arc<App>> for Form<T> {
    type Rejection = Response;

    async fn from_request(request: Request, app: &Arc<App>) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let csrf = from_cookie(&parts.headers);
        if !origin::allowed(&mut parts, app).await {
            return Err(PageError::Forbidden(REFUSED).into_response());
        }
        let request = Request::from_parts(parts, body);
        let axum::Form(posted) = axum::Form::<Posted<T>>::from_request(request, app)
            .await
            .map_err(|rejection| PageError::BadRequest(rejection.body_text()).into_response())?;
        match csrf {
            Some(csrf) if csrf.accepts(&posted.token) => Ok(Self(posted.fields)),
            _ => Err(PageError::Forbidden(REFUSED).into_response()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csrf() -> Csrf {
        Csrf::fresh(false).expect("randomness")
    }

    #[test]
    fn tokens_differ_and_unmask_to_the_secret() {
        let csrf = csrf();
        let (a, b) = (csrf.token(), csrf.token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 * SECRET_BYTES);
        assert!(csrf.accepts(&a) && csrf.accepts(&b));
    }

    #[test]
    fn other_secrets_and_damaged_tokens_are_refused() {
        let (csrf, other) = (csrf(), csrf());
        assert!(!csrf.accepts(&other.token()));
        assert!(!csrf.accepts(""));
        assert!(!csrf.accepts("zz"));
        assert!(!csrf.accepts(&csrf.token()[2..]));
        assert!(!csrf.accepts(&hex::encode(csrf.secret)), "the bare secret");
    }

    #[test]
    fn the_cookie_round_trips() {
        let csrf = csrf();
        let mut headers = HeaderMap::new();
        csrf.set_cookie(&mut headers);
        let set = headers
            .get(http::header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .expect("a cookie");
        let pair = set.split(';').next().expect("name=value");
        assert!(
            set.contains("SameSite=Lax") && set.contains("HttpOnly"),
            "{set}"
        );
        let mut request = HeaderMap::new();
        request.insert(
            http::header::COOKIE,
            HeaderValue::from_str(pair).expect("header"),
        );
        let back = from_cookie(&request).expect("parsed");
        assert!(back.accepts(&csrf.token()));
    }
}
