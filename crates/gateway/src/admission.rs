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
        if self.queued.fetch_add(1, Ordering::Relaxed) >= self.config.max_queue {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(GatewayError::Overloaded);
        }
        let place = Arc::clone(&self.places).acquire_owned();
        let waited = tokio::time::timeout(self.config.queue_timeout, place).await;
        self.queued.fetch_sub(1, Ordering::Relaxed);
        match waited {
            Ok(Ok(place)) => Ok(Some(place)),
            _ => Err(GatewayError::Overloaded),
        }
    }
}
