//! Consistent hashing on a ketama ring.
//!
//! Modulo hashing (`hash % n`) remaps almost every key when `n` changes, so
//! one backend leaving flushes every cache and session affinity in the pool.
//! Consistent hashing (Karger et al., 1997) places both backends and keys on
//! a ring of 64-bit hashes; a key belongs to the first backend point at or
//! clockwise after it. Removing a backend hands only its own arcs to its
//! clockwise neighbours: about `1/n` of the keys move, and keys of the other
//! backends never do.
//!
//! One point per backend would leave arcs of very uneven length, so each
//! backend gets many points, hashed from `"{id}-{i}"`: 160 per unit of
//! weight, the figure of last.fm's libketama (40 MD5 digests of 4 points),
//! which nginx's `hash ... consistent` also uses (HAProxy's `hash-type
//! consistent` is the same idea). Points come from the backend's id, not its position, so every
//! gateway builds the same ring and a backend keeps its points when others
//! come and go. The ring is capped at 2^18 points; larger total weights are
//! scaled down proportionally (at least one point each).
//!
//! A lookup hashes the request's key (see [`Pick::hash_key`]; the client IP
//! when empty) and binary-searches the sorted points. An unavailable
//! backend's points are walked past clockwise, which gives exactly the
//! answer of a ring built without it: its keys spread over its neighbours,
//! and nothing else moves.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_64;

use super::{any_available, key_hash};
use crate::{Backend, Pick, Strategy};

/// Ring points per unit of weight (libketama's 160).
const POINTS_PER_WEIGHT: u64 = 160;
/// The most points a ring holds before weights are scaled down.
const MAX_POINTS: u64 = 1 << 18;

/// Consistent hashing on a ketama ring: 160 points per unit of weight,
/// hashed from the backend's id. Removing one of `n` backends moves only its
/// own keys, about `1/n`; an unavailable backend's keys go to its clockwise
/// neighbours. (The file's module docs explain the algorithm.)
pub struct ConsistentHash {
    /// The ring's points, sorted.
    points: Vec<u64>,
    /// `owners[i]` is the index of the backend owning `points[i]`.
    owners: Vec<u32>,
}

impl ConsistentHash {
    /// Builds the ring for `backends`.
    pub fn new(backends: &[Arc<Backend>]) -> Self {
        let total: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
        let points_for = |weight: u64| {
            if total * POINTS_PER_WEIGHT <= MAX_POINTS {
                weight * POINTS_PER_WEIGHT
            } else {
                (weight * MAX_POINTS / total).max(1)
            }
        };
        let mut ring = Vec::new();
        let mut label = String::new();
        for (owner, backend) in (0u32..).zip(backends) {
            for i in 0..points_for(u64::from(backend.weight)) {
                label.clear();
                // Writing to a String cannot fail.
                let _ = write!(label, "{}-{i}", backend.id);
                ring.push((xxh3_64(label.as_bytes()), owner));
            }
        }
        ring.sort_unstable();
        let (points, owners) = ring.into_iter().unzip();
        Self { points, owners }
    }
}

impl Strategy for ConsistentHash {
    fn pick(&self, backends: &[Arc<Backend>], request: &Pick<'_>) -> Option<usize> {
        let len = self.points.len();
        if len == 0 {
            return None;
        }
        let hash = key_hash(request);
        let start = self.points.partition_point(|&p| p < hash);
        let up = |step: usize| {
            let owner = self.owners[(start + step) % len] as usize;
            backends
                .get(owner)
                .is_some_and(|b| b.is_available())
                .then_some(owner)
        };
        if let Some(owner) = up(0) {
            return Some(owner);
        }
        if !any_available(backends) {
            return None;
        }
        (1..len).find_map(up)
    }
}

