//! The orders API, and the hot path's front half: everything that can be
//! refused without touching the store is refused here (from the session,
//! the body, the idempotency key and the node's catalogue), and only what
//! remains queues for the group commit in `stampede-inventory`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;
use stampede_inventory::{Idempotency, Outcome, Refusal, Reservation, ReserveError};

use stampede_store::orders::{self, Transition};
use stampede_store::{Db, Order, OrderStatus, StoreError, now_ms};

use super::error::{ApiError, store_failure};
use super::json::{self, Json};
use super::model::OrderBody;
use super::origin::SameOrigin;
use super::pinning::{self, Pinned};
use super::session::CurrentUser;
use crate::{App, telemetry};

/// Largest quantity one order may ask for.
const MAX_QUANTITY: i64 = 1_000_000;

/// `POST /api/v1/orders` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewOrder {
    pub(crate) sku: String,
    pub(crate) quantity: i64,
}

/// `POST /api/v1/orders`.
pub(crate) async fn create(
    State(app): State<Arc<App>>,
    _: SameOrigin,
    CurrentUser(username): CurrentUser,
    headers: HeaderMap,
    Json(order, ..): Json<NewOrder>,
) -> Result<Response, ApiError> {
    let placed = reserve(&app, username, &headers, order).await?;
    Ok(json::raw(StatusCode::CREATED, placed.body))
}

/// A placed order: the `201` body, and the new order's id (none for a
/// replayed answer).
#[derive(Debug)]
pub(crate) struct Placed {
    pub(crate) order_id: Option<String>,
    pub(crate) body: String,
}

/// Places an order, counted by outcome in `stampede_shop_orders_total`:
/// the one order path of the API and of the storefront's buy button.
pub(crate) async fn reserve(
    app: &App,
    username: String,
    headers: &HeaderMap,
    order: NewOrder,
) -> Result<Placed, ApiError> {
    let placed = place(app, username, headers, order).await;
    telemetry::order(match &placed {
        Ok((outcome, _)) => outcome,
        Err(error) => error.code(),
    });
    placed.map(|(_, placed)| placed)
}

/// Places an order and names the outcome: `reserved` or `replayed`.
/// Refusals apply in the contract's order: `401` (the session extractor,
/// before this), `400`, `404`, `403`, `409 sold_out`, `409 limit_exceeded`;
/// a known idempotency key is answered before any of the last four.
async fn place(
    app: &App,
    username: String,
    headers: &HeaderMap,
    order: NewOrder,
) -> Result<(&'static str, Placed), ApiError> {
    if order.sku.is_empty() {
        return Err(ApiError::Invalid("sku must not be empty".into()));
    }
    if !(1..=MAX_QUANTITY).contains(&order.quantity) {
        return Err(ApiError::Invalid(format!(
            "quantity must be 1 to {MAX_QUANTITY}"
        )));
    }
    let idempotency = idempotency(headers, &order)?;
    if let Some(i) = &idempotency
        && let Some(stored) = orders::remembered(&app.db, &username, &i.key).await?
    {
        return replay_or_mismatch(stored.fingerprint == i.fingerprint, stored.response);
    }

    // The sold-out flag: a product this node saw sold out within the last
    // second is refused without a store write.
    let product = app.catalog.product(&order.sku).await?;
    let product = Option::as_ref(&product)
        .ok_or_else(|| ApiError::NotFound(format!("no product with sku `{}`", order.sku)))?;
    if now_ms() < product.sale_starts_at {
        return Err(ApiError::NotStarted);
    }
    if product.stock_left < order.quantity {
        return Err(ApiError::SoldOut);
    }

    let request = Reservation {
        username,
        quantity: order.quantity,
        idempotency,
    };
    let reply = app
        .queues
        .reserve(&order.sku, request)
        .await
        .map_err(|e| match e {
            ReserveError::Overloaded => ApiError::Overloaded,
            ReserveError::Store(error) => store_failure(&error),
            ReserveError::Stopped => {
                tracing::error!(error = %e, "reservation not answered");
                ApiError::Unavailable
            }
        })?;
    if let Some(stock_left) = reply.stock_left
        && app.catalog.saw_stock(&order.sku, stock_left).await
    {
        announce_sold_out(app, &order.sku);
    }
    match reply.outcome {
        Outcome::Reserved { order, body } => Ok((
            "reserved",
            Placed {
                order_id: Some(order.order_id),
                body,
            },
        )),
        Outcome::Replayed(body) => replay_or_mismatch(true, body),
        Outcome::Mismatch => replay_or_mismatch(false, String::new()),
        Outcome::Refused(refusal) => Err(match refusal {
            Refusal::NotFound => ApiError::NotFound(format!("no product with sku `{}`", order.sku)),
            Refusal::NotStarted => ApiError::NotStarted,
            Refusal::SoldOut => ApiError::SoldOut,
            Refusal::LimitExceeded => ApiError::LimitExceeded,
        }),
    }
}

fn replay_or_mismatch(
    same_request: bool,
    body: String,
) -> Result<(&'static str, Placed), ApiError> {
    if same_request {
        let order_id = None;
        Ok(("replayed", Placed { order_id, body }))
    } else {
        Err(ApiError::IdempotencyMismatch)
    }
}

