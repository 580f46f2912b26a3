//! Deserializers for the value types of the configuration, each failing with
//! a message that says what was expected.

use std::fmt::Display;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use serde::de::{Deserializer, Error};
use stampede_balance::StrategyKind;

use super::{BackendConfig, HashOn};

/// Renders a TOML error as "message (line L, column C)" without the
/// multi-line snippet, so that one error stays one line.
pub(super) fn describe(error: &toml::de::Error, text: Option<&str>) -> String {
    let message = error.message().trim_end();
    match (error.span(), text) {
        (Some(span), Some(text)) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("{message} (line {line}, column {column})")
        }
        _ => message.to_owned(),
    }
}

fn parse<'de, D, T, E: Display>(
    deserializer: D,
    f: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    let text = String::deserialize(deserializer)?;
    f(&text).map_err(D::Error::custom)
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    // A name like `localhost:9001` is resolved once, at load time.
    text.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            format!("`{text}` is not a valid address; expected HOST:PORT like 127.0.0.1:9001")
        })
}

pub(super) fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    parse(d, parse_addr)
}

pub(super) fn opt_socket_addr<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    socket_addr(d).map(Some)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| {
        format!("`{text}` is not a duration ({e}); write e.g. \"500ms\", \"5s\", \"2m\"")
    })
}

pub(super) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse(d, parse_duration)
}

pub(super) fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

pub(super) fn strategy<'de, D: Deserializer<'de>>(d: D) -> Result<StrategyKind, D::Error> {
    parse(d, str::parse::<StrategyKind>)
}

pub(super) fn ip_nets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
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

pub(super) fn hash_on<'de, D: Deserializer<'de>>(d: D) -> Result<HashOn, D::Error> {
    parse(d, |text| match text.split_once(':') {
        None if text == "client-ip" => Ok(HashOn::ClientIp),
        None if text == "path" => Ok(HashOn::Path),
        Some(("header", name)) => http::HeaderName::try_from(name)
            .map(HashOn::Header)
            .map_err(|_| format!("`{name}` is not a valid header name")),
        Some(("cookie", name)) if !name.is_empty() => Ok(HashOn::Cookie(name.to_owned())),
        _ => Err(format!(
            "`{text}`: expected client-ip, path, header:NAME or cookie:NAME"
        )),
    })
}

impl<'de> Deserialize<'de> for BackendConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Address(String),
            Table(Table),
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            address: String,
            #[serde(default = "one")]
            weight: u32,
        }
        fn one() -> u32 {
            1
        }
        let (address, weight) = match Raw::deserialize(d).map_err(|_| {
            D::Error::custom("expected \"host:port\" or { address = \"host:port\", weight = N }")
        })? {
            Raw::Address(address) => (address, 1),
            Raw::Table(t) => (t.address, t.weight),
        };
        if weight == 0 {
            return Err(D::Error::custom("weight must be at least 1"));
        }
        let address = parse_addr(&address).map_err(D::Error::custom)?;
        Ok(BackendConfig { address, weight })
    }
}
