//! The bodies that stream through the gateway, each enforcing one limit
//! without ever holding a whole body in memory.
//!
//! - [`RequestBody`]: client → backend, with the size limit (`413`) and the
//!   stall timeout (`408`).
//! - [`ResponseBody`]: backend → client, with the route's total deadline, and
//!   the [`Exchange`] record that counts the request when its response ends.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use stampede_balance::InFlight;
use tokio::time::Sleep;

use crate::admission::Admitted;
use crate::connection::OpenExchange;
use crate::telemetry::RequestMetrics;

/// Why a body stopped early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// The client sent more than the body limit allows.
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
    /// The client stopped sending its body for longer than the stall timeout.
    #[error("request body stalled for {0:?}")]
    Stalled(Duration),
    /// The route's total timeout passed while the response was streaming.
    #[error("response exceeded the route's total timeout")]
    Deadline,
    /// The connection on the other side failed.
    #[error(transparent)]
    Transport(#[from] hyper::Error),
    /// A static file could not be read (or compressed) to the end.
    #[error("reading the file failed: {0}")]
    File(tower_http::BoxError),
    /// A proxied answer could not be compressed (or read) to the end.
    #[error("compressing the response failed: {0}")]
    Compressing(tower_http::BoxError),
}

/// A client's request body on its way to a backend.
#[derive(Debug)]
pub(crate) struct RequestBody {
    /// `None` for a request without a body, which can then be sent again.
    inner: Option<Incoming>,
    limit: u64,
    received: u64,
    stall: Duration,
    // Allocated only if the body ever has to wait, which most never do.
    timer: Option<Pin<Box<Sleep>>>,
}

impl RequestBody {
    pub(crate) fn new(inner: Incoming, limit: u64, stall: Duration) -> Self {
        Self {
            inner: Some(inner),
            limit,
            received: 0,
            stall,
            timer: None,
        }
    }

    /// No body at all.
    pub(crate) fn empty() -> Self {
        Self {
            inner: None,
            limit: 0,
            received: 0,
            stall: Duration::ZERO,
            timer: None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let Some(inner) = &mut this.inner else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    if this.received > this.limit {
                        return Poll::Ready(Some(Err(BodyError::TooLarge(this.limit))));
                    }
                }
                if let Some(timer) = &mut this.timer {
                    timer
                        .as_mut()
                        .reset(tokio::time::Instant::now() + this.stall);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let stall = this.stall;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(BodyError::Stalled(stall))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// One request's record: counted in metrics, and its backend's in-flight
/// count released, when the response body ends or is dropped. Dropping is
/// the one event every outcome shares (finished, failed, client gone).
#[derive(Debug)]
pub(crate) struct Exchange {
    /// Taken when the exchange is counted, so it is counted once.
    metrics: Option<Arc<RequestMetrics>>,
    status: u16,
    started: Instant,
    _in_flight: Option<InFlight>,
    /// The request's place under its route's concurrency limit, if any,
    /// given back when the exchange ends.
    _admitted: Admitted,
}

impl Exchange {
    pub(crate) fn new(
        metrics: Arc<RequestMetrics>,
        status: u16,
        started: Instant,
        in_flight: Option<InFlight>,
    ) -> Self {
        Self {
            metrics: Some(metrics),
            status,
            started,
            _in_flight: in_flight,
            _admitted: None,
        }
    }

    /// Keeps the request's place under its route's limit until the
    /// exchange ends.
    pub(crate) fn hold(mut self, admitted: Admitted) -> Self {
        self._admitted = admitted;
        self
    }

    /// Counts the exchange as ended at `now`, a time the caller has read
    /// anyway (the fast path reuses it), sparing a clock read.
    pub(crate) fn finish(mut self, now: Instant) {
        self.count(now);
    }

    fn count(&mut self, now: Instant) {
        if let Some(metrics) = self.metrics.take() {
            metrics.record(self.status, now.saturating_duration_since(self.started));
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if self.metrics.is_some() {
            self.count(Instant::now());
        }
    }
}

/// A response on its way to the client.
#[derive(Debug)]
pub(crate) struct ResponseBody {
    kind: Kind,
    deadline: Option<Pin<Box<Sleep>>>,
    _exchange: Option<Exchange>,
    /// Keeps the client connection from counting as idle until the body ends.
    _open: Option<OpenExchange>,
}

#[derive(Debug)]
enum Kind {
    Upstream(Incoming),
    Full(Option<Bytes>),
    /// A body made in the gateway by other code: a static file.
    Boxed(UnsyncBoxBody<Bytes, BodyError>),
}

impl ResponseBody {
    /// A backend's body, cut off at `deadline` if the route has one.
    pub(crate) fn upstream(
        inner: Incoming,
        deadline: Option<tokio::time::Instant>,
        exchange: Exchange,
    ) -> Self {
        Self {
            kind: Kind::Upstream(inner),
            deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
            _exchange: Some(exchange),
            _open: None,
        }
    }

    /// A body the gateway wrote itself (errors, admin pages).
    pub(crate) fn full(bytes: impl Into<Bytes>, exchange: Option<Exchange>) -> Self {
        Self {
            kind: Kind::Full(Some(bytes.into())),
            deadline: None,
            _exchange: exchange,
            _open: None,
        }
    }

    /// A body from elsewhere in the gateway (a file), not yet counted:
    /// see [`ResponseBody::counted`].
    pub(crate) fn boxed(inner: UnsyncBoxBody<Bytes, BodyError>) -> Self {
        Self {
            kind: Kind::Boxed(inner),
            deadline: None,
            _exchange: None,
            _open: None,
        }
    }

    /// This body, counting `exchange` when it ends.
    pub(crate) fn counted(mut self, exchange: Exchange) -> Self {
        self._exchange = Some(exchange);
        self
    }

    /// Marks the client connection busy until this body ends or is dropped.
    pub(crate) fn hold(&mut self, open: OpenExchange) {
        self._open = Some(open);
    }

    /// No body at all (`101 Switching Protocols`).
    pub(crate) fn empty(exchange: Option<Exchange>) -> Self {
        Self {
            kind: Kind::Full(None),
            deadline: None,
            _exchange: exchange,
            _open: None,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match &mut this.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Boxed(inner) => Pin::new(inner).poll_frame(cx),
            Kind::Upstream(inner) => {
                if let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) {
                    return Poll::Ready(frame.map(|f| f.map_err(BodyError::from)));
                }
                if let Some(deadline) = &mut this.deadline {
                    ready!(deadline.as_mut().poll(cx));
                    return Poll::Ready(Some(Err(BodyError::Deadline)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Upstream(inner) => inner.is_end_stream(),
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Boxed(inner) => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Upstream(inner) => inner.size_hint(),
            Kind::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Boxed(inner) => inner.size_hint(),
        }
    }
}
