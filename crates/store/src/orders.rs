//! Orders after they are made: reading them, paying and cancelling, and the
//! idempotency keys that remember their `201`s. Making them (the hot path)
//! is the `stampede-inventory` crate's job.

use std::fmt;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::{Db, StoreError, now_ms};

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    /// Stock is held for the user until `expires_at`.
    Reserved,
    /// The user asked to pay; the payment job runs.
    Paying,
    /// The payment went through.
    Paid,
    /// The order is confirmed; final.
    Confirmed,
    /// Not paid in time; its stock returned. Final.
    Expired,
    /// Cancelled by the user; its stock returned. Final.
    Cancelled,
    /// The payment failed; its stock returned. Final.
    PaymentFailed,
}

impl OrderStatus {
    /// Every status, in the order of the contract's stats entry.
    pub const ALL: [Self; 7] = [
        Self::Reserved,
        Self::Paying,
        Self::Paid,
        Self::Confirmed,
        Self::Expired,
        Self::Cancelled,
        Self::PaymentFailed,
    ];

    /// The contract's name for the status, also how it is stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Paying => "paying",
            Self::Paid => "paid",
            Self::Confirmed => "confirmed",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
            Self::PaymentFailed => "payment_failed",
        }
    }

    /// Whether the order holds stock and counts towards the user's limit.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            Self::Reserved | Self::Paying | Self::Paid | Self::Confirmed
        )
    }

    /// The status stored as `text`.
    pub(crate) fn parse(text: &str) -> Result<Self, StoreError> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown order status `{text}`")))
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `'reserved', 'paying', 'paid', 'confirmed'`: the live statuses, for SQL.
pub const LIVE_STATUSES_SQL: &str = "'reserved', 'paying', 'paid', 'confirmed'";

/// An order as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// The order's id (`ord_...`).
    pub order_id: String,
    /// Who made it.
    pub username: String,
    /// What it holds.
    pub sku: String,
    /// How many units.
    pub quantity: i64,
    /// Where it is in its life.
    pub status: OrderStatus,
    /// When it was made (ms since the epoch).
    pub created_at: i64,
    /// When an unpaid reservation lapses (ms since the epoch).
    pub expires_at: i64,
}

/// `SELECT` of every column [`from_row`] reads, then `tail`.
macro_rules! select {
    ($tail:literal) => {
        concat!(
            "SELECT order_id, username, sku, quantity, status, created_at, expires_at FROM orders ",
            $tail
        )
    };
}

fn from_row(row: &AnyRow) -> Result<Order, StoreError> {
    Ok(Order {
        order_id: row.try_get(0)?,
        username: row.try_get(1)?,
        sku: row.try_get(2)?,
        quantity: row.try_get(3)?,
        status: OrderStatus::parse(row.try_get(4)?)?,
        created_at: row.try_get(5)?,
        expires_at: row.try_get(6)?,
    })
}

/// Most orders [`list_for_user`] returns, newest first.
pub const LIST_LIMIT: i64 = 1_000;

/// `username`'s order `order_id`; another user's order is `None`, exactly
/// like a missing one, so ids reveal nothing.
pub async fn get_for_user(
    db: &Db,
    order_id: &str,
    username: &str,
) -> Result<Option<Order>, StoreError> {
    let row = sqlx::query(select!("WHERE order_id = $1 AND username = $2"))
        .bind(order_id)
        .bind(username)
        .fetch_optional(&mut *db.acquire().await?)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// `username`'s orders, newest first, at most [`LIST_LIMIT`].
pub async fn list_for_user(db: &Db, username: &str) -> Result<Vec<Order>, StoreError> {
    let rows = sqlx::query(select!(
        "WHERE username = $1 ORDER BY created_at DESC, order_id DESC LIMIT $2"
    ))
    .bind(username)
    .bind(LIST_LIMIT)
    .fetch_all(&mut *db.acquire().await?)
    .await?;
    rows.iter().map(from_row).collect()
}

/// What became of a request to move an order on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Done; the order as it is now.
    Done(Order),
    /// No such order for this user.
    NotFound,
    /// The order exists but is not in a state that allows the move.
    Refused(Order),
}