/// The `Idempotency-Key` header, checked, with the request's fingerprint.
fn idempotency(headers: &HeaderMap, order: &NewOrder) -> Result<Option<Idempotency>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let printable = |b: &u8| (0x20..=0x7e).contains(b);
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > 255 || !bytes.iter().all(printable) {
        return Err(ApiError::Invalid(
            "Idempotency-Key must be 1 to 255 printable ASCII characters".into(),
        ));
    }
    Ok(Some(Idempotency {
        key: String::from_utf8_lossy(bytes).into_owned(),
        // The parameters, not the raw bytes: the same request written with
        // other spacing or key order is the same request.
        fingerprint: format!("{}\n{}", order.sku, order.quantity),
    }))
}

/// `GET /api/v1/orders/{id}`.
pub(crate) async fn get(
    State(app): State<Arc<App>>,
    CurrentUser(username): CurrentUser,
    pinned: Pinned,
    Path(order_id): Path<String>,
) -> Result<Response, ApiError> {
    let order = find(&app, pinned, &username, &order_id).await?;
    Ok(json::response(StatusCode::OK, &OrderBody::from(&order)))
}

/// One order of `username`: another user's order is `404`, like none.
/// From a read replica unless the client just wrote (`pinning`).
pub(crate) async fn find(
    app: &App,
    pinned: Pinned,
    username: &str,
    order_id: &str,
) -> Result<Order, ApiError> {
    let find = |db: Db| async move { orders::get_for_user(&db, order_id, username).await };
    let order = pinning::read(app, pinned, find).await?;
    order.ok_or_else(|| not_found(order_id))
}

/// `GET /api/v1/orders`.
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    CurrentUser(username): CurrentUser,
    pinned: Pinned,
) -> Result<Response, ApiError> {
    let orders = all(&app, pinned, &username).await?;
    let bodies: Vec<OrderBody<'_>> = orders.iter().map(OrderBody::from).collect();
    Ok(json::response(StatusCode::OK, &json!({ "orders": bodies })))
}

/// The orders of `username`, newest first; from a read replica unless the
/// client just wrote (`pinning`).
pub(crate) async fn all(app: &App, pinned: Pinned, username: &str) -> Result<Vec<Order>, ApiError> {
    let list = |db: Db| async move { orders::list_for_user(&db, username).await };
    Ok(pinning::read(app, pinned, list).await?)
}

/// `POST /api/v1/orders/{id}/pay` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Payment {
    payment_token: String,
}

/// `POST /api/v1/orders/{id}/pay`.
pub(crate) async fn pay(
    State(app): State<Arc<App>>,
    _: SameOrigin,
    CurrentUser(username): CurrentUser,
    Path(order_id): Path<String>,
    Json(payment, ..): Json<Payment>,
) -> Result<Response, ApiError> {
    start_payment(&app, &username, &order_id, &payment.payment_token).await?;
    Ok(json::response(
        StatusCode::ACCEPTED,
        &json!({ "status": "paying" }),
    ))
}

/// `reserved -> paying`, with the payment job enqueued in the same
/// transaction: both happen, or neither.
pub(crate) async fn start_payment(
    app: &App,
    username: &str,
    order_id: &str,
    payment_token: &str,
) -> Result<(), ApiError> {
    if payment_token.is_empty() || payment_token.len() > 255 {
        return Err(ApiError::Invalid(
            "payment_token must be 1 to 255 characters".into(),
        ));
    }
    let mut tx = app.db.begin_write().await?;
    let transition = orders::start_payment(&mut tx, order_id, username).await?;
    if let Transition::Done(_) = transition {
        let job = crate::jobs::payment(order_id, payment_token);
        stampede_jobs::queue::enqueue(&mut *tx, &job).await?;
    }
    tx.commit().await.map_err(StoreError::from)?;
    match transition {
        Transition::Done(_) => {
            telemetry::order("paying");
            Ok(())
        }
        Transition::NotFound => Err(not_found(order_id)),
        Transition::Refused(order) => Err(ApiError::NotPayable(match order.status {
            OrderStatus::Reserved => "the reservation has expired".to_owned(),
            status => format!("the order is {status}; only a reserved order can be paid"),
        })),
    }
}

/// `POST /api/v1/orders/{id}/cancel`.
pub(crate) async fn cancel(
    State(app): State<Arc<App>>,
    _: SameOrigin,
    CurrentUser(username): CurrentUser,
    Path(order_id): Path<String>,
) -> Result<Response, ApiError> {
    let order = cancel_order(&app, &username, &order_id).await?;
    Ok(json::response(StatusCode::OK, &OrderBody::from(&order)))
}

/// `reserved -> cancelled`, stock back.
pub(crate) async fn cancel_order(
    app: &App,
    username: &str,
    order_id: &str,
) -> Result<Order, ApiError> {
    match orders::cancel(&app.db, order_id, username).await? {
        Transition::Done(order) => {
            telemetry::order("cancelled");
            Ok(order)
        }
        Transition::NotFound => Err(not_found(order_id)),
        Transition::Refused(order) => Err(ApiError::NotCancellable(format!(
            "the order is {}; only a reserved order can be cancelled",
            order.status
        ))),
    }
}

fn not_found(order_id: &str) -> ApiError {
    ApiError::NotFound(format!("no order `{order_id}`"))
}

/// Tells the other nodes, through Redis if the node has it, that `sku`
/// just sold out; in the background, since it is only a hint.
fn announce_sold_out(app: &App, sku: &str) {
    if let Some(redis) = app.redis.clone() {
        let sku = sku.to_owned();
        tokio::spawn(async move {
            if let Err(error) = stampede_redis::sold_out::announce(&redis, &sku).await {
                tracing::debug!(%error, sku, "Sold-out announcement not sent.");
            }
        });
    }
}
