//! Protocol upgrades (WebSocket) passed through: the gateway forwards the
//! handshake like any request, and once the backend answers `101` it splices
//! the two connections together and copies bytes both ways until either
//! side closes.

use http::HeaderMap;
use http::header::{self, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::fields::Fields;

/// Whether the client asks to switch protocols (`Connection: upgrade` and an
/// `Upgrade` header).
pub(crate) fn requested(headers: &HeaderMap) -> bool {
    headers.has_token("connection", "upgrade") && headers.contains_key(header::UPGRADE)
}

/// Puts back the two hop-by-hop headers an upgrade needs, which the general
/// hop-by-hop stripping removed. `upgrade` is the client's `Upgrade` value.
pub(crate) fn restore_request_headers(headers: &mut HeaderMap, upgrade: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, upgrade);
}

/// Copies bytes between the client and the backend once both sides have
/// switched protocols; runs in its own task so the response can be sent.
pub(crate) fn splice(client: OnUpgrade, backend: OnUpgrade) {
    tokio::spawn(async move {
        let (client, backend) = match tokio::try_join!(client, backend) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%error, "Upgrade failed before the protocols switched.");
                return;
            }
        };
        let (mut client, mut backend) = (TokioIo::new(client), TokioIo::new(backend));
        if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
            tracing::debug!(%error, "Upgraded connection ended with an error.");
        }
    });
}
