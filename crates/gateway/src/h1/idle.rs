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

    /// Parks a connection whose last response was read completely, unless
    /// `max` are already parked; drops those idle longer than `max_idle`.
    pub(crate) fn put(
        &self,
        (pool, backend): (usize, usize),
        upstream: Upstream,
        max: usize,
        max_idle: Duration,
    ) {
        if let Ok(mut parked) = self.slots[pool][backend].lock() {
            while parked
                .front()
                .is_some_and(|p| p.since.elapsed() >= max_idle)
            {
                parked.pop_front();
            }
            if parked.len() < max {
                parked.push_back(Parked {
                    upstream,
                    since: Instant::now(),
                });
            }
        }
    }
}
