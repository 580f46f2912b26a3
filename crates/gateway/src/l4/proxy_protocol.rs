//! The PROXY protocol header (HAProxy's spec, versions 1 and 2) that an L4
//! listener may send a backend before the client's bytes, so that the
//! backend (PostgreSQL behind pgbouncer, Redis behind a proxy, nginx with
//! `proxy_protocol`) knows the client's address rather than the gateway's.
//!
//! Only the sending side, for TCP over IPv4 and IPv6: two small pure
//! encoders, so no crate is needed for them.

use std::net::{IpAddr, SocketAddr};

use crate::config::ProxyProtocol;

/// Version 2's fixed signature: `\r\n\r\n\0\r\nQUIT\n`.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Version 2, command PROXY (the connection is relayed for a client).
const V2_PROXY: u8 = 0x21;
/// Address family and transport: TCP over IPv4, TCP over IPv6.
const V2_TCP4: u8 = 0x11;
const V2_TCP6: u8 = 0x21;

/// The header announcing a connection from `client` to `local` (the
/// address the client connected to).
pub(crate) fn header(version: ProxyProtocol, client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let (client, local) = same_family(client, local);
    match version {
        ProxyProtocol::V1 => v1(client, local),
        ProxyProtocol::V2 => v2(client, local),
    }
}

/// `PROXY TCP4 <src> <dst> <sport> <dport>\r\n`.
fn v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

/// Signature, version and command, family, the length of what follows
/// (big-endian), then source and destination addresses and ports.
fn v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (family, addresses) = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (V2_TCP4, [s.octets(), d.octets()].concat()),
        (s, d) => (V2_TCP6, [v6_octets(s), v6_octets(d)].concat()),
    };
    let length = (addresses.len() + 4) as u16;
    let mut out = Vec::with_capacity(16 + usize::from(length));
    out.extend_from_slice(&V2_SIGNATURE);
    out.extend_from_slice(&[V2_PROXY, family]);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&addresses);
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

fn v6_octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Both addresses in one family, as the header has one: IPv4-mapped IPv6
/// addresses (a dual-stack listener's) as IPv4, and IPv4 mapped into IPv6
/// when the other is IPv6.
fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let (a_ip, b_ip) = (a.ip().to_canonical(), b.ip().to_canonical());
    let (a_ip, b_ip) = match (a_ip, b_ip) {
        (IpAddr::V4(v4), IpAddr::V6(_)) => (IpAddr::V6(v4.to_ipv6_mapped()), b_ip),
        (IpAddr::V6(_), IpAddr::V4(v4)) => (a_ip, IpAddr::V6(v4.to_ipv6_mapped())),
        same => same,
    };
    (
        SocketAddr::new(a_ip, a.port()),
        SocketAddr::new(b_ip, b.port()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn v1_is_one_line_of_text() {
        let h = header(
            ProxyProtocol::V1,
            addr("192.0.2.1:56324"),
            addr("198.51.100.7:443"),
        );
        assert_eq!(h, b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n");
        let h = header(
            ProxyProtocol::V1,
            addr("[2001:db8::1]:5000"),
            addr("[::1]:6379"),
        );
        assert_eq!(h, b"PROXY TCP6 2001:db8::1 ::1 5000 6379\r\n");
    }

    #[test]
    fn v2_tcp4_has_the_spec_layout() {
        let h = header(
            ProxyProtocol::V2,
            addr("192.0.2.1:56324"),
            addr("198.51.100.7:443"),
        );
        let mut expected = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        expected.extend([0x21, 0x11, 0, 12]);
        expected.extend([192, 0, 2, 1, 198, 51, 100, 7]);
        expected.extend([0xdc, 0x04, 0x01, 0xbb]); // 56324, 443
        assert_eq!(h, expected);
    }

    #[test]
    fn v2_tcp6_has_the_spec_layout() {
        let h = header(
            ProxyProtocol::V2,
            addr("[2001:db8::1]:5000"),
            addr("[::1]:6379"),
        );
        assert_eq!(&h[..12], b"\r\n\r\n\0\r\nQUIT\n");
        assert_eq!(&h[12..16], [0x21, 0x21, 0, 36]);
        assert_eq!(&h[16..18], [0x20, 0x01]);
        assert_eq!(h[16 + 15], 1, "source ends in ::1");
        assert_eq!(&h[32..48], &[[0; 15].as_slice(), &[1]].concat()[..]);
        assert_eq!(&h[48..], [0x13, 0x88, 0x18, 0xeb]); // 5000, 6379
        assert_eq!(h.len(), 16 + 36);
    }

    #[test]
    fn mixed_families_are_told_in_one() {
        let h = header(
            ProxyProtocol::V1,
            addr("[::ffff:192.0.2.1]:1"),
            addr("10.0.0.1:2"),
        );
        assert_eq!(
            h, b"PROXY TCP4 192.0.2.1 10.0.0.1 1 2\r\n",
            "mapped is IPv4"
        );
        let h = header(
            ProxyProtocol::V1,
            addr("192.0.2.1:1"),
            addr("[2001:db8::2]:2"),
        );
        assert_eq!(h, b"PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 1 2\r\n");
    }
}
