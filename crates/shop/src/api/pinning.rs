//! Read-your-writes over read replicas, as Django's multidb pinning
//! middleware does it: a successful write (a non-safe method answered
//! 2xx, or a storefront form's redirect) sets a short-lived cookie, and a request that carries it reads
//! from the primary. So a buyer who just reserved, paid or cancelled sees
//! the order in their list at once, while everyone else's lists, which may
//! be a moment stale, come from a replica.
//!
//! The cookie is `stampede_primary=1` with the session cookie's flags and
//! `Max-Age` = `database.read_your_writes` rounded up to whole seconds.
//! It is set only when the node has replicas: without them every read is
//! on the primary anyway. The pin belongs to the client that wrote, not to
//! the user: another device of the same user reads from a replica, at most
//! `database.replica_max_lag` behind.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::request::Parts;
use stampede_store::{Db, StoreError};

use super::client::Client;
use super::session;
use crate::App;

/// The cookie's name.
pub(crate) const COOKIE_NAME: &str = "stampede_primary";

/// Whether the request's reads must see its client's own writes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pinned(bool);

impl FromRequestParts<Arc<App>> for Pinned {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &Arc<App>) -> Result<Self, Infallible> {
        Ok(Self(
            session::cookie_value(&parts.headers, COOKIE_NAME).is_some(),
        ))
    }
}

/// Whether this node pins: only with replicas and a window.
pub(crate) fn enabled(app: &App) -> bool {
    app.replicas.has_replicas() && !app.config.database.read_your_writes.is_zero()
}

/// Middleware, installed only when [`enabled`]: pins the client to the
/// primary after a successful write.
pub(crate) async fn pin_after_writes(
    State(app): State<Arc<App>>,
    client: Client,
    request: Request,
    next: Next,
) -> Response {
    let write = !request.method().is_safe();
    let mut response = next.run(request).await;
    let window = app.config.database.read_your_writes;
    let status = response.status();
    if write && (status.is_success() || status.is_redirection()) {
        let cookie = session::cookie(COOKIE_NAME, "1", whole_seconds(window), client.https);
        session::set(response.headers_mut(), cookie);
    }
    response
}

/// Runs a read that may be stale: on the primary for a pinned client,
/// else where the replicas say (retried on the primary if a replica fails).
pub(crate) async fn read<T, F, Fut>(
    app: &App,
    Pinned(pinned): Pinned,
    query: F,
) -> Result<T, StoreError>
where
    F: Fn(Db) -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    if pinned {
        query(app.replicas.primary().clone()).await
    } else {
        let (value, _lag) = app.replicas.read_stale_ok(query).await?;
        Ok(value)
    }
}

/// `window` in seconds, rounded up: a pin never ends early.
fn whole_seconds(window: Duration) -> u64 {
    window.as_secs() + u64::from(window.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;
    use http::header::{COOKIE, HeaderValue};

    use super::*;

    #[test]
    fn a_pin_is_rounded_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::from_secs(5)), 5);
        assert_eq!(whole_seconds(Duration::from_millis(5001)), 6);
        assert_eq!(whole_seconds(Duration::from_millis(300)), 1);
    }

    #[test]
    fn the_pin_cookie_is_found_beside_the_session() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("stampede_session=abc; stampede_primary=1"),
        );
        assert_eq!(session::cookie_value(&headers, COOKIE_NAME), Some("1"));
        assert_eq!(session::token(&headers), Some("abc"));
        let pin = session::cookie(COOKIE_NAME, "1", 5, false);
        assert_eq!(
            pin,
            "stampede_primary=1; HttpOnly; SameSite=Lax; Path=/; Max-Age=5"
        );
    }
}
