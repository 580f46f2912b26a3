//! The admin calls: bulk users, products, and stats and job queue depths
//! read from the source of truth. Each needs `Authorization: Bearer <admin token>`.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::response::Response;
use http::StatusCode;
use http::header::AUTHORIZATION;
use http::request::Parts;
use serde::{Deserialize, Serialize};
use serde_json::json;
use stampede_store::products::{self, NewProduct};
use stampede_store::stats::{self, SkuStats};
use stampede_store::{OrderStatus, StoreError, now_ms, users};

use super::error::ApiError;
use super::json::{self, Admin, Json};
use super::model::{ProductBody, parse_rfc3339};
use crate::App;

/// Most users one call may create (the contract's bound).
const MAX_USERS_PER_CALL: usize = 10_000;

/// Proof that the request carries the admin token.
#[derive(Debug)]
pub(crate) struct AdminToken;

impl FromRequestParts<Arc<App>> for AdminToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if constant_time_eq(
            presented.trim().as_bytes(),
            app.config.admin_token.as_bytes(),
        ) {
            Ok(Self)
        } else {
            Err(ApiError::Unauthorized(
                "this call needs Authorization: Bearer <admin token>",
            ))
        }
    }
}

/// Compares without an early exit, so timing does not reveal how much of
/// a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `POST /api/v1/admin/users` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUsers {
    users: Vec<NewUser>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    password: String,
}

/// `POST /api/v1/admin/users`: all or nothing.
pub(crate) async fn create_users(
    State(app): State<Arc<App>>,
    _: AdminToken,
    Json(body, ..): Json<NewUsers, Admin>,
) -> Result<Response, ApiError> {
    validate_users(&body.users)?;
    let (names, passwords): (Vec<String>, Vec<String>) = body
        .users
        .into_iter()
        .map(|u| (u.username, u.password))
        .unzip();
    let hashes = app.passwords.hash_all(passwords).await.map_err(|e| {
        tracing::error!(error = %e, "hashing passwords failed");
        ApiError::Internal
    })?;
    let created = names.len();
    let rows: Vec<(String, String)> = names.into_iter().zip(hashes).collect();
    match users::create_all(&app.db, &rows).await {
        Ok(()) => Ok(json::response(
            StatusCode::CREATED,
            &json!({ "created": created }),
        )),
        Err(StoreError::Conflict) => Err(ApiError::Exists(
            "at least one of these usernames is taken; no user was created".into(),
        )),
        Err(other) => Err(other.into()),
    }
}

fn validate_users(users: &[NewUser]) -> Result<(), ApiError> {
    let invalid = |m: String| Err(ApiError::Invalid(m));
    if users.is_empty() || users.len() > MAX_USERS_PER_CALL {
        return invalid(format!("`users` must list 1 to {MAX_USERS_PER_CALL} users"));
    }
    let mut seen = HashSet::with_capacity(users.len());
    for (i, user) in users.iter().enumerate() {
        if let Err(problem) = check_username(&user.username) {
            return invalid(format!("users[{i}].username: {problem}"));
        }
        if user.password.is_empty() || user.password.len() > 1024 {
            return invalid(format!("users[{i}].password must be 1 to 1024 bytes"));
        }
        if !seen.insert(user.username.as_str()) {
            return invalid(format!(
                "users[{i}].username `{}` appears twice in this call",
                user.username
            ));
        }
    }
    Ok(())
}

/// Django's username rule: 1 to 150 letters, digits and `@.+-_`.
fn check_username(name: &str) -> Result<(), &'static str> {
    let allowed = |c: char| c.is_alphanumeric() || "@.+-_".contains(c);
    if name.is_empty() || name.chars().count() > 150 || !name.chars().all(allowed) {
        return Err("must be 1 to 150 letters, digits and @ . + - _");
    }
    Ok(())
}

/// `POST /api/v1/admin/products` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewProductBody {
    sku: String,
    name: String,
    price_cents: i64,
    stock: i64,
    per_user_limit: i64,
    #[serde(default)]
    sale_starts_at: Option<String>,
}

