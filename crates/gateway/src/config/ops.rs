//! The admin listener's keys beyond its address: `admin_token` (or the
//! `STAMPEDE_ADMIN_TOKEN` environment variable, which `stampede shop`
//! reads too) and `[ops]`, where the operations page finds the sale.
//!
//! The token is kept in an [`AdminToken`] whose `Debug` hides it, so that
//! printing a configuration never prints the secret.

use serde::{Deserialize, Deserializer};

/// The environment variable that holds the admin token; it wins over the
/// file's `admin_token`, as it does for the shop.
pub const ADMIN_TOKEN_ENV: &str = "STAMPEDE_ADMIN_TOKEN";

/// Shortest admin token accepted (the shop's bound): long enough not to
/// be guessed online.
const MIN_LEN: usize = 16;

/// The bearer token of the admin listener.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// The token if it is one: at least 16 visible ASCII characters, since
    /// it travels in an `Authorization` header and a login form.
    pub fn new(token: &str) -> Result<Self, String> {
        if token.len() < MIN_LEN {
            return Err(format!(
                "the admin token must be at least {MIN_LEN} characters"
            ));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "the admin token must be visible ASCII characters (no spaces or control characters)"
                    .into(),
            );
        }
        Ok(Self(token.to_owned()))
    }

    /// The secret itself.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// `admin_token = "..."`, checked as [`AdminToken::new`] does.
pub(super) fn admin_token<'de, D: Deserializer<'de>>(d: D) -> Result<Option<AdminToken>, D::Error> {
    let text = String::deserialize(d)?;
    AdminToken::new(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// `[ops]`: what the operations page (`/ops` on the admin listener) shows
/// beside the pools.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsConfig {
    /// The pool whose backends are shop nodes: the page reads the sale's
    /// stock, orders and job queues from them, with the admin token.
    pub shop_pool: String,
}
