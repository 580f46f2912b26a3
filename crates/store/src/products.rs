//! The catalogue: what is on sale, from when, and how much is left.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Db, StoreError, now_ms};

/// A product as stored (and, serialised, as the shared cache holds it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// The stock-keeping unit, the product's key.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Unit price in cents.
    pub price_cents: i64,
    /// Units put on sale when the product was created.
    pub initial_stock: i64,
    /// Units not held by a live order.
    pub stock_left: i64,
    /// The most live units one user may hold.
    pub per_user_limit: i64,
    /// When orders open (ms since the epoch).
    pub sale_starts_at: i64,
}

/// A product to create; `sale_starts_at` of `None` means "on sale now".
#[derive(Debug, Clone)]
pub struct NewProduct {
    /// See [`Product::sku`].
    pub sku: String,
    /// See [`Product::name`].
    pub name: String,
    /// See [`Product::price_cents`].
    pub price_cents: i64,
    /// Initial stock.
    pub stock: i64,
    /// See [`Product::per_user_limit`].
    pub per_user_limit: i64,
    /// See [`Product::sale_starts_at`].
    pub sale_starts_at: Option<i64>,
}

/// Creates a product; [`StoreError::Conflict`] if the sku exists.
pub async fn create(db: &Db, new: &NewProduct) -> Result<Product, StoreError> {
    let now = now_ms();
    let product = Product {
        sku: new.sku.clone(),
        name: new.name.clone(),
        price_cents: new.price_cents,
        initial_stock: new.stock,
        stock_left: new.stock,
        per_user_limit: new.per_user_limit,
        sale_starts_at: new.sale_starts_at.unwrap_or(now),
    };
    sqlx::query(
        "INSERT INTO products (sku, name, price_cents, initial_stock, stock_left, per_user_limit, sale_starts_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&product.sku)
    .bind(&product.name)
    .bind(product.price_cents)
    .bind(product.initial_stock)
    .bind(product.stock_left)
    .bind(product.per_user_limit)
    .bind(product.sale_starts_at)
    .bind(now)
    .execute(&mut *db.acquire().await?)
    .await?;
    Ok(product)
}

/// `SELECT` of every column [`from_row`] reads, in its order, then `tail`.
macro_rules! select {
    ($tail:literal) => {
        concat!(
            "SELECT sku, name, price_cents, initial_stock, stock_left, per_user_limit, sale_starts_at FROM products ",
            $tail
        )
    };
}

/// One product, if it exists.
pub async fn get(db: &Db, sku: &str) -> Result<Option<Product>, StoreError> {
    let row = sqlx::query(select!("WHERE sku = $1"))
        .bind(sku)
        .fetch_optional(&mut *db.acquire().await?)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every product, by sku.
pub async fn list(db: &Db) -> Result<Vec<Product>, StoreError> {
    let rows = sqlx::query(select!("ORDER BY sku"))
        .fetch_all(&mut *db.acquire().await?)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Decodes a row selected by `select!`.
fn from_row(row: &AnyRow) -> Result<Product, StoreError> {
    Ok(Product {
        sku: row.try_get(0)?,
        name: row.try_get(1)?,
        price_cents: row.try_get(2)?,
        initial_stock: row.try_get(3)?,
        stock_left: row.try_get(4)?,
        per_user_limit: row.try_get(5)?,
        sale_starts_at: row.try_get(6)?,
    })
}
