//! Reading the children's log lines: how `up` learns each child's real
//! address from the line it prints once it listens.
//!
//! The roles log through `tracing`, which colours its output with ANSI escape
//! sequences even into a pipe, so a line is cleaned of them before it is
//! searched. The address is whatever follows a marker such as `listening on `,
//! with or without an `http://` in front and a path after it, so the same
//! parser reads the gateway's `stampede gateway listening on http://ADDR`, its
//! `admin (metrics) on http://ADDR/metrics`, and a shop's
//! `stampede shop listening on ADDR`.

use std::net::SocketAddr;

/// What a shop or the gateway says once its socket is bound.
pub(crate) const LISTENING: &str = "listening on ";

/// What the gateway says about its admin listener.
pub(crate) const ADMIN: &str = "admin (metrics) on ";

/// `line` without its ANSI escape sequences (CSI sequences such as
/// `ESC [ 1 m`, and any other `ESC x` pair).
pub(crate) fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            // A CSI sequence ends with its first byte in `@`..=`~`.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

/// The socket address that follows `marker` in `line`, if the line has the
/// marker and a valid address after it.
pub(crate) fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once(marker)?;
    let rest = rest.strip_prefix("http://").unwrap_or(rest);
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '/' || c == ',' || c == '"')
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Option<SocketAddr> {
        s.parse().ok()
    }

    #[test]
    fn finds_the_shop_address_in_a_tracing_line() {
        let line = "2026-11-22T10:00:00.000Z  INFO stampede::shop: stampede shop listening on 127.0.0.1:40123";
        assert_eq!(addr_after(line, LISTENING), addr("127.0.0.1:40123"));
    }

    #[test]
    fn finds_the_gateway_addresses_with_scheme_and_path() {
        let listening = "stampede gateway listening on http://127.0.0.1:8080";
        assert_eq!(addr_after(listening, LISTENING), addr("127.0.0.1:8080"));
        let admin = "admin (metrics) on http://127.0.0.1:9901/metrics";
        assert_eq!(addr_after(admin, ADMIN), addr("127.0.0.1:9901"));
        assert_eq!(addr_after(admin, LISTENING), None);
    }

    #[test]
    fn ignores_lines_without_a_valid_address() {
        assert_eq!(
            addr_after("Gateway listening. addr=1.2.3.4:5", LISTENING),
            None
        );
        assert_eq!(addr_after("listening on nowhere", LISTENING), None);
        assert_eq!(addr_after("listening on ", LISTENING), None);
        assert_eq!(addr_after("listening on 127.0.0.1:99999", LISTENING), None);
    }

    #[test]
    fn takes_ipv6_addresses_and_stops_at_punctuation() {
        assert_eq!(
            addr_after("listening on [::1]:8080, ready", LISTENING),
            addr("[::1]:8080")
        );
    }

    #[test]
    fn strips_colour_codes() {
        let coloured = "\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m stampede shop listening on \u{1b}[3m127.0.0.1:1\u{1b}[0m";
        let plain = strip_ansi(coloured);
        assert_eq!(plain, "2026  INFO stampede shop listening on 127.0.0.1:1");
        assert_eq!(addr_after(&plain, LISTENING), addr("127.0.0.1:1"));
        assert_eq!(strip_ansi("no codes here"), "no codes here");
    }
}
