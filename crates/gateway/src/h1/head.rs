//! Message heads on the fast path: how a body is delimited, and the heads
//! the gateway writes on either side, with hop-by-hop fields left out and
//! its own fields added.

use std::mem::MaybeUninit;

use http::HeaderValue;
use httparse::Header;

use crate::fields::{Fields, is_hop_by_hop};
use crate::forwarded::FORWARDING_FIELDS;

/// Most header fields a head may have; beyond it the client gets `431`.
pub(crate) const MAX_FIELDS: usize = 100;

/// Room for a head's fields, left uninitialised: httparse writes what it
/// parses, and zeroing 100 entries (3 KiB) per head would cost more than
/// parsing a typical one.
pub(crate) fn field_storage<'b>() -> [MaybeUninit<Header<'b>>; MAX_FIELDS] {
    [const { MaybeUninit::uninit() }; MAX_FIELDS]
}

/// How a message body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding, relayed as it is.
    Chunked,
    /// Until the sender closes the connection (responses only).
    UntilClose,
}

/// A request whose framing is ambiguous: the classic request-smuggling
/// shapes (both `Content-Length` and `Transfer-Encoding`, conflicting
/// lengths, a coding other than chunked last) are refused, not guessed.
#[derive(Debug)]
pub(crate) struct AmbiguousFraming;