/// `POST /api/v1/admin/products`.
pub(crate) async fn create_product(
    State(app): State<Arc<App>>,
    _: AdminToken,
    Json(body, ..): Json<NewProductBody>,
) -> Result<Response, ApiError> {
    let new = validate_product(body)?;
    let product = match products::create(&app.db, &new).await {
        Err(StoreError::Conflict) => {
            return Err(ApiError::Exists(format!(
                "sku `{}` already exists",
                new.sku
            )));
        }
        other => other?,
    };
    app.catalog.created(&product).await;
    Ok(json::response(
        StatusCode::CREATED,
        &ProductBody::from(&product),
    ))
}

fn validate_product(body: NewProductBody) -> Result<NewProduct, ApiError> {
    let invalid = |m: &str| Err(ApiError::Invalid(m.to_owned()));
    let sku_ok = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    if body.sku.is_empty() || body.sku.len() > 64 || !body.sku.chars().all(sku_ok) {
        return invalid("sku must be 1 to 64 ASCII letters, digits and - _ .");
    }
    if body.name.trim().is_empty() || body.name.chars().count() > 200 {
        return invalid("name must be 1 to 200 characters");
    }
    if body.price_cents < 0 {
        return invalid("price_cents must not be negative");
    }
    if !(0..=1_000_000_000).contains(&body.stock) {
        return invalid("stock must be 0 to 1,000,000,000");
    }
    if !(1..=1_000_000_000).contains(&body.per_user_limit) {
        return invalid("per_user_limit must be 1 to 1,000,000,000");
    }
    let sale_starts_at = body
        .sale_starts_at
        .as_deref()
        .map(parse_rfc3339)
        .transpose();
    Ok(NewProduct {
        sale_starts_at: sale_starts_at
            .map_err(|m| ApiError::Invalid(format!("sale_starts_at: {m}")))?,
        sku: body.sku,
        name: body.name,
        price_cents: body.price_cents,
        stock: body.stock,
        per_user_limit: body.per_user_limit,
    })
}

/// One entry of `GET /api/v1/admin/stats`.
#[derive(Debug, Serialize)]
struct StatsEntry<'a> {
    sku: &'a str,
    initial_stock: i64,
    stock_left: i64,
    reserved: i64,
    paying: i64,
    paid: i64,
    confirmed: i64,
    expired: i64,
    cancelled: i64,
    payment_failed: i64,
}

impl<'a> From<&'a SkuStats> for StatsEntry<'a> {
    fn from(s: &'a SkuStats) -> Self {
        let q = |status| s.quantity(status);
        Self {
            sku: &s.sku,
            initial_stock: s.initial_stock,
            stock_left: s.stock_left,
            reserved: q(OrderStatus::Reserved),
            paying: q(OrderStatus::Paying),
            paid: q(OrderStatus::Paid),
            confirmed: q(OrderStatus::Confirmed),
            expired: q(OrderStatus::Expired),
            cancelled: q(OrderStatus::Cancelled),
            payment_failed: q(OrderStatus::PaymentFailed),
        }
    }
}

/// `GET /api/v1/admin/stats`: straight from the store, never cached.
pub(crate) async fn stats(
    State(app): State<Arc<App>>,
    _: AdminToken,
) -> Result<Response, ApiError> {
    let all = stats::all(&app.db).await?;
    let skus: Vec<StatsEntry<'_>> = all.iter().map(StatsEntry::from).collect();
    Ok(json::response(StatusCode::OK, &json!({ "skus": skus })))
}

/// `GET /api/v1/admin/queues`: every job queue's depth, for the gateway's
/// operations page (as `stampede jobs` reads it, from the store).
pub(crate) async fn queues(
    State(app): State<Arc<App>>,
    _: AdminToken,
) -> Result<Response, ApiError> {
    let depths = stampede_jobs::admin::queue_depths(&app.db, now_ms()).await?;
    let queues: Vec<serde_json::Value> = depths
        .iter()
        .map(|d| {
            json!({
                "queue": d.queue,
                "ready": d.ready,
                "scheduled": d.scheduled,
                "running": d.running,
                "dead": d.dead,
            })
        })
        .collect();
    Ok(json::response(StatusCode::OK, &json!({ "queues": queues })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-token", b"secret-tokeN"));
        assert!(!constant_time_eq(b"secret", b"secret-token"));
    }

    #[test]
    fn usernames_follow_djangos_rule() {
        assert!(check_username("alice.b+c@x-y_z").is_ok());
        assert!(check_username("").is_err());
        assert!(check_username("has space").is_err());
        assert!(check_username(&"x".repeat(151)).is_err());
    }
}
