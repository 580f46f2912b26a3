//! Forwarding headers are believed only from trusted proxies.

use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::try_from(*name).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn trusting(nets: &[&str]) -> TrustedProxies {
    TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect())
}

fn client_ip(proxies: &TrustedProxies, peer: &str, headers: &HeaderMap) -> IpAddr {
    proxies.client_ip(
        &proxies.peer(SocketAddr::new(ip(peer), 40000), false),
        headers,
    )
}

/// Rewrites as the proxy does: client address first, then the headers.
fn forward(
    proxies: &TrustedProxies,
    peer: &str,
    headers: &mut HeaderMap,
    host: Option<&HeaderValue>,
) {
    let peer = proxies.peer(SocketAddr::new(ip(peer), 40000), false);
    let client = proxies.client_ip(&peer, headers);
    Forwarding::new(headers, &peer, client, host.map(|h| h.as_bytes())).apply(headers);
}

#[test]
fn untrusted_peers_cannot_claim_an_address() {
    let h = headers(&[("x-forwarded-for", "6.6.6.6")]);
    assert_eq!(
        client_ip(&trusting(&[]), "203.0.113.9", &h),
        ip("203.0.113.9")
    );
}

#[test]
fn trusted_peers_give_the_rightmost_untrusted_hop() {
    let proxies = trusting(&["10.0.0.0/8"]);
    let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.2.3")]);
    assert_eq!(client_ip(&proxies, "10.0.0.1", &h), ip("198.51.100.7"));
    // Garbage stops the walk: nothing left of it is believed.
    let h = headers(&[("x-forwarded-for", "198.51.100.7, junk, 10.1.2.3")]);
    assert_eq!(client_ip(&proxies, "10.0.0.1", &h), ip("10.1.2.3"));
}

#[test]
fn forwarded_for_is_read_when_there_is_no_x_forwarded_for() {
    let proxies = trusting(&["10.0.0.0/8"]);
    let h = headers(&[(
        "forwarded",
        "for=198.51.100.7;proto=https, for=\"[2001:db8::1]:443\"",
    )]);
    assert_eq!(client_ip(&proxies, "10.0.0.1", &h), ip("2001:db8::1"));
}

#[test]
fn mapped_ipv4_counts_as_ipv4() {
    let proxies = trusting(&["10.0.0.0/8"]);
    let h = headers(&[("x-forwarded-for", "198.51.100.7")]);
    assert_eq!(
        client_ip(&proxies, "::ffff:10.0.0.1", &h),
        ip("198.51.100.7")
    );
}

#[test]
fn rewrite_replaces_untrusted_and_appends_trusted() {
    let host = HeaderValue::from_static("shop.test:8080");
    let mut h = headers(&[
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "for=6.6.6.6"),
    ]);
    forward(&trusting(&[]), "203.0.113.9", &mut h, Some(&host));
    assert_eq!(h["x-forwarded-for"], "203.0.113.9");
    assert_eq!(h["x-real-ip"], "203.0.113.9");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "shop.test:8080");
    assert_eq!(
        h["forwarded"],
        "for=203.0.113.9;host=\"shop.test:8080\";proto=http"
    );

    let mut h = headers(&[
        ("x-forwarded-for", "198.51.100.7"),
        ("x-forwarded-proto", "https"),
    ]);
    forward(&trusting(&["10.0.0.0/8"]), "10.0.0.1", &mut h, Some(&host));
    assert_eq!(h["x-forwarded-for"], "198.51.100.7, 10.0.0.1");
    assert_eq!(h["x-real-ip"], "198.51.100.7");
    assert_eq!(h["x-forwarded-proto"], "https");
}

#[test]
fn a_tls_connection_forwards_https_whatever_the_client_claims() {
    let proxies = trusting(&[]);
    let peer = proxies.peer(SocketAddr::new(ip("203.0.113.9"), 40000), true);
    let mut h = headers(&[("x-forwarded-proto", "http")]);
    Forwarding::new(&h, &peer, peer.ip, None).apply(&mut h);
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["forwarded"], "for=203.0.113.9;proto=https");
}

#[test]
fn ipv6_nodes_are_bracketed_and_quoted() {
    let mut h = HeaderMap::new();
    forward(&trusting(&[]), "::1", &mut h, None);
    assert_eq!(h["forwarded"], "for=\"[::1]\";proto=http");
}

#[test]
fn hop_by_hop_headers_are_removed() {
    let mut h = headers(&[
        ("connection", "keep-alive, x-secret"),
        ("x-secret", "1"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("te", "gzip"),
        ("upgrade", "h2c"),
        ("x-kept", "yes"),
    ]);
    strip_hop_by_hop(&mut h);
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h["x-kept"], "yes");

    let mut h = headers(&[("te", "trailers")]);
    strip_hop_by_hop(&mut h);
    assert_eq!(h["te"], "trailers");
}
