//! Weighted random: each request goes to a backend drawn at random with
//! probability proportional to its weight.
//!
//! Like round-robin it ignores load, but it needs no shared state at all:
//! every thread draws from its own generator (fastrand's thread-local
//! wyrand), so many gateways or threads balancing the same pool never
//! coordinate, and no pattern in the traffic can line up with a fixed
//! rotation. Over many requests the shares converge to the weights (nginx
//! `random`, HAProxy `balance random`).
//!
//! The weights are laid end to end once, at build time, as prefix sums:
//! weights `[2, 1, 3]` become `[2, 3, 6]`. A draw `r` in `0..6` lands on the
//! first prefix sum greater than `r`, found by binary search in
//! `O(log n)`: `r` in `0..2` picks backend 0, `2..3` backend 1, `3..6`
//! backend 2.
//!
//! When the drawn backend is unavailable a few more draws are tried; if all
//! miss (most of the pool is down), one linear pass draws again over the
//! available backends only, so the result keeps the weights among them.

use std::sync::Arc;

use crate::{Backend, Pick, Strategy};

/// Draws before falling back to a pass over the available backends.
const DRAWS: usize = 3;

/// Weighted random choice among the available backends, by binary search
/// over prefix sums of the weights; no shared state. (The file's module docs
/// explain the algorithm.)
#[derive(Debug)]
pub struct Random {
    /// `prefix[i]` is the sum of the weights of backends `0..=i`.
    prefix: Vec<u64>,
}

impl Random {
    /// Precomputes the prefix sums of the weights of `backends`.
    pub fn new(backends: &[Arc<Backend>]) -> Self {
        let prefix = backends
            .iter()
            .scan(0u64, |sum, b| {
                *sum += u64::from(b.weight);
                Some(*sum)
            })
            .collect();
        Self { prefix }
    }
}

impl Strategy for Random {
    fn pick(&self, backends: &[Arc<Backend>], _request: &Pick<'_>) -> Option<usize> {
        let total = *self.prefix.last()?;
        for _ in 0..DRAWS {
            let r = fastrand::u64(0..total);
            let i = self.prefix.partition_point(|&sum| sum <= r);
            if backends.get(i).is_some_and(|b| b.is_available()) {
                return Some(i);
            }
        }
        let up = |b: &&Arc<Backend>| b.is_available();
        let total_up: u64 = backends
            .iter()
            .filter(up)
            .map(|b| u64::from(b.weight))
            .sum();
        if total_up == 0 {
            return None;
        }
        let mut r = fastrand::u64(0..total_up);
        for (i, b) in backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_available())
        {
            let w = u64::from(b.weight);
            if r < w {
                return Some(i);
            }
            r -= w;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use crate::Out;

    use super::*;
    use crate::strategy::testing::{counts, plain, pool};

    /// Asserts each share of `counts` is within 1% of its weight's share.
    fn assert_shares(counts: &[usize], weights: &[u32]) {
        let picks: usize = counts.iter().sum();
        let total: u32 = weights.iter().sum();
        for (c, w) in counts.iter().zip(weights) {
            let got = *c as f64 / picks as f64;
            let want = f64::from(*w) / f64::from(total);
            assert!(
                (got - want).abs() < 0.01,
                "{counts:?} vs weights {weights:?}"
            );
        }
    }

    #[test]
    fn honours_weights() {
        fastrand::seed(7);
        let backends = pool(&[1, 2, 3, 4]);
        let random = Random::new(&backends);
        assert_shares(&counts(&random, &backends, 100_000), &[1, 2, 3, 4]);
    }

    #[test]
    fn honours_weights_among_the_available() {
        fastrand::seed(11);
        // Backend 0 would take 90% of draws: most go to the fallback pass.
        let backends = pool(&[90, 3, 7]);
        backends[0].set_out(Out::Unhealthy, true);
        let random = Random::new(&backends);
        assert_shares(&counts(&random, &backends, 100_000), &[0, 3, 7]);
        backends[1].set_out(Out::Unhealthy, true);
        backends[2].set_out(Out::Unhealthy, true);
        assert_eq!(random.pick(&backends, &plain()), None);
    }
}
