//! The operations page, `/ops` on the admin listener: a login form that
//! trades the admin token for a session cookie (see `auth`), a page shell
//! and one script that polls `GET /ops/state` every second and draws every
//! pool's backends (with a drain button each) and the sale.
//!
//! The HTML is fixed text: nothing a request says is ever written into it
//! (the script fills the page with `textContent`), so there is nothing to
//! escape. Every answer carries a Content-Security-Policy that allows
//! scripts, styles and fetches from this listener only, no inline code and
//! no framing, with `nosniff`, `Referrer-Policy: same-origin` and
//! `no-store`.

use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, HeaderValue, LOCATION, REFERRER_POLICY, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use serde_json::json;

use super::auth::{self, Access};
use super::{Admin, drain, drain_request, json, state, text, unauthorized};
use crate::Shared;
use crate::body::ResponseBody;
use crate::config::{ADMIN_TOKEN_ENV, AdminToken};

const PAGE: &str = include_str!("ops/page.html");
const LOGIN: &str = include_str!("ops/login.html");
const SCRIPT: &str = include_str!("ops/ops.js");
const STYLE: &str = include_str!("ops/ops.css");
const ICON: &str = include_str!("ops/icon.svg");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The largest login form read.
const MAX_FORM: usize = 4096;

/// Answers a request under `/ops`.
pub(super) async fn route(
    req: Request<Incoming>,
    shared: &Shared,
    admin: &Admin,
) -> Response<ResponseBody> {
    let mut response = answer(req, shared, admin).await;
    secure(&mut response);
    response
}

async fn answer(req: Request<Incoming>, shared: &Shared, admin: &Admin) -> Response<ResponseBody> {
    let path = req.uri().path().to_owned();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/ops/ops.js") => text(StatusCode::OK, SCRIPT.into(), "text/javascript"),
        (&Method::GET, "/ops/ops.css") => text(StatusCode::OK, STYLE.into(), "text/css"),
        (&Method::GET, "/ops/icon.svg") => text(StatusCode::OK, ICON.into(), "image/svg+xml"),
        _ => match &shared.config.admin_token {
            Some(token) => with_token(req, &path, token, shared, admin).await,
            None => no_token(),
        },
    }
}

async fn with_token(
    req: Request<Incoming>,
    path: &str,
    token: &AdminToken,
    shared: &Shared,
    admin: &Admin,
) -> Response<ResponseBody> {
    let access = admin.sessions.access(req.method(), req.headers(), token);
    match (req.method(), path, access) {
        (&Method::GET, "/ops/login", _) => login_page(StatusCode::OK, None),
        (&Method::POST, "/ops/login", _) => login(req, token, admin).await,
        (&Method::POST, "/ops/logout", _) => {
            let mut response = see_other("/ops/login");
            set_cookie(&mut response, &auth::clear_cookie());
            response
        }
        (&Method::GET, "/ops", Access::Granted) => html(StatusCode::OK, PAGE.into()),
        (&Method::GET, "/ops", _) => see_other("/ops/login"),
        (&Method::GET, "/ops/state", Access::Granted) => {
            let sale = admin.sale.read(shared).await;
            let mut state = state(shared, admin);
            state["sale"] = (*sale).clone();
            json(StatusCode::OK, &state)
        }
        (&Method::POST, _, Access::Granted) => {
            match path.strip_prefix("/ops").and_then(drain_request) {
                Some((pool, backend, draining)) => {
                    let (pool, backend) = (decoded(pool), decoded(backend));
                    drain(shared, &pool, &backend, draining)
                }
                None => not_found(),
            }
        }
        (_, _, Access::CrossSite) => refusal(
            StatusCode::FORBIDDEN,
            "cross_site",
            "this request must come from the operations page itself (its Origin did not match)",
        ),
        (&Method::GET, "/ops/state", Access::Denied) | (&Method::POST, _, Access::Denied) => {
            unauthorized("log in at /ops/login, or send Authorization: Bearer <admin token>")
        }
        _ => not_found(),
    }
}

/// `POST /ops/login`: the token from the form, for a session cookie.
async fn login(
    req: Request<Incoming>,
    token: &AdminToken,
    admin: &Admin,
) -> Response<ResponseBody> {
    if !auth::same_origin(req.headers()) {
        return login_page(
            StatusCode::FORBIDDEN,
            Some("The login came from another site; log in from this page."),
        );
    }
    let body = match Limited::new(req.into_body(), MAX_FORM).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return login_page(StatusCode::BAD_REQUEST, Some("The form was too large.")),
    };
    let presented = form_field(&body, "token").unwrap_or_default();
    if !auth::same(presented.as_bytes(), token.secret()) {
        tracing::warn!("Operations page: a login with a wrong admin token.");
        return login_page(
            StatusCode::UNAUTHORIZED,
            Some("That is not the admin token."),
        );
    }
    let mut response = see_other("/ops");
    set_cookie(&mut response, &admin.sessions.set_cookie(token));
    response
}

/// Field `name` of an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?;
    let value = body
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))?;
    Some(decoded(&value.replace('+', " ")))
}

/// A percent-encoded path segment or form value, decoded.
fn decoded(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// What `/ops` says while there is no token to log in with.
fn no_token() -> Response<ResponseBody> {
    let message = format!(
        "The operations page needs an admin token, and none is configured: set admin_token in the gateway's configuration or {ADMIN_TOKEN_ENV} in its environment, then restart or reload it."
    );
    text(
        StatusCode::FORBIDDEN,
        format!("{message}\n"),
        "text/plain; charset=utf-8",
    )
}

/// The login form, with `message` (always one of this module's own
/// sentences) above it.
fn login_page(status: StatusCode, message: Option<&'static str>) -> Response<ResponseBody> {
    let message = message.map_or(String::new(), |m| format!("<p class=\"error\">{m}</p>"));
    html(status, LOGIN.replace("<!--message-->", &message))
}

fn html(status: StatusCode, body: String) -> Response<ResponseBody> {
    text(status, body, "text/html; charset=utf-8")
}

fn see_other(location: &'static str) -> Response<ResponseBody> {
    let mut response = text(StatusCode::SEE_OTHER, String::new(), "text/plain");
    response
        .headers_mut()
        .insert(LOCATION, HeaderValue::from_static(location));
    response
}

fn set_cookie(response: &mut Response<ResponseBody>, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
}

fn refusal(status: StatusCode, code: &str, message: &str) -> Response<ResponseBody> {
    json(status, &json!({ "error": code, "message": message }))
}

fn not_found() -> Response<ResponseBody> {
    refusal(StatusCode::NOT_FOUND, "not_found", "no such page")
}

/// The headers that keep the page to itself.
fn secure(response: &mut Response<ResponseBody>) {
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Not `no-referrer`: under it a browser sends `Origin: null` on the
    // page's own POSTs, and the origin check would refuse them.
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::form_field;

    #[test]
    fn form_fields_are_found_and_decoded() {
        let body = b"next=%2Fops&token=a%2Bb+c%26d&x=1";
        assert_eq!(form_field(body, "token").as_deref(), Some("a+b c&d"));
        assert_eq!(form_field(body, "next").as_deref(), Some("/ops"));
        assert_eq!(form_field(body, "missing"), None);
        assert_eq!(form_field(b"tokens=1", "token"), None);
    }
}
