//! The JSON shapes of the contract's products and orders, and the RFC 3339
//! times they carry (the store keeps milliseconds since the epoch).

use serde::Serialize;
use stampede_store::{Order, Product};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A product as the contract writes it.
#[derive(Debug, Serialize)]
pub(crate) struct ProductBody<'a> {
    sku: &'a str,
    name: &'a str,
    price_cents: i64,
    stock_left: i64,
    sold_out: bool,
    per_user_limit: i64,
    sale_starts_at: String,
}

impl<'a> From<&'a Product> for ProductBody<'a> {
    fn from(p: &'a Product) -> Self {
        Self {
            sku: &p.sku,
            name: &p.name,
            price_cents: p.price_cents,
            stock_left: p.stock_left,
            sold_out: p.stock_left == 0,
            per_user_limit: p.per_user_limit,
            sale_starts_at: rfc3339(p.sale_starts_at),
        }
    }
}

/// An order as the contract writes it.
#[derive(Debug, Serialize)]
pub(crate) struct OrderBody<'a> {
    order_id: &'a str,
    sku: &'a str,
    quantity: i64,
    status: &'static str,
    created_at: String,
    expires_at: String,
}

impl<'a> From<&'a Order> for OrderBody<'a> {
    fn from(o: &'a Order) -> Self {
        Self {
            order_id: &o.order_id,
            sku: &o.sku,
            quantity: o.quantity,
            status: o.status.as_str(),
            created_at: rfc3339(o.created_at),
            expires_at: rfc3339(o.expires_at),
        }
    }
}

/// The order's JSON text, as stored with an idempotency key.
pub(crate) fn order_json(order: &Order) -> String {
    serde_json::to_string(&OrderBody::from(order)).unwrap_or_default()
}

/// `ms` since the epoch as RFC 3339 in UTC, e.g. `2026-11-22T10:00:00.123Z`.
pub(crate) fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// An RFC 3339 time (any offset) as ms since the epoch.
pub(crate) fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let time = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("`{text}` is not an RFC 3339 time like 2026-11-22T10:00:00Z ({e})"))?;
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("`{text}` is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_in_utc() {
        let ms = parse_rfc3339("2026-11-22T10:00:00Z").expect("parse");
        assert_eq!(rfc3339(ms), "2026-11-22T10:00:00Z");
        assert_eq!(parse_rfc3339("2026-11-22T11:00:00+01:00"), Ok(ms));
        assert_eq!(rfc3339(ms + 123), "2026-11-22T10:00:00.123Z");
        assert!(parse_rfc3339("tomorrow").is_err());
    }
}
