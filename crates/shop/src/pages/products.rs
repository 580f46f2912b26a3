//! The catalogue, a product's page and its buy button.
//!
//! A product page shows the stock left, a countdown to the sale, and a
//! buy form; with the script, the stock is polled once a second, the
//! countdown ticks and opens the button at zero, and buying happens in
//! place: the button turns into the order's live status. Without it the
//! form posts, and the answer redirects to the order (or back here with
//! the refusal explained).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use maud::{Markup, html};
use stampede_store::{Product, now_ms};

use super::csrf::{Empty, Form};
use super::orders::panel;
use super::view::{PageError, Refused, Visitor, encode, explain, price, see_other};
use crate::App;
use crate::api::ApiError;
use crate::api::model::rfc3339;
use crate::api::orders::{NewOrder, reserve};

/// The refusals a buy can meet, each explained on the page (the script
/// shows the one it meets; without it, the redirect names it).
const REFUSALS: [&str; 4] = ["not_started", "sold_out", "limit_exceeded", "overloaded"];

/// `GET /`: every product, with its price and state.
pub(super) async fn index(
    State(app): State<Arc<App>>,
    visitor: Visitor,
) -> Result<Response, PageError> {
    let products = app.catalog.products().await.map_err(ApiError::from)?;
    let now = now_ms();
    let main = html! {
        h1 { "On sale" }
        @if products.is_empty() {
            p { "Nothing is on sale yet." }
        }
        ul.products {
            @for product in products.iter() {
                li {
                    a href={ "/products/" (encode(&product.sku)) } { (product.name) }
                    span.price { (price(product.price_cents)) }
                    span.state { (state(product, now)) }
                }
            }
        }
    };
    Ok(visitor.page(StatusCode::OK, "On sale", &main))
}

/// A product's state in a few words.
fn state(product: &Product, now: i64) -> &'static str {
    if product.stock_left == 0 {
        "sold out"
    } else if now < product.sale_starts_at {
        "coming soon"
    } else {
        "on sale"
    }
}

/// `GET /products/{sku}`.
pub(super) async fn page(
    State(app): State<Arc<App>>,
    visitor: Visitor,
    Path(sku): Path<String>,
    Query(Refused { error }): Query<Refused>,
) -> Result<Response, PageError> {
    let product = app.catalog.product(&sku).await.map_err(ApiError::from)?;
    let product = Option::as_ref(&product).ok_or(PageError::NotFound("No such product."))?;
    let main = product_view(&visitor, product, error.as_deref());
    Ok(visitor.page(StatusCode::OK, &product.name, &main))
}

fn product_view(visitor: &Visitor, product: &Product, refusal: Option<&str>) -> Markup {
    let now = now_ms();
    let started = now >= product.sale_starts_at;
    let sold_out = product.stock_left == 0;
    let path = format!("/products/{}", encode(&product.sku));
    html! {
        article.product data-sku=(product.sku) data-starts-at=(product.sale_starts_at)
            data-now=(now) data-limit=(product.per_user_limit) {
            h1 { (product.name) }
            p.price { (price(product.price_cents)) }
            p.stock {
                span.sold-out hidden[!sold_out] { "Sold out" }
                span.left hidden[sold_out] {
                    span data-stock { (product.stock_left) } " left"
                }
                span.limit { " · at most " (product.per_user_limit) " per customer" }
            }
            p.countdown hidden[started] {
                "The sale starts in "
                strong data-countdown { (countdown(product.sale_starts_at - now)) }
                " (" time datetime=(rfc3339(product.sale_starts_at)) { (rfc3339(product.sale_starts_at)) } ")."
            }
            form.buy method="post" action={ (path) "/buy" } {
                (visitor.csrf_field())
                button.primary type="submit" disabled[!started || sold_out] { "Buy now" }
            }
            @for code in REFUSALS {
                p.message.error data-refusal=(code) hidden[refusal != Some(code)] role="alert" {
                    (explain(code).unwrap_or_default())
                    @if code == "limit_exceeded" { " " a href="/orders" { "My orders" } }
                }
            }
            (panel(visitor, None))
        }
    }
}

/// `ms` as `m:ss`, or `h:mm:ss` past an hour; never negative.
pub(super) fn countdown(ms: i64) -> String {
    let secs = (ms.max(0) + 999) / 1000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// `POST /products/{sku}/buy`: one unit, through the API's order path.
pub(super) async fn buy(
    State(app): State<Arc<App>>,
    visitor: Visitor,
    Path(sku): Path<String>,
    Form(Empty {}): Form<Empty>,
) -> Response {
    let here = format!("/products/{}", encode(&sku));
    let user = match visitor.user_or_login(&here) {
        Ok(user) => user.to_owned(),
        Err(login) => return login.into_response(),
    };
    let order = NewOrder { sku, quantity: 1 };
    match reserve(&app, user, &HeaderMap::new(), order).await {
        Ok(placed) => match placed.order_id {
            Some(id) => see_other(&format!("/orders/{}", encode(&id))),
            None => see_other("/orders"),
        },
        Err(error) if REFUSALS.contains(&error.code()) => {
            see_other(&format!("{here}?error={}", error.code()))
        }
        Err(ApiError::Unavailable) => see_other(&format!("{here}?error=overloaded")),
        Err(error) => PageError::from(error).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::countdown;

    #[test]
    fn countdowns_round_up_to_whole_seconds() {
        assert_eq!(countdown(0), "0:00");
        assert_eq!(countdown(-5), "0:00");
        assert_eq!(countdown(1), "0:01");
        assert_eq!(countdown(65_000), "1:05");
        assert_eq!(countdown(3_600_000), "1:00:00");
    }
}
