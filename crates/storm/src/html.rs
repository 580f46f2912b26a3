//! The report as one self-contained HTML file: the summary, the verdict,
//! and two charts (throughput and latency over time) drawn as inline SVG,
//! so the file opens anywhere, offline, with no script and nothing fetched.

use std::fmt::Write as _;

use crate::report::{Report, SecondRow, load_text};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 220.0;
const MARGIN: f64 = 48.0;

/// The report as an HTML page.
pub fn to_html(report: &Report) -> String {
    let mut h = String::new();
    let o = &report.options;
    let c = &report.crowd;
    let verdict = if report.invariants.held() {
        "<p class=ok>Invariants: all held.</p>".to_owned()
    } else {
        let mut v = format!(
            "<p class=bad>Invariants: {} violations.</p><ul>",
            report.invariants.violation_count
        );
        for violation in &report.invariants.violations {
            let _ = write!(
                v,
                "<li><b>{}</b>: {}</li>",
                escape(violation.rule),
                escape(&violation.detail)
            );
        }
        v + "</ul>"
    };
    let _ = write!(
        h,
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>stampede storm: {sku}</title>\
         <style>body{{font:14px system-ui,sans-serif;max-width:{w}px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse}}td,th{{padding:2px 10px;text-align:right;border-bottom:1px solid #ddd}}\
         td:first-child,th:first-child{{text-align:left}}.ok{{color:#060}}.bad{{color:#b00;font-weight:bold}}\
         svg{{background:#fafafa;border:1px solid #ddd}}</style></head><body>\
         <h1>storm: {sku}</h1><p>{target} · {users} users · {stock} units · {load} · read ratio {ratio} · seed {seed}</p>{verdict}\
         <table><tr><td>crowd</td><td>{secs:.2} s</td></tr><tr><td>requests</td><td>{req} ({rps:.0}/s)</td></tr>\
         <tr><td>order attempts</td><td>{att} ({aps:.0}/s)</td></tr><tr><td>purchases</td><td>{pur} ({pps:.0}/s)</td></tr>\
         <tr><td>time to sell out</td><td>{sell}</td></tr></table>",
        sku = escape(&o.sku),
        w = WIDTH + 40.0,
        target = escape(&o.target),
        users = report.users,
        stock = o.stock,
        load = escape(&load_text(o)),
        ratio = o.read_ratio,
        seed = o.seed,
        secs = c.seconds,
        req = c.requests,
        rps = c.requests_per_second,
        att = c.attempts,
        aps = c.attempts_per_second,
        pur = c.purchases,
        pps = c.purchases_per_second,
        sell = c
            .time_to_sell_out_seconds
            .map_or_else(|| "not sold out".to_owned(), |s| format!("{s:.3} s")),
    );
    h.push_str("<h2>Throughput per second</h2>");
    h.push_str(&chart(
        &report.timeline,
        &[
            ("requests", "#36c", |s| s.requests as f64),
            ("201", "#090", |s| s.created as f64),
            ("errors", "#c00", |s| s.errors as f64),
        ],
    ));
    h.push_str("<h2>Latency per second (ms)</h2>");
    h.push_str(&chart(
        &report.timeline,
        &[("p50", "#36c", |s| s.p50_ms), ("p99", "#c60", |s| s.p99_ms)],
    ));
    h.push_str("<h2>Latency by outcome (ms)</h2><table><tr><th>outcome</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>");
    for r in &report.latency {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
            r.outcome, r.count, r.p50_ms, r.p90_ms, r.p99_ms, r.max_ms
        );
    }
    h.push_str("</table><h2>Statuses</h2><table>");
    for (status, n) in &report.statuses {
        let _ = write!(h, "<tr><td>{}</td><td>{n}</td></tr>", escape(status));
    }
    let f = &report.fairness;
    let _ = write!(
        h,
        "</table><h2>Fairness</h2><p>{} winners of {} arrivals; first-come share {}; rank correlation {}.</p></body></html>",
        f.winners,
        f.arrivals,
        f.first_come_share
            .map_or("n/a".into(), |v| format!("{v:.3}")),
        f.rank_correlation
            .map_or("n/a".into(), |v| format!("{v:.3}")),
    );
    h.push('\n');
    h
}

/// One line of a chart: its name, its colour, and its value in a second.
type Series<'a> = (&'a str, &'a str, fn(&SecondRow) -> f64);

/// A line chart of `series` over the timeline, with a y axis from zero.
fn chart(timeline: &[SecondRow], series: &[Series<'_>]) -> String {
    let top = series
        .iter()
        .flat_map(|(_, _, value)| timeline.iter().map(value))
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let span = (timeline.len().max(2) - 1) as f64;
    let x = |i: usize| MARGIN + (WIDTH - MARGIN - 10.0) * i as f64 / span;
    let y = |v: f64| HEIGHT - 24.0 - (HEIGHT - 40.0) * v / top;
    let mut svg = format!(
        "<svg width={WIDTH} height={HEIGHT} viewBox='0 0 {WIDTH} {HEIGHT}' role=img>\
         <line x1={MARGIN} y1={bottom} x2={WIDTH} y2={bottom} stroke=#999 />\
         <text x=4 y=20 font-size=11>{top:.1}</text><text x=4 y={bottom} font-size=11>0</text>\
         <text x={right} y={label} font-size=11 text-anchor=end>{seconds} s</text>",
        bottom = y(0.0),
        right = WIDTH - 10.0,
        label = HEIGHT - 6.0,
        seconds = timeline.len(),
    );
    for (n, (name, colour, value)) in series.iter().enumerate() {
        let points: Vec<String> = timeline
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{:.1},{:.1}", x(i), y(value(s))))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=none stroke='{colour}' stroke-width=2 points='{}' />\
             <text x={} y=14 font-size=12 fill='{colour}'>{name}</text>",
            points.join(" "),
            MARGIN + 90.0 * n as f64,
        );
    }
    svg + "</svg>"
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_the_server_is_escaped() {
        assert_eq!(escape("<b>&'\""), "&lt;b&gt;&amp;&#39;&quot;");
    }

    #[test]
    fn a_chart_has_one_line_per_series_and_no_nan() {
        let rows: Vec<SecondRow> = (0..3)
            .map(|i| SecondRow {
                second: i,
                requests: 10 * i as u64,
                created: 1,
                errors: 0,
                p50_ms: 1.0,
                p99_ms: 2.0,
            })
            .collect();
        let svg = chart(
            &rows,
            &[
                ("a", "#000", |s| s.requests as f64),
                ("b", "#111", |s| s.p99_ms),
            ],
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(!svg.contains("NaN"));
        assert!(chart(&[], &[("a", "#000", |s| s.p50_ms)]).ends_with("</svg>"));
    }
}