impl fmt::Debug for ConsistentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsistentHash")
            .field("points", &self.points.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use crate::Out;

    use std::net::{IpAddr, Ipv4Addr};

    use proptest::prelude::*;

    use super::*;
    use crate::Strategy;
    use crate::strategy::testing::{pool, pool_at, req};

    /// The id of the backend each of `keys` lands on.
    fn placement(backends: &[Arc<Backend>], keys: &[String]) -> Vec<String> {
        let ring = ConsistentHash::new(backends);
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        keys.iter()
            .map(|k| {
                backends[ring.pick(backends, &req(ip, k.as_bytes())).unwrap()]
                    .id
                    .clone()
            })
            .collect()
    }

    fn keys() -> Vec<String> {
        (0..10_000).map(|i| format!("/product/{i}")).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Removing one of `n` backends moves only its own keys: about 1/n.
        #[test]
        fn removal_moves_only_the_removed_backends_keys(
            n in 3usize..=10,
            removed in any::<prop::sample::Index>(),
            base in 1024u16..60_000,
        ) {
            let backends = pool_at(base, &vec![1; n]);
            let removed = removed.index(n);
            let mut rest = backends.clone();
            rest.remove(removed);
            let keys = keys();
            let before = placement(&backends, &keys);
            let after = placement(&rest, &keys);
            let gone = &backends[removed].id;
            let mut moved = 0;
            for (b, a) in before.iter().zip(&after) {
                if b == gone {
                    moved += 1;
                } else {
                    prop_assert_eq!(b, a, "a key of a surviving backend moved");
                }
            }
            // The moved keys are the removed backend's share: 1/n give or
            // take its arcs' spread (sd about 0.022 at n = 3, 0.008 at 10).
            let fraction = f64::from(moved) / keys.len() as f64;
            let bound = 1.25 / n as f64 + 0.03;
            prop_assert!(fraction <= bound, "{fraction} moved of 1/{n}");
        }

        /// Walking past an unavailable backend equals rebuilding without it.
        #[test]
        fn unavailable_equals_removed(
            n in 2usize..=8,
            removed in any::<prop::sample::Index>(),
            keys in prop::collection::vec(any::<u64>(), 1..200),
        ) {
            let backends = pool(&vec![1; n]);
            let removed = removed.index(n);
            let full = ConsistentHash::new(&backends);
            let mut rest = backends.clone();
            rest.remove(removed);
            let rebuilt = ConsistentHash::new(&rest);
            backends[removed].set_out(Out::Unhealthy, true);
            let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
            for key in keys {
                let key = key.to_le_bytes();
                let a = full.pick(&backends, &req(ip, &key)).unwrap();
                let b = rebuilt.pick(&rest, &req(ip, &key)).unwrap();
                prop_assert_eq!(&backends[a].id, &rest[b].id);
            }
        }
    }

    #[test]
    fn weights_give_proportional_shares() {
        let backends = pool(&[1, 2, 5]);
        let ring = ConsistentHash::new(&backends);
        assert_eq!(ring.points.len(), 8 * 160);
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut counts = [0.0f64; 3];
        for key in keys() {
            counts[ring.pick(&backends, &req(ip, key.as_bytes())).unwrap()] += 1.0;
        }
        for (c, w) in counts.iter().zip([1.0, 2.0, 5.0]) {
            let share = c / 10_000.0;
            assert!((share - w / 8.0).abs() < 0.05, "{counts:?}");
        }
    }

    #[test]
    fn huge_weights_are_scaled_to_the_cap() {
        let backends = pool(&[1_000_000, 1]);
        let ring = ConsistentHash::new(&backends);
        assert!(ring.points.len() as u64 <= MAX_POINTS + 1);
        assert!(ring.owners.contains(&1), "every backend keeps a point");
    }

    #[test]
    fn empty_key_hashes_the_client_ip() {
        let backends = pool(&[1; 8]);
        let ring = ConsistentHash::new(&backends);
        let mut seen = [false; 8];
        for i in 0..200u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(i));
            let pick = ring.pick(&backends, &req(ip, b"")).unwrap();
            assert_eq!(ring.pick(&backends, &req(ip, b"")), Some(pick));
            seen[pick] = true;
        }
        assert!(seen.iter().all(|&s| s), "{seen:?}");
    }

    #[test]
    fn all_unavailable_is_none() {
        let backends = pool(&[1, 1]);
        let ring = ConsistentHash::new(&backends);
        for b in &backends {
            b.set_out(Out::Unhealthy, true);
        }
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(ring.pick(&backends, &req(ip, b"k")), None);
        assert_eq!(format!("{ring:?}"), "ConsistentHash { points: 320 }");
    }
}
