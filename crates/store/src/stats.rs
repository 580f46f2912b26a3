//! Per-sku totals read from the source of truth, for the admin stats call
//! and the invariant checks of tests and load runs.

use std::collections::HashMap;

use sqlx::Row;

use crate::{Db, OrderStatus, StoreError};

/// One sku's stock and the quantities its orders hold, by status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkuStats {
    /// The sku.
    pub sku: String,
    /// Units put on sale.
    pub initial_stock: i64,
    /// Units not held by a live order.
    pub stock_left: i64,
    /// Quantity per status, in [`OrderStatus::ALL`] order.
    pub by_status: [i64; 7],
}

impl SkuStats {
    /// The quantity held by orders in `status`.
    pub fn quantity(&self, status: OrderStatus) -> i64 {
        let index = OrderStatus::ALL
            .iter()
            .position(|s| *s == status)
            .unwrap_or(0);
        self.by_status[index]
    }
}

/// Every sku's stats, by sku, read in one transaction so that stock and
/// orders agree with each other.
pub async fn all(db: &Db) -> Result<Vec<SkuStats>, StoreError> {
    let mut tx = db.begin_snapshot().await?;
    let products = sqlx::query("SELECT sku, initial_stock, stock_left FROM products ORDER BY sku")
        .fetch_all(&mut *tx)
        .await?;
    let totals = sqlx::query(
        "SELECT sku, status, CAST(SUM(quantity) AS BIGINT) FROM orders GROUP BY sku, status",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;

    let mut by_sku: HashMap<String, [i64; 7]> = HashMap::new();
    for row in &totals {
        let status = OrderStatus::parse(row.try_get(1)?)?;
        let index = OrderStatus::ALL
            .iter()
            .position(|s| *s == status)
            .unwrap_or(0);
        by_sku.entry(row.try_get(0)?).or_default()[index] = row.try_get(2)?;
    }
    products
        .iter()
        .map(|row| {
            let sku: String = row.try_get(0)?;
            Ok(SkuStats {
                by_status: by_sku.remove(&sku).unwrap_or_default(),
                sku,
                initial_stock: row.try_get(1)?,
                stock_left: row.try_get(2)?,
            })
        })
        .collect()
}
