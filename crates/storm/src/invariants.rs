//! The contract's invariants, checked once the crowd is gone, against the
//! source of truth (`GET /api/v1/admin/stats`) and each user's own orders:
//!
//! 1. **nothing oversold**: live orders never hold more than the stock,
//!    stock left never goes below zero, and clients were never told "yours"
//!    for more units than exist;
//! 2. **stock conserved**: live units plus stock left equal the initial
//!    stock, and the users' orders add up to what the stats say;
//! 3. **no user over the limit**: nobody's live orders exceed the per-user
//!    limit;
//! 4. **every 201 names an order of its user**: each acknowledged order is
//!    in that user's orders, with the sku and quantity it was sold with.
//!
//! The storm's product and users are its own (named after the run), so
//! every order of that sku came from this crowd and the sums must agree
//! exactly.

use std::collections::HashMap;

use serde::Serialize;
use stampede_client::{Order, SkuStats};

use crate::Options;
use crate::record::Receipt;

/// Violations a report lists in full; beyond, only their number.
const LISTED: usize = 50;

/// The invariants' names, as reports show them.
pub(crate) const NOTHING_OVERSOLD: &str = "nothing oversold";
/// See the module docs.
pub(crate) const STOCK_CONSERVED: &str = "stock conserved";
/// See the module docs.
pub(crate) const PER_USER_LIMIT: &str = "no user over the limit";
/// See the module docs.
pub(crate) const ACKNOWLEDGED_ORDERS_EXIST: &str = "every 201 names an order of its user";

/// One broken rule, and who or what broke it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Which invariant.
    pub rule: &'static str,
    /// What exactly: the order, the user, the numbers.
    pub detail: String,
}

/// The verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Invariants {
    /// The sku's entry in the stats, as read after the crowd.
    pub stats: Option<SkuStats>,
    /// Users whose orders were read.
    pub users_checked: usize,
    /// Every violation found.
    pub violation_count: usize,
    /// The first violations, in full.
    pub violations: Vec<Violation>,
}

impl Invariants {
    /// Whether every invariant held.
    pub fn held(&self) -> bool {
        self.violation_count == 0
    }
}

/// Judges the run: `stats` is the sku's entry, `orders[m]` member `m`'s
/// orders (all skus), `usernames[m]` their names, `receipts` every `201`.
pub(crate) fn judge(
    options: &Options,
    stats: Option<&SkuStats>,
    usernames: &[&str],
    orders: &[Vec<Order>],
    receipts: &[Receipt],
) -> Invariants {
    let mut found = Vec::new();
    let live_per_user: Vec<i64> = orders.iter().map(|o| live_units(o, &options.sku)).collect();
    let acknowledged: i64 = receipts
        .iter()
        .filter_map(|r| r.order.as_ref())
        .map(|o| o.quantity)
        .sum();
    match stats {
        None => found.push(Violation {
            rule: STOCK_CONSERVED,
            detail: format!("the stats have no entry for sku {}", options.sku),
        }),
        Some(stats) => check_stock(
            options,
            stats,
            live_per_user.iter().sum(),
            acknowledged,
            &mut found,
        ),
    }
    for (member, (&live, name)) in live_per_user.iter().zip(usernames).enumerate() {
        if live > options.per_user_limit {
            found.push(Violation {
                rule: PER_USER_LIMIT,
                detail: format!(
                    "user {name} holds {live} live units of {} (limit {}): orders {}",
                    options.sku,
                    options.per_user_limit,
                    order_ids(&orders[member], &options.sku)
                ),
            });
        }
    }
    check_receipts(receipts, usernames, orders, &mut found);
    Invariants {
        stats: stats.cloned(),
        users_checked: orders.len(),
        violation_count: found.len(),
        violations: found.into_iter().take(LISTED).collect(),
    }
}

fn check_stock(
    options: &Options,
    stats: &SkuStats,
    users_live: i64,
    acknowledged: i64,
    found: &mut Vec<Violation>,
) {
    let sku = &stats.sku;
    let live = stats.live();
    let mut violation = |rule, detail| found.push(Violation { rule, detail });
    if live > stats.initial_stock || stats.stock_left < 0 {
        violation(
            NOTHING_OVERSOLD,
            format!(
                "sku {sku}: live orders hold {live} units and {} are left, of {} in stock",
                stats.stock_left, stats.initial_stock
            ),
        );
    }
    if acknowledged > options.stock {
        violation(
            NOTHING_OVERSOLD,
            format!(
                "sku {sku}: clients got 201 for {acknowledged} units, but only {} exist",
                options.stock
            ),
        );
    }
    if stats.initial_stock != options.stock {
        violation(
            STOCK_CONSERVED,
            format!(
                "sku {sku}: initial stock is {}, but the storm created it with {}",
                stats.initial_stock, options.stock
            ),
        );
    }
    if live + stats.stock_left != stats.initial_stock {
        violation(
            STOCK_CONSERVED,
            format!(
                "sku {sku}: {live} live + {} left = {}, not the initial {}",
                stats.stock_left,
                live + stats.stock_left,
                stats.initial_stock
            ),
        );
    }
    if users_live != live {
        violation(
            STOCK_CONSERVED,
            format!(
                "sku {sku}: the users' orders hold {users_live} live units, the stats say {live}"
            ),
        );
    }
}

