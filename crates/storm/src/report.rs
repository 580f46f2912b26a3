//! The report: what the crowd got, how fast, how fair, and whether the
//! contract's invariants held, as one serialisable value with a text form
//! (the JSON form is serde's, the HTML form is in `html`).
//!
//! Definitions, as k6 and the flash-sale literature use them:
//! - **attempts/s**: order requests answered per second of the crowd;
//! - **purchases/s**: `201`s per second until the stock ran out (the first
//!   `sold_out`), or over the whole crowd if it never did — a sale that sold
//!   out in 2 s of a 10 s run sold at the 2 s rate;
//! - **time to sell out**: from the crowd's start to the first `sold_out`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use stampede_client::Outcome;

use crate::Options;
use crate::crowd::Ran;
use crate::fairness::{Fairness, fairness};
use crate::invariants::Invariants;
use crate::record::{Recorder, histogram};

/// Everything a storm found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was asked.
    pub options: Options,
    /// Seconds spent creating and logging in users (not timed as load).
    pub setup_seconds: f64,
    /// Users who logged in and joined the crowd.
    pub users: usize,
    /// The crowd's numbers.
    pub crowd: CrowdSummary,
    /// Latency of every order attempt, whatever its outcome, in ms.
    pub order_latency: LatencyRow,
    /// Latency per outcome, in milliseconds.
    pub latency: Vec<LatencyRow>,
    /// Answers per status code (`none` for no answer).
    pub statuses: BTreeMap<String, u64>,
    /// Did success follow arrival order?
    pub fairness: Fairness,
    /// The verdict on the contract's invariants.
    pub invariants: Invariants,
    /// One row per second of the crowd.
    pub timeline: Vec<SecondRow>,
    /// Examples of what failed, one per distinct message.
    pub failures: Vec<String>,
}

/// The crowd's totals and rates.
#[derive(Debug, Clone, Serialize)]
pub struct CrowdSummary {
    /// From the first request to the last answer.
    pub seconds: f64,
    /// Requests answered or failed.
    pub requests: u64,
    /// Requests per second.
    pub requests_per_second: f64,
    /// Order requests.
    pub attempts: u64,
    /// Order requests per second.
    pub attempts_per_second: f64,
    /// `201` answers.
    pub purchases: u64,
    /// Units in `201` answers.
    pub units_sold: i64,
    /// `201`s per second until the stock ran out.
    pub purchases_per_second: f64,
    /// When the first `sold_out` came, if one did.
    pub time_to_sell_out_seconds: Option<f64>,
    /// Open loop: arrivals not sent because too many were in flight.
    pub dropped: u64,
}

/// Latency of one outcome.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyRow {
    /// The outcome (`created`, `sold_out`, ...).
    pub outcome: &'static str,
    /// How many.
    pub count: u64,
    /// Percentiles and maximum, milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// The slowest.
    pub max_ms: f64,
}

/// One second of the crowd.
#[derive(Debug, Clone, Serialize)]
pub struct SecondRow {
    /// Seconds since the start.
    pub second: usize,
    /// Requests finished in it.
    pub requests: u64,
    /// `201`s in it.
    pub created: u64,
    /// Errors in it.
    pub errors: u64,
    /// Median latency of its requests, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
}

impl Report {
    /// Puts the report together.
    pub(crate) fn new(
        options: &Options,
        setup: Duration,
        users: usize,
        ran: &Ran,
        invariants: Invariants,
    ) -> Self {
        let record = &ran.recorder;
        let count = |outcome| record.outcomes.get(&outcome).map_or(0, Histogram::len);
        let seconds = ran.elapsed.as_secs_f64().max(1e-9);
        let requests: u64 = record.outcomes.values().map(Histogram::len).sum();
        let attempts = requests - count(Outcome::Read);
        let purchases = count(Outcome::Created);
        let sell_out = record.first_sold_out.map(|d| d.as_secs_f64());
        let mut won = vec![false; ran.arrived];
        for receipt in &record.receipts {
            if let Some(w) = won.get_mut(receipt.member) {
                *w = true;
            }
        }
        Self {
            options: options.clone(),
            setup_seconds: setup.as_secs_f64(),
            users,
            crowd: CrowdSummary {
                seconds,
                requests,
                requests_per_second: requests as f64 / seconds,
                attempts,
                attempts_per_second: attempts as f64 / seconds,
                purchases,
                units_sold: record
                    .receipts
                    .iter()
                    .filter_map(|r| r.order.as_ref())
                    .map(|o| o.quantity)
                    .sum(),
                purchases_per_second: purchases as f64 / sell_out.unwrap_or(seconds).max(1e-3),
                time_to_sell_out_seconds: sell_out,
                dropped: record.dropped,
            },
            order_latency: latency_row("all orders", &order_latencies(record)),
            latency: Outcome::ALL
                .iter()
                .filter_map(|o| record.outcomes.get(o).map(|h| latency_row(o.name(), h)))
                .collect(),
            statuses: record.statuses.clone(),
            fairness: fairness(&won),
            invariants,
            timeline: record
                .timeline
                .iter()
                .enumerate()
                .map(|(second, s)| SecondRow {
                    second,
                    requests: s.requests,
                    created: s.created,
                    errors: s.errors,
                    p50_ms: millis(s.latency.value_at_quantile(0.5)),
                    p99_ms: millis(s.latency.value_at_quantile(0.99)),
                })
                .collect(),
            failures: record.failures.clone(),
        }
    }

