//! Optional error reports to Sentry: every ERROR-level log line becomes a
//! Sentry event, tagged with the fields of the spans around it (a shop
//! request's `request_id` and `route`). Off unless a DSN is given.
//!
//! Three parts, each kept small:
//!
//! - [`layer`]: a `tracing` layer the binary always installs. Until
//!   [`start`] has run it costs one atomic load per span and per ERROR
//!   event; after, it records span fields and turns ERROR events into
//!   Sentry events.
//! - [`start`]: the Sentry client (`sentry-core`: events, envelopes,
//!   sampling) with [`HyperTransport`], bound for the whole process.
//! - [`HyperTransport`]: sends envelopes to the DSN's
//!   `/api/{project}/envelope/` endpoint with the workspace's hyper client,
//!   from a thread of its own, so that a request never waits on Sentry:
//!   a full queue drops the event, and a `429` pauses sending for its
//!   `Retry-After`. [`Reports`], dropped at shutdown, flushes the queue
//!   for up to two seconds.
//!
//! Only `http://` DSNs are accepted: the transport has no TLS client. For
//! sentry.io (HTTPS only), point the DSN at a Sentry Relay next to the
//! process, which forwards over TLS.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sentry_core::protocol::{Envelope, Event, Level, Value};
use sentry_core::types::{Dsn, Scheme};
use sentry_core::{Client, ClientOptions, Transport};
use tokio::sync::{mpsc, oneshot};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Subscriber, event::Event as TracingEvent};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Envelopes waiting to be sent; more are dropped.
const QUEUE: usize = 100;

/// How long one envelope may take to send.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// How long [`Reports`] waits at shutdown for queued envelopes.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

/// This build, as Sentry's `release` and the client's name.
const RELEASE: &str = concat!("stampede@", env!("CARGO_PKG_VERSION"));

/// The client every ERROR event goes to, once [`start`] has run.
static CLIENT: OnceLock<Arc<Client>> = OnceLock::new();

/// Why reporting could not start.
#[derive(Debug, thiserror::Error)]
pub enum SentryError {
    /// The DSN does not parse.
    #[error("`{dsn}` is not a Sentry DSN (http://KEY@HOST/PROJECT): {reason}")]
    Dsn {
        /// The DSN given.
        dsn: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The DSN is `https://`, which the transport cannot send to.
    #[error(
        "`{0}` is https; stampede sends over plain HTTP only: point it at a Sentry Relay on this host or network (http://KEY@relay:3000/PROJECT), which forwards over TLS"
    )]
    Https(String),
    /// The transport's thread could not start.
    #[error("starting the Sentry transport: {0}")]
    Thread(#[source] std::io::Error),
}

/// Checks `dsn` as [`start`] would, without starting anything: for a
/// configuration check.
pub fn check_dsn(dsn: &str) -> Result<Dsn, SentryError> {
    let parsed = Dsn::from_str(dsn).map_err(|e| SentryError::Dsn {
        dsn: dsn.to_owned(),
        reason: e.to_string(),
    })?;
    match parsed.scheme() {
        Scheme::Http => Ok(parsed),
        Scheme::Https => Err(SentryError::Https(dsn.to_owned())),
    }
}

/// Reporting while alive; dropping it flushes what is queued.
#[derive(Debug)]
#[must_use = "reporting stops, flushing, when this is dropped"]
pub struct Reports {
    client: Arc<Client>,
}

impl Drop for Reports {
    fn drop(&mut self) {
        self.client.close(Some(SHUTDOWN_FLUSH));
    }
}

/// Starts reporting ERROR events to `dsn`, naming this process
/// `server_name` (the node's or worker's name). A second call in the same
/// process (as in tests) keeps the first client.
pub fn start(dsn: &str, server_name: &str) -> Result<Reports, SentryError> {
    let dsn = check_dsn(dsn)?;
    let transport = Arc::new(HyperTransport::start(&dsn)?);
    let mut options = ClientOptions::default();
    options.dsn = Some(dsn);
    options.release = Some(RELEASE.into());
    options.server_name = Some(server_name.to_owned().into());
    options.transport = Some(Arc::new(transport));
    let client = Arc::clone(CLIENT.get_or_init(|| Arc::new(Client::from(options))));
    Ok(Reports { client })
}

/// The layer that turns ERROR events into Sentry events (see the module).
pub fn layer() -> ErrorReports {
    ErrorReports
}

/// See [`layer`].
#[derive(Debug, Clone, Copy)]
pub struct ErrorReports;

/// A span's or an event's fields, as text.
#[derive(Debug, Clone, Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%value` fields arrive here too, and print as Display.
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S> Layer<S> for ErrorReports
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if CLIENT.get().is_none() {
            return;
        }
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_event(&self, event: &TracingEvent<'_>, ctx: Context<'_, S>) {
        if *event.metadata().level() != tracing::Level::ERROR {
            return;
        }
        let Some(client) = CLIENT.get() else { return };
        let mut tags = BTreeMap::new();
        for span in ctx
            .event_scope(event)
            .into_iter()
            .flat_map(|s| s.from_root())
        {
            if let Some(fields) = span.extensions().get::<Fields>() {
                tags.extend(fields.0.clone());
            }
        }
        client.capture_event(sentry_event(event, tags), None);
    }
}

