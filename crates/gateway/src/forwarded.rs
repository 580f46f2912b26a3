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

use crate::fields::{Fields, is_hop_by_hop};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// The trusted-proxy list.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies(Vec<IpNet>);

/// The other end of a client connection, worked out once per connection
/// rather than per request: its address, that address as header text,
/// whether its forwarding headers are believed, and whether it came over
/// TLS.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    ip: IpAddr,
    text: HeaderValue,
    /// `for=` node of RFC 7239 (IPv6 bracketed and quoted).
    node: String,
    trusted: bool,
    tls: bool,
}

impl Peer {
    /// Whether the connection came over TLS (the HTTPS listener).
    pub(crate) fn is_tls(&self) -> bool {
        self.tls
    }

    /// The scheme the client used, for `X-Forwarded-Proto` and `Forwarded`.
    pub(crate) fn proto(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

impl TrustedProxies {
    pub(crate) fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Describes a newly accepted connection's peer; `tls` when it came
    /// over TLS.
    pub(crate) fn peer(&self, addr: SocketAddr, tls: bool) -> Peer {
        let ip = canonical(addr.ip());
        Peer {
            ip,
            text: HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static("")),
            node: forwarded_node(ip),
            trusted: self.contains(ip),
            tls,
        }
    }

    /// The client's address: the peer, or, when the peer is trusted, the
    /// rightmost untrusted address of `X-Forwarded-For` (or `Forwarded`).
    /// Rightmost, because each hop appends: the leftmost entries are the
    /// client's own claims and cannot be believed.
    pub(crate) fn client_ip(&self, peer: &Peer, headers: &(impl Fields + ?Sized)) -> IpAddr {
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

/// The forwarding headers a request carries upstream, computed once from
/// the incoming fields and applied by whichever protocol path sends it.
#[derive(Debug)]
pub(crate) struct Forwarding {
    /// `X-Forwarded-For`.
    pub(crate) forwarded_for: HeaderValue,
    /// `X-Real-IP`.
    pub(crate) real_ip: HeaderValue,
    /// `X-Forwarded-Proto`.
    pub(crate) proto: HeaderValue,
    /// `X-Forwarded-Host`, when the request named a host.
    pub(crate) host: Option<HeaderValue>,
    /// RFC 7239 `Forwarded`.
    pub(crate) forwarded: HeaderValue,
}

/// The names of the fields [`Forwarding`] sets; incoming ones are replaced.
pub(crate) const FORWARDING_FIELDS: [&str; 5] = [
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
];

impl Forwarding {
    /// Computes the forwarding headers of a request from `peer` whose client
    /// is `client`. `host` is the Host the client asked for. From an
    /// untrusted peer (the common case) this allocates once, for
    /// `Forwarded`.
    pub(crate) fn new(
        fields: &(impl Fields + ?Sized),
        peer: &Peer,
        client: IpAddr,
        host: Option<&[u8]>,
    ) -> Self {
        let trusted = peer.trusted;
        let proto = peer.proto();
        let kept = |name: &str| {
            trusted
                .then(|| fields.field(name))
                .flatten()
                .and_then(|v| HeaderValue::from_bytes(v).ok())
        };
        let forwarded_for = match trusted.then(|| fields.joined("x-forwarded-for")).flatten() {
            Some(previous) => value(format!("{previous}, {}", peer.ip)),
            None => peer.text.clone(),
        };
        let real_ip = if client == peer.ip {
            peer.text.clone()
        } else {
            value(client.to_string())
        };
        let host_value = host.and_then(|h| HeaderValue::from_bytes(h).ok());

        let mut forwarded = String::with_capacity(64);
        if let Some(previous) = trusted.then(|| fields.joined("forwarded")).flatten() {
            forwarded.push_str(&previous);
            forwarded.push_str(", ");
        }
        forwarded.push_str("for=");
        forwarded.push_str(&peer.node);
        if let Some(host) = host.and_then(|h| std::str::from_utf8(h).ok()) {
            forwarded.push_str(";host=");
            push_forwarded_value(&mut forwarded, host);
        }
        forwarded.push_str(";proto=");
        forwarded.push_str(proto);

        Self {
            forwarded_for,
            real_ip,
            proto: kept("x-forwarded-proto").unwrap_or(HeaderValue::from_static(proto)),
            host: kept("x-forwarded-host").or(host_value),
            forwarded: value(forwarded),
        }
    }

    /// Sets the headers on a request about to go upstream through hyper.
    pub(crate) fn apply(self, headers: &mut HeaderMap) {
        for name in FORWARDING_FIELDS {
            headers.remove(name);
        }
        headers.insert(X_FORWARDED_FOR, self.forwarded_for);
        headers.insert(X_REAL_IP, self.real_ip);
        headers.insert(X_FORWARDED_PROTO, self.proto);
        if let Some(host) = self.host {
            headers.insert(X_FORWARDED_HOST, host);
        }
        headers.insert(header::FORWARDED, self.forwarded);
    }

    /// The headers as `(name, value)` pairs, for the HTTP/1.1 fast path.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&'static str, &HeaderValue)> {
        [
            ("x-forwarded-for", Some(&self.forwarded_for)),
            ("x-real-ip", Some(&self.real_ip)),
            ("x-forwarded-proto", Some(&self.proto)),
            ("x-forwarded-host", self.host.as_ref()),
            ("forwarded", Some(&self.forwarded)),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
    }
}

/// The forwarding headers of a connection's last request, reused for the
/// next while its Host is the same and its peer is untrusted: then the
/// headers depend on nothing else (the client is the peer, whose own
/// forwarding headers are ignored). Saves formatting and two allocations
/// per request on keep-alive connections.
#[derive(Debug, Default)]
pub(crate) struct ForwardingCache {
    host: Vec<u8>,
    last: Option<Forwarding>,
}

impl ForwardingCache {
    /// The forwarding headers for this request, as [`Forwarding::new`].
    pub(crate) fn get(
        &mut self,
        fields: &(impl Fields + ?Sized),
        peer: &Peer,
        client: IpAddr,
        host: Option<&[u8]>,
    ) -> &Forwarding {
        let host_bytes = host.unwrap_or_default();
        let reusable = !peer.trusted && self.host == host_bytes;
        if !reusable {
            self.host.clear();
            self.host.extend_from_slice(host_bytes);
            self.last = None;
        }
        self.last
            .get_or_insert_with(|| Forwarding::new(fields, peer, client, host))
    }
}

/// Header text we built from addresses and validated parts: always valid,
/// but a bad byte would only cost the header, never the request. Takes the
/// string's buffer rather than copying it.
fn value(text: String) -> HeaderValue {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text)).unwrap_or(HeaderValue::from_static(""))
}

/// IPv4-mapped IPv6 (`::ffff:10.0.0.1`, what a dual-stack socket reports)
/// compares as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The addresses of `X-Forwarded-For`, or else of `Forwarded: for=`, left to
/// right; parsing stops at the first entry that is not an address, since
/// nothing left of garbage can be trusted either.
fn forwarded_for_chain(headers: &(impl Fields + ?Sized)) -> Vec<IpAddr> {
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
    if let Some(xff) = headers.joined("x-forwarded-for") {
        return parse_all(xff, whole_entry);
    }
    if let Some(forwarded) = headers.joined("forwarded") {
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

/// Removes the hop-by-hop fields: those [`is_hop_by_hop`] names and those
/// the message's `Connection` field names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .tokens("connection")
        .filter_map(|name| HeaderName::from_bytes(name).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    let hop: Vec<HeaderName> = headers
        .iter()
        .filter(|(name, value)| is_hop_by_hop(name.as_str(), value.as_bytes()))
        .map(|(name, _)| name.clone())
        .collect();
    for name in hop {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests;
