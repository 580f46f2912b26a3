//! The inventory: how `POST /api/v1/orders` turns stock into reservations
//! without ever overselling, exceeding a user's limit or losing an
//! acknowledged order — and stays fast when thousands of buyers hit one
//! product row at once.
//!
//! # The problem
//!
//! Every reservation of a sku must read and decrement the same row. Done
//! one transaction per request, buyers queue on that row's lock and each
//! pays a full durable commit: about 1,500 reservations a second on
//! PostgreSQL, however many nodes there are.
//!
//! # The design: group commit
//!
//! Each node keeps one queue per sku ([`GroupCommit`]). Requests wait there
//! while the previous transaction for that sku runs; the next transaction
//! takes everything that queued up (up to a batch limit) and decides it in
//! one go: one row lock, one read of the stock, one read of the buyers'
//! holdings, one decrement, one multi-row insert of orders and idempotency
//! keys, one commit. Under light load a batch is a single request and
//! nothing waits; under a crowd the batch grows and the cost of the lock
//! and the commit is shared by hundreds of buyers.
//!
//! Nothing is given up for it: every decision is made under the row lock
//! with the stock and holdings read in that same transaction ([`rules`]
//! holds the decision itself, as a pure function), several nodes serialise
//! on the same lock, and no request is answered before its batch committed.
//!
//! # Layout
//!
//! - [`rules`]: who gets stock, in which order refusals apply.
//! - [`ledger`]: the one transaction that commits a batch.
//! - [`group_commit`]: the per-sku queues that form batches.

pub mod group_commit;
pub mod ledger;
pub mod rules;

pub use group_commit::{GroupCommit, Reply, ReserveError, Settings};
pub use ledger::{Batch, Idempotency, Outcome, Reservation};
pub use rules::{Refusal, Shelf};