/// The Sentry event of an ERROR line: its message, its other fields as
/// `extra` (the `error` with its causes among them), its target as the
/// logger, and `tags`.
fn sentry_event(event: &TracingEvent<'_>, tags: BTreeMap<String, String>) -> Event<'static> {
    let mut fields = Fields::default();
    event.record(&mut fields);
    let message = fields.0.remove("message");
    Event {
        level: Level::Error,
        logger: Some(event.metadata().target().to_owned()),
        message,
        tags,
        extra: fields
            .0
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
        ..Event::default()
    }
}

/// What the sending thread is asked to do.
#[derive(Debug)]
enum Job {
    /// Send one serialized envelope.
    Send(Bytes),
    /// Answer once everything queued before is sent.
    Flush(oneshot::Sender<()>),
}

/// Sentry's `Transport` over hyper, on a thread of its own (see the
/// module).
#[derive(Debug)]
pub struct HyperTransport {
    queue: mpsc::Sender<Job>,
}

impl HyperTransport {
    /// Starts the sending thread for `dsn`'s envelope endpoint.
    fn start(dsn: &Dsn) -> Result<Self, SentryError> {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let endpoint = Endpoint {
            url: dsn.envelope_api_url().to_string(),
            auth: dsn.to_auth(Some(RELEASE)).to_string(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(SentryError::Thread)?;
        std::thread::Builder::new()
            .name("sentry".into())
            .spawn(move || runtime.block_on(endpoint.serve(jobs)))
            .map_err(SentryError::Thread)?;
        Ok(Self { queue })
    }
}

impl Transport for HyperTransport {
    fn send_envelope(&self, envelope: Envelope) {
        let mut body = Vec::new();
        if envelope.to_writer(&mut body).is_ok() {
            // A full queue drops the event: a request never waits on Sentry.
            let _ = self.queue.try_send(Job::Send(body.into()));
        }
    }

    fn flush(&self, timeout: Duration) -> bool {
        let (done, flushed) = oneshot::channel();
        if self.queue.try_send(Job::Flush(done)).is_err() {
            return false;
        }
        // Called from any thread, in or out of a runtime: wait without one.
        let deadline = std::time::Instant::now() + timeout;
        let mut flushed = flushed;
        while std::time::Instant::now() < deadline {
            match flushed.try_recv() {
                Ok(()) => return true,
                Err(oneshot::error::TryRecvError::Closed) => return false,
                Err(oneshot::error::TryRecvError::Empty) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        false
    }
}

/// Where envelopes go, and how.
#[derive(Debug)]
struct Endpoint {
    url: String,
    auth: String,
}

impl Endpoint {
    /// Sends what is queued, in order, until the transport is dropped.
    async fn serve(self, mut jobs: mpsc::Receiver<Job>) {
        let client = HttpClient::builder(TokioExecutor::new()).build(HttpConnector::new());
        let mut paused_until = None;
        while let Some(job) = jobs.recv().await {
            match job {
                Job::Flush(done) => {
                    let _ = done.send(());
                }
                Job::Send(_) if paused_until.is_some_and(|t| tokio::time::Instant::now() < t) => {}
                Job::Send(body) => {
                    let pause = self.send(&client, body).await;
                    paused_until = pause.map(|p| tokio::time::Instant::now() + p);
                }
            }
        }
    }

    /// Posts one envelope; returns how long to pause if Sentry said `429`.
    /// Failures are dropped quietly: logging them would report them.
    async fn send(
        &self,
        client: &HttpClient<HttpConnector, Full<Bytes>>,
        body: Bytes,
    ) -> Option<Duration> {
        let request = http::Request::post(&self.url)
            .header("x-sentry-auth", &self.auth)
            .header(http::header::CONTENT_TYPE, "application/x-sentry-envelope")
            .body(Full::new(body))
            .ok()?;
        let response = tokio::time::timeout(SEND_TIMEOUT, client.request(request))
            .await
            .ok()?
            .ok()?;
        if response.status() != http::StatusCode::TOO_MANY_REQUESTS {
            return None;
        }
        let seconds = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(60);
        Some(Duration::from_secs(seconds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(dsn: &str) -> String {
        check_dsn(dsn)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn dsns_are_checked_and_https_is_refused_with_a_way_out() {
        assert!(check_dsn("http://abc@127.0.0.1:9000/42").is_ok());
        assert!(error("not a dsn").starts_with("`not a dsn` is not a Sentry DSN"));
        assert!(
            error("http://127.0.0.1/42").contains("not a Sentry DSN"),
            "no key"
        );
        let https = error("https://abc@o1.ingest.sentry.io/42");
        assert!(https.contains("Sentry Relay"), "{https}");
    }
}