/// `reserved -> paying`, if the reservation has not lapsed, inside the
/// caller's transaction (which enqueues the payment job with it).
pub async fn start_payment(
    tx: &mut AnyConnection,
    order_id: &str,
    username: &str,
) -> Result<Transition, StoreError> {
    let done = sqlx::query(
        "UPDATE orders SET status = 'paying', updated_at = $3
         WHERE order_id = $1 AND username = $2 AND status = 'reserved' AND expires_at > $3",
    )
    .bind(order_id)
    .bind(username)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    settle(tx, order_id, username, done.rows_affected() == 1).await
}

/// `reserved -> cancelled`, returning the order's units to stock in the
/// same transaction.
pub async fn cancel(db: &Db, order_id: &str, username: &str) -> Result<Transition, StoreError> {
    let mut tx = db.begin_write().await?;
    let moved = move_and_restock(
        &mut tx,
        "UPDATE orders SET status = 'cancelled', updated_at = $2
         WHERE order_id = $1 AND username = $3 AND status = 'reserved'
         RETURNING sku, quantity",
        order_id,
        Some(username),
    )
    .await?;
    let transition = settle(&mut tx, order_id, username, moved).await?;
    tx.commit().await?;
    Ok(transition)
}

/// Runs `sql` — an `UPDATE` of orders with `$1` the order id, `$2` now and
/// `$3` (if given) the username, `RETURNING sku, quantity` — and gives the
/// returned units back to their products. True if an order moved.
async fn move_and_restock(
    tx: &mut AnyConnection,
    sql: &'static str,
    order_id: &str,
    username: Option<&str>,
) -> Result<bool, StoreError> {
    let mut query = sqlx::query(sql).bind(order_id).bind(now_ms());
    if let Some(username) = username {
        query = query.bind(username);
    }
    let rows = query.fetch_all(&mut *tx).await?;
    restock(tx, &rows).await?;
    Ok(!rows.is_empty())
}

