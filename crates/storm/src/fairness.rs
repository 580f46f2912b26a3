//! Fairness: did success follow arrival order?
//!
//! A sale that is "first come, first served" should give its units to the
//! users who came first. Two numbers say how far it did, computed from who
//! won, listed in the order users first tried:
//!
//! - **first-come share**: of the W winners, the share who were among the
//!   first W arrivals. 1 is strict first come, first served.
//! - **rank correlation** (Somers' D of success on earliness, which is
//!   2·AUC − 1): over every pair of one winner and one loser, the share
//!   where the winner came first minus the share where the loser did. 1 is
//!   first come first served, 0 means arrival order made no difference,
//!   −1 means last come first served. Kendall's τ-b is given too, as the
//!   flash-sale literature quotes it; with a yes/no outcome its largest
//!   value is below 1, which is why Somers' D is the headline.

use serde::Serialize;

/// The fairness of one run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fairness {
    /// Users who won at least one order.
    pub winners: usize,
    /// Users who tried.
    pub arrivals: usize,
    /// Share of winners among the first `winners` arrivals.
    pub first_come_share: Option<f64>,
    /// Somers' D of success on earliness, in −1..=1.
    pub rank_correlation: Option<f64>,
    /// Kendall's τ-b between earliness and success.
    pub kendall_tau_b: Option<f64>,
}

/// Fairness of `won`, one entry per user in arrival order. The numbers
/// are `None` where they are undefined: nobody won, or everybody did.
pub(crate) fn fairness(won: &[bool]) -> Fairness {
    let arrivals = won.len();
    let winners = won.iter().filter(|&&w| w).count();
    let losers = arrivals - winners;
    let first_come_share = (winners > 0)
        .then(|| won[..winners].iter().filter(|&&w| w).count() as f64 / winners as f64);
    // Pairs (earlier i, later j) with different outcomes: concordant when
    // the earlier one won, discordant when the later one did.
    let (mut concordant, mut discordant) = (0u128, 0u128);
    let (mut winners_so_far, mut losers_so_far) = (0u128, 0u128);
    for &w in won {
        if w {
            discordant += losers_so_far;
            winners_so_far += 1;
        } else {
            concordant += winners_so_far;
            losers_so_far += 1;
        }
    }
    let mixed = (winners as u128) * (losers as u128);
    let difference = concordant as f64 - discordant as f64;
    let rank_correlation = (mixed > 0).then(|| difference / mixed as f64);
    let pairs = |n: u128| n * n.saturating_sub(1) / 2;
    let all = pairs(arrivals as u128);
    let tied = pairs(winners as u128) + pairs(losers as u128);
    let kendall_tau_b =
        (mixed > 0).then(|| difference / ((all as f64) * ((all - tied) as f64)).sqrt());
    Fairness {
        winners,
        arrivals,
        first_come_share,
        rank_correlation,
        kendall_tau_b,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn first_come_first_served_scores_one_and_its_reverse_minus_one() {
        let fifo = fairness(&[true, true, false, false, false]);
        assert_eq!(fifo.first_come_share, Some(1.0));
        assert_eq!(fifo.rank_correlation, Some(1.0));
        let lifo = fairness(&[false, false, false, true, true]);
        assert_eq!(lifo.first_come_share, Some(0.0));
        assert_eq!(lifo.rank_correlation, Some(-1.0));
        // τ-b of a perfect split: sqrt(W·L / (n(n-1)/2)) = sqrt(6/10).
        let tau = fifo.kendall_tau_b.unwrap();
        assert!((tau - (0.6f64).sqrt()).abs() < 1e-12, "{tau}");
    }

    #[test]
    fn undefined_when_everyone_or_nobody_won() {
        let none = fairness(&[false, false]);
        assert_eq!((none.first_come_share, none.rank_correlation), (None, None));
        let all = fairness(&[true, true]);
        assert_eq!(all.first_come_share, Some(1.0));
        assert_eq!(all.rank_correlation, None);
        assert_eq!(fairness(&[]).arrivals, 0);
    }

    #[test]
    fn alternating_outcomes_are_close_to_no_correlation() {
        let won: Vec<bool> = (0..1000).map(|i| i % 2 == 0).collect();
        let d = fairness(&won).rank_correlation.unwrap();
        assert!(d.abs() < 0.01, "{d}");
    }

    proptest! {
        #[test]
        fn every_score_stays_in_range(won in proptest::collection::vec(any::<bool>(), 0..300)) {
            let f = fairness(&won);
            prop_assert_eq!(f.winners, won.iter().filter(|&&w| w).count());
            if let Some(s) = f.first_come_share { prop_assert!((0.0..=1.0).contains(&s)); }
            if let Some(d) = f.rank_correlation { prop_assert!((-1.0..=1.0).contains(&d)); }
            if let Some(t) = f.kendall_tau_b { prop_assert!((-1.0..=1.0).contains(&t)); }
        }

        #[test]
        fn moving_a_winner_earlier_never_lowers_the_correlation(
            won in proptest::collection::vec(any::<bool>(), 2..200),
        ) {
            // Swap the first (loser, winner) adjacent pair, if any.
            if let Some(i) = (0..won.len() - 1).find(|&i| !won[i] && won[i + 1]) {
                let mut earlier = won.clone();
                earlier.swap(i, i + 1);
                let before = fairness(&won).rank_correlation.unwrap();
                let after = fairness(&earlier).rank_correlation.unwrap();
                prop_assert!(after > before);
            }
        }
    }
}
