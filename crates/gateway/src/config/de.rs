//! Deserializers for the gateway's own value types (the shared ones come
//! from `stampede_config::de`), each failing with a message that says what
//! was expected.

use hickory_server::proto::rr::Name;
use serde::Deserialize;
use serde::de::{Deserializer, Error};
use stampede_balance::StrategyKind;
pub(super) use stampede_config::de::{
    duration, ip_nets, opt_duration, opt_socket_addr, socket_addr,
};
use stampede_config::de::{parse, parse_addr};

use super::{BackendConfig, HashOn};

pub(super) fn strategy<'de, D: Deserializer<'de>>(d: D) -> Result<StrategyKind, D::Error> {
    parse(d, str::parse::<StrategyKind>)
}

/// A DNS name such as `shop.example.com` (the final dot optional), made
/// fully qualified; names compare case-insensitively.
pub(super) fn dns_name<'de, D: Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
    parse(d, |text| {
        let mut name =
            Name::from_ascii(text).map_err(|e| format!("`{text}` is not a DNS name: {e}"))?;
        if name.is_root() || name.is_wildcard() {
            return Err(format!(
                "`{text}`: expected a host name such as shop.example.com"
            ));
        }
        name.set_fqdn(true);
        Ok(name)
    })
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
            #[serde(default)]
            backup: bool,
        }
        fn one() -> u32 {
            1
        }
        let (address, weight, backup) = match Raw::deserialize(d).map_err(|_| {
            D::Error::custom(
                "expected \"host:port\" or { address = \"host:port\", weight = N, backup = BOOL }",
            )
        })? {
            Raw::Address(address) => (address, 1, false),
            Raw::Table(t) => (t.address, t.weight, t.backup),
        };
        if weight == 0 {
            return Err(D::Error::custom("weight must be at least 1"));
        }
        let address = parse_addr(&address).map_err(D::Error::custom)?;
        Ok(BackendConfig {
            address,
            weight,
            backup,
        })
    }
}
