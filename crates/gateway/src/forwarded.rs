//! Who the client is, and telling the backend: `X-Forwarded-*`, `X-Real-IP`,
//! RFC 7239 `Forwarded`, and the hop-by-hop headers that must not cross.
//!
//! Forwarding headers arriving from the internet are lies until proven
//! otherwise: anyone can send `X-Forwarded-For: 1.2.3.4`. So they are believed
//! only when the peer is a configured trusted proxy (a CDN, an outer load
//! balancer); from anyone else they are replaced by what the gateway sees.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The trusted-proxy list.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies(Vec<IpNet>);

/// The other end of a client connection, worked out once per connection
/// rather than per request: its address, that address as header text, and
/// whether its forwarding headers are believed.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    ip: IpAddr,
    text: HeaderValue,
    /// `for=` node of RFC 7239 (IPv6 bracketed and quoted).
    node: String,
    trusted: bool,
}

impl TrustedProxies {
    pub(crate) fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Describes a newly accepted connection's peer.
    pub(crate) fn peer(&self, addr: SocketAddr) -> Peer {
        let ip = canonical(addr.ip());
        Peer {
            ip,
            text: HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static("")),
            node: forwarded_node(ip),
            trusted: self.contains(ip),
        }
    }

    /// The client's address: the peer, or, when the peer is trusted, the
    /// rightmost untrusted address of `X-Forwarded-For` (or `Forwarded`).
    /// Rightmost, because each hop appends: the leftmost entries are the
    /// client's own claims and cannot be believed.
    pub(crate) fn client_ip(&self, peer: &Peer, headers: &HeaderMap) -> IpAddr {
        if !peer.trusted {
            return peer.ip;
        }
        let mut hops: Vec<IpAddr> = forwarded_for_chain(headers);
        let mut client = peer.ip;
        while let Some(hop) = hops.pop() {
            client = hop;
            if !self.contains(hop) {
                break;
            }
        }
        client
    }
}

/// Rewrites the forwarding headers of a request about to go upstream.
///
/// `host` is the Host the client asked for, `proto` the scheme of the
/// listener it came in on. From an untrusted peer (the common case) this
/// allocates once, for `Forwarded`.
pub(crate) fn rewrite(
    headers: &mut HeaderMap,
    peer: &Peer,
    client: IpAddr,
    host: Option<&HeaderValue>,
    proto: &'static str,
) {
    let trusted = peer.trusted;
    match (trusted, joined(headers, &X_FORWARDED_FOR)) {
        (true, Some(previous)) => {
            let chain = format!("{previous}, {}", peer.ip);
            set(headers, X_FORWARDED_FOR, &chain);
        }
        _ => {
            headers.insert(X_FORWARDED_FOR, peer.text.clone());
        }
    }
    if client == peer.ip {
        headers.insert(X_REAL_IP, peer.text.clone());
    } else {
        set(headers, X_REAL_IP, &client.to_string());
    }
    if !trusted || !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !trusted || !headers.contains_key(&X_FORWARDED_HOST) {
        match host {
            Some(host) => headers.insert(X_FORWARDED_HOST, host.clone()),
            None => headers.remove(&X_FORWARDED_HOST),
        };
    }

    let previous = trusted
        .then(|| joined(headers, &header::FORWARDED))
        .flatten();
    let mut forwarded = String::with_capacity(64);
    if let Some(previous) = previous {
        forwarded.push_str(&previous);
        forwarded.push_str(", ");
    }
    forwarded.push_str("for=");
    forwarded.push_str(&peer.node);
    if let Some(host) = host.and_then(|h| h.to_str().ok()) {
        forwarded.push_str(";host=");
        push_forwarded_value(&mut forwarded, host);
    }
    forwarded.push_str(";proto=");
    forwarded.push_str(proto);
    set(headers, header::FORWARDED, &forwarded);
}

/// IPv4-mapped IPv6 (`::ffff:10.0.0.1`, what a dual-stack socket reports)
/// compares as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// All values of a header joined by ", " (proxies may send several lines).
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// The addresses of `X-Forwarded-For`, or else of `Forwarded: for=`, left to
/// right; parsing stops at the first entry that is not an address, since
/// nothing left of garbage can be trusted either.
fn forwarded_for_chain(headers: &HeaderMap) -> Vec<IpAddr> {
    let parse_all = |text: String, pick: fn(&str) -> Option<&str>| -> Vec<IpAddr> {
        let entries: Vec<&str> = text.split(',').collect();
        let mut hops = Vec::new();
        for entry in entries.iter().rev() {
            match pick(entry).and_then(parse_node) {
                Some(ip) => hops.push(canonical(ip)),
                None => break,
            }
        }
        hops.reverse();
        hops
    };
    if let Some(xff) = joined(headers, &X_FORWARDED_FOR) {
        return parse_all(xff, whole_entry);
    }
    if let Some(forwarded) = joined(headers, &header::FORWARDED) {
        return parse_all(forwarded, |element| {
            element.split(';').find_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                key.eq_ignore_ascii_case("for").then_some(value)
            })
        });
    }
    Vec::new()
}

fn whole_entry(entry: &str) -> Option<&str> {
    Some(entry)
}

/// Parses `1.2.3.4`, `1.2.3.4:5678`, `"[2001:db8::1]:443"` or `2001:db8::1`.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            let inner = text.strip_prefix('[')?.split(']').next()?;
            inner.parse().ok()
        })
}

/// RFC 7239 node syntax: IPv6 addresses are bracketed and quoted.
fn forwarded_node(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    }
}

/// Appends an RFC 7239 value, quoted when it is not a token (a host with a
/// port has `:`).
fn push_forwarded_value(out: &mut String, value: &str) {
    let token = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if token {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Removes the hop-by-hop headers (RFC 9110 §7.6.1): those of the fixed list
/// and any the `Connection` header names. `TE: trailers` survives, since gRPC
/// over HTTP/2 needs it end to end.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    let keep_te = headers
        .get(header::TE)
        .is_some_and(|te| te.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for name in [
        header::CONNECTION,
        KEEP_ALIVE,
        PROXY_CONNECTION,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    if !keep_te {
        headers.remove(header::TE);
    }
}

#[cfg(test)]
mod tests;
