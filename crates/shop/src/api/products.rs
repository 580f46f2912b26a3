//! Product reads, served from the node's catalogue (at most a second old).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use http::StatusCode;
use serde_json::json;

use super::error::ApiError;
use super::json;
use super::model::ProductBody;
use crate::App;

/// `GET /api/v1/products`.
pub(crate) async fn list(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let products = app.catalog.products().await?;
    let bodies: Vec<ProductBody<'_>> = products.iter().map(ProductBody::from).collect();
    Ok(json::response(
        StatusCode::OK,
        &json!({ "products": bodies }),
    ))
}

/// `GET /api/v1/products/{sku}`.
pub(crate) async fn get(
    State(app): State<Arc<App>>,
    Path(sku): Path<String>,
) -> Result<Response, ApiError> {
    let product = app.catalog.product(&sku).await?;
    let product = Option::as_ref(&product)
        .ok_or_else(|| ApiError::NotFound(format!("no product with sku `{sku}`")))?;
    Ok(json::response(StatusCode::OK, &ProductBody::from(product)))
}
