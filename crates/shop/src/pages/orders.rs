//! My orders, one order's live status, and paying or cancelling one.
//!
//! The status panel is the same on a product page (after buying there)
//! and on an order's page: every status's words are rendered here, and the
//! script shows the ones of the status it polls (`data-when`), so the text
//! lives in one place.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use maud::{Markup, html};
use serde::Deserialize;
use stampede_store::{Order, now_ms};

use super::csrf::{Empty, Form};
use super::products::countdown;
use super::view::{PageError, Refused, Visitor, encode, explain, see_other};
use crate::App;
use crate::api::ApiError;
use crate::api::model::rfc3339;
use crate::api::orders::{all, cancel_order, find, start_payment};
use crate::api::pinning::Pinned;

/// The words for each status but `reserved` (which shows the time left).
const STATUS_WORDS: [(&str, &str); 6] = [
    ("paying", "Paying… the payment is being processed."),
    ("paid", "Paid: confirming your order…"),
    ("confirmed", "Confirmed. It is yours!"),
    (
        "expired",
        "Expired: the reservation was not paid in time, and its stock went back on sale.",
    ),
    ("cancelled", "Cancelled: its stock went back on sale."),
    (
        "payment_failed",
        "The payment failed, and the stock went back on sale.",
    ),
];

/// The test payment tokens of the contract, as a buyer picks a card.
const CARDS: [(&str, &str); 3] = [
    ("tok_ok", "Test card that pays"),
    ("tok_slow", "Test card that takes 2 s"),
    ("tok_fail", "Test card that is declined"),
];

/// An order's live status: hidden and empty on a product page until the
/// script fills it after a buy.
pub(super) fn panel(visitor: &Visitor, order: Option<&Order>) -> Markup {
    let now = now_ms();
    let (id, status, expires_at) = order.map_or(("", "", now), |o| {
        (o.order_id.as_str(), o.status.as_str(), o.expires_at)
    });
    html! {
        section.order data-order=(id) data-status=(status) data-expires-at=(expires_at)
            data-now=(now) hidden[order.is_none()] aria-live="polite" {
            p.status data-when="reserved" hidden[status != "reserved"] {
                strong { "Reserved" } " for you: "
                strong data-time-left { (countdown(expires_at - now)) }
                " left to pay."
            }
            @for (when, words) in STATUS_WORDS {
                p.status data-when=(when) hidden[status != when] { (words) }
            }
            div data-when="reserved" hidden[status != "reserved"] {
                (pay_and_cancel(visitor, id))
            }
            p.small {
                a data-order-link href={ "/orders/" (encode(id)) } { "Order " span data-order-id { (id) } }
            }
        }
    }
}

/// The pay and cancel forms of a reservation; the script sets their
/// actions when it fills an empty panel (`data-action`).
fn pay_and_cancel(visitor: &Visitor, id: &str) -> Markup {
    let base = format!("/orders/{}", encode(id));
    html! {
        div.actions {
            form.pay method="post" action={ (base) "/pay" } data-action="pay" {
                (visitor.csrf_field())
                select name="payment_token" aria-label="Payment card" {
                    @for (token, label) in CARDS {
                        option value=(token) { (label) " (" (token) ")" }
                    }
                }
                button.primary type="submit" { "Pay" }
            }
            form.cancel method="post" action={ (base) "/cancel" } data-action="cancel" {
                (visitor.csrf_field())
                button type="submit" { "Cancel" }
            }
        }
    }
}

/// `GET /orders`: the visitor's orders, newest first.
pub(super) async fn list(
    State(app): State<Arc<App>>,
    visitor: Visitor,
    pinned: Pinned,
) -> Result<Response, PageError> {
    let user = match visitor.user_or_login("/orders") {
        Ok(user) => user,
        Err(login) => return Ok(login.into_response()),
    };
    let orders = all(&app, pinned, user).await?;
    let main = html! {
        h1 { "My orders" }
        @if orders.is_empty() {
            p { "No orders yet. " a href="/" { "See what is on sale." } }
        } @else {
            table.orders {
                thead { tr { th { "Order" } th { "Product" } th { "Qty" } th { "Status" } th { "Placed" } th {} } }
                tbody {
                    @for order in &orders {
                        tr data-status=(order.status.as_str()) {
                            td { a href={ "/orders/" (encode(&order.order_id)) } { (order.order_id) } }
                            td { a href={ "/products/" (encode(&order.sku)) } { (order.sku) } }
                            td { (order.quantity) }
                            td.status { (order.status.as_str()) }
                            td { time datetime=(rfc3339(order.created_at)) { (rfc3339(order.created_at)) } }
                            td { @if order.status.as_str() == "reserved" { (pay_and_cancel(&visitor, &order.order_id)) } }
                        }
                    }
                }
            }
        }
    };
    Ok(visitor.page(StatusCode::OK, "My orders", &main))
}

/// `GET /orders/{id}`: one order, its status live with the script.
pub(super) async fn page(
    State(app): State<Arc<App>>,
    visitor: Visitor,
    pinned: Pinned,
    Path(id): Path<String>,
    Query(Refused { error }): Query<Refused>,
) -> Result<Response, PageError> {
    let here = format!("/orders/{}", encode(&id));
    let user = match visitor.user_or_login(&here) {
        Ok(user) => user,
        Err(login) => return Ok(login.into_response()),
    };
    let order = find(&app, pinned, user, &id).await?;
    let refusal = error.as_deref().and_then(explain);
    let main = html! {
        h1 { "Order " (order.order_id) }
        p {
            (order.quantity) " × "
            a href={ "/products/" (encode(&order.sku)) } { (order.sku) }
            ", placed " time datetime=(rfc3339(order.created_at)) { (rfc3339(order.created_at)) }
        }
        @if let Some(refusal) = refusal {
            p.message.error role="alert" { (refusal) }
        }
        (panel(&visitor, Some(&order)))
        p { a href="/orders" { "All my orders" } }
    };
    Ok(visitor.page(StatusCode::OK, &format!("Order {}", order.order_id), &main))
}

/// The pay form's field.
#[derive(Debug, Deserialize)]
pub(super) struct Payment {
    #[serde(default)]
    payment_token: String,
}

/// `POST /orders/{id}/pay`, through the API's payment path.
pub(super) async fn pay(
    State(app): State<Arc<App>>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(payment): Form<Payment>,
) -> Response {
    let token = payment.payment_token;
    let outcome = match visitor.user.as_deref() {
        Some(user) => start_payment(&app, user, &id, &token).await,
        None => Err(ApiError::Unauthorized("log in first")),
    };
    after_write(&id, outcome)
}

/// `POST /orders/{id}/cancel`, through the API's cancellation.
pub(super) async fn cancel(
    State(app): State<Arc<App>>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(Empty {}): Form<Empty>,
) -> Response {
    let outcome = match visitor.user.as_deref() {
        Some(user) => cancel_order(&app, user, &id).await.map(drop),
        None => Err(ApiError::Unauthorized("log in first")),
    };
    after_write(&id, outcome)
}

/// Back to the order's page, with the refusal explained if there was one.
fn after_write(id: &str, outcome: Result<(), ApiError>) -> Response {
    let here = format!("/orders/{}", encode(id));
    match outcome {
        Ok(()) => see_other(&here),
        Err(ApiError::Unauthorized(_)) => super::view::to_login(&here),
        Err(error) if explain(error.code()).is_some() => {
            see_other(&format!("{here}?error={}", error.code()))
        }
        Err(ApiError::Invalid(message)) => PageError::BadRequest(message).into_response(),
        Err(error) => PageError::from(error).into_response(),
    }
}
