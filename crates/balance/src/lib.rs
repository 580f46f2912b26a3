//! Load balancing: which backend of a pool gets the next request.
//!
//! This crate knows nothing about sockets or HTTP. It is shared by every mode
//! of the gateway (reverse proxy today; redirect, DNS and L4 later), which all
//! ask the same question of a pool and differ only in what they do with the
//! answer.
//!
//! # Layout
//!
//! - [`Backend`]: one upstream server, its weight, and its live [`Load`]
//!   (requests in flight, peak-EWMA latency) that the proxy feeds back.
//! - [`Strategy`]: the one trait every algorithm implements. Each algorithm
//!   lives in its own file under [`strategy`] and reads in one screen.
//! - [`StrategyKind`]: the names users write in configuration, and
//!   [`StrategyKind::build`] which turns a name and a backend set into a
//!   strategy.
//!
//! # Why load lives on the backend
//!
//! Least-connections and peak-EWMA need per-backend counters that outlive any
//! single strategy instance: when a pool is rebuilt (config reload, a backend
//! added), the counters of the backends that stay must survive, or the new
//! strategy would believe every busy backend idle (the bug of pingora PR #269).
//! So counters live in [`Backend`], shared by `Arc`, and strategies only read
//! them.

mod backend;
pub mod strategy;

pub use backend::{Backend, InFlight, Load, Out};
pub use strategy::{Pick, Strategy, StrategyKind};
