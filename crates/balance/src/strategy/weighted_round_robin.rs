//! Weighted round-robin, nginx's "smooth" variant.
//!
//! Each backend keeps a `current` weight, initially 0. For every pick:
//!
//! 1. every available backend adds its weight to its `current`;
//! 2. the backend with the largest `current` is chosen;
//! 3. the chosen one subtracts the total weight of the available backends.
//!
//! Over `sum(weights)` picks each backend is chosen exactly `weight` times,
//! and the choices are interleaved as evenly as possible: for weights
//! `a=5, b=1, c=1` the sequence is `a a b a c a a`, where the naive "send
//! `weight` requests in a row" gives `a a a a a b c`, a burst of five on `a`.
//! Smoothness follows from `current > -total` always holding, so after `k`
//! picks a backend has been chosen at most `ceil(k * weight / total)` times.
//!
//! This is nginx's algorithm (`ngx_http_upstream_get_peer` in
//! `ngx_http_upstream_round_robin.c`, introduced in 2012 as "smooth weighted
//! round-robin balancing"); LVS `wrr` and HAProxy `roundrobin` with weights
//! reach the same counts with other interleavings. Unavailable backends take
//! no part, so the others share their traffic in proportion to their
//! weights, and their `current` is kept as it was until they return.
//!
//! The state is a vector of integers updated together, so it sits behind a
//! `Mutex`; the critical section is one pass over the pool without
//! allocation. A poisoned lock is recovered: the integers are always valid.

use std::sync::{Arc, Mutex, PoisonError};

use crate::{Backend, Pick, Strategy};

/// nginx's smooth weighted round-robin: exact weights over every cycle of
/// `sum(weights)` picks, interleaved (`5, 1, 1` gives `a a b a c a a`).
/// (The file's module docs explain the algorithm.)
#[derive(Debug)]
pub struct WeightedRoundRobin {
    current: Mutex<Vec<i64>>,
}

impl WeightedRoundRobin {
    /// The schedule for `backends`, every `current` weight at 0.
    pub fn new(backends: &[Arc<Backend>]) -> Self {
        Self {
            current: Mutex::new(vec![0; backends.len()]),
        }
    }
}

impl Strategy for WeightedRoundRobin {
    fn pick(&self, backends: &[Arc<Backend>], _request: &Pick<'_>) -> Option<usize> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let mut total = 0i64;
        // (index, current weight) of the leader so far; the first wins ties.
        let mut best: Option<(usize, i64)> = None;
        for (i, (backend, cw)) in backends.iter().zip(current.iter_mut()).enumerate() {
            if !backend.is_available() {
                continue;
            }
            let weight = i64::from(backend.weight);
            *cw += weight;
            total += weight;
            if best.is_none_or(|(_, top)| *cw > top) {
                best = Some((i, *cw));
            }
        }
        let (best, _) = best?;
        current[best] -= total;
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use crate::Out;

    use proptest::prelude::*;

    use super::*;
    use crate::Strategy;
    use crate::strategy::testing::{counts, plain, pool};

    #[test]
    fn nginx_sequence_for_5_1_1() {
        let backends = pool(&[5, 1, 1]);
        let wrr = WeightedRoundRobin::new(&backends);
        let picks: String = (0..14)
            .map(|_| ["a", "b", "c"][wrr.pick(&backends, &plain()).unwrap()])
            .collect();
        assert_eq!(picks, "aabacaaaabacaa");
    }

    #[test]
    fn unavailable_backends_take_no_turn() {
        let backends = pool(&[3, 1, 2]);
        backends[0].set_out(Out::Unhealthy, true);
        let wrr = WeightedRoundRobin::new(&backends);
        assert_eq!(counts(&wrr, &backends, 300), [0, 100, 200]);
        backends[1].set_out(Out::Unhealthy, true);
        backends[2].set_out(Out::Unhealthy, true);
        assert_eq!(wrr.pick(&backends, &plain()), None);
    }

    proptest! {
        /// Exact over whole cycles, and smooth within one: after `k` picks a
        /// backend of weight `w` out of `total` has at most `ceil(k*w/total)`.
        #[test]
        fn weights_exact_and_smooth(weights in prop::collection::vec(1u32..=20, 1..=8)) {
            let backends = pool(&weights);
            let wrr = WeightedRoundRobin::new(&backends);
            let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
            let mut seen = vec![0u64; weights.len()];
            for k in 1..=2 * total {
                seen[wrr.pick(&backends, &plain()).unwrap()] += 1;
                for (i, &w) in weights.iter().enumerate() {
                    let bound = (k * u64::from(w)).div_ceil(total);
                    prop_assert!(seen[i] <= bound, "backend {i} picked {} > {bound} after {k}", seen[i]);
                }
                if k % total == 0 {
                    let cycles = k / total;
                    for (i, &w) in weights.iter().enumerate() {
                        prop_assert_eq!(seen[i], cycles * u64::from(w));
                    }
                }
            }
        }
    }
}
