//! The one transaction that commits a batch of reservations for one sku.
//!
//! ```text
//! BEGIN (IMMEDIATE on SQLite)
//!   SELECT stock, limit, start FROM products WHERE sku = ? FOR NO KEY UPDATE
//!   SELECT remembered 201s for the batch's idempotency keys (probes)
//!   SELECT live units per buyer of the batch for this sku (a probe each)
//!   -- decide every request in arrival order (rules::Shelf::take)
//!   UPDATE products SET stock_left = stock_left - <units granted>
//!   INSERT INTO orders VALUES (...), (...), ...
//!   INSERT INTO idempotency_keys VALUES (...), ... ON CONFLICT DO NOTHING
//! COMMIT (or ROLLBACK when nothing was granted: a refusal writes nothing)
//! ```
//!
//! Every read that a decision depends on happens after the row lock is
//! held, so batches from any number of nodes see each other's effects.
//!
//! The reads of buyers' holdings and of stored keys are correlated
//! subqueries over a `VALUES` list of the batch's buyers or keys, because
//! each can only be answered by an index probe, so a batch costs the same
//! however many orders the sale has taken. Written as `IN (...)` lists or
//! joins, they left the plan to PostgreSQL's estimates, which are wrong
//! exactly when it matters: at the start of a sale the tables are young
//! (no statistics yet), and the plan a connection caches while they are
//! near empty (a hashed full scan) is kept as they grow. Every batch then
//! read every order or key taken so far (0.8 s for the holdings of 512
//! buyers at 100,000 orders), and group commit ran no faster than one
//! transaction per reservation.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Row, Transaction};
use stampede_store::orders::{LIVE_STATUSES_SQL, Remembered};
use stampede_store::{Db, Order, OrderStatus, StoreError, now_ms, placeholders};

use crate::rules::{Refusal, Shelf};

/// One buyer's request, as the shop validated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The logged-in buyer.
    pub username: String,
    /// Units asked for, at least 1.
    pub quantity: i64,
    /// The `Idempotency-Key` header and the request's fingerprint, if sent.
    pub idempotency: Option<Idempotency>,
}

/// An `Idempotency-Key` and what the request carrying it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// The header's value.
    pub key: String,
    /// The request's parameters, canonically written: a later request with
    /// the same key must have the same fingerprint to be replayed.
    pub fingerprint: String,
}

/// What became of one reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stock reserved; the order and the `201` body that was stored with
    /// its idempotency key (if any) and must be sent as is.
    Reserved {
        /// The new order.
        order: Order,
        /// The `201` body.
        body: String,
    },
    /// The same key and request were answered `201` before: this body again.
    Replayed(String),
    /// The same key was used for a different request (`422`).
    Mismatch,
    /// Refused; nothing was written for it.
    Refused(Refusal),
}

/// A batch for one sku, and what its orders look like.
pub struct Batch<'a> {
    /// The sku every request of the batch is for.
    pub sku: &'a str,
    /// The requests, in arrival order.
    pub requests: &'a [Reservation],
    /// How long an unpaid reservation holds its stock, in ms.
    pub hold_ms: i64,
    /// Renders an order as the `201` body (the shop's JSON), so the body
    /// can be stored with its idempotency key in the same transaction.
    pub render: &'a (dyn Fn(&Order) -> String + Sync),
}

/// A committed batch.
#[derive(Debug)]
pub struct Committed {
    /// One outcome per request, in the batch's order.
    pub outcomes: Vec<Outcome>,
    /// The sku's stock after the batch (`None`: no such sku).
    pub stock_left: Option<i64>,
}

