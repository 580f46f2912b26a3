//! `/healthz` (the process serves) and `/readyz` (it can reach its stores:
//! the database, and Redis when sessions live there). Neither touches a
//! table, so probes never compete with a sale. Readiness is also what
//! `stampede_shop_store_up` reports.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use http::StatusCode;
use serde_json::json;

use super::error::ApiError;
use super::json;
use crate::{App, telemetry};

/// `GET /healthz`.
pub(crate) async fn healthz() -> Response {
    json::response(StatusCode::OK, &json!({ "status": "ok" }))
}

/// `GET /readyz`.
pub(crate) async fn readyz(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    if telemetry::stores_up(&app).await {
        Ok(json::response(
            StatusCode::OK,
            &json!({ "status": "ready" }),
        ))
    } else {
        Err(ApiError::Unavailable)
    }
}