fn check_receipts(
    receipts: &[Receipt],
    usernames: &[&str],
    orders: &[Vec<Order>],
    found: &mut Vec<Violation>,
) {
    let by_id: Vec<HashMap<&str, &Order>> = orders
        .iter()
        .map(|orders| orders.iter().map(|o| (o.order_id.as_str(), o)).collect())
        .collect();
    for receipt in receipts {
        let name = usernames[receipt.member];
        let detail = match &receipt.order {
            None => format!("a 201 to user {name} named no order"),
            Some(sold) => match by_id[receipt.member].get(sold.order_id.as_str()) {
                None => format!(
                    "order {} (201 to user {name}) is not among {name}'s orders",
                    sold.order_id
                ),
                Some(kept) if kept.sku != sold.sku || kept.quantity != sold.quantity => format!(
                    "order {} of user {name} was sold as {} x {} but is now {} x {}",
                    sold.order_id, sold.quantity, sold.sku, kept.quantity, kept.sku
                ),
                Some(_) => continue,
            },
        };
        found.push(Violation {
            rule: ACKNOWLEDGED_ORDERS_EXIST,
            detail,
        });
    }
}

fn live_units(orders: &[Order], sku: &str) -> i64 {
    orders
        .iter()
        .filter(|o| o.sku == sku && o.is_live())
        .map(|o| o.quantity)
        .sum()
}

fn order_ids(orders: &[Order], sku: &str) -> String {
    let ids: Vec<&str> = orders
        .iter()
        .filter(|o| o.sku == sku && o.is_live())
        .map(|o| o.order_id.as_str())
        .collect();
    ids.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKU: &str = "STORM-1";

    fn options() -> Options {
        let mut o = Options::new("http://127.0.0.1:1", "t", 1);
        o.stock = 2;
        o.per_user_limit = 1;
        o
    }

    fn order(id: &str, status: &str) -> Order {
        Order {
            order_id: id.into(),
            sku: SKU.into(),
            quantity: 1,
            status: status.into(),
        }
    }

    fn stats(stock_left: i64, reserved: i64) -> SkuStats {
        SkuStats {
            sku: SKU.into(),
            initial_stock: 2,
            stock_left,
            reserved,
            paying: 0,
            paid: 0,
            confirmed: 0,
            expired: 0,
            cancelled: 0,
            payment_failed: 0,
        }
    }

    fn receipt(member: usize, id: &str) -> Receipt {
        Receipt {
            member,
            order: Some(order(id, "reserved")),
        }
    }

    fn rules(i: &Invariants) -> Vec<&'static str> {
        i.violations.iter().map(|v| v.rule).collect()
    }

    #[test]
    fn an_honest_sale_breaks_nothing() {
        let orders = vec![
            vec![order("a", "reserved")],
            vec![order("b", "expired")],
            vec![],
        ];
        let receipts = [receipt(0, "a"), receipt(1, "b")];
        let verdict = judge(
            &options(),
            Some(&stats(1, 1)),
            &["u0", "u1", "u2"],
            &orders,
            &receipts,
        );
        assert!(verdict.held(), "{:?}", verdict.violations);
        assert_eq!(verdict.users_checked, 3);
    }

    #[test]
    fn overselling_is_caught_from_the_stats_and_from_the_receipts() {
        let orders = vec![
            vec![order("a", "reserved")],
            vec![order("b", "reserved")],
            vec![order("c", "reserved")],
        ];
        let receipts = [receipt(0, "a"), receipt(1, "b"), receipt(2, "c")];
        let verdict = judge(
            &options(),
            Some(&stats(-1, 3)),
            &["u0", "u1", "u2"],
            &orders,
            &receipts,
        );
        assert_eq!(rules(&verdict), [NOTHING_OVERSOLD, NOTHING_OVERSOLD]);
        assert!(verdict.violations[1].detail.contains("201 for 3 units"));
    }

    #[test]
    fn lost_stock_a_greedy_user_and_a_phantom_order_are_each_named() {
        let orders = vec![vec![order("a", "reserved"), order("b", "reserved")], vec![]];
        let receipts = [receipt(0, "a"), receipt(1, "ghost")];
        let verdict = judge(
            &options(),
            Some(&stats(1, 2)),
            &["u0", "u1"],
            &orders,
            &receipts,
        );
        assert_eq!(
            rules(&verdict),
            [STOCK_CONSERVED, PER_USER_LIMIT, ACKNOWLEDGED_ORDERS_EXIST]
        );
        assert!(verdict.violations[1].detail.contains("user u0 holds 2"));
        assert!(verdict.violations[2].detail.contains("order ghost"));
    }

    #[test]
    fn a_missing_sku_is_a_violation() {
        let verdict = judge(&options(), None, &[], &[], &[]);
        assert_eq!(rules(&verdict), [STOCK_CONSERVED]);
    }
}
