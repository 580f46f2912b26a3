//! Power of two choices over peak-EWMA cost (`p2c-ewma`).
//!
//! Pick two distinct backends at random and send the request to the cheaper
//! one. Mitzenmacher ("The Power of Two Choices in Randomized Load
//! Balancing", 2001) showed that this one comparison shrinks the worst
//! backend's excess load from `O(log n / log log n)` for one random choice to
//! `O(log log n)`: almost all the benefit of scanning every backend, in
//! `O(1)`, and without every balancer herding onto the same "best" backend
//! at once, as a full scan on stale load figures does.
//!
//! The cost compared is Linkerd's and Finagle's peak-EWMA
//! ([`Load::cost`](crate::Load::cost)): a latency average that jumps up at
//! once on a slow response and decays back slowly, times `in_flight + 1`. It
//! sees what connection counts miss, such as a backend stalled in garbage
//! collection that holds few requests but answers each one late. An
//! unmeasured backend costs 0 and so is tried early. tower's `p2c` balancer
//! over `PeakEwma` is the same design.
//!
//! The two candidates are drawn over the whole pool and the draw repeated if
//! either is unavailable, which keeps the pair uniform among available
//! backends at `O(1)`. If a few draws miss (most of the pool is down) the
//! pair is drawn among the available backends by one pass. With a single
//! available backend there is nothing to compare and it is returned.

use std::sync::Arc;

use crate::{Backend, Pick, Strategy};

/// Draws over the whole pool before falling back to counting the available.
const DRAWS: usize = 3;

/// Power of two choices: two distinct random available backends, the one
/// with the lower peak-EWMA [`Load::cost`](crate::Load::cost) wins
/// (Linkerd, Finagle). (The file's module docs explain the algorithm.)
#[derive(Debug, Default)]
pub struct PeakEwma;

impl PeakEwma {
    /// The strategy; the latencies it reads live in the backends.
    pub fn new(_backends: &[Arc<Backend>]) -> Self {
        Self
    }
}

/// Two distinct indices in `0..n`, uniformly among such pairs; `n >= 2`.
///
/// The second is drawn from the `n - 1` indices left and shifted past the
/// first, so no retry loop is needed.
pub(crate) fn two_distinct(n: usize, rng: &mut fastrand::Rng) -> (usize, usize) {
    debug_assert!(n >= 2, "two distinct indices need n >= 2, got {n}");
    let a = rng.usize(0..n);
    let b = rng.usize(0..n - 1);
    (a, if b >= a { b + 1 } else { b })
}

/// Whichever of `a` and `b` has the lower cost; `a` on a tie.
fn cheaper(backends: &[Arc<Backend>], a: usize, b: usize) -> usize {
    if backends[b].load.cost() < backends[a].load.cost() {
        b
    } else {
        a
    }
}

impl Strategy for PeakEwma {
    fn pick(&self, backends: &[Arc<Backend>], _request: &Pick<'_>) -> Option<usize> {
        let up = |i: usize| backends[i].is_available();
        let mut rng = fastrand::Rng::new();
        if backends.len() >= 2 {
            for _ in 0..DRAWS {
                let (a, b) = two_distinct(backends.len(), &mut rng);
                if up(a) && up(b) {
                    return Some(cheaper(backends, a, b));
                }
            }
        }
        let nth_up = |k: usize| (0..backends.len()).filter(|&i| up(i)).nth(k);
        match (0..backends.len()).filter(|&i| up(i)).count() {
            0 => None,
            1 => nth_up(0),
            count => {
                let (ka, kb) = two_distinct(count, &mut rng);
                match (nth_up(ka), nth_up(kb)) {
                    (Some(a), Some(b)) => Some(cheaper(backends, a, b)),
                    // Availability changed under us: take what is there.
                    (a, b) => a.or(b).or_else(|| nth_up(0)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Out;

    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::Strategy;
    use crate::strategy::testing::{counts, plain, pool};

    proptest! {
        #[test]
        fn two_distinct_are_distinct_and_in_range(n in 2usize..10_000, seed: u64) {
            let mut rng = fastrand::Rng::with_seed(seed);
            for _ in 0..16 {
                let (a, b) = two_distinct(n, &mut rng);
                prop_assert!(a != b && a < n && b < n, "({a}, {b}) for n={n}");
            }
        }
    }

    #[test]
    fn two_distinct_covers_every_ordered_pair() {
        let mut rng = fastrand::Rng::with_seed(1);
        let mut seen = [[0u32; 3]; 3];
        for _ in 0..6_000 {
            let (a, b) = two_distinct(3, &mut rng);
            seen[a][b] += 1;
        }
        for (a, row) in seen.iter().enumerate() {
            for (b, &count) in row.iter().enumerate() {
                if a == b {
                    assert_eq!(count, 0);
                } else {
                    assert!((800..1200).contains(&count), "{seen:?}");
                }
            }
        }
    }

    #[test]
    fn prefers_lower_latency() {
        let backends = pool(&[1, 1]);
        backends[0].load.observe_latency(Duration::from_millis(80));
        backends[1].load.observe_latency(Duration::from_millis(5));
        let p2c = PeakEwma::new(&backends);
        assert_eq!(counts(&p2c, &backends, 100), [0, 100]);
    }

    #[test]
    fn the_most_expensive_of_three_never_wins() {
        let backends = pool(&[1, 1, 1]);
        for (b, ms) in backends.iter().zip([10, 20, 30]) {
            b.load.observe_latency(Duration::from_millis(ms));
        }
        let p2c = PeakEwma::new(&backends);
        let c = counts(&p2c, &backends, 3_000);
        assert_eq!(c[2], 0);
        // The cheapest wins both pairs it is in: two thirds of picks.
        assert!((1_800..2_200).contains(&c[0]), "{c:?}");
    }

    #[test]
    fn requests_in_flight_raise_the_cost() {
        let backends = pool(&[1, 1]);
        for b in &backends {
            b.load.observe_latency(Duration::from_millis(10));
        }
        let _busy = backends[0].start();
        let p2c = PeakEwma::new(&backends);
        assert_eq!(counts(&p2c, &backends, 50), [0, 50]);
    }

    #[test]
    fn one_available_is_returned() {
        let backends = pool(&[1, 1, 1, 1, 1]);
        backends[3].load.observe_latency(Duration::from_secs(1));
        for i in [0, 1, 2, 4] {
            backends[i].set_out(Out::Unhealthy, true);
        }
        let p2c = PeakEwma::new(&backends);
        assert_eq!(counts(&p2c, &backends, 20), [0, 0, 0, 20, 0]);
        backends[3].set_out(Out::Unhealthy, true);
        assert_eq!(p2c.pick(&backends, &plain()), None);
        assert_eq!(p2c.pick(&backends[..1], &plain()), None);
    }

    #[test]
    fn unmeasured_backends_share_evenly() {
        fastrand::seed(5);
        let backends = pool(&[1, 1, 1, 1]);
        let p2c = PeakEwma::new(&backends);
        for c in counts(&p2c, &backends, 40_000) {
            assert!((9_000..11_000).contains(&c));
        }
    }
}
