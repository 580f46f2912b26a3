//! The [`Strategy`] trait and the algorithms that implement it, one per file.
//!
//! A strategy is built for one backend set (a ring or a table may be
//! precomputed) and then answers [`Strategy::pick`] for every request. It
//! must skip backends that are not [`Backend::is_available`], and return
//! `None` only when none is.

use std::fmt::Debug;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::Backend;

mod consistent_hash;
mod ip_hash;
mod least_conn;
mod maglev;
mod peak_ewma;
mod random;
mod round_robin;
mod sticky;
mod weighted_round_robin;

pub use consistent_hash::ConsistentHash;
pub use ip_hash::IpHash;
pub use least_conn::LeastConn;
pub use maglev::Maglev;
pub use peak_ewma::PeakEwma;
pub use random::Random;
pub use round_robin::RoundRobin;
pub use sticky::Sticky;
pub use weighted_round_robin::WeightedRoundRobin;

/// What a strategy may look at about the request being balanced.
#[derive(Debug, Clone, Copy)]
pub struct Pick<'a> {
    /// The client's address (after trusted-proxy resolution).
    pub client_ip: IpAddr,
    /// The bytes hashing strategies hash: the client IP, a header, a cookie
    /// or the path, as the pool's configuration says. Empty when absent.
    pub hash_key: &'a [u8],
    /// The backend id named by the sticky cookie, when the request has one.
    pub sticky: Option<&'a str>,
}

/// One load-balancing algorithm, built for one backend set.
pub trait Strategy: Send + Sync + Debug {
    /// Chooses the index in `backends` of the backend for this request.
    ///
    /// `backends` is the same slice, in the same order, that the strategy
    /// was built with. Returns `None` only when no backend is available.
    fn pick(&self, backends: &[Arc<Backend>], request: &Pick<'_>) -> Option<usize>;
}

/// The strategies users can name in configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrategyKind {
    /// `round-robin`: each backend in turn, weights ignored.
    RoundRobin,
    /// `weighted-round-robin`: nginx's smooth weighted round-robin.
    WeightedRoundRobin,
    /// `random`: uniformly at random, weighted.
    Random,
    /// `least-conn`: fewest requests in flight relative to weight.
    LeastConn,
    /// `p2c-ewma`: power of two random choices, lower peak-EWMA cost wins.
    PeakEwma,
    /// `ip-hash`: the client IP picks the backend.
    IpHash,
    /// `consistent-hash`: a ketama ring over the hash key.
    ConsistentHash,
    /// `maglev`: Maglev's lookup table over the hash key.
    Maglev,
}

impl StrategyKind {
    /// Every strategy and its configuration name, in documentation order.
    pub const ALL: [(&'static str, StrategyKind); 8] = [
        ("round-robin", Self::RoundRobin),
        ("weighted-round-robin", Self::WeightedRoundRobin),
        ("random", Self::Random),
        ("least-conn", Self::LeastConn),
        ("p2c-ewma", Self::PeakEwma),
        ("ip-hash", Self::IpHash),
        ("consistent-hash", Self::ConsistentHash),
        ("maglev", Self::Maglev),
    ];

    /// The name used in configuration.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, kind)| *kind == self)
            .map(|(name, _)| *name)
            .unwrap_or("unknown")
    }

    /// Whether the strategy reads [`Pick::hash_key`].
    pub fn uses_hash_key(self) -> bool {
        matches!(self, Self::ConsistentHash | Self::Maglev)
    }

    /// Whether the strategy places a request by what it carries (its
    /// client IP or hash key) rather than by turn, chance or load, so that
    /// the same request keeps landing on the same backend.
    pub fn hashes(self) -> bool {
        matches!(self, Self::IpHash | Self::ConsistentHash | Self::Maglev)
    }

    /// Builds the strategy for this backend set.
    pub fn build(self, backends: &[Arc<Backend>]) -> Box<dyn Strategy> {
        match self {
            Self::RoundRobin => Box::new(RoundRobin::new(backends)),
            Self::WeightedRoundRobin => Box::new(WeightedRoundRobin::new(backends)),
            Self::Random => Box::new(Random::new(backends)),
            Self::LeastConn => Box::new(LeastConn::new(backends)),
            Self::PeakEwma => Box::new(PeakEwma::new(backends)),
            Self::IpHash => Box::new(IpHash::new(backends)),
            Self::ConsistentHash => Box::new(ConsistentHash::new(backends)),
            Self::Maglev => Box::new(Maglev::new(backends)),
        }
    }
}

/// A strategy name that is not one of [`StrategyKind::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown strategy `{0}` (expected one of: {names})", names = names())]
pub struct UnknownStrategy(pub String);

fn names() -> String {
    StrategyKind::ALL.map(|(name, _)| name).join(", ")
}

impl FromStr for StrategyKind {
    type Err = UnknownStrategy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, kind)| *kind)
            .ok_or_else(|| UnknownStrategy(s.to_owned()))
    }
}

/// The 64-bit hash that places a request for the key-hashing strategies
/// (consistent hash, Maglev): xxh3 of [`Pick::hash_key`], or of the client IP
/// when the key is empty.
///
/// Falling back to the IP keeps requests without the configured key (a
/// missing header or cookie) spread over the pool and still affine, instead
/// of hashing them all to the one backend that owns the empty string. nginx
/// falls back to round-robin in that case, which loses the affinity.
fn key_hash(request: &Pick<'_>) -> u64 {
    if request.hash_key.is_empty() {
        hash_ip(request.client_ip, 0)
    } else {
        xxh3_64(request.hash_key)
    }
}

