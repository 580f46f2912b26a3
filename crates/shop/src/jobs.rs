//! The shop's background jobs: payment, confirmation and the expiry of
//! unpaid reservations. The shop defines them (as a Django app defines its
//! Celery tasks); `stampede worker` runs them with the `stampede-worker`
//! runtime.
//!
//! Every effect is a conditional state change, so running a job twice
//! changes nothing the second time: a payment settles only an order that is
//! still `paying` (and its charge row has the order id as primary key), a
//! confirmation only a `paid` one, an expiry only a `reserved` one past its
//! time. That is what makes at-least-once delivery safe.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stampede_jobs::{BoxFuture, Handler, Job, NewJob, Schedule, When, admin, queue};
use stampede_store::orders::{self, PaymentResult};
use stampede_store::{Db, StoreError, now_ms};

/// The queue payments and confirmations wait in.
pub const PAYMENTS_QUEUE: &str = "payments";

/// The queue housekeeping jobs wait in.
pub const DEFAULT_QUEUE: &str = "default";

/// Every queue the shop's jobs use, for workers to claim from.
pub const QUEUES: [&str; 2] = [PAYMENTS_QUEUE, DEFAULT_QUEUE];

const PAYMENT: &str = "payment";
const CONFIRM: &str = "confirm";
const EXPIRE: &str = "expire_reservations";
const PRUNE: &str = "prune";

/// When old idempotency keys and completed jobs are deleted: hourly, at 17
/// past, away from the top of the hour when other crons crowd in.
const PRUNE_AT: &str = "17 * * * *";

/// How long a `201` stays replayable under its idempotency key (Stripe's
/// 24 hours).
const KEEP_IDEMPOTENCY_KEYS: Duration = Duration::from_secs(24 * 3600);

/// How long completed jobs stay for inspection.
const KEEP_COMPLETED_JOBS: Duration = Duration::from_secs(7 * 24 * 3600);

/// Rows changed per statement by the expiry and pruning jobs, so that no
/// statement holds its locks long.
const BATCH: i64 = 1_000;

/// How long the `tok_slow` test token takes to pay.
const SLOW_PAYMENT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize, Deserialize)]
struct PaymentPayload {
    order_id: String,
    token: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct OrderPayload {
    order_id: String,
}

/// The job that charges `token` for `order_id`.
pub fn payment(order_id: &str, token: &str) -> NewJob {
    let payload = PaymentPayload {
        order_id: order_id.to_owned(),
        token: token.to_owned(),
    };
    NewJob::new(PAYMENTS_QUEUE, PAYMENT, to_json(&payload))
}

/// The job that confirms a paid order; one per order, ever.
fn confirmation(order_id: &str) -> NewJob {
    let payload = OrderPayload {
        order_id: order_id.to_owned(),
    };
    NewJob {
        unique_key: Some(format!("confirm:{order_id}")),
        ..NewJob::new(PAYMENTS_QUEUE, CONFIRM, to_json(&payload))
    }
}

/// The handlers of every shop job, over `db`.
pub fn handlers(db: &Db) -> Vec<Arc<dyn Handler>> {
    vec![
        Arc::new(Payment { db: db.clone() }),
        Arc::new(Confirm { db: db.clone() }),
        Arc::new(Expire { db: db.clone() }),
        Arc::new(Prune { db: db.clone() }),
    ]
}

/// The shop's periodic jobs: expiring unpaid reservations every
/// `expire_every`, and pruning old keys and jobs every hour.
pub fn schedules(expire_every: Duration) -> Vec<Schedule> {
    let schedule = |name: &str, when| Schedule {
        name: name.to_owned(),
        when,
        job: NewJob::new(DEFAULT_QUEUE, name, "{}"),
    };
    let hourly = PRUNE_AT
        .parse()
        .map_or(When::Every(Duration::from_secs(3600)), When::Cron);
    vec![
        schedule(EXPIRE, When::Every(expire_every)),
        schedule(PRUNE, hourly),
    ]
}

fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn parse<T: for<'de> Deserialize<'de>>(job: &Job) -> Result<T, String> {
    serde_json::from_str(&job.payload).map_err(|e| format!("bad payload for {}: {e}", job.kind))
}

/// Charges the order's token: `tok_ok` pays, `tok_slow` pays after two
/// seconds, anything else (`tok_fail`) is declined and the stock returns.
struct Payment {
    db: Db,
}

impl Handler for Payment {
    fn kind(&self) -> &'static str {
        PAYMENT
    }

    fn run<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let p: PaymentPayload = parse(job)?;
            let result = match p.token.as_str() {
                "tok_ok" => PaymentResult::Charged(&p.token),
                "tok_slow" => {
                    tokio::time::sleep(SLOW_PAYMENT).await;
                    PaymentResult::Charged(&p.token)
                }
                _ => PaymentResult::Declined,
            };
            orders::settle_payment(&self.db, &p.order_id, result)
                .await
                .map_err(|e| e.to_string())?;
            if matches!(result, PaymentResult::Charged(_)) {
                // Enqueued even when this run found the order already paid:
                // an earlier run may have died between the two steps. The
                // unique key keeps it to one job per order.
                queue::enqueue(self.db.pool(), &confirmation(&p.order_id))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    }
}

/// Confirms a paid order.
struct Confirm {
    db: Db,
}

impl Handler for Confirm {
    fn kind(&self) -> &'static str {
        CONFIRM
    }

    fn run<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let p: OrderPayload = parse(job)?;
            orders::confirm(&self.db, &p.order_id)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
    }
}

/// Expires every reservation past its `expires_at`, returning its stock.
struct Expire {
    db: Db,
}

impl Handler for Expire {
    fn kind(&self) -> &'static str {
        EXPIRE
    }

    fn run<'a>(&'a self, _job: &'a Job) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(drain(|| orders::expire_due(&self.db, BATCH)))
    }
}

/// Deletes idempotency keys older than 24 hours and completed jobs older
/// than a week, in batches.
struct Prune {
    db: Db,
}

impl Handler for Prune {
    fn kind(&self) -> &'static str {
        PRUNE
    }

    fn run<'a>(&'a self, _job: &'a Job) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let ago = |d: Duration| {
                now_ms().saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            };
            let keys = ago(KEEP_IDEMPOTENCY_KEYS);
            drain(|| orders::prune_idempotency_keys(&self.db, keys, BATCH)).await?;
            let jobs = ago(KEEP_COMPLETED_JOBS);
            drain(|| admin::prune_completed(&self.db, jobs, BATCH)).await
        })
    }
}

/// Repeats a batched delete until a batch comes back short.
async fn drain<F, Fut>(mut batch: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, StoreError>>,
{
    loop {
        let deleted = batch().await.map_err(|e| e.to_string())?;
        if deleted < BATCH as u64 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_is_a_cron_schedule() {
        let schedules = schedules(Duration::from_secs(5));
        assert!(matches!(&schedules[1].when, When::Cron(c) if c.to_string() == PRUNE_AT));
    }
}
