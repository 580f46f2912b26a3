//! Cron expressions (`minute hour day-of-month month day-of-week`, UTC),
//! for schedules that run at wall-clock times rather than every N seconds.
//!
//! Written here rather than taken from a crate: what a schedule needs is
//! "does this minute match?", about a hundred lines, while the maintained
//! cron crates bring chrono plus a second `rand` or a proc-macro stack.
//!
//! Each field is `*`, a number, a range `a-b`, or a list of those, each
//! optionally stepped (`*/15`, `10-50/10`). Day of week is 0–7 with 0 and 7
//! both Sunday. As in Vixie cron, when both day fields are restricted a day
//! matches if either does. `@hourly`, `@daily`, `@weekly`, `@monthly` and
//! `@yearly` are accepted.

use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    any_day: bool,
    any_weekday: bool,
}

impl Cron {
    /// Whether the minute containing `ms` (since the epoch, UTC) matches.
    pub fn matches(&self, ms: i64) -> bool {
        let Ok(at) = OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) else {
            return false;
        };
        let has = |set: u64, value: u8| set & (1 << value) != 0;
        let day = has(self.days, at.day());
        let weekday = has(self.weekdays, at.weekday().number_days_from_sunday());
        let day_ok = match (self.any_day, self.any_weekday) {
            (false, false) => day || weekday,
            _ => day && weekday,
        };
        has(self.minutes, at.minute())
            && has(self.hours, at.hour())
            && has(self.months, u8::from(at.month()))
            && day_ok
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Cron {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let expanded = match text.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(format!(
                "`{text}`: a cron expression has 5 fields (minute hour day month weekday)"
            ));
        };
        let mut weekdays =
            field(weekday, 0, 7).map_err(|e| format!("`{text}`: day of week: {e}"))?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1; // 7 is Sunday too
        }
        Ok(Self {
            text: text.trim().to_owned(),
            minutes: field(minute, 0, 59).map_err(|e| format!("`{text}`: minute: {e}"))?,
            hours: field(hour, 0, 23).map_err(|e| format!("`{text}`: hour: {e}"))?,
            days: field(day, 1, 31).map_err(|e| format!("`{text}`: day of month: {e}"))?,
            months: field(month, 1, 12).map_err(|e| format!("`{text}`: month: {e}"))?,
            weekdays,
            any_day: day == "*",
            any_weekday: weekday == "*",
        })
    }
}

/// The values of one field as a bit set.
fn field(text: &str, min: u8, max: u8) -> Result<u64, String> {
    text.split(',')
        .try_fold(0u64, |set, item| Ok(set | item_set(item, min, max)?))
}

fn item_set(item: &str, min: u8, max: u8) -> Result<u64, String> {
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, number(step)?),
        None => (item, 1),
    };
    if step == 0 {
        return Err(format!("`{item}`: a step must be at least 1"));
    }
    let (low, high) = match range.split_once('-') {
        _ if range == "*" => (min, max),
        Some((a, b)) => (number(a)?, number(b)?),
        None if step > 1 => (number(range)?, max),
        None => (number(range)?, number(range)?),
    };
    if low < min || high > max || low > high {
        return Err(format!("`{item}` is outside {min}-{max}"));
    }
    Ok((low..=high)
        .step_by(usize::from(step))
        .fold(0, |set, v| set | (1 << v)))
}

fn number(text: &str) -> Result<u8, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not a number"))
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn at(t: OffsetDateTime) -> i64 {
        i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or_default()
    }

    fn cron(text: &str) -> Cron {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn fields_ranges_lists_and_steps() {
        let c = cron("*/15 9-17 * * 1-5");
        assert!(c.matches(at(datetime!(2026-11-23 09:45 UTC)))); // Monday
        assert!(!c.matches(at(datetime!(2026-11-23 09:46 UTC))));
        assert!(!c.matches(at(datetime!(2026-11-23 18:00 UTC))));
        assert!(!c.matches(at(datetime!(2026-11-22 10:00 UTC)))); // Sunday
        let c = cron("0,30 0 1 1,7 *");
        assert!(c.matches(at(datetime!(2026-07-01 00:30:59 UTC))));
        assert!(!c.matches(at(datetime!(2026-07-02 00:30 UTC))));
    }

    #[test]
    fn both_day_fields_restricted_means_either() {
        let c = cron("0 0 13 * 5"); // the 13th, or any Friday
        assert!(c.matches(at(datetime!(2026-11-13 00:00 UTC))));
        assert!(c.matches(at(datetime!(2026-11-20 00:00 UTC)))); // a Friday
        assert!(!c.matches(at(datetime!(2026-11-19 00:00 UTC))));
        assert!(
            cron("0 0 * * 7").matches(at(datetime!(2026-11-22 00:00 UTC))),
            "7 is Sunday"
        );
    }

    #[test]
    fn nicknames_and_errors() {
        assert!(cron("@hourly").matches(at(datetime!(2026-11-22 15:00 UTC))));
        assert!(!cron("@daily").matches(at(datetime!(2026-11-22 15:00 UTC))));
        for bad in [
            "* * * *",
            "60 * * * *",
            "*/0 * * * *",
            "5-1 * * * *",
            "x * * * *",
        ] {
            assert!(bad.parse::<Cron>().is_err(), "{bad}");
        }
    }
}
