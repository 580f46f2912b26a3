//! Admission control: what a route lets through to its pool when a crowd
//! bigger than the backends can serve arrives, so that the crowd waits
//! briefly or is told to come back instead of piling onto the backends.
//!
//! A route with `max_concurrency = N` lets at most N of its requests be in
//! flight at once; a request holds its place until its response has been
//! sent in full (the exchange keeps it). Up to `max_queue` more wait for a
//! place, first come first served, for `queue_timeout` at most; the rest
//! get `503 overloaded` with `Retry-After`.
//!
//! A route's mutable admission state (the places, the queue) lives in one
//! [`Admission`], built from an [`AdmissionConfig`] that compares with
//! `==`: a reload that leaves a route's admission keys alone can keep the
//! route's `Arc<Admission>`, and with it every place already taken.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::AdmissionConfig;
use crate::error::GatewayError;

/// One route's admission control and its state.
#[derive(Debug)]
pub(crate) struct Admission {
    config: AdmissionConfig,
    /// The places under the concurrency limit.
    places: Arc<Semaphore>,
    /// Requests waiting for a place now.
    queued: AtomicUsize,
}

/// A place under a route's limit, given back when dropped.
pub(crate) type Admitted = Option<OwnedSemaphorePermit>;

impl Admission {
    pub(crate) fn new(config: AdmissionConfig) -> Self {
        Self {
            places: Arc::new(Semaphore::new(config.max_concurrency)),
            queued: AtomicUsize::new(0),
            config,
        }
    }

    /// A place for one request under the limit, waiting in the queue if
    /// there is room in it; `Overloaded` when there is not, or the wait ran
    /// out.
    pub(crate) async fn admit(&self) -> Result<Admitted, GatewayError> {
        if let Ok(place) = Arc::clone(&self.places).try_acquire_owned() {
            return Ok(Some(place));
        }
        let Some(_in_queue) = InQueue::join(&self.queued, self.config.max_queue) else {
            return Err(GatewayError::Overloaded);
        };
        let place = Arc::clone(&self.places).acquire_owned();
        match tokio::time::timeout(self.config.queue_timeout, place).await {
            Ok(Ok(place)) => Ok(Some(place)),
            _ => Err(GatewayError::Overloaded),
        }
    }
}

/// A request's spot in a route's queue, left when dropped: when it gets a
/// place, when its wait runs out, and when the request itself is dropped
/// mid-wait (its client went away), which would otherwise leave the spot
/// taken for good.
struct InQueue<'a>(&'a AtomicUsize);

impl<'a> InQueue<'a> {
    /// Joins a queue of `queued` requests if it has fewer than `max`.
    fn join(queued: &'a AtomicUsize, max: usize) -> Option<Self> {
        let ahead = queued.fetch_add(1, Ordering::Relaxed);
        // Left again on drop, at once when the queue was full.
        let spot = Self(queued);
        (ahead < max).then_some(spot)
    }
}

impl Drop for InQueue<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
