//! A backend and the live load figures the proxy feeds back to strategies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One upstream server of a pool.
#[derive(Debug)]
pub struct Backend {
    /// Where to connect.
    pub addr: SocketAddr,
    /// Relative share of traffic for weighted strategies; at least 1.
    pub weight: u32,
    /// A stable name used in sticky cookies and metrics (`host:port` by default).
    pub id: String,
    /// Live load, updated by the proxy and read by load-aware strategies.
    pub load: Load,
    /// Why the backend is out of rotation, as a set of [`Out`] bits; it is
    /// available while the set is empty. One atomic, so a pick reads one
    /// word however many reasons there are.
    out: AtomicU8,
    /// When the backend last came back into rotation, in nanoseconds since
    /// `load.epoch` (0: not since it was created, or [`Backend::settle`]d),
    /// for a slow start to ramp its traffic up from.
    returned: AtomicU64,
}

/// A reason for a backend to be out of rotation. Each is set and cleared by
/// its own owner, so a drained backend that turns healthy stays drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Out {
    /// Its health checks fail.
    Unhealthy = 1,
    /// An operator is draining it: no new requests, in-flight ones finish.
    Draining = 2,
    /// Its live answers kept failing; it is out for a while.
    Ejected = 4,
}

impl Backend {
    /// A backend at `addr` with the given weight (0 is raised to 1), available.
    pub fn new(addr: SocketAddr, weight: u32) -> Self {
        Self {
            addr,
            weight: weight.max(1),
            id: addr.to_string(),
            load: Load::default(),
            out: AtomicU8::new(0),
            returned: AtomicU64::new(0),
        }
    }

    /// Whether a strategy may pick this backend now: nothing holds it out.
    pub fn is_available(&self) -> bool {
        self.out.load(Ordering::Relaxed) == 0
    }

    /// Whether `reason` holds the backend out.
    pub fn is_out(&self, reason: Out) -> bool {
        self.out.load(Ordering::Relaxed) & reason as u8 != 0
    }

    /// Sets or clears one reason to keep the backend out of new picks;
    /// in-flight requests are untouched. Clearing the last reason marks the
    /// backend as returned (see [`Backend::returned_for`]).
    pub fn set_out(&self, reason: Out, out: bool) {
        if out {
            self.out.fetch_or(reason as u8, Ordering::Relaxed);
        } else if self.out.fetch_and(!(reason as u8), Ordering::Relaxed) == reason as u8 {
            self.mark_returned(Instant::now());
        }
    }

    /// Records that the backend (re)joined the rotation at `now`: it came
    /// back, or a reload added it to a running pool.
    pub fn mark_returned(&self, now: Instant) {
        let since = now.saturating_duration_since(self.load.epoch).as_nanos() as u64;
        self.returned.store(since.max(1), Ordering::Relaxed);
    }

    /// How long ago the backend returned to rotation, unless it has not
    /// since it was created or the return was settled. One atomic read
    /// (and no clock read) when there is none, so a pool can ask on every
    /// pick.
    pub fn returned_for(&self) -> Option<Duration> {
        let since = self.returned.load(Ordering::Relaxed);
        if since == 0 {
            return None;
        }
        let now = self.load.epoch.elapsed().as_nanos() as u64;
        Some(Duration::from_nanos(now.saturating_sub(since)))
    }

    /// Forgets the last return: whatever ramped up after it is over.
    pub fn settle(&self) {
        self.returned.store(0, Ordering::Relaxed);
    }

    /// Marks a request to this backend as started; the returned guard marks
    /// it finished when dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.load.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }
}

/// The load of one backend as the proxy observes it.
///
/// Plain atomics, no lock: every pick of a load-aware strategy reads two
/// backends' figures, and every response writes one. Two responses racing
/// to update the average may lose one observation, which an estimate that
/// decays over seconds does not notice.
#[derive(Debug)]
pub struct Load {
    in_flight: AtomicU32,
    /// Peak-EWMA latency in nanoseconds, as `f64` bits.
    ewma_bits: AtomicU64,
    /// When the average was last updated, in nanoseconds since `epoch`.
    stamp: AtomicU64,
    epoch: Instant,
}

impl Default for Load {
    fn default() -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            ewma_bits: AtomicU64::new(0f64.to_bits()),
            stamp: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

/// Decay time of the latency average: how long an old observation keeps
/// weight. Linkerd and Finagle use 10 s.
const EWMA_DECAY: Duration = Duration::from_secs(10);

impl Load {
    /// Requests sent to the backend and not yet finished.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Records how long a response took to start arriving.
    ///
    /// Peak-EWMA (Finagle, Linkerd): a slower observation replaces the
    /// average at once (the "peak"), so a backend that turns slow is avoided
    /// immediately; a faster one is blended in with a weight that grows with
    /// the time since the last observation, so recovery is believed slowly.
    pub fn observe_latency(&self, rtt: Duration) {
        self.observe_latency_at(rtt, Instant::now());
    }

    /// [`Load::observe_latency`] with the current time the caller already
    /// read, sparing a clock read on the hot path.
    pub fn observe_latency_at(&self, rtt: Duration, now: Instant) {
        let now = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        let rtt = rtt.as_nanos() as f64;
        let previous = self.ewma_nanos();
        let elapsed = now.saturating_sub(self.stamp.swap(now, Ordering::Relaxed)) as f64;
        let next = if rtt > previous {
            rtt
        } else {
            let w = (-elapsed / EWMA_DECAY.as_nanos() as f64).exp();
            previous * w + rtt * (1.0 - w)
        };
        self.ewma_bits.store(next.to_bits(), Ordering::Relaxed);
    }

    /// The peak-EWMA latency in nanoseconds (0 before any observation).
    pub fn ewma_nanos(&self) -> f64 {
        f64::from_bits(self.ewma_bits.load(Ordering::Relaxed))
    }

    /// Linkerd's peak-EWMA cost: latency times (in-flight + 1), so that an
    /// idle fast backend beats a busy one, and an unmeasured backend (cost 0)
    /// is tried first.
    pub fn cost(&self) -> f64 {
        self.ewma_nanos() * f64::from(self.in_flight() + 1)
    }
}

/// Held while a request is in flight to a backend; dropping it (response
/// finished, client gone, error) decrements the count exactly once.
#[derive(Debug)]
pub struct InFlight(Arc<Backend>);

impl InFlight {
    /// The backend this request went to.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.load.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_is_available_only_while_no_reason_holds_it_out() {
        let b = Backend::new(SocketAddr::from(([127, 0, 0, 1], 1)), 1);
        assert!(b.is_available());
        b.set_out(Out::Draining, true);
        b.set_out(Out::Unhealthy, true);
        b.set_out(Out::Unhealthy, false);
        assert!(!b.is_available(), "healthy again, but still draining");
        assert!(b.is_out(Out::Draining) && !b.is_out(Out::Unhealthy));
        b.set_out(Out::Draining, false);
        assert!(b.is_available());
    }

    #[test]
    fn clearing_the_last_reason_marks_a_return_until_settled() {
        let b = Backend::new(SocketAddr::from(([127, 0, 0, 1], 1)), 1);
        assert_eq!(b.returned_for(), None, "never out");
        b.set_out(Out::Unhealthy, true);
        b.set_out(Out::Draining, true);
        b.set_out(Out::Unhealthy, false);
        assert_eq!(b.returned_for(), None, "still draining");
        b.set_out(Out::Draining, false);
        let since = b.returned_for().expect("returned");
        assert!(since < Duration::from_secs(5), "{since:?}");
        b.settle();
        assert_eq!(b.returned_for(), None);
    }
}