/// Decides and commits `batch` in one transaction. On error nothing was
/// committed; [`StoreError::Conflict`] means another node stored one of the
/// batch's idempotency keys at the same moment, and running the batch again
/// will answer that request from the stored `201`.
pub async fn commit(db: &Db, batch: &Batch<'_>) -> Result<Committed, StoreError> {
    let mut tx = db.begin_write().await?;
    let now = now_ms();
    let mut shelf = lock_shelf(&mut tx, db, batch.sku).await?;
    let mut remembered = remembered(&mut tx, batch.requests).await?;
    let mut holdings = match shelf {
        Some(_) => holdings(&mut tx, batch.sku, batch.requests).await?,
        None => HashMap::new(),
    };

    let mut granted = Vec::new();
    let mut outcomes = Vec::with_capacity(batch.requests.len());
    for request in batch.requests {
        let key = request
            .idempotency
            .as_ref()
            .map(|i| (request.username.clone(), i.key.clone()));
        if let Some(stored) = key.as_ref().and_then(|k| remembered.get(k)) {
            let same = request
                .idempotency
                .as_ref()
                .is_some_and(|i| i.fingerprint == stored.fingerprint);
            outcomes.push(if same {
                Outcome::Replayed(stored.response.clone())
            } else {
                Outcome::Mismatch
            });
            continue;
        }
        let verdict = match shelf.as_mut() {
            None => Err(Refusal::NotFound),
            Some(shelf) => {
                let held = holdings.entry(request.username.clone()).or_insert(0);
                shelf.take(now, held, request.quantity)
            }
        };
        let outcome = match verdict {
            Err(refusal) => Outcome::Refused(refusal),
            Ok(()) => {
                let order = new_order(batch, request, now);
                let body = (batch.render)(&order);
                if let (Some(key), Some(i)) = (key, &request.idempotency) {
                    let stored = Remembered {
                        fingerprint: i.fingerprint.clone(),
                        response: body.clone(),
                    };
                    remembered.insert(key, stored);
                }
                granted.push(outcomes.len());
                Outcome::Reserved { order, body }
            }
        };
        outcomes.push(outcome);
    }

    if granted.is_empty() {
        tx.rollback().await?;
    } else {
        write(&mut tx, batch, &outcomes, &granted, now).await?;
        tx.commit().await?;
    }
    Ok(Committed {
        outcomes,
        stock_left: shelf.map(|s| s.stock_left),
    })
}

async fn lock_shelf(
    tx: &mut Transaction<'static, Any>,
    db: &Db,
    sku: &str,
) -> Result<Option<Shelf>, StoreError> {
    let sql = format!(
        "SELECT stock_left, per_user_limit, sale_starts_at FROM products WHERE sku = $1{}",
        db.dialect().for_update()
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(sku)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|row| {
        Ok(Shelf {
            stock_left: row.try_get(0)?,
            per_user_limit: row.try_get(1)?,
            sale_starts_at: row.try_get(2)?,
        })
    })
    .transpose()
}

/// A buyer and one of their idempotency keys.
type UserKey = (String, String);

type Remembers = HashMap<UserKey, Remembered>;

/// The stored `201`s of the batch's idempotency keys, by (user, key).
async fn remembered(
    tx: &mut Transaction<'static, Any>,
    requests: &[Reservation],
) -> Result<Remembers, StoreError> {
    let mut keyed: Vec<(&str, &str)> = requests
        .iter()
        .filter_map(|r| {
            r.idempotency
                .as_ref()
                .map(|i| (r.username.as_str(), i.key.as_str()))
        })
        .collect();
    if keyed.is_empty() {
        return Ok(HashMap::new());
    }
    keyed.sort_unstable();
    keyed.dedup();
    // Primary-key probes, never a join (see the module doc). Two per key,
    // as a scalar subquery yields one column; NULL: no stored key (the
    // fingerprint column is NOT NULL).
    let probe = "FROM idempotency_keys k WHERE k.username = b.column1 AND k.idem_key = b.column2";
    let sql = format!(
        "SELECT b.column1, b.column2, (SELECT k.fingerprint {probe}), (SELECT k.response {probe})
         FROM (VALUES {}) AS b",
        placeholders(keyed.len(), 2, 1)
    );
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for (user, key) in keyed {
        query = query.bind(user).bind(key);
    }
    let rows = query.fetch_all(&mut **tx).await?;
    let mut stored = HashMap::new();
    for row in &rows {
        if let Some((key, remembered)) = remembered_from_row(row)? {
            stored.insert(key, remembered);
        }
    }
    Ok(stored)
}

/// A stored key's row, or `None` for a key never stored.
fn remembered_from_row(row: &AnyRow) -> Result<Option<(UserKey, Remembered)>, StoreError> {
    let Some(fingerprint) = row.try_get::<Option<String>, _>(2)? else {
        return Ok(None);
    };
    let key = (row.try_get(0)?, row.try_get(1)?);
    let stored = Remembered {
        fingerprint,
        response: row.try_get(3)?,
    };
    Ok(Some((key, stored)))
}

