//! Everything the crowd saw, as it happened: a latency histogram per
//! outcome, counts per status, a per-second timeline for the charts, and
//! the live counters the progress line reads.
//!
//! Latencies go into HdrHistograms (microseconds, three significant
//! digits): a percentile read from them is exact to 0.1% however long the
//! tail, which averaging or sampling would not be.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use stampede_client::{Answer, Order, Outcome};

/// The longest latency the histograms hold; longer ones are clamped to it
/// (no request may take longer than its timeout anyway).
const MAX_MICROS: u64 = 600_000_000;

/// How many distinct failure messages a report keeps as examples.
const FAILURE_SAMPLES: usize = 10;

/// Counters the progress line reads while the crowd runs.
#[derive(Debug, Default)]
pub(crate) struct Live {
    /// Requests answered (or failed).
    pub(crate) requests: AtomicU64,
    /// Units in `201` answers.
    pub(crate) sold: AtomicI64,
    /// Failed or unanswered requests.
    pub(crate) errors: AtomicU64,
}

/// A `201` and whom it was for.
#[derive(Debug, Clone)]
pub(crate) struct Receipt {
    /// The member (index into the crowd) who got it.
    pub(crate) member: usize,
    /// The order it named, if its body named one.
    pub(crate) order: Option<Order>,
}

/// One second of the run.
#[derive(Debug)]
pub(crate) struct Second {
    pub(crate) requests: u64,
    pub(crate) created: u64,
    pub(crate) errors: u64,
    pub(crate) latency: Histogram<u64>,
}

/// The crowd's record.
#[derive(Debug)]
pub(crate) struct Recorder {
    start: Instant,
    pub(crate) outcomes: BTreeMap<Outcome, Histogram<u64>>,
    /// Answers per status code; `"none"` for no answer.
    pub(crate) statuses: BTreeMap<String, u64>,
    pub(crate) timeline: Vec<Second>,
    pub(crate) receipts: Vec<Receipt>,
    pub(crate) first_sold_out: Option<Duration>,
    pub(crate) failures: Vec<String>,
    /// Open loop: arrivals not sent because too many were in flight.
    pub(crate) dropped: u64,
}

impl Recorder {
    pub(crate) fn new(start: Instant) -> Self {
        Self {
            start,
            outcomes: BTreeMap::new(),
            statuses: BTreeMap::new(),
            timeline: Vec::new(),
            receipts: Vec::new(),
            first_sold_out: None,
            failures: Vec::new(),
            dropped: 0,
        }
    }

    /// Records `answer`, which took `latency`, for `member` (`None` for a
    /// product read).
    pub(crate) fn record(
        &mut self,
        member: Option<usize>,
        answer: &Answer,
        latency: Duration,
        live: &Live,
    ) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(MAX_MICROS)
            .clamp(1, MAX_MICROS);
        let outcome = answer.outcome;
        self.outcomes
            .entry(outcome)
            .or_insert_with(|| histogram(3))
            .saturating_record(micros);
        let status = answer
            .status
            .map_or_else(|| "none".to_owned(), |s| s.to_string());
        *self.statuses.entry(status).or_default() += 1;

        let elapsed = self.start.elapsed();
        let second = self.second(elapsed);
        second.requests += 1;
        second.latency.saturating_record(micros);
        live.requests.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Outcome::Created => {
                second.created += 1;
                if let Some(member) = member {
                    let units = answer.order.as_ref().map_or(0, |o| o.quantity);
                    live.sold.fetch_add(units, Ordering::Relaxed);
                    self.receipts.push(Receipt {
                        member,
                        order: answer.order.clone(),
                    });
                }
            }
            Outcome::SoldOut => {
                self.first_sold_out.get_or_insert(elapsed);
            }
            outcome if outcome.is_error() => {
                second.errors += 1;
                live.errors.fetch_add(1, Ordering::Relaxed);
                if let Some(detail) = &answer.detail
                    && self.failures.len() < FAILURE_SAMPLES
                    && !self.failures.contains(detail)
                {
                    self.failures.push(detail.clone());
                }
            }
            _ => {}
        }
    }

    fn second(&mut self, elapsed: Duration) -> &mut Second {
        let index = usize::try_from(elapsed.as_secs()).unwrap_or(usize::MAX);
        while self.timeline.len() <= index {
            self.timeline.push(Second {
                requests: 0,
                created: 0,
                errors: 0,
                latency: histogram(2),
            });
        }
        &mut self.timeline[index]
    }
}

/// A histogram of microseconds up to [`MAX_MICROS`] with `digits`
/// significant digits (the per-second ones need less precision).
pub(crate) fn histogram(digits: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, digits).expect("static histogram bounds are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(outcome: Outcome, status: Option<u16>, quantity: i64) -> Answer {
        Answer {
            outcome,
            status,
            order: (outcome == Outcome::Created).then(|| Order {
                order_id: "o1".into(),
                sku: "S".into(),
                quantity,
                status: "reserved".into(),
            }),
            retry_after: None,
            detail: outcome.is_error().then(|| "boom".to_owned()),
        }
    }

    #[test]
    fn counts_outcomes_statuses_units_and_errors() {
        let live = Live::default();
        let mut r = Recorder::new(Instant::now());
        let ms = Duration::from_millis(1);
        r.record(Some(3), &answer(Outcome::Created, Some(201), 2), ms, &live);
        r.record(
            Some(4),
            &answer(Outcome::SoldOut, Some(409), 0),
            ms * 2,
            &live,
        );
        r.record(None, &answer(Outcome::Read, Some(200), 0), ms, &live);
        r.record(Some(5), &answer(Outcome::Unanswered, None, 0), ms, &live);
        r.record(Some(5), &answer(Outcome::Unanswered, None, 0), ms, &live);

        assert_eq!(live.requests.load(Ordering::Relaxed), 5);
        assert_eq!(live.sold.load(Ordering::Relaxed), 2);
        assert_eq!(live.errors.load(Ordering::Relaxed), 2);
        assert_eq!(r.statuses["201"], 1);
        assert_eq!(r.statuses["none"], 2);
        assert_eq!(r.receipts.len(), 1);
        assert_eq!(r.receipts[0].member, 3);
        assert!(r.first_sold_out.is_some());
        assert_eq!(
            r.failures,
            vec!["boom".to_owned()],
            "one sample per distinct failure"
        );
        assert_eq!(r.outcomes[&Outcome::SoldOut].max(), 2000);
        let total: u64 = r.timeline.iter().map(|s| s.requests).sum();
        assert_eq!(total, 5);
    }
}
