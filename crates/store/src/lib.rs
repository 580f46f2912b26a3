//! The source of truth of a stampede deployment: users, sessions, products,
//! orders, idempotency keys and login counters, in SQLite (the embedded
//! default, one file in a data directory) or PostgreSQL (chosen by a
//! `postgres://` URL).
//!
//! Both engines sit behind one [`Db`] handle on sqlx's `Any` driver, so every
//! query in this crate is written once, in the SQL both engines share:
//! `$N` placeholders, `BIGINT` milliseconds for times, `TEXT` ids made by the
//! application. Where the engines must differ (row locks, how a write
//! transaction begins) the [`Dialect`] says so in one place.
//!
//! # Layout
//!
//! - [`db`]: connecting, pool settings, write transactions, readiness.
//! - [`migrate`]: the schema, applied at start and by `stampede migrate`.
//! - [`users`], [`sessions`], [`login_limits`]: accounts and who is logged in.
//! - [`products`], [`orders`], [`stats`]: the catalogue and what was sold.
//! - [`replicas`]: PostgreSQL read replicas for reads that may be stale,
//!   each used only while its measured lag is within a bound.
//!
//! The reservation transaction itself (the hot path) lives in the
//! `stampede-inventory` crate, which builds on the [`Db`] handle here.

pub mod db;
mod error;
pub mod login_limits;
pub mod migrate;
pub mod orders;
pub mod products;
pub mod replicas;
pub mod sessions;
pub mod stats;
pub mod users;

pub use db::{Db, DbOptions, Dialect, now_ms, placeholders};
pub use error::StoreError;
pub use orders::{Order, OrderStatus};
pub use products::Product;
pub use replicas::Replicas;
