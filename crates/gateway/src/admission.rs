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
//! 2. the route's **waiting room** (`room`), when it has one: while the
//!    route is at capacity, a visitor without a pass gets a place in line
//!    (`503 waiting_room`) and is let in, first come first served, as
//!    places free up.
//! 3. the route's **concurrency limit**: at most `max_concurrency` of its
//!    requests in flight at once; a request holds its place until its
//!    response has been sent in full (the exchange keeps it). Up to
//!    `max_queue` more wait for a place, first come first served, for
//!    `queue_timeout` at most; the rest get `503 overloaded` with
//!    `Retry-After`.
//!
//! Every answer admission control gives itself is counted in
//! `stampede_gateway_admission_refused_total`, by pool and reason.
//!
//! A route's mutable admission state (the buckets, the places, the queue,
//! the waiting room's line) lives in one [`Admission`], built from an
//! [`AdmissionConfig`] that compares with `==`: a reload that leaves a
//! route's admission keys alone can keep the route's `Arc<Admission>`, and
//! with it every bucket, every place already taken, and everyone's place in
//! line.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::HeaderValue;
use metrics::Counter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::AdmissionConfig;
use crate::error::GatewayError;
use crate::fields::Fields;
use crate::telemetry::ADMISSION_REFUSED;

mod rate;
mod room;

use rate::RateLimit;
pub(crate) use room::Waiting;
use room::WaitingRoom;

/// One route's admission control and its state.
#[derive(Debug)]
pub(crate) struct Admission {
    config: AdmissionConfig,
    rate: Option<RateLimit>,
    room: Option<WaitingRoom>,
    /// The places under the concurrency limit, if the route has one.
    places: Option<Arc<Semaphore>>,
    /// Requests waiting for a place now.
    queued: AtomicUsize,
    refused: Refusals,
}

/// A place under a route's limit, given back when dropped.
pub(crate) type Admitted = Option<OwnedSemaphorePermit>;

/// A request let in by the checks that need no waiting.
#[derive(Debug, Default)]
pub(crate) struct Entry {
    /// Its place under the concurrency limit, when the waiting room took
    /// one for it.
    pub(crate) place: Admitted,
    /// A waiting-room pass for its response to give (`Set-Cookie`).
    pub(crate) pass: Option<HeaderValue>,
}

/// The route where an admission state is used: its pool (for metrics), and
/// its host and prefix (for the waiting room's cookies).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope<'a> {
    pub(crate) pool: &'a str,
    pub(crate) host: Option<&'a str>,
    pub(crate) prefix: &'a str,
}

impl Admission {
    /// The settings this state was built from: a reload that leaves them
    /// alone keeps the state.
    pub(crate) fn config(&self) -> &AdmissionConfig {
        &self.config
    }

    /// Builds the state of `config` for a route; fails only when no random
    /// key can be drawn for its waiting room.
    pub(crate) fn new(config: AdmissionConfig, scope: Scope<'_>) -> Result<Self, getrandom::Error> {
        let places = config
            .max_concurrency
            .map(|limit| Arc::new(Semaphore::new(limit)));
        let room = match (&config.waiting_room, &places) {
            (Some(room), Some(places)) => Some(WaitingRoom::new(room, Arc::clone(places), scope)?),
            _ => None,
        };
        Ok(Self {
            rate: config.rate_limit.as_ref().map(RateLimit::new),
            room,
            places,
            queued: AtomicUsize::new(0),
            refused: Refusals::new(scope.pool),
            config,
        })
    }

    /// Lets a request from `client` in, or says why not: the checks that
    /// need no waiting (the rate limit, then the waiting room), done as soon
    /// as the request head is read.
    pub(crate) fn enter(
        &self,
        client: IpAddr,
        fields: &(impl Fields + ?Sized),
    ) -> Result<Entry, GatewayError> {
        if let Some(rate) = &self.rate {
            rate.check(client).map_err(|retry_after| {
                self.refused
                    .count(GatewayError::RateLimited { retry_after })
            })?;
        }
        match &self.room {
            Some(room) => room
                .enter(fields)
                .map_err(|error| self.refused.count(error)),
            None => Ok(Entry::default()),
        }
    }

    /// A place for one request under the concurrency limit (`None` when
    /// there is no limit; `place` when it has one already), waiting in the
    /// queue if there is room in it; `Overloaded` when there is not, or the
    /// wait ran out.
    pub(crate) async fn admit(&self, place: Admitted) -> Result<Admitted, GatewayError> {
        let (None, Some(places)) = (&place, &self.places) else {
            return Ok(place);
        };
        if let Ok(place) = Arc::clone(places).try_acquire_owned() {
            return Ok(Some(place));
        }
        match self.queue_for(places).await {
            Some(place) => Ok(Some(place)),
            None => Err(self.refused.count(GatewayError::Overloaded)),
        }
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

/// The counters of requests admission control answered itself, by reason.
#[derive(Debug)]
struct Refusals {
    rate_limited: Counter,
    waiting_room: Counter,
    overloaded: Counter,
}

impl Refusals {
    fn new(pool: &str) -> Self {
        let reason = |reason: &'static str| metrics::counter!(ADMISSION_REFUSED, "pool" => pool.to_owned(), "reason" => reason);
        Self {
            rate_limited: reason("rate_limited"),
            waiting_room: reason("waiting_room"),
            overloaded: reason("overloaded"),
        }
    }

    /// Counts `error` under its reason, and passes it on.
    fn count(&self, error: GatewayError) -> GatewayError {
        let counter = match &error {
            GatewayError::RateLimited { .. } => &self.rate_limited,
            GatewayError::Waiting(_) => &self.waiting_room,
            _ => &self.overloaded,
        };
        counter.increment(1);
        error
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