/// xxh3 of an IP address's bytes with `seed`. IPv4-mapped IPv6 addresses
/// (`::ffff:a.b.c.d`, as a dual-stack socket reports IPv4 clients) hash like
/// the IPv4 address they carry.
fn hash_ip(ip: IpAddr, seed: u64) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => xxh3_64_with_seed(&v4.octets(), seed),
        IpAddr::V6(v6) => xxh3_64_with_seed(&v6.octets(), seed),
    }
}

/// Whether any backend may be picked: the slow-path check of the hashing
/// strategies before they walk a whole ring or table.
fn any_available(backends: &[Arc<Backend>]) -> bool {
    backends.iter().any(|b| b.is_available())
}

/// Helpers shared by the strategies' tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::sync::Arc;

    use super::{Pick, Strategy};
    use crate::Backend;

    /// Backends on 127.0.0.1 ports 9000, 9001, … with these weights.
    pub(crate) fn pool(weights: &[u32]) -> Vec<Arc<Backend>> {
        pool_at(9000, weights)
    }

    /// Backends on 127.0.0.1 ports `base`, `base + 1`, … with these weights.
    pub(crate) fn pool_at(base: u16, weights: &[u32]) -> Vec<Arc<Backend>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let port = base + u16::try_from(i).unwrap();
                Arc::new(Backend::new(
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
                    w,
                ))
            })
            .collect()
    }

    /// A request from `ip` with hash key `key` and no sticky cookie.
    pub(crate) fn req(ip: IpAddr, key: &[u8]) -> Pick<'_> {
        Pick {
            client_ip: ip,
            hash_key: key,
            sticky: None,
        }
    }

    /// A request from 127.0.0.1 with no key and no cookie.
    pub(crate) fn plain() -> Pick<'static> {
        req(IpAddr::V4(Ipv4Addr::LOCALHOST), b"")
    }

    /// How often each backend is picked over `picks` plain requests.
    pub(crate) fn counts(
        strategy: &dyn Strategy,
        backends: &[Arc<Backend>],
        picks: usize,
    ) -> Vec<usize> {
        let mut counts = vec![0; backends.len()];
        for _ in 0..picks {
            counts[strategy.pick(backends, &plain()).unwrap()] += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use crate::Out;

    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::testing::{pool, req};
    use super::*;
    use crate::Strategy;

    #[test]
    fn every_name_round_trips() {
        for (name, kind) in StrategyKind::ALL {
            assert_eq!(name.parse::<StrategyKind>().unwrap(), kind);
            assert_eq!(kind.name(), name);
        }
    }

    #[test]
    fn unknown_name_is_rejected_with_the_list() {
        let err = "least-connections".parse::<StrategyKind>().unwrap_err();
        let message = err.to_string();
        assert!(message.contains("`least-connections`"), "{message}");
        for (name, _) in StrategyKind::ALL {
            assert!(message.contains(name), "{message} lacks {name}");
        }
        assert!("".parse::<StrategyKind>().is_err());
        assert!("Round-Robin".parse::<StrategyKind>().is_err());
    }

    #[test]
    fn mapped_ipv6_hashes_like_ipv4() {
        let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
        assert_eq!(hash_ip(v4, 3), hash_ip(mapped, 3));
        assert_ne!(hash_ip(v4, 3), hash_ip(IpAddr::V6(Ipv6Addr::LOCALHOST), 3));
    }

    #[test]
    fn empty_key_hashes_the_client_ip() {
        let a = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
        let b = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2));
        assert_eq!(key_hash(&req(a, b"")), hash_ip(a, 0));
        assert_ne!(key_hash(&req(a, b"")), key_hash(&req(b, b"")));
        assert_eq!(key_hash(&req(a, b"k")), key_hash(&req(b, b"k")));
    }

    proptest! {
        // Each case builds two Maglev tables; 64 cases keep this near 2 s.
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Every strategy, bare and behind `Sticky`: never an unavailable
        /// backend, and `None` exactly when none is available.
        #[test]
        fn never_picks_unavailable(
            pool_spec in prop::collection::vec((1u32..=5, any::<bool>()), 1..=12),
            sticky_to in any::<prop::sample::Index>(),
            ips in prop::collection::vec(any::<u32>(), 1..=20),
        ) {
            let weights: Vec<u32> = pool_spec.iter().map(|(w, _)| *w).collect();
            let backends = pool(&weights);
            for (backend, (_, up)) in backends.iter().zip(&pool_spec) {
                backend.set_out(Out::Unhealthy, !*up);
            }
            let any_up = pool_spec.iter().any(|(_, up)| *up);
            let sticky_id = backends[sticky_to.index(backends.len())].id.clone();
            for (_, kind) in StrategyKind::ALL {
                let bare = kind.build(&backends);
                let sticky = Sticky::new(kind.build(&backends), &backends);
                for &ip in &ips {
                    let key = ip.to_le_bytes();
                    let mut request = req(IpAddr::V4(Ipv4Addr::from(ip)), &key);
                    for strategy in [&*bare as &dyn Strategy, &sticky] {
                        for cookie in [None, Some(sticky_id.as_str()), Some("nope")] {
                            request.sticky = cookie;
                            match strategy.pick(&backends, &request) {
                                Some(i) => prop_assert!(
                                    backends[i].is_available(),
                                    "{} picked unavailable {i}", kind.name()
                                ),
                                None => prop_assert!(
                                    !any_up, "{} gave None with a backend up", kind.name()
                                ),
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn empty_pool_picks_none() {
        for (_, kind) in StrategyKind::ALL {
            assert_eq!(kind.build(&[]).pick(&[], &testing::plain()), None);
        }
    }
}
