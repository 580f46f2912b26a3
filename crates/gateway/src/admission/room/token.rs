//! Signed cookie values: a visitor's pass or ticket, which nobody can forge
//! or alter without the room's key.
//!
//! A value is `p.UNTIL.TAG` (a pass, good until the Unix time `UNTIL`) or
//! `t.LINE.NUMBER.SEEN.TAG` (ticket `NUMBER` of the line `LINE`, last asked
//! about at the Unix time `SEEN`). `TAG` is the first 128 bits of
//! HMAC-SHA256, keyed with the room's key, over the route's scope and the
//! rest of the value, in hex; half of the MAC is enough (RFC 2104 §5) and
//! keeps the cookie short. A value that does not check out counts as no
//! cookie at all.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Bytes of the MAC kept in a cookie.
const TAG_BYTES: usize = 16;

/// What a visitor's cookie says, once its tag checks out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Token {
    /// In, until this Unix time.
    Pass { until: u64 },
    /// Waiting in line `line` with this number; last asked about at the
    /// Unix time `seen`.
    Ticket { line: u64, number: u64, seen: u64 },
}

/// Signs and checks the cookie values of one room.
#[derive(Clone)]
pub(super) struct Signer {
    /// Keyed, and already fed the scope: cloned for each value.
    mac: Hmac<Sha256>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signer")
    }
}

impl Signer {
    /// A signer with `key` for the route `scope`: a value signed for one
    /// route is worth nothing on another, even with the same key.
    pub(super) fn new(key: &[u8], scope: &str) -> Self {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
            unreachable!("HMAC takes keys of any length");
        };
        mac.update(scope.as_bytes());
        mac.update(b"\n");
        Self { mac }
    }

    /// The cookie value for `token`.
    pub(super) fn sign(&self, token: Token) -> String {
        let payload = match token {
            Token::Pass { until } => format!("p.{until}"),
            Token::Ticket { line, number, seen } => format!("t.{line:x}.{number}.{seen}"),
        };
        let tag = self.mac(&payload).finalize().into_bytes();
        format!("{payload}.{}", hex::encode(&tag[..TAG_BYTES]))
    }

    /// What `value` says, if it was signed by this signer and not altered.
    pub(super) fn verify(&self, value: &str) -> Option<Token> {
        let (payload, tag) = value.rsplit_once('.')?;
        let tag = hex::decode(tag).ok().filter(|t| t.len() == TAG_BYTES)?;
        // Compared in constant time: no timing tells how much of a guess
        // was right.
        self.mac(payload).verify_truncated_left(&tag).ok()?;
        parse(payload)
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(payload.as_bytes());
        mac
    }
}

/// Reads a signed payload back.
fn parse(payload: &str) -> Option<Token> {
    let parts: Vec<&str> = payload.split('.').collect();
    match parts[..] {
        ["p", until] => Some(Token::Pass {
            until: until.parse().ok()?,
        }),
        ["t", line, number, seen] => Some(Token::Ticket {
            line: u64::from_str_radix(line, 16).ok()?,
            number: number.parse().ok()?,
            seen: seen.parse().ok()?,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASS: Token = Token::Pass {
        until: 1_900_000_000,
    };
    const TICKET: Token = Token::Ticket {
        line: 0xfeed,
        number: 42,
        seen: 1_800_000_000,
    };

    fn signer() -> Signer {
        Signer::new(b"a key of the room, long enough", "shop.test/api")
    }

    #[test]
    fn signed_values_read_back() {
        let signer = signer();
        for token in [PASS, TICKET] {
            let value = signer.sign(token);
            assert!(
                value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.')
            );
            assert_eq!(signer.verify(&value), Some(token), "{value}");
        }
    }

    #[test]
    fn forged_or_altered_values_count_for_nothing() {
        let signer = signer();
        let value = signer.sign(PASS);
        let (payload, tag) = value.rsplit_once('.').unwrap();
        let later = payload.replace("1900", "2900");
        let mut flipped = tag.to_owned().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        for forged in [
            format!("{later}.{tag}"),
            format!("{payload}.{flipped}"),
            format!("{payload}.{}", &tag[..16]),
            format!("{payload}."),
            payload.to_owned(),
            "p.1900000000".to_owned(),
            String::new(),
        ] {
            assert_eq!(signer.verify(&forged), None, "{forged}");
        }
        let other_key = Signer::new(b"another key", "shop.test/api");
        assert_eq!(other_key.verify(&value), None);
        let other_route = Signer::new(b"a key of the room, long enough", "shop.test/admin");
        assert_eq!(other_route.verify(&value), None);
    }
}