    /// The report for a terminal.
    pub fn to_text(&self) -> String {
        let mut t = String::new();
        let o = &self.options;
        let c = &self.crowd;
        let _ = writeln!(
            t,
            "storm against {}: {} units of {}, {} users",
            o.target, o.stock, o.sku, self.users
        );
        let _ = writeln!(
            t,
            "  load: {}, read ratio {}, seed {}",
            load_text(o),
            o.read_ratio,
            o.seed
        );
        let _ = writeln!(t, "  setup (untimed): {:.1} s", self.setup_seconds);
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "crowd: {:.2} s, {} requests ({:.0}/s), {} order attempts ({:.0}/s)",
            c.seconds, c.requests, c.requests_per_second, c.attempts, c.attempts_per_second
        );
        let sell_out = c.time_to_sell_out_seconds.map_or_else(
            || "not sold out".to_owned(),
            |s| format!("sold out after {s:.3} s"),
        );
        let _ = writeln!(
            t,
            "  purchases: {} ({} units), {:.0}/s; {sell_out}",
            c.purchases, c.units_sold, c.purchases_per_second
        );
        if c.dropped > 0 {
            let _ = writeln!(t, "  dropped arrivals (too many in flight): {}", c.dropped);
        }
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "  {:<15} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "count", "p50", "p90", "p99", "max"
        );
        for row in std::iter::once(&self.order_latency).chain(&self.latency) {
            let _ = writeln!(
                t,
                "  {:<15} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                row.outcome, row.count, row.p50_ms, row.p90_ms, row.p99_ms, row.max_ms
            );
        }
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        let _ = writeln!(t, "  statuses: {}", statuses.join(", "));
        let f = &self.fairness;
        let _ = writeln!(
            t,
            "  fairness: {} winners of {} arrivals; first-come share {}, rank correlation {}",
            f.winners,
            f.arrivals,
            optional(f.first_come_share),
            optional(f.rank_correlation)
        );
        for failure in &self.failures {
            let _ = writeln!(t, "  e.g. failed: {failure}");
        }
        let _ = writeln!(t);
        self.invariants_text(&mut t);
        t
    }

    fn invariants_text(&self, t: &mut String) {
        let i = &self.invariants;
        if let Some(s) = &i.stats {
            let _ = writeln!(
                t,
                "stats: initial {}, left {}, reserved {}, paying {}, paid {}, confirmed {}, expired {}, cancelled {}, payment_failed {}",
                s.initial_stock,
                s.stock_left,
                s.reserved,
                s.paying,
                s.paid,
                s.confirmed,
                s.expired,
                s.cancelled,
                s.payment_failed
            );
        }
        if i.held() {
            let _ = writeln!(
                t,
                "invariants: all held ({} users' orders checked)",
                i.users_checked
            );
            return;
        }
        let _ = writeln!(
            t,
            "invariants: {} VIOLATIONS ({} users' orders checked)",
            i.violation_count, i.users_checked
        );
        for v in &i.violations {
            let _ = writeln!(t, "  {}: {}", v.rule, v.detail);
        }
        if i.violation_count > i.violations.len() {
            let _ = writeln!(
                t,
                "  ... and {} more",
                i.violation_count - i.violations.len()
            );
        }
    }
}

/// Every order attempt's latency in one histogram.
fn order_latencies(record: &Recorder) -> Histogram<u64> {
    let mut all = histogram(3);
    for (_, h) in record.outcomes.iter().filter(|(o, _)| **o != Outcome::Read) {
        // Same bounds and precision, so adding cannot fail.
        let _ = all.add(h);
    }
    all
}

fn latency_row(outcome: &'static str, h: &Histogram<u64>) -> LatencyRow {
    LatencyRow {
        outcome,
        count: h.len(),
        p50_ms: millis(h.value_at_quantile(0.5)),
        p90_ms: millis(h.value_at_quantile(0.9)),
        p99_ms: millis(h.value_at_quantile(0.99)),
        max_ms: millis(h.max()),
    }
}

pub(crate) fn load_text(options: &Options) -> String {
    match options.load {
        crate::Load::Closed {
            concurrency,
            think_time,
        } => format!("closed loop, {concurrency} concurrent, think time {think_time:?}"),
        crate::Load::Open {
            rate,
            max_in_flight,
        } => format!("open loop, {rate} req/s, at most {max_in_flight} in flight"),
    }
}

fn optional(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}"))
}

fn millis(micros: u64) -> f64 {
    micros as f64 / 1e3
}
