//! Per-sku queues that turn a crowd of concurrent reservations into a few
//! large transactions.
//!
//! Each sku gets a bounded queue and one task that drains it: it takes
//! everything waiting (up to [`Settings::max_batch`]), commits it with
//! [`ledger::commit`], answers every waiter, and goes back for more. There
//! is no timer: a batch is simply what arrived while the previous one was
//! committing, so a lone request is committed at once and a crowd fills
//! batches by itself. A full queue answers [`ReserveError::Overloaded`] at
//! once instead of letting waits grow without bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use stampede_store::{Db, Order, StoreError};
use tokio::sync::{mpsc, oneshot};

use crate::ledger::{self, Batch, Outcome, Reservation};

/// How the queues behave.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Most requests committed in one transaction.
    pub max_batch: usize,
    /// Most requests waiting per sku before new ones are shed.
    pub max_waiting: usize,
    /// How long an unpaid reservation holds its stock.
    pub hold: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_batch: 512,
            max_waiting: 20_000,
            hold: Duration::from_secs(600),
        }
    }
}

/// Why a reservation got no outcome.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReserveError {
    /// Too many requests are already waiting for this sku (`503`).
    #[error("too many reservations are waiting for this sku")]
    Overloaded,
    /// The store failed; nothing was committed for this request. Shared
    /// by every request of the batch, so that each can report it.
    #[error("the reservation's batch failed")]
    Store(#[source] Arc<StoreError>),
    /// The sku's queue stopped before answering; nothing is known of the
    /// request (`503`).
    #[error("the reservation queue stopped")]
    Stopped,
}

/// An outcome and the sku's stock once its batch committed.
#[derive(Debug, Clone)]
pub struct Reply {
    /// What became of the request.
    pub outcome: Outcome,
    /// Stock left after the batch; `None` if the sku does not exist.
    pub stock_left: Option<i64>,
}

type Render = Arc<dyn Fn(&Order) -> String + Send + Sync>;

struct Waiting {
    request: Reservation,
    reply: oneshot::Sender<Result<Reply, ReserveError>>,
}

/// The per-sku queues of one process. Cheap to clone.
#[derive(Clone)]
pub struct GroupCommit {
    db: Db,
    settings: Arc<Settings>,
    render: Render,
    queues: Arc<Mutex<HashMap<String, mpsc::Sender<Waiting>>>>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Times a batch is retried when another node stored one of its
/// idempotency keys at the same moment (each retry answers those requests
/// from the stored key, so one retry nearly always suffices).
const CONFLICT_RETRIES: usize = 3;

impl GroupCommit {
    /// Queues over `db`; `render` writes an order as its `201` body.
    pub fn new(
        db: Db,
        settings: Settings,
        render: impl Fn(&Order) -> String + Send + Sync + 'static,
    ) -> Self {
        Self {
            db,
            settings: Arc::new(settings),
            render: Arc::new(render),
            queues: Arc::default(),
        }
    }

    /// Reserves for `request` on `sku`, returning once its batch committed
    /// (or failed). Must be called inside a tokio runtime.
    pub async fn reserve(&self, sku: &str, request: Reservation) -> Result<Reply, ReserveError> {
        let (reply, answer) = oneshot::channel();
        self.queue(sku)
            .try_send(Waiting { request, reply })
            .map_err(|_| ReserveError::Overloaded)?;
        answer.await.unwrap_or(Err(ReserveError::Stopped))
    }

    fn queue(&self, sku: &str) -> mpsc::Sender<Waiting> {
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(queue) = queues.get(sku).filter(|q| !q.is_closed()) {
            return queue.clone();
        }
        let (queue, waiting) = mpsc::channel(self.settings.max_waiting);
        queues.insert(sku.to_owned(), queue.clone());
        let drain = Drain {
            db: self.db.clone(),
            settings: Arc::clone(&self.settings),
            render: Arc::clone(&self.render),
            sku: sku.to_owned(),
        };
        tokio::spawn(drain.run(waiting));
        queue
    }
}

/// The task that commits one sku's batches. It holds no reference to the
/// queue map, so dropping the last [`GroupCommit`] ends it.
struct Drain {
    db: Db,
    settings: Arc<Settings>,
    render: Render,
    sku: String,
}

impl Drain {
    async fn run(self, mut queue: mpsc::Receiver<Waiting>) {
        let mut waiting = Vec::with_capacity(self.settings.max_batch);
        while queue.recv_many(&mut waiting, self.settings.max_batch).await > 0 {
            // A buyer who hung up gets nothing and costs nothing: with its
            // idempotency key a retry is decided afresh.
            waiting.retain(|w| !w.reply.is_closed());
            if !waiting.is_empty() {
                self.commit(&mut waiting).await;
            }
            waiting.clear();
        }
    }

    async fn commit(&self, waiting: &mut Vec<Waiting>) {
        let requests: Vec<Reservation> = waiting.iter().map(|w| w.request.clone()).collect();
        let batch = Batch {
            sku: &self.sku,
            requests: &requests,
            hold_ms: i64::try_from(self.settings.hold.as_millis()).unwrap_or(i64::MAX),
            render: &*self.render,
        };
        let mut result = ledger::commit(&self.db, &batch).await;
        for _ in 0..CONFLICT_RETRIES {
            if !matches!(result, Err(StoreError::Conflict)) {
                break;
            }
            result = ledger::commit(&self.db, &batch).await;
        }
        match result {
            Ok(committed) => {
                tracing::debug!(sku = %self.sku, batch = requests.len(), "committed a batch");
                let stock_left = committed.stock_left;
                for (w, outcome) in waiting.drain(..).zip(committed.outcomes) {
                    let _ = w.reply.send(Ok(Reply {
                        outcome,
                        stock_left,
                    }));
                }
            }
            Err(error) => {
                tracing::warn!(sku = %self.sku, batch = requests.len(), %error, "a reservation batch failed");
                let error = ReserveError::Store(Arc::new(error));
                for w in waiting.drain(..) {
                    let _ = w.reply.send(Err(error.clone()));
                }
            }
        }
    }
}
