//! What each backend did lately, for the operations page: requests/s,
//! error rate and p50/p99 latency over the last few seconds.
//!
//! Prometheus' handles cannot be read back, and its histograms are
//! cumulative since start, so the page keeps its own figures: a [`Tally`]
//! per backend, written by the proxy as it counts a request for
//! Prometheus (one relaxed atomic increment, two for a 5xx; no lock, no
//! clock read), and a [`Window`] on the admin thread that samples every tally
//! once a second into a ring of snapshots. A rate over the window is then
//! the difference between now and the oldest snapshot, so the hot path
//! never learns that anybody is looking.
//!
//! Latency goes into fixed log-linear buckets of microseconds: four per
//! power of two, so a quantile read from them is within 12.5 % of the
//! truth, and the whole histogram is 120 counters.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Buckets per power of two (as a shift: 4).
const SUB_BITS: u32 = 2;
const SUB: usize = 1 << SUB_BITS;
/// Latency buckets: up to 2^30 µs (about 18 minutes) and over.
const BUCKETS: usize = SUB * 30;

/// How far back the page's rates look.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);
/// How often the window samples the tallies.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// One backend's counters since it joined the gateway.
#[derive(Debug)]
pub(crate) struct Tally {
    /// Answers with a 5xx status, the gateway's own 502/504 included.
    errors: AtomicU64,
    /// Requests by latency; together, every request.
    latency: [AtomicU64; BUCKETS],
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            errors: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Tally {
    /// Counts one answered request: on the hot path, so only relaxed
    /// increments (nobody needs them ordered with anything else).
    pub(crate) fn record(&self, status: u16, elapsed: Duration) {
        if status >= 500 {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency[bucket(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counters as they are now.
    pub(crate) fn counts(&self) -> Counts {
        let latency: Box<[u64]> = self
            .latency
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        Counts {
            requests: latency.iter().sum(),
            errors: self.errors.load(Ordering::Relaxed),
            latency,
        }
    }
}

/// A reading of a [`Tally`], or the difference between two.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Counts {
    requests: u64,
    errors: u64,
    latency: Box<[u64]>,
}

impl Counts {
    /// What happened between `earlier` and `self`.
    fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            requests: self.requests.saturating_sub(earlier.requests),
            errors: self.errors.saturating_sub(earlier.errors),
            latency: self
                .latency
                .iter()
                .zip(&earlier.latency)
                .map(|(now, then)| now.saturating_sub(*then))
                .collect(),
        }
    }

    /// The latency below which a share `q` (0 to 1) of the requests fell,
    /// in milliseconds, interpolated within its bucket; none without
    /// requests.
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.requests == 0 {
            return None;
        }
        let rank = q * self.requests as f64;
        let mut below = 0u64;
        for (i, &n) in self.latency.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let (low, high) = (lower_bound(i) as f64, lower_bound(i + 1) as f64);
                let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
                return Some((low + (high - low) * within) / 1000.0);
            }
            below += n;
        }
        Some(lower_bound(BUCKETS) as f64 / 1000.0)
    }
}

/// The bucket of a latency in microseconds: exact below 8 µs, then
/// [`SUB`] buckets per power of two.
fn bucket(micros: u64) -> usize {
    if micros < (2 * SUB) as u64 {
        return micros as usize;
    }
    let octave = 63 - micros.leading_zeros();
    let sub = (micros >> (octave - SUB_BITS)) as usize & (SUB - 1);
    ((octave - SUB_BITS + 1) as usize * SUB + sub).min(BUCKETS - 1)
}

/// The smallest latency (µs) bucket `i` holds.
fn lower_bound(i: usize) -> u64 {
    if i < 2 * SUB {
        return i as u64;
    }
    let octave = (i / SUB) as u32 + SUB_BITS - 1;
    ((SUB + i % SUB) as u64) << (octave - SUB_BITS)
}

/// A backend's figures over the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rates {
    pub(crate) requests_per_second: f64,
    /// Share of answers that were 5xx (0 to 1); none without requests.
    pub(crate) error_rate: Option<f64>,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
}

/// A backend as the window knows it: its pool's name and its id.
pub(crate) type Key = (String, String);

/// Snapshots of every backend's tally, one per [`SAMPLE_EVERY`], spanning
/// [`WINDOW`]. Lives on the admin thread.
#[derive(Debug, Default)]
pub(crate) struct Window {
    samples: VecDeque<(Instant, HashMap<Key, Counts>)>,
}

