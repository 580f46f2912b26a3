//! What every node knows about the products, at most a second old.
//!
//! Product reads and the order path's first checks (unknown sku, sale not
//! started, sold out) are answered from here, so a crowd refreshing a
//! product page or hammering a sold-out sku costs the store one read per
//! node per second instead of one per request: this is the sold-out flag
//! that every node learns within a second. Each entry expires one second
//! after it was loaded; concurrent misses for one key share one load
//! (moka's `try_get_with`). After this node commits a batch it writes the
//! stock it saw straight in, so its own flag is set at once; with Redis it
//! also announces a sold-out sku, and the other nodes set their flag at
//! once too (see `stampede-redis`' `sold_out`).

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use stampede_store::products::{self, Product};
use stampede_store::{Db, StoreError};

/// How stale any cached product may be: the contract's bound on
/// `stock_left` and `sold_out`.
const FRESHNESS: Duration = Duration::from_secs(1);

/// The cached catalogue of one node.
#[derive(Clone)]
pub struct Catalog {
    db: Db,
    products: Cache<String, Option<Arc<Product>>>,
    listing: Cache<(), Arc<Vec<Product>>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").finish_non_exhaustive()
    }
}

impl Catalog {
    /// An empty catalogue over `db`.
    pub fn new(db: Db) -> Self {
        Self {
            db,
            // A bound keeps lookups of random unknown skus from growing the
            // cache without limit (unknown skus are cached as `None`).
            products: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(FRESHNESS)
                .build(),
            listing: Cache::builder()
                .max_capacity(1)
                .time_to_live(FRESHNESS)
                .build(),
        }
    }

    /// One product, or `None` if there is no such sku.
    pub async fn product(&self, sku: &str) -> Result<Option<Arc<Product>>, Arc<StoreError>> {
        let db = &self.db;
        self.products
            .try_get_with_by_ref(sku, async move {
                products::get(db, sku).await.map(|p| p.map(Arc::new))
            })
            .await
    }

    /// Every product, by sku.
    pub async fn products(&self) -> Result<Arc<Vec<Product>>, Arc<StoreError>> {
        let db = &self.db;
        self.listing
            .try_get_with((), async move { products::list(db).await.map(Arc::new) })
            .await
    }

    /// Records the stock a committed batch left (here or, for a sold-out
    /// sku, on another node), so this node's answers and its sold-out flag
    /// are current at once. True when this is what sold the product out
    /// in this catalogue.
    pub async fn saw_stock(&self, sku: &str, stock_left: i64) -> bool {
        let Some(Some(product)) = self.products.get(sku).await else {
            return false;
        };
        if product.stock_left == stock_left {
            return false;
        }
        let fresh = Product {
            stock_left,
            ..Product::clone(&product)
        };
        self.products
            .insert(sku.to_owned(), Some(Arc::new(fresh)))
            .await;
        stock_left == 0
    }

    /// Forgets everything, e.g. after a product was created here.
    pub fn invalidate(&self) {
        self.products.invalidate_all();
        self.listing.invalidate_all();
    }
}