/// Live units of `sku` held by each buyer of the batch.
async fn holdings(
    tx: &mut Transaction<'static, Any>,
    sku: &str,
    requests: &[Reservation],
) -> Result<HashMap<String, i64>, StoreError> {
    let mut users: Vec<&str> = requests.iter().map(|r| r.username.as_str()).collect();
    users.sort_unstable();
    users.dedup();
    // The list is padded to a power of two with repeats of its last buyer
    // (a repeated row answers the same), so that a connection prepares a
    // handful of these statements rather than one per batch size: each new
    // statement costs PostgreSQL a parse and a plan and the batch an extra
    // round trip, on the sale's critical path.
    let size = users.len().next_power_of_two();
    let padding = users
        .last()
        .map(|last| std::iter::repeat_n(*last, size - users.len()));
    // One probe of orders_by_sku_user per buyer (see the module doc).
    let sql = format!(
        "SELECT b.column1, (SELECT CAST(SUM(o.quantity) AS BIGINT) FROM orders o
           WHERE o.sku = $1 AND o.username = b.column1 AND o.status IN ({LIVE_STATUSES_SQL}))
         FROM (VALUES {}) AS b",
        placeholders(size, 1, 2)
    );
    let mut query = sqlx::query(AssertSqlSafe(sql)).bind(sku);
    for user in users.iter().copied().chain(padding.into_iter().flatten()) {
        query = query.bind(user);
    }
    let rows = query.fetch_all(&mut **tx).await?;
    let mut held = HashMap::with_capacity(rows.len());
    for row in &rows {
        // NULL: the buyer holds nothing live.
        if let Some(units) = row.try_get::<Option<i64>, _>(1)? {
            held.insert(row.try_get(0)?, units);
        }
    }
    Ok(held)
}

fn new_order(batch: &Batch<'_>, request: &Reservation, now: i64) -> Order {
    Order {
        order_id: format!("ord_{now:012x}{:016x}", fastrand::u64(..)),
        username: request.username.clone(),
        sku: batch.sku.to_owned(),
        quantity: request.quantity,
        status: OrderStatus::Reserved,
        created_at: now,
        expires_at: now + batch.hold_ms,
    }
}

/// Takes the granted units off the shelf and records the new orders and
/// their idempotency keys.
async fn write(
    tx: &mut Transaction<'static, Any>,
    batch: &Batch<'_>,
    outcomes: &[Outcome],
    granted: &[usize],
    now: i64,
) -> Result<(), StoreError> {
    let orders: Vec<(&Order, &str, &Reservation)> = granted
        .iter()
        .filter_map(|&i| match &outcomes[i] {
            Outcome::Reserved { order, body } => Some((order, body.as_str(), &batch.requests[i])),
            _ => None,
        })
        .collect();
    let units: i64 = orders.iter().map(|(order, ..)| order.quantity).sum();
    let taken = sqlx::query(
        "UPDATE products SET stock_left = stock_left - $2 WHERE sku = $1 AND stock_left >= $2",
    )
    .bind(batch.sku)
    .bind(units)
    .execute(&mut **tx)
    .await?;
    if taken.rows_affected() != 1 {
        // Impossible while the row lock is held; never commit if it happens.
        return Err(StoreError::Corrupt(format!(
            "stock of `{}` changed under its lock",
            batch.sku
        )));
    }

    for chunk in orders.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO orders (order_id, username, sku, quantity, status, created_at, expires_at, updated_at) VALUES {}",
            placeholders(chunk.len(), 8, 1)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (order, ..) in chunk {
            query = query
                .bind(&order.order_id)
                .bind(&order.username)
                .bind(&order.sku)
                .bind(order.quantity)
                .bind(order.status.as_str())
                .bind(order.created_at)
                .bind(order.expires_at)
                .bind(now);
        }
        query.execute(&mut **tx).await?;
    }

    let keyed: Vec<_> = orders
        .iter()
        .filter_map(|(order, body, request)| {
            request.idempotency.as_ref().map(|i| (*order, *body, i))
        })
        .collect();
    for chunk in keyed.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO idempotency_keys (username, idem_key, fingerprint, order_id, response, created_at)
             VALUES {} ON CONFLICT (username, idem_key) DO NOTHING",
            placeholders(chunk.len(), 6, 1)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (order, body, i) in chunk {
            query = query
                .bind(&order.username)
                .bind(&i.key)
                .bind(&i.fingerprint)
                .bind(&order.order_id)
                .bind(*body)
                .bind(now);
        }
        if query.execute(&mut **tx).await?.rows_affected() != chunk.len() as u64 {
            return Err(StoreError::Conflict);
        }
    }
    Ok(())
}

/// Rows per multi-row `INSERT`: 8 columns x 500 rows stays far below both
/// engines' limits on bound values.
const ROWS_PER_INSERT: usize = 500;