impl Window {
    /// Keeps `now`'s readings, and drops those older than the window
    /// needs. Backends that left the gateway leave with their samples.
    pub(crate) fn sample(&mut self, at: Instant, readings: HashMap<Key, Counts>) {
        self.samples.push_back((at, readings));
        while self
            .samples
            .get(1)
            .is_some_and(|(second, _)| at.duration_since(*second) >= WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// The figures of backend `key` from the oldest sample to `now`'s
    /// reading `counts`. A backend newer than the oldest sample counts from
    /// zero, which it was.
    pub(crate) fn rates(&self, key: &Key, now: Instant, counts: &Counts) -> Rates {
        let (delta, seconds) = match self.samples.front() {
            Some((at, readings)) => {
                let seconds = now.saturating_duration_since(*at).as_secs_f64();
                match readings.get(key) {
                    Some(then) => (counts.since(then), seconds),
                    None => (counts.clone(), seconds),
                }
            }
            None => (counts.clone(), 0.0),
        };
        let requests = delta.requests as f64;
        Rates {
            requests_per_second: if seconds > 0.0 {
                requests / seconds
            } else {
                0.0
            },
            error_rate: (delta.requests > 0).then(|| delta.errors as f64 / requests),
            p50_ms: delta.quantile_ms(0.5),
            p99_ms: delta.quantile_ms(0.99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_each_holds_its_lower_bound() {
        for i in 0..BUCKETS {
            assert_eq!(bucket(lower_bound(i)), i, "bucket {i}");
            assert!(lower_bound(i) < lower_bound(i + 1), "bucket {i}");
            assert_eq!(bucket(lower_bound(i + 1) - 1), i, "top of bucket {i}");
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        // Four buckets per octave: neighbours differ by at most a quarter.
        for i in 2 * SUB..BUCKETS {
            let (low, high) = (lower_bound(i) as f64, lower_bound(i + 1) as f64);
            assert!(high / low <= 1.25 + 1e-9, "bucket {i}: {low}..{high}");
        }
    }

    fn tally(latencies_ms: &[(u64, u16)]) -> Tally {
        let tally = Tally::default();
        for &(ms, status) in latencies_ms {
            tally.record(status, Duration::from_millis(ms));
        }
        tally
    }

    #[test]
    fn quantiles_come_within_a_bucket_of_the_truth() {
        let mut answers: Vec<(u64, u16)> = (1..=98).map(|_| (10, 200)).collect();
        answers.extend([(400, 200), (400, 503)]);
        let counts = tally(&answers).counts();
        let p50 = counts.quantile_ms(0.5).unwrap();
        let p99 = counts.quantile_ms(0.99).unwrap();
        assert!((9.0..=12.5).contains(&p50), "{p50}");
        assert!((350.0..=500.0).contains(&p99), "{p99}");
        assert_eq!(tally(&[]).counts().quantile_ms(0.5), None);
    }

    #[test]
    fn rates_are_the_difference_over_the_window() {
        let key: Key = ("web".into(), "127.0.0.1:1".into());
        let tally = tally(&[(5, 200); 100]);
        let start = Instant::now();
        let mut window = Window::default();
        window.sample(start, HashMap::from([(key.clone(), tally.counts())]));
        for _ in 0..20 {
            tally.record(200, Duration::from_millis(5));
        }
        for _ in 0..20 {
            tally.record(502, Duration::from_millis(5));
        }
        let rates = window.rates(&key, start + Duration::from_secs(4), &tally.counts());
        assert!((rates.requests_per_second - 10.0).abs() < 1e-9, "{rates:?}");
        assert_eq!(rates.error_rate, Some(0.5));
        let unknown = ("web".into(), "127.0.0.1:2".into());
        let fresh = Tally::default().counts();
        let idle = window.rates(&unknown, start + Duration::from_secs(4), &fresh);
        assert_eq!((idle.requests_per_second, idle.error_rate), (0.0, None));
    }

    #[test]
    fn samples_older_than_the_window_are_dropped() {
        let mut window = Window::default();
        let start = Instant::now();
        for s in 0..30 {
            window.sample(start + Duration::from_secs(s), HashMap::new());
        }
        let oldest = window.samples.front().unwrap().0;
        assert_eq!(oldest, start + Duration::from_secs(19));
        assert_eq!(window.samples.len(), 11);
    }
}
