//! Deserializers for the value types several roles' configurations share,
//! each failing with a message that says what was expected. Use them with
//! `#[serde(deserialize_with = "stampede_config::de::duration")]`.

use std::fmt::Display;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use serde::de::{Deserializer, Error};

/// Deserializes a string and converts it with `f`, whose error message
/// becomes the deserializer's.
pub fn parse<'de, D, T, E: Display>(
    deserializer: D,
    f: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    let text = String::deserialize(deserializer)?;
    f(&text).map_err(D::Error::custom)
}

/// `HOST:PORT`, resolving a name like `localhost:9001` once, at load time.
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    text.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            format!("`{text}` is not a valid address; expected HOST:PORT like 127.0.0.1:9001")
        })
}

/// A socket address (see [`parse_addr`]).
pub fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    parse(d, parse_addr)
}

/// An optional socket address.
pub fn opt_socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    socket_addr(d).map(Some)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| {
        format!("`{text}` is not a duration ({e}); write e.g. \"500ms\", \"5s\", \"2m\"")
    })
}

/// A human duration like `"500ms"`, `"5s"`, `"10m"`.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse(d, parse_duration)
}

/// An optional human duration.
pub fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// A list of IP addresses or CIDR ranges.
pub fn ip_nets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .map(|text| {
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    D::Error::custom(format!(
                        "`{text}` is not an IP address or CIDR range like 10.0.0.0/8"
                    ))
                })
        })
        .collect()
}