/// The framing of a request body.
pub(crate) fn request_framing(fields: &[Header<'_>]) -> Result<Framing, AmbiguousFraming> {
    let length = content_length(fields)?;
    if fields.field("transfer-encoding").is_some() {
        return match (length, last_coding_is_chunked(fields)) {
            (None, true) => Ok(Framing::Chunked),
            _ => Err(AmbiguousFraming),
        };
    }
    Ok(match length {
        None | Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
    })
}

/// The framing of a response to a request (RFC 9112 §6.3: HEAD responses,
/// 1xx, 204 and 304 have no body whatever their fields say).
pub(crate) fn response_framing(status: u16, to_head: bool, fields: &[Header<'_>]) -> Framing {
    if to_head || (100..200).contains(&status) || status == 204 || status == 304 {
        return Framing::Empty;
    }
    if fields.field("transfer-encoding").is_some() {
        return if last_coding_is_chunked(fields) {
            Framing::Chunked
        } else {
            Framing::UntilClose
        };
    }
    match content_length(fields) {
        Ok(Some(0)) => Framing::Empty,
        Ok(Some(n)) => Framing::Length(n),
        Ok(None) | Err(AmbiguousFraming) => Framing::UntilClose,
    }
}

/// The `Content-Length`, which every occurrence must agree on.
fn content_length(fields: &[Header<'_>]) -> Result<Option<u64>, AmbiguousFraming> {
    let mut length = None;
    for value in fields.tokens("content-length") {
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) || value.len() > 19 {
            return Err(AmbiguousFraming);
        }
        let n: u64 = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or(AmbiguousFraming)?;
        if length.is_some_and(|l| l != n) {
            return Err(AmbiguousFraming);
        }
        length = Some(n);
    }
    Ok(length)
}

fn last_coding_is_chunked(fields: &[Header<'_>]) -> bool {
    fields
        .tokens("transfer-encoding")
        .last()
        .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"))
}

/// Whether the client wants the connection kept after this exchange.
pub(crate) fn wants_keep_alive(version: u8, fields: &[Header<'_>]) -> bool {
    if version == 0 {
        fields.has_token("connection", "keep-alive")
    } else {
        !fields.has_token("connection", "close")
    }
}

/// Writes the fields of an incoming head that may cross the gateway:
/// not hop-by-hop (the fixed list, or named by `Connection`), not among
/// `replaced` (which the gateway writes itself). A chunked body is relayed
/// as it is, so its `Transfer-Encoding` crosses too, and a `Content-Length`
/// beside it does not.
pub(crate) fn write_fields(
    out: &mut Vec<u8>,
    fields: &[Header<'_>],
    chunked: bool,
    replaced: &[&str],
) {
    // The names `Connection` lists, gathered once; a head naming more than
    // fits here (never seen in practice) is checked field by field instead.
    let mut named: [&[u8]; 8] = [&[]; 8];
    let mut count = 0;
    for token in fields.tokens("connection") {
        if let Some(slot) = named.get_mut(count) {
            *slot = token;
        }
        count += 1;
    }
    let is_named = |name: &str| {
        if count <= named.len() {
            named[..count]
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name.as_bytes()))
        } else {
            fields.has_token("connection", name)
        }
    };
    for field in fields {
        let name = field.name;
        let keep = if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked
        } else if name.eq_ignore_ascii_case("content-length") {
            !chunked
        } else {
            !is_hop_by_hop(name, field.value)
                && !is_named(name)
                && !replaced.iter().any(|r| name.eq_ignore_ascii_case(r))
        };
        if keep {
            write_field(out, name, field.value);
        }
    }
}

/// Fields the gateway sets on requests and so never forwards from clients.
pub(crate) const REQUEST_REPLACED: [&str; 6] = [
    FORWARDING_FIELDS[0],
    FORWARDING_FIELDS[1],
    FORWARDING_FIELDS[2],
    FORWARDING_FIELDS[3],
    FORWARDING_FIELDS[4],
    "x-request-id",
];

/// Fields the gateway sets on responses.
pub(crate) const RESPONSE_REPLACED: [&str; 1] = ["x-request-id"];

pub(crate) fn write_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

pub(crate) fn write_header_value(out: &mut Vec<u8>, name: &str, value: &HeaderValue) {
    write_field(out, name, value.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_fields<T>(raw: &str, f: impl FnOnce(&[Header<'_>]) -> T) -> T {
        let text = format!("GET / HTTP/1.1\r\n{raw}\r\n");
        let mut storage = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut req = httparse::Request::new(&mut storage);
        let _ = req.parse(text.as_bytes()).unwrap();
        f(req.headers)
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        let framing = |raw: &str| with_fields(raw, |f| request_framing(f).ok());
        assert_eq!(framing("Content-Length: 5\r\n"), Some(Framing::Length(5)));
        assert_eq!(
            framing("Content-Length: 5\r\nContent-Length: 5\r\n"),
            Some(Framing::Length(5))
        );
        assert_eq!(framing("Content-Length: 5\r\nContent-Length: 6\r\n"), None);
        assert_eq!(framing("Content-Length: +5\r\n"), None);
        assert_eq!(
            framing("Transfer-Encoding: chunked\r\n"),
            Some(Framing::Chunked)
        );
        assert_eq!(
            framing("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"),
            None
        );
        assert_eq!(framing("Transfer-Encoding: chunked, gzip\r\n"), None);
        assert_eq!(framing(""), Some(Framing::Empty));
    }

    #[test]
    fn responses_without_bodies() {
        let framing =
            |status, head, raw: &str| with_fields(raw, |f| response_framing(status, head, f));
        assert_eq!(framing(200, true, "Content-Length: 5\r\n"), Framing::Empty);
        assert_eq!(framing(304, false, "Content-Length: 5\r\n"), Framing::Empty);
        assert_eq!(framing(200, false, ""), Framing::UntilClose);
        assert_eq!(
            framing(200, false, "Transfer-Encoding: chunked\r\n"),
            Framing::Chunked
        );
    }

    #[test]
    fn hop_by_hop_and_replaced_fields_stay_behind() {
        let out = with_fields(
            "Connection: x-secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nX-Forwarded-For: 6.6.6.6\r\nX-Kept: yes\r\nContent-Length: 3\r\n",
            |f| {
                let mut out = Vec::new();
                write_fields(&mut out, f, false, &REQUEST_REPLACED);
                out
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "X-Kept: yes\r\nContent-Length: 3\r\n"
        );
    }

    /// A field name from a mix of ordinary, hop-by-hop and replaced names,
    /// in random case.
    fn field_name() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let names = prop::sample::select(vec![
            "x-app",
            "x-user",
            "cookie",
            "accept",
            "connection",
            "keep-alive",
            "upgrade",
            "proxy-connection",
            "te",
            "trailer",
            "x-forwarded-for",
            "forwarded",
            "x-request-id",
            "x-real-ip",
            "content-type",
        ]);
        (names, any::<u64>()).prop_map(|(name, case)| {
            name.chars()
                .enumerate()
                .map(|(i, c)| {
                    if case >> (i % 64) & 1 == 1 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect()
        })
    }

    proptest::proptest! {
        /// Whatever a client sends, the forwarded head keeps exactly the
        /// end-to-end fields, in order: never a hop-by-hop one, one the
        /// `Connection` field names, or one the gateway sets itself.
        #[test]
        fn only_end_to_end_fields_cross(
            fields in proptest::collection::vec(
                (field_name(), "[a-z0-9 ,-]{0,12}"),
                0..12,
            ),
        ) {
            let raw: String = fields.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect();
            let out = with_fields(&raw, |f| {
                let mut out = Vec::new();
                write_fields(&mut out, f, false, &REQUEST_REPLACED);
                String::from_utf8(out).unwrap()
            });
            let named: Vec<String> = fields
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
                .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
                .collect();
            let expected: String = fields
                .iter()
                .filter(|(n, v)| {
                    let lower = n.to_ascii_lowercase();
                    !is_hop_by_hop(n, v.trim().as_bytes())
                        && !named.contains(&lower)
                        && !REQUEST_REPLACED.contains(&lower.as_str())
                })
                .map(|(n, v)| format!("{n}: {}\r\n", v.trim()))
                .collect();
            proptest::prop_assert_eq!(out, expected);
        }
    }
}
