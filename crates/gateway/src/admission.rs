//! Admission control: what a route lets through to its pool when a crowd
//! bigger than the backends can serve arrives, so that the crowd waits
//! briefly or is told to come back instead of piling onto the backends.
//!
//! A request meets, in order:
//!
//! 1. the route's **rate limit** (`rate`), a token bucket for the whole
//!    route or for each client address; beyond it `429 rate_limited` with
//!    `Retry-After`, the seconds until a token is back. Checked as soon as
//!    the client's address is known, before a backend is chosen, and
//!    without a lock.
//! 2. the route's **concurrency limit**: at most `max_concurrency` of its
//!    requests in flight at once; a request holds its place until its
//!    response has been sent in full (the exchange keeps it). Up to
//!    `max_queue` more wait for a place, first come first served, for
//!    `queue_timeout` at most; the rest get `503 overloaded` with
//!    `Retry-After`.
//!
//! Refusals are counted in `stampede_gateway_admission_refused_total`, by
//! pool and reason.
//!
//! A route's mutable admission state (the buckets, the places, the queue)
//! lives in one [`Admission`], built from an [`AdmissionConfig`] that
//! compares with `==`: a reload that leaves a route's admission keys alone
//! can keep the route's `Arc<Admission>`, and with it every bucket and
//! every place already taken.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use metrics::Counter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::AdmissionConfig;
use crate::error::GatewayError;
use crate::telemetry::ADMISSION_REFUSED;

mod rate;

use rate::RateLimit;

/// One route's admission control and its state.
#[derive(Debug)]
pub(crate) struct Admission {
    config: AdmissionConfig,
    rate: Option<RateLimit>,
    /// The places under the concurrency limit, if the route has one.
    places: Option<Arc<Semaphore>>,
    /// Requests waiting for a place now.
    queued: AtomicUsize,
    rate_limited: Counter,
    overloaded: Counter,
}

/// A place under a route's limit, given back when dropped.
pub(crate) type Admitted = Option<OwnedSemaphorePermit>;

impl Admission {
    /// Builds the state of `config` for a route of `pool`.
    pub(crate) fn new(config: AdmissionConfig, pool: &str) -> Self {
        let refused = |reason: &'static str| metrics::counter!(ADMISSION_REFUSED, "pool" => pool.to_owned(), "reason" => reason);
        Self {
            rate: config.rate_limit.as_ref().map(RateLimit::new),
            places: config
                .max_concurrency
                .map(|limit| Arc::new(Semaphore::new(limit))),
            queued: AtomicUsize::new(0),
            rate_limited: refused("rate_limited"),
            overloaded: refused("overloaded"),
            config,
        }
    }

    /// Lets a request from `client` in, or says why not: the checks that
    /// need no waiting, done as soon as the request head is read.
    pub(crate) fn enter(&self, client: IpAddr) -> Result<(), GatewayError> {
        if let Some(rate) = &self.rate {
            rate.check(client).map_err(|retry_after| {
                self.rate_limited.increment(1);
                GatewayError::RateLimited { retry_after }
            })?;
        }
        Ok(())
    }

    /// A place for one request under the concurrency limit (`None` when
    /// there is no limit), waiting in the queue if there is room in it;
    /// `Overloaded` when there is not, or the wait ran out.
    pub(crate) async fn admit(&self) -> Result<Admitted, GatewayError> {
        let Some(places) = &self.places else {
            return Ok(None);
        };
        if let Ok(place) = Arc::clone(places).try_acquire_owned() {
            return Ok(Some(place));
        }
        let place = self.queue_for(places).await;
        if place.is_none() {
            self.overloaded.increment(1);
        }
        place.map(Some).ok_or(GatewayError::Overloaded)
    }

    /// Waits in the queue for a place, if the queue has room; `None` when
    /// it has not, or the wait ran out.
    async fn queue_for(&self, places: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
        let _in_queue = InQueue::join(&self.queued, self.config.max_queue)?;
        let wait = Arc::clone(places).acquire_owned();
        tokio::time::timeout(self.config.queue_timeout, wait)
            .await
            .ok()?
            .ok()
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
