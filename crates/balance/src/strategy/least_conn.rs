//! Weighted least-connections: the backend with the fewest requests in
//! flight relative to its weight.
//!
//! Round-robin and random assume every request costs the same. When some are
//! slow (a checkout that waits on a payment provider next to a cached product
//! page), the backend that drew the slow ones piles up work while receiving
//! as many new requests as the others. Counting requests in flight
//! ([`Load::in_flight`](crate::Load::in_flight), kept by the proxy) reacts to
//! that directly: a slow backend holds more open requests and gets fewer new
//! ones (HAProxy `balance leastconn`, nginx `least_conn`).
//!
//! Weights scale capacity: the score is `(in_flight + 1) / weight`, so a
//! backend of weight 2 takes about twice the concurrent requests of one of
//! weight 1, and among idle backends the heavier one goes first. The `+ 1`
//! counts the request being placed (Envoy's least-request uses the same
//! `active + 1`). Scores are compared by cross-multiplication, as nginx does:
//! `a/wa < b/wb` iff `a*wb < b*wa`, exact in `u64` and without floats.
//!
//! Ties are common (every backend idle at start, or after a burst drains). A
//! scan that always starts at index 0 would send every tied pick to the
//! first backend; instead each pick starts one place further round the pool
//! (one atomic counter), so tied backends share the load round-robin, as
//! nginx does by falling back to round-robin among the tied peers.
//!
//! The scan is `O(n)` per request, fine for pools of tens of backends; for
//! large pools `p2c-ewma` gets most of the benefit in `O(1)`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{Backend, Pick, Strategy};

/// Weighted least-connections: the available backend with the least
/// `(in_flight + 1) / weight`, ties shared round-robin. (The file's module
/// docs explain the algorithm.)
#[derive(Debug, Default)]
pub struct LeastConn {
    /// Where the next scan starts, so ties rotate.
    start: AtomicUsize,
}

impl LeastConn {
    /// A least-connections strategy; the load it reads lives in the backends.
    pub fn new(_backends: &[Arc<Backend>]) -> Self {
        Self::default()
    }
}

impl Strategy for LeastConn {
    fn pick(&self, backends: &[Arc<Backend>], _request: &Pick<'_>) -> Option<usize> {
        let n = backends.len();
        if n == 0 {
            return None;
        }
        let start = self.start.fetch_add(1, Ordering::Relaxed) % n;
        // (index, in_flight + 1, weight) of the least loaded so far.
        let mut best: Option<(usize, u64, u64)> = None;
        for i in (0..n).map(|step| (start + step) % n) {
            let b = &backends[i];
            if !b.is_available() {
                continue;
            }
            let load = u64::from(b.load.in_flight()) + 1;
            let weight = u64::from(b.weight);
            if best.is_none_or(|(_, bl, bw)| load * bw < bl * weight) {
                best = Some((i, load, weight));
            }
        }
        best.map(|(i, _, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use crate::Out;

    use super::*;
    use crate::strategy::testing::{counts, plain, pool};

    #[test]
    fn prefers_the_idle_backend() {
        let backends = pool(&[1, 1, 1]);
        let _busy = [
            backends[0].start(),
            backends[1].start(),
            backends[1].start(),
        ];
        let lc = LeastConn::new(&backends);
        assert_eq!(counts(&lc, &backends, 30), [0, 0, 30]);
    }

    #[test]
    fn follows_in_flight_as_it_changes() {
        let backends = pool(&[1, 1]);
        let lc = LeastConn::new(&backends);
        let mut held = Vec::new();
        // Each pick is started and held: the two fill up alternately.
        for _ in 0..10 {
            let i = lc.pick(&backends, &plain()).unwrap();
            held.push(backends[i].start());
        }
        assert_eq!(backends[0].load.in_flight(), 5);
        assert_eq!(backends[1].load.in_flight(), 5);
        // Backend 0's requests finish: it is now the idle one.
        held.retain(|g| !Arc::ptr_eq(g.backend(), &backends[0]));
        assert_eq!(backends[0].load.in_flight(), 0);
        assert_eq!(lc.pick(&backends, &plain()), Some(0));
    }

    #[test]
    fn ties_rotate_instead_of_favouring_index_0() {
        let backends = pool(&[1, 1, 1, 1]);
        let lc = LeastConn::new(&backends);
        assert_eq!(counts(&lc, &backends, 400), [100; 4]);
    }

    #[test]
    fn weights_scale_capacity() {
        let backends = pool(&[3, 1]);
        let lc = LeastConn::new(&backends);
        // Idle: 1/3 beats 1/1.
        assert_eq!(lc.pick(&backends, &plain()), Some(0));
        let _a = [backends[0].start(), backends[0].start()];
        // 3/3 ties 1/1: both get picks.
        let c = counts(&lc, &backends, 10);
        assert!(c[0] > 0 && c[1] > 0, "{c:?}");
        let _b = backends[0].start();
        // 4/3 loses to 1/1.
        assert_eq!(counts(&lc, &backends, 10), [0, 10]);
    }

    #[test]
    fn skips_unavailable_even_if_idle() {
        let backends = pool(&[1, 1]);
        let _busy = backends[1].start();
        backends[0].set_out(Out::Unhealthy, true);
        let lc = LeastConn::new(&backends);
        assert_eq!(counts(&lc, &backends, 10), [0, 10]);
        backends[1].set_out(Out::Unhealthy, true);
        assert_eq!(lc.pick(&backends, &plain()), None);
    }
}
