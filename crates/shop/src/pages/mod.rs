//! The storefront: the HTML pages a buyer uses, served by every shop node
//! beside the JSON API and over the same functions (the login, the order
//! path, payment and cancellation are the API's own; nothing here
//! reserves stock by another way).
//!
//! Pages are rendered on the server with maud, which escapes every
//! interpolation, and work with JavaScript off: forms post and redirect
//! (POST-redirect-GET). `assets`' one script enhances them (live stock,
//! the countdown, buying without a reload, the order's live status)
//! through the JSON API.
//!
//! # Layout
//!
//! - `products`: the catalogue, a product's page and its buy button.
//! - `login`: logging in and out.
//! - `orders`: my orders, one order's status, pay and cancel.
//! - `csrf`: the token every form carries, and the form extractor that
//!   checks it.
//! - `headers`: the security headers of every page.
//! - `view`: the layout and the pieces pages share.
//! - [`assets`]: the stylesheet and script, by fingerprinted name.

use std::sync::Arc;

use axum::Router;
use axum::middleware::{from_fn_with_state, map_response};
use axum::routing::{get, post};

use crate::App;
use crate::api::pinning;

pub mod assets;
mod csrf;
mod headers;
mod login;
mod orders;
mod products;
mod view;

/// Every page, with the security headers; the assets, without.
pub(crate) fn router(app: &Arc<App>) -> Router<Arc<App>> {
    let mut writes = Router::new()
        .route("/products/{sku}/buy", post(products::buy))
        .route("/orders/{id}/pay", post(orders::pay))
        .route("/orders/{id}/cancel", post(orders::cancel));
    // As for the API's order writes: the buyer's next reads see them.
    if pinning::enabled(app) {
        writes = writes.route_layer(from_fn_with_state(app.clone(), pinning::pin_after_writes));
    }
    let pages = Router::new()
        .route("/", get(products::index))
        .route("/products/{sku}", get(products::page))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/orders", get(orders::list))
        .route("/orders/{id}", get(orders::page))
        .merge(writes)
        .layer(map_response(headers::secure));
    pages.route(&format!("{}/{{name}}", assets::PREFIX), get(assets::serve))
}
