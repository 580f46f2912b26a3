//! A backend and the live load figures the proxy feeds back to strategies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
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
    /// Whether strategies may choose this backend. Health checks and drains
    /// (a later layer) clear it; everything starts available.
    available: AtomicBool,
}

impl Backend {
    /// A backend at `addr` with the given weight (0 is raised to 1), available.
    pub fn new(addr: SocketAddr, weight: u32) -> Self {
        Self {
            addr,
            weight: weight.max(1),
            id: addr.to_string(),
            load: Load::default(),
            available: AtomicBool::new(true),
        }
    }

    /// Whether a strategy may pick this backend now.
    pub fn is_available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    /// Marks the backend (un)available for new picks; in-flight requests are untouched.
    pub fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::Relaxed);
    }

    /// Marks a request to this backend as started; the returned guard marks
    /// it finished when dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.load.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }
}

/// The load of one backend as the proxy observes it.
#[derive(Debug)]
pub struct Load {
    in_flight: AtomicU32,
    ewma: Mutex<Ewma>,
}

impl Default for Load {
    fn default() -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            ewma: Mutex::new(Ewma::new()),
        }
    }
}

/// Decay time of the latency average: how long an old observation keeps
/// half-ish its influence. Linkerd and Finagle use 10 s.
const EWMA_DECAY: Duration = Duration::from_secs(10);

/// Peak-EWMA of latency (Finagle/Linkerd): a slower observation replaces the
/// average at once (the "peak"), a faster one is blended in with a weight that
/// grows with the time since the last observation.
#[derive(Debug)]
struct Ewma {
    nanos: f64,
    stamp: Instant,
}

impl Ewma {
    fn new() -> Self {
        Self {
            nanos: 0.0,
            stamp: Instant::now(),
        }
    }

    fn observe(&mut self, rtt: Duration, now: Instant) {
        let rtt = rtt.as_nanos() as f64;
        let elapsed = now.saturating_duration_since(self.stamp).as_nanos() as f64;
        self.stamp = now;
        if rtt > self.nanos {
            self.nanos = rtt;
        } else {
            let w = (-elapsed / EWMA_DECAY.as_nanos() as f64).exp();
            self.nanos = self.nanos * w + rtt * (1.0 - w);
        }
    }
}

impl Load {
    /// Requests sent to the backend and not yet finished.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Records how long a response took to start arriving.
    pub fn observe_latency(&self, rtt: Duration) {
        let now = Instant::now();
        if let Ok(mut ewma) = self.ewma.lock() {
            ewma.observe(rtt, now);
        }
    }

    /// The peak-EWMA latency in nanoseconds (0 before any observation).
    pub fn ewma_nanos(&self) -> f64 {
        self.ewma.lock().map(|e| e.nanos).unwrap_or(0.0)
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
