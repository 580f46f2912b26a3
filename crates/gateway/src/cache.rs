//! Caching of pool routes' answers: for now, the header rules that decide
//! what a cache in front of the gateway (a CDN) may be told it can keep.

pub(crate) mod rules;
