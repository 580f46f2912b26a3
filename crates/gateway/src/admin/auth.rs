//! Who may use the admin listener's protected endpoints: a caller with
//! `Authorization: Bearer <admin token>` (scripts, `curl`), or a browser
//! holding the operations page's session cookie.
//!
//! The cookie never holds the token. Its value is `ISSUED.TAG`: the Unix
//! time of the login and an HMAC-SHA256 over that time and the token,
//! keyed with a random key drawn when the process starts. So a cookie is
//! worth nothing after a restart, after the token changes (a reload), or
//! after [`SESSION`] (Django's `SESSION_COOKIE_AGE` idea, shorter: this is
//! an operator's console). It is `HttpOnly` (no script reads it) and
//! `SameSite=Strict` (no other site's page sends it); state-changing
//! requests made with it must also carry an `Origin` naming this listener,
//! since `SameSite` alone does not cover sibling subdomains.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use http::header::{AUTHORIZATION, HOST, ORIGIN};
use http::{HeaderMap, Method};
use sha2::Sha256;

use crate::config::AdminToken;
use crate::fields::Fields;
use crate::unix_time;

/// The session cookie's name.
pub(super) const COOKIE_NAME: &str = "stampede_ops";
/// How long a login lasts.
pub(super) const SESSION: Duration = Duration::from_secs(12 * 60 * 60);

/// What a request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    /// It proved it knows the token.
    Granted,
    /// It did not.
    Denied,
    /// It holds a good cookie but comes from another origin (or names
    /// none) with a request that changes something.
    CrossSite,
}

/// The per-process key of session cookies.
pub(super) struct Sessions {
    key: [u8; 32],
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions")
    }
}

impl Sessions {
    /// Sessions with a fresh random key.
    pub(super) fn new() -> Result<Self, getrandom::Error> {
        let mut key = [0; 32];
        getrandom::fill(&mut key)?;
        Ok(Self { key })
    }

    /// What the request with `method` and `headers` may do, given the
    /// configured `token`.
    pub(super) fn access(
        &self,
        method: &Method,
        headers: &HeaderMap,
        token: &AdminToken,
    ) -> Access {
        if bearer(headers).is_some_and(|presented| same(presented.as_bytes(), token.secret())) {
            return Access::Granted;
        }
        let Some(value) = headers.cookie(COOKIE_NAME) else {
            return Access::Denied;
        };
        if !self.verify(value, token, unix_time()) {
            return Access::Denied;
        }
        if method == Method::GET || method == Method::HEAD || same_origin(headers) {
            Access::Granted
        } else {
            Access::CrossSite
        }
    }

    /// The `Set-Cookie` value of a new session for `token`.
    pub(super) fn set_cookie(&self, token: &AdminToken) -> String {
        let issued = unix_time();
        format!(
            "{COOKIE_NAME}={issued}.{}; Path=/ops; Max-Age={}; HttpOnly; SameSite=Strict",
            self.tag(issued, token),
            SESSION.as_secs()
        )
    }

    fn verify(&self, value: &str, token: &AdminToken, now: u64) -> bool {
        let Some((issued, tag)) = value.split_once('.') else {
            return false;
        };
        let (Ok(issued), Ok(tag)) = (issued.parse::<u64>(), hex::decode(tag)) else {
            return false;
        };
        // A clock stepped back a little must not end every session.
        let fresh = issued <= now + 60 && now.saturating_sub(issued) < SESSION.as_secs();
        fresh && self.mac(issued, token).verify_slice(&tag).is_ok()
    }

    fn tag(&self, issued: u64, token: &AdminToken) -> String {
        hex::encode(self.mac(issued, token).finalize().into_bytes())
    }

    fn mac(&self, issued: u64, token: &AdminToken) -> Hmac<Sha256> {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            unreachable!("HMAC takes keys of any length");
        };
        mac.update(issued.to_string().as_bytes());
        mac.update(b"\n");
        mac.update(token.secret().as_bytes());
        mac
    }
}

/// The `Set-Cookie` value that ends a session.
pub(super) fn clear_cookie() -> String {
    format!("{COOKIE_NAME}=; Path=/ops; Max-Age=0; HttpOnly; SameSite=Strict")
}

