//! IP hash: the client's address chooses the backend, so one client keeps
//! reaching the same backend without any cookie or shared state.
//!
//! The address's bytes are hashed with xxh3 and taken modulo the pool size
//! (nginx `ip_hash`, HAProxy `balance source`). Every gateway instance
//! computes the same answer, so affinity holds across a fleet of balancers
//! with nothing to synchronise. The whole address is hashed (nginx uses only
//! the first three octets of IPv4), and an IPv4-mapped IPv6 address hashes
//! like the IPv4 address it carries.
//!
//! When the chosen backend is unavailable the address is hashed again with
//! another seed, up to 20 times as nginx does, and only then is the pool
//! scanned in order. Rehashing sends the clients of a down backend to
//! *different* survivors, each according to its own hash, where stepping to
//! the next index would pile them all onto one neighbour. It is
//! deterministic, so a client stays on its fallback backend while the
//! outage lasts, and clients of backends that stay up never move.
//!
//! Modulo hashing remaps most clients when the pool changes size; when that
//! matters use `consistent-hash` or `maglev` instead.

use std::sync::Arc;

use super::hash_ip;
use crate::{Backend, Pick, Strategy};

/// Extra hashes tried when the first backend is unavailable (nginx: 20).
const REHASHES: u64 = 20;

/// The client's IP address, hashed with xxh3, chooses the backend; if that
/// one is unavailable the address is rehashed, so clients of a down backend
/// spread over the others. (The file's module docs explain the algorithm.)
#[derive(Debug, Default)]
pub struct IpHash;

impl IpHash {
    /// The strategy; it needs nothing from the backends but their count.
    pub fn new(_backends: &[Arc<Backend>]) -> Self {
        Self
    }
}

impl Strategy for IpHash {
    fn pick(&self, backends: &[Arc<Backend>], request: &Pick<'_>) -> Option<usize> {
        let n = backends.len() as u64;
        if n == 0 {
            return None;
        }
        let mut i = 0;
        for seed in 0..=REHASHES {
            i = (hash_ip(request.client_ip, seed) % n) as usize;
            if backends[i].is_available() {
                return Some(i);
            }
        }
        let n = backends.len();
        (1..n)
            .map(|step| (i + step) % n)
            .find(|&j| backends[j].is_available())
    }
}

#[cfg(test)]
mod tests {
    use crate::Out;

    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::strategy::testing::{pool, req};

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn same_ip_same_backend() {
        let backends = pool(&[1; 5]);
        let hash = IpHash::new(&backends);
        for ip in [v4(203, 0, 113, 9), IpAddr::V6(Ipv6Addr::LOCALHOST)] {
            let first = hash.pick(&backends, &req(ip, b"")).unwrap();
            for key in [&b""[..], b"ignored", b"other"] {
                assert_eq!(hash.pick(&backends, &req(ip, key)), Some(first));
            }
            // A fresh instance (another gateway) agrees.
            assert_eq!(
                IpHash::new(&backends).pick(&backends, &req(ip, b"")),
                Some(first)
            );
        }
        let mapped = IpAddr::V6(Ipv4Addr::new(203, 0, 113, 9).to_ipv6_mapped());
        assert_eq!(
            hash.pick(&backends, &req(mapped, b"")),
            hash.pick(&backends, &req(v4(203, 0, 113, 9), b"")),
        );
    }

    #[test]
    fn spreads_clients() {
        let backends = pool(&[1; 4]);
        let hash = IpHash::new(&backends);
        let mut counts = [0; 4];
        for d in 0..=255 {
            for c in 0..4 {
                counts[hash.pick(&backends, &req(v4(10, 0, c, d), b"")).unwrap()] += 1;
            }
        }
        for c in counts {
            assert!((200..312).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn fallback_is_stable_spread_and_leaves_others_alone() {
        let backends = pool(&[1; 4]);
        let hash = IpHash::new(&backends);
        let ips: Vec<IpAddr> = (0..1000u32)
            .map(|i| IpAddr::V4(Ipv4Addr::from(i)))
            .collect();
        let before: Vec<_> = ips
            .iter()
            .map(|&ip| hash.pick(&backends, &req(ip, b"")))
            .collect();
        backends[2].set_out(Out::Unhealthy, true);
        let mut moved_to = [0; 4];
        for (&ip, &was) in ips.iter().zip(&before) {
            let now = hash.pick(&backends, &req(ip, b"")).unwrap();
            assert_ne!(now, 2);
            assert_eq!(
                hash.pick(&backends, &req(ip, b"")),
                Some(now),
                "fallback is stable"
            );
            if was == Some(2) {
                moved_to[now] += 1;
            } else {
                assert_eq!(Some(now), was, "clients of healthy backends stay");
            }
        }
        // The down backend's clients are shared by all three survivors.
        assert!(
            moved_to.iter().filter(|&&c| c > 30).count() == 3,
            "{moved_to:?}"
        );
        for b in &backends {
            b.set_out(Out::Unhealthy, true);
        }
        assert_eq!(hash.pick(&backends, &req(ips[0], b"")), None);
    }
}
