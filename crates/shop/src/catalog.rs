//! What every node knows about the products, at most a second old.
//!
//! Product reads and the order path's first checks (unknown sku, sale not
//! started, sold out) are answered from here, so a crowd refreshing a
//! product page or hammering a sold-out sku costs the store one read per
//! second instead of one per request: this is the sold-out flag that every
//! node learns within a second.
//!
//! Loads go to a read replica at most half a second behind (see
//! `stampede_store::replicas`); a value from a replica starts its second
//! that replica's lag short, so the bound holds all the same.
//!
//! The cache has two levels (see [`two_level`]): the node's memory, and,
//! with Redis, a level every node shares, so one node's load serves them
//! all. Concurrent misses share one load. After this node commits a batch
//! it writes the stock it saw straight in, so its own flag is set at once;
//! with Redis a sold-out sku is also written to the shared level and
//! announced, and the other nodes set their flag at once too (see
//! `stampede-redis`' `sold_out`).

use std::sync::Arc;
use std::time::Duration;

use stampede_redis::Redis;
use stampede_store::products::{self, Product};
use stampede_store::{Replicas, StoreError};

mod two_level;

use two_level::TwoLevel;

/// How stale any cached product may be: the contract's bound on
/// `stock_left` and `sold_out`.
const FRESHNESS: Duration = Duration::from_secs(1);

/// The most lag a replica may have to serve the catalogue, whatever the
/// configured bound: what it leaves of [`FRESHNESS`] is how long the
/// loaded value is kept, and a value kept for no time at all would send
/// every read to the store.
const USABLE_LAG: Duration = Duration::from_millis(500);

/// The listing's one key.
const EVERY_PRODUCT: &str = "all";

/// The cached catalogue of one node.
#[derive(Clone)]
pub struct Catalog {
    replicas: Replicas,
    products: Arc<TwoLevel<Option<Product>>>,
    listing: Arc<TwoLevel<Vec<Product>>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").finish_non_exhaustive()
    }
}

impl Catalog {
    /// An empty catalogue loading from `replicas` (or their primary),
    /// sharing loads through `redis` if any.
    pub fn new(replicas: Replicas, redis: Option<&Redis>) -> Self {
        // A bound keeps lookups of random unknown skus from growing the
        // cache without limit (unknown skus are cached as `None`).
        let products = TwoLevel::new(100_000, FRESHNESS, redis.cloned(), "product");
        let listing = TwoLevel::new(1, FRESHNESS, redis.cloned(), "products");
        Self {
            replicas,
            products: Arc::new(products),
            listing: Arc::new(listing),
        }
    }

    /// One product, or `None` if there is no such sku.
    pub async fn product(&self, sku: &str) -> Result<Arc<Option<Product>>, Arc<StoreError>> {
        let load =
            self.replicas.read_within(
                USABLE_LAG,
                |db| async move { products::get(&db, sku).await },
            );
        self.products.get_with(sku, load).await
    }

    /// Every product, by sku.
    pub async fn products(&self) -> Result<Arc<Vec<Product>>, Arc<StoreError>> {
        let load = self
            .replicas
            .read_within(USABLE_LAG, |db| async move { products::list(&db).await });
        self.listing.get_with(EVERY_PRODUCT, load).await
    }

    /// Records the stock a committed batch left (here or, for a sold-out
    /// sku, on another node), so this node's answers and its sold-out flag
    /// are current at once. True when this is what sold the product out
    /// in this catalogue.
    pub async fn saw_stock(&self, sku: &str, stock_left: i64) -> bool {
        let Some(cached) = self.products.peek(sku).await else {
            return false;
        };
        let Some(product) = Option::as_ref(&cached).filter(|p| p.stock_left != stock_left) else {
            return false;
        };
        let fresh = Product {
            stock_left,
            ..product.clone()
        };
        let sold_out = stock_left == 0;
        self.products.put(sku, Some(fresh), sold_out).await;
        sold_out
    }

    /// Takes in a product just created on the primary, on every node
    /// sharing the cache: its entry replaces a cached "no such sku" (a
    /// replica may not have the row yet, so it is written, not reloaded),
    /// and the listing is forgotten.
    pub async fn created(&self, product: &Product) {
        self.products
            .put(&product.sku, Some(product.clone()), true)
            .await;
        self.listing.forget(&[EVERY_PRODUCT]).await;
    }
}
