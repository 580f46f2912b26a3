//! Round-robin: each backend in turn, weights ignored.
//!
//! The oldest and simplest balancer (LVS `rr`, HAProxy `balance roundrobin`,
//! nginx's default with equal weights). One shared counter is bumped per
//! request and taken modulo the pool size, so over any `n` consecutive picks
//! every backend gets one request. It needs no knowledge of the backends, and
//! the counter is a single atomic, so concurrent pickers never wait on a lock.
//!
//! When the backend the counter lands on is unavailable, the pick scans
//! forward to the next available one. That backend then briefly takes two
//! turns, which is what nginx and HAProxy do too; the alternative (skipping
//! turns in the counter) would need a lock or a CAS loop on the hot path.
//!
//! Use it when backends are identical and requests cost about the same;
//! otherwise prefer `least-conn` or `p2c-ewma`, which react to load.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{Backend, Pick, Strategy};

/// Round-robin over the available backends, weights ignored: one atomic
/// counter, no lock. (The file's module docs explain the algorithm.)
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// A round-robin starting at the first backend.
    pub fn new(_backends: &[Arc<Backend>]) -> Self {
        Self::default()
    }
}

impl Strategy for RoundRobin {
    fn pick(&self, backends: &[Arc<Backend>], _request: &Pick<'_>) -> Option<usize> {
        let n = backends.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|step| (start + step) % n)
            .find(|&i| backends[i].is_available())
    }
}

#[cfg(test)]
mod tests {
    use crate::Out;

    use super::*;
    use crate::strategy::testing::{counts, plain, pool};

    #[test]
    fn cycles_in_order() {
        let backends = pool(&[1, 5, 1]);
        let rr = RoundRobin::new(&backends);
        let picks: Vec<_> = (0..7)
            .map(|_| rr.pick(&backends, &plain()).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn cycles_evenly_ignoring_weights() {
        let backends = pool(&[1, 9, 3, 1]);
        let rr = RoundRobin::new(&backends);
        assert_eq!(counts(&rr, &backends, 400), [100; 4]);
    }

    #[test]
    fn skips_unavailable() {
        let backends = pool(&[1, 1, 1]);
        backends[1].set_out(Out::Unhealthy, true);
        let rr = RoundRobin::new(&backends);
        let c = counts(&rr, &backends, 300);
        assert_eq!(c[1], 0);
        assert_eq!(c[0] + c[2], 300);
        backends[0].set_out(Out::Unhealthy, true);
        backends[2].set_out(Out::Unhealthy, true);
        assert_eq!(rr.pick(&backends, &plain()), None);
    }
}
