//! Who gets stock: the decision for one request against the state of its
//! product, applied to a batch in arrival order. Pure and synchronous, so
//! that the rules can be checked for every input (see the property tests
//! below) apart from any database.

use std::collections::HashMap;

/// Why a reservation was refused, in the contract's order of precedence:
/// when several apply, the first listed wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No such sku (`404 not_found`).
    NotFound,
    /// The sale has not started (`403 not_started`).
    NotStarted,
    /// Fewer units left than asked for (`409 sold_out`).
    SoldOut,
    /// The user's live units plus this request would exceed the product's
    /// per-user limit (`409 limit_exceeded`).
    LimitExceeded,
}

/// The state of one product that reservations read and change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shelf {
    /// Units not held by any live order.
    pub stock_left: i64,
    /// The most live units one user may hold.
    pub per_user_limit: i64,
    /// When the sale opens (ms since the epoch).
    pub sale_starts_at: i64,
}

impl Shelf {
    /// Decides one request of `quantity` (at least 1) units at time `now`
    /// for a user who already holds `held` live units; on success takes the
    /// units from the shelf and adds them to `held`.
    pub fn take(&mut self, now: i64, held: &mut i64, quantity: i64) -> Result<(), Refusal> {
        if now < self.sale_starts_at {
            return Err(Refusal::NotStarted);
        }
        if quantity > self.stock_left {
            return Err(Refusal::SoldOut);
        }
        if held.saturating_add(quantity) > self.per_user_limit {
            return Err(Refusal::LimitExceeded);
        }
        self.stock_left -= quantity;
        *held += quantity;
        Ok(())
    }
}

/// Decides `requests` (user, quantity) in order against `shelf` (`None`: the
/// sku does not exist), with `holdings` the live units each user holds of
/// this product, updated as requests succeed.
pub fn decide(
    shelf: Option<&mut Shelf>,
    now: i64,
    holdings: &mut HashMap<String, i64>,
    requests: impl IntoIterator<Item = (String, i64)>,
) -> Vec<Result<(), Refusal>> {
    let Some(shelf) = shelf else {
        return requests
            .into_iter()
            .map(|_| Err(Refusal::NotFound))
            .collect();
    };
    requests
        .into_iter()
        .map(|(user, quantity)| shelf.take(now, holdings.entry(user).or_insert(0), quantity))
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn shelf(stock_left: i64, per_user_limit: i64) -> Shelf {
        Shelf {
            stock_left,
            per_user_limit,
            sale_starts_at: 100,
        }
    }

    #[test]
    fn refusals_follow_the_contracts_precedence() {
        let mut held = 5;
        // Not started beats sold out and over the limit.
        assert_eq!(shelf(0, 1).take(99, &mut held, 2), Err(Refusal::NotStarted));
        // Sold out beats over the limit.
        assert_eq!(shelf(1, 1).take(100, &mut held, 2), Err(Refusal::SoldOut));
        assert_eq!(
            shelf(10, 6).take(100, &mut held, 2),
            Err(Refusal::LimitExceeded)
        );
        assert_eq!(held, 5, "a refusal changes nothing");
        assert_eq!(
            decide(None, 100, &mut HashMap::new(), [("u".into(), 1)]),
            [Err(Refusal::NotFound)]
        );
    }

    #[test]
    fn the_last_units_go_to_the_first_in_the_batch() {
        let mut s = shelf(2, 1);
        let mut holdings = HashMap::new();
        let requests = ["a", "b", "a", "c"].map(|u| (u.to_owned(), 1));
        let verdicts = decide(Some(&mut s), 100, &mut holdings, requests);
        assert_eq!(
            verdicts,
            [Ok(()), Ok(()), Err(Refusal::SoldOut), Err(Refusal::SoldOut)]
        );
        assert_eq!(s.stock_left, 0);
    }

    /// One step of a random history: a user asks for units, or gives back
    /// (cancels) everything they hold.
    #[derive(Debug, Clone)]
    enum Step {
        Reserve { user: u8, quantity: i64 },
        Cancel { user: u8 },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0u8..8, 1i64..4).prop_map(|(user, quantity)| Step::Reserve { user, quantity }),
            1 => (0u8..8).prop_map(|user| Step::Cancel { user }),
        ]
    }

    proptest! {
        /// Whatever the interleaving of batches and cancellations: never
        /// oversold, never over a user's limit, and stock conserved.
        #[test]
        fn never_oversold_never_over_the_limit_stock_conserved(
            stock in 0i64..20,
            limit in 1i64..5,
            batches in prop::collection::vec(prop::collection::vec(step(), 1..12), 1..12),
        ) {
            let mut s = shelf(stock, limit);
            let mut holdings: HashMap<String, i64> = HashMap::new();
            let mut granted = 0;
            for batch in batches {
                let mut reserves = Vec::new();
                for step in batch {
                    match step {
                        Step::Reserve { user, quantity } => reserves.push((user.to_string(), quantity)),
                        Step::Cancel { user } => {
                            let given_back = holdings.remove(&user.to_string()).unwrap_or(0);
                            s.stock_left += given_back;
                            granted -= given_back;
                        }
                    }
                }
                let asked: Vec<i64> = reserves.iter().map(|r| r.1).collect();
                let verdicts = decide(Some(&mut s), 100, &mut holdings, reserves);
                granted += verdicts.iter().zip(&asked).filter(|(v, _)| v.is_ok()).map(|(_, q)| q).sum::<i64>();
                prop_assert!(s.stock_left >= 0, "oversold: {}", s.stock_left);
                prop_assert!(holdings.values().all(|&h| h <= limit), "over the limit: {holdings:?}");
                prop_assert_eq!(s.stock_left + granted, stock, "stock not conserved");
                prop_assert_eq!(holdings.values().sum::<i64>(), granted);
            }
        }

        /// A refusal is only ever given for a reason that holds.
        #[test]
        fn refusals_are_justified(stock in 0i64..5, limit in 1i64..4, held in 0i64..5, quantity in 1i64..6) {
            let mut s = shelf(stock, limit);
            let mut h = held;
            match s.take(100, &mut h, quantity) {
                Ok(()) => prop_assert!(quantity <= stock && held + quantity <= limit),
                Err(Refusal::SoldOut) => prop_assert!(quantity > stock),
                Err(Refusal::LimitExceeded) => prop_assert!(quantity <= stock && held + quantity > limit),
                Err(other) => prop_assert!(false, "unexpected {other:?}"),
            }
        }
    }
}
