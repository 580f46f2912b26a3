//! Idle keep-alive connections to backends, per worker thread.
//!
//! A connection is put back only after its response was read to the end,
//! and taken most-recently-used first (the warmest socket, the one least
//! likely to have been closed by the backend's own idle timeout). Those idle
//! longer than the pool's `idle_timeout` are dropped when met. A backend may
//! still close a connection just as it is reused; the fast path retries such
//! a request once on a fresh connection when nothing of it can have been
//! processed (see `h1`).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::TcpStream;

use crate::telemetry::GaugeGuard;

/// An open connection to one backend.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) stream: TcpStream,
    /// Bytes read from the backend and not yet relayed.
    pub(crate) buf: BytesMut,
    /// Whether it served a request before (and so may have gone stale).
    pub(crate) reused: bool,
    pub(crate) _open: GaugeGuard,
}

#[derive(Debug)]
struct Parked {
    upstream: Upstream,
    since: Instant,
}

/// The idle connections of one worker: `[pool][backend]`.
#[derive(Debug)]
pub(crate) struct IdleConnections {
    slots: Vec<Vec<Mutex<VecDeque<Parked>>>>,
}

impl IdleConnections {
    /// Empty slots for pools of these sizes.
    pub(crate) fn new(backends_per_pool: impl Iterator<Item = usize>) -> Self {
        Self {
            slots: backends_per_pool
                .map(|n| (0..n).map(|_| Mutex::new(VecDeque::new())).collect())
                .collect(),
        }
    }

    /// The most recently parked connection to the backend that, at `now`,
    /// has not been idle longer than `max_idle`.
    pub(crate) fn take(
        &self,
        (pool, backend): (usize, usize),
        now: Instant,
        max_idle: Duration,
    ) -> Option<Upstream> {
        let mut parked = self.slots[pool][backend].lock().ok()?;
        while let Some(p) = parked.pop_back() {
            if now.saturating_duration_since(p.since) < max_idle {
                let mut upstream = p.upstream;
                upstream.reused = true;
                return Some(upstream);
            }
        }
        None
    }

    /// Parks, at `now`, a connection whose last response was read
    /// completely, unless `max` are already parked; drops those idle longer
    /// than `max_idle`.
    pub(crate) fn put(
        &self,
        (pool, backend): (usize, usize),
        upstream: Upstream,
        max: usize,
        (now, max_idle): (Instant, Duration),
    ) {
        if let Ok(mut parked) = self.slots[pool][backend].lock() {
            drop_expired(&mut parked, now, max_idle);
            if parked.len() < max {
                parked.push_back(Parked {
                    upstream,
                    since: now,
                });
            }
        }
    }

    /// Closes the connections idle longer than their pool's timeout (given
    /// per pool, in order). Run periodically: after a burst, nothing else
    /// would visit the connections it left parked, and their backends would
    /// close them into half-closed sockets that linger.
    pub(crate) fn prune(&self, idle_timeouts: impl Iterator<Item = Duration>) {
        let now = Instant::now();
        for (slots, max_idle) in self.slots.iter().zip(idle_timeouts) {
            for slot in slots {
                if let Ok(mut parked) = slot.lock() {
                    drop_expired(&mut parked, now, max_idle);
                }
            }
        }
    }

    #[cfg(test)]
    fn parked(&self, (pool, backend): (usize, usize)) -> usize {
        self.slots[pool][backend].lock().map_or(0, |p| p.len())
    }
}

/// Drops the oldest parked connections while they are older than `max_idle`.
fn drop_expired(parked: &mut VecDeque<Parked>, now: Instant, max_idle: Duration) {
    while parked
        .front()
        .is_some_and(|p| now.saturating_duration_since(p.since) >= max_idle)
    {
        parked.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn upstream() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        Upstream {
            stream,
            buf: BytesMut::new(),
            reused: false,
            _open: GaugeGuard::new(metrics::Gauge::noop()),
        }
    }

    #[tokio::test]
    async fn newest_first_and_marked_reused() {
        let idle = IdleConnections::new([2].into_iter());
        let (first, second) = (upstream().await, upstream().await);
        let second_port = second.stream.local_addr().unwrap().port();
        let long = Duration::from_secs(60);
        idle.put((0, 1), first, 8, (Instant::now(), long));
        idle.put((0, 1), second, 8, (Instant::now(), long));
        let taken = idle.take((0, 1), Instant::now(), long).unwrap();
        assert!(taken.reused);
        assert_eq!(taken.stream.local_addr().unwrap().port(), second_port);
        assert!(idle.take((0, 0), Instant::now(), long).is_none());
    }

    #[tokio::test]
    async fn full_slots_refuse_and_pruning_closes_expired() {
        let idle = IdleConnections::new([1, 1].into_iter());
        let long = Duration::from_secs(60);
        idle.put((0, 0), upstream().await, 1, (Instant::now(), long));
        idle.put((0, 0), upstream().await, 1, (Instant::now(), long));
        assert_eq!(idle.parked((0, 0)), 1, "max parked per backend");
        idle.put((1, 0), upstream().await, 1, (Instant::now(), long));
        idle.prune([long, Duration::ZERO].into_iter());
        assert_eq!(idle.parked((0, 0)), 1, "within its pool's timeout");
        assert_eq!(idle.parked((1, 0)), 0, "past its pool's timeout");
    }
}
