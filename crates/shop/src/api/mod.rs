//! The HTTP API of `../shared/spec/flash-sale-api.md`, as an axum router.
//!
//! Handlers are grouped by resource; the pieces they share are extractors
//! (the session's user, the admin token, the client, a JSON body held to a
//! size limit) that answer the contract's error bodies by themselves, and
//! `pinning`, which sends reads that may be stale to read replicas except
//! right after the client's own writes, and `origin`, which refuses
//! cookie-authenticated writes sent from another site. The storefront's
//! pages (`crate::pages`) are merged in and call the same functions.

use std::sync::Arc;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};

use crate::App;

mod admin;
pub(crate) mod auth;
pub(crate) mod client;
mod error;
mod health;
mod json;
pub(crate) mod model;
mod observe;
pub(crate) mod orders;
pub(crate) mod origin;
pub(crate) mod pinning;
mod products;
pub(crate) mod session;

pub(crate) use error::{ApiError, Chain};

/// Every route of the contract, and the storefront's pages.
pub(crate) fn router(app: Arc<App>) -> Router {
    let observer = observe::Observer::new(&app.config.node_name, app.config.slow_request);
    let mut orders = Router::new()
        .route("/api/v1/orders", post(orders::create).get(orders::list))
        .route("/api/v1/orders/{id}", get(orders::get))
        .route("/api/v1/orders/{id}/pay", post(orders::pay))
        .route("/api/v1/orders/{id}/cancel", post(orders::cancel));
    // With replicas, a successful write to an order pins its client's order
    // reads to the primary for a while (read-your-writes; see `pinning`).
    // Without, the layer is left out: the hot path pays nothing for it.
    if pinning::enabled(&app) {
        orders = orders.route_layer(from_fn_with_state(app.clone(), pinning::pin_after_writes));
    }
    Router::new()
        .route("/api/v1/admin/users", post(admin::create_users))
        .route("/api/v1/admin/products", post(admin::create_product))
        .route("/api/v1/admin/stats", get(admin::stats))
        .route("/api/v1/admin/queues", get(admin::queues))
        .route("/api/v1/login", post(auth::login))
        .route("/api/v1/logout", post(auth::logout))
        .route("/api/v1/me", get(auth::me))
        .route("/api/v1/products", get(products::list))
        .route("/api/v1/products/{sku}", get(products::get))
        .merge(orders)
        .merge(crate::pages::router(&app))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(app)
        // Last, so that it sees every route's matched pattern, and the
        // fallbacks' requests too.
        .layer(from_fn_with_state(Arc::new(observer), observe::observe))
}