/// Adds the `(sku, quantity)` of `rows` back to stock, one `UPDATE` per sku.
async fn restock(tx: &mut AnyConnection, rows: &[AnyRow]) -> Result<(), StoreError> {
    let mut per_sku: Vec<(String, i64)> = Vec::new();
    for row in rows {
        let (sku, quantity): (String, i64) = (row.try_get(0)?, row.try_get(1)?);
        match per_sku.iter_mut().find(|(s, _)| *s == sku) {
            Some((_, total)) => *total += quantity,
            None => per_sku.push((sku, quantity)),
        }
    }
    for (sku, quantity) in per_sku {
        sqlx::query("UPDATE products SET stock_left = stock_left + $2 WHERE sku = $1")
            .bind(sku)
            .bind(quantity)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

async fn settle(
    tx: &mut AnyConnection,
    order_id: &str,
    username: &str,
    moved: bool,
) -> Result<Transition, StoreError> {
    let row = sqlx::query(select!("WHERE order_id = $1 AND username = $2"))
        .bind(order_id)
        .bind(username)
        .fetch_optional(&mut *tx)
        .await?;
    Ok(match row.as_ref().map(from_row).transpose()? {
        None => Transition::NotFound,
        Some(order) if moved => Transition::Done(order),
        Some(order) => Transition::Refused(order),
    })
}

/// What the payment provider said about an order's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentResult<'a> {
    /// Charged: `paying -> paid`, and one charge row with this token.
    Charged(&'a str),
    /// Declined: `paying -> payment_failed`, and the units go back on sale.
    Declined,
}

/// Applies a payment's result to an order that is still `paying`; false
/// if it was not (already settled by an earlier run of the job), in which
/// case nothing changes — so however often the job runs, an order is
/// charged at most once.
pub async fn settle_payment(
    db: &Db,
    order_id: &str,
    result: PaymentResult<'_>,
) -> Result<bool, StoreError> {
    let mut tx = db.begin_write().await?;
    let moved = match result {
        PaymentResult::Declined => {
            move_and_restock(
                &mut tx,
                "UPDATE orders SET status = 'payment_failed', updated_at = $2
                 WHERE order_id = $1 AND status = 'paying' RETURNING sku, quantity",
                order_id,
                None,
            )
            .await?
        }
        PaymentResult::Charged(token) => charge(&mut tx, order_id, token).await?,
    };
    tx.commit().await?;
    Ok(moved)
}

async fn charge(tx: &mut AnyConnection, order_id: &str, token: &str) -> Result<bool, StoreError> {
    let now = now_ms();
    let paid = sqlx::query(
        "UPDATE orders SET status = 'paid', updated_at = $2 WHERE order_id = $1 AND status = 'paying'",
    )
    .bind(order_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if paid.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO charges (order_id, amount_cents, token, charged_at)
         SELECT o.order_id, o.quantity * p.price_cents, $2, $3
         FROM orders o JOIN products p ON p.sku = o.sku WHERE o.order_id = $1
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order_id)
    .bind(token)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(true)
}

/// `paid -> confirmed`; false if the order was not `paid`.
pub async fn confirm(db: &Db, order_id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE orders SET status = 'confirmed', updated_at = $2 WHERE order_id = $1 AND status = 'paid'",
    )
    .bind(order_id)
    .bind(now_ms())
    .execute(&mut *db.acquire().await?)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Expires up to `limit` reservations whose `expires_at` has passed and
/// gives their units back; returns how many expired.
pub async fn expire_due(db: &Db, limit: i64) -> Result<u64, StoreError> {
    let mut tx = db.begin_write().await?;
    let now = now_ms();
    let rows = sqlx::query(
        "UPDATE orders SET status = 'expired', updated_at = $1
         WHERE order_id IN (
             SELECT order_id FROM orders WHERE status = 'reserved' AND expires_at <= $1 LIMIT $2)
         AND status = 'reserved'
         RETURNING sku, quantity",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    restock(&mut tx, &rows).await?;
    tx.commit().await?;
    Ok(rows.len() as u64)
}

/// Forgets idempotency keys stored before `before` (ms), up to `limit`;
/// a retry after that is a new request (Stripe keeps keys 24 hours).
pub async fn prune_idempotency_keys(db: &Db, before: i64, limit: i64) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "DELETE FROM idempotency_keys WHERE (username, idem_key) IN (
             SELECT username, idem_key FROM idempotency_keys WHERE created_at < $1 LIMIT $2)",
    )
    .bind(before)
    .bind(limit)
    .execute(&mut *db.acquire().await?)
    .await?;
    Ok(done.rows_affected())
}

/// Charges recorded for an order (0 or 1), for the invariant checks.
pub async fn charges(db: &Db, order_id: &str) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT COUNT(*) FROM charges WHERE order_id = $1")
        .bind(order_id)
        .fetch_one(&mut *db.acquire().await?)
        .await?;
    Ok(row.try_get(0)?)
}

/// A remembered `201`: the fingerprint of the request it answered and the
/// exact body sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    /// What the original request asked for (see the shop's fingerprint).
    pub fingerprint: String,
    /// The `201` body, replayed byte for byte.
    pub response: String,
}

/// The `201` stored under `username`'s idempotency key `key`, if any.
pub async fn remembered(
    db: &Db,
    username: &str,
    key: &str,
) -> Result<Option<Remembered>, StoreError> {
    let row = sqlx::query(
        "SELECT fingerprint, response FROM idempotency_keys WHERE username = $1 AND idem_key = $2",
    )
    .bind(username)
    .bind(key)
    .fetch_optional(&mut *db.acquire().await?)
    .await?;
    row.map(|row| {
        Ok(Remembered {
            fingerprint: row.try_get(0)?,
            response: row.try_get(1)?,
        })
    })
    .transpose()
}