/// Whether the request's `Origin` names the host it was sent to: a page
/// of this listener, not another site. A request without one is refused:
/// every browser sends it on a `POST`.
pub(super) fn same_origin(headers: &HeaderMap) -> bool {
    let origin = headers.get(ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    match (origin.and_then(|o| o.split_once("://")), host) {
        (Some((_, authority)), Some(host)) => authority.eq_ignore_ascii_case(host),
        _ => false,
    }
}

/// Whether `presented` is the token, compared in constant time.
pub(super) fn same(presented: &[u8], token: &str) -> bool {
    let token = token.as_bytes();
    presented.len() == token.len()
        && presented
            .iter()
            .zip(token)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use http::header::COOKIE;

    use super::*;

    fn token(text: &str) -> AdminToken {
        AdminToken::new(text).unwrap()
    }

    fn headers(pairs: &[(http::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.clone(), HeaderValue::from_str(value).unwrap()))
            .collect()
    }

    fn session_cookie(sessions: &Sessions, token: &AdminToken) -> String {
        let set = sessions.set_cookie(token);
        set.split(';').next().unwrap().to_owned()
    }

    #[test]
    fn the_token_or_a_session_of_it_grants_access() {
        let sessions = Sessions::new().unwrap();
        let good = token("the-admin-token-0123");
        let get = Method::GET;
        let bearer = headers(&[(AUTHORIZATION, "Bearer the-admin-token-0123")]);
        assert_eq!(sessions.access(&get, &bearer, &good), Access::Granted);
        let wrong = headers(&[(AUTHORIZATION, "Bearer the-admin-token-0124")]);
        assert_eq!(sessions.access(&get, &wrong, &good), Access::Denied);
        assert_eq!(
            sessions.access(&get, &HeaderMap::new(), &good),
            Access::Denied
        );
        let cookie = session_cookie(&sessions, &good);
        assert!(!cookie.contains("the-admin-token"), "{cookie}");
        let browser = headers(&[(COOKIE, &format!("theme=dark; {cookie}"))]);
        assert_eq!(sessions.access(&get, &browser, &good), Access::Granted);
        let other = token("another-token-456789");
        assert_eq!(
            sessions.access(&get, &browser, &other),
            Access::Denied,
            "the token changed"
        );
        let restarted = Sessions::new().unwrap();
        assert_eq!(restarted.access(&get, &browser, &good), Access::Denied);
    }

    #[test]
    fn a_session_changes_things_only_from_its_own_origin() {
        let sessions = Sessions::new().unwrap();
        let good = token("the-admin-token-0123");
        let cookie = session_cookie(&sessions, &good);
        let post = |origin: Option<&str>| {
            let mut pairs = vec![(COOKIE, cookie.as_str()), (HOST, "127.0.0.1:9901")];
            pairs.extend(origin.map(|o| (ORIGIN, o)));
            sessions.access(&Method::POST, &headers(&pairs), &good)
        };
        assert_eq!(post(Some("http://127.0.0.1:9901")), Access::Granted);
        assert_eq!(post(Some("https://evil.example")), Access::CrossSite);
        assert_eq!(post(Some("null")), Access::CrossSite);
        assert_eq!(post(None), Access::CrossSite);
    }

    #[test]
    fn stale_forged_or_future_sessions_count_for_nothing() {
        let sessions = Sessions::new().unwrap();
        let good = token("the-admin-token-0123");
        let now = unix_time();
        let value = |issued: u64| format!("{issued}.{}", sessions.tag(issued, &good));
        assert!(sessions.verify(&value(now), &good, now));
        assert!(!sessions.verify(&value(now - SESSION.as_secs()), &good, now));
        assert!(!sessions.verify(&value(now + 3600), &good, now));
        let forged = value(now).replacen(&now.to_string(), &(now + 1).to_string(), 1);
        assert!(!sessions.verify(&forged, &good, now));
        for junk in ["", ".", "x.y", "12", "12.zz"] {
            assert!(!sessions.verify(junk, &good, now), "{junk}");
        }
    }
}
