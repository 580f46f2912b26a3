//! What a storm is asked to do: the sale it sets up, the crowd it sends,
//! and the bounds that make it stop. Checked before anything is sent, so
//! that a typo never becomes a half-run sale.

use std::time::Duration;

use serde::Serialize;

use crate::StormError;

/// How the crowd arrives.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum Load {
    /// `concurrency` users at a time, each buying (with `think_time` between
    /// its requests) until it gets `201` or `sold_out`; the next user steps
    /// in when one is done. Like wrk or Locust: the server's speed sets the
    /// pace, so a slow server is offered less load.
    Closed {
        /// Users in flight at once.
        concurrency: usize,
        /// Pause between one user's requests.
        #[serde(with = "millis")]
        think_time: Duration,
    },
    /// `rate` requests per second whatever the server does, each timed from
    /// the moment it was due, so a stalled server shows as latency rather
    /// than as fewer requests (no coordinated omission). Like wrk2 or k6's
    /// constant-arrival-rate.
    Open {
        /// Requests per second.
        rate: f64,
        /// Requests waiting for an answer at most; arrivals beyond are
        /// counted as dropped, as k6 does.
        max_in_flight: usize,
    },
}

/// Everything a storm needs.
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    /// The server's root, `http://HOST:PORT`.
    pub target: String,
    /// The admin bearer token (never shown in reports).
    #[serde(skip)]
    pub admin_token: String,
    /// Users to create and log in.
    pub users: usize,
    /// Units on sale.
    pub stock: i64,
    /// Most live units one user may hold.
    pub per_user_limit: i64,
    /// Units per order.
    pub quantity: i64,
    /// How the crowd arrives.
    pub load: Load,
    /// Share of requests that read the product page instead of ordering.
    pub read_ratio: f64,
    /// The crowd stops after this long at the latest.
    #[serde(with = "millis")]
    pub duration: Duration,
    /// The crowd stops after this many requests at the latest.
    pub max_requests: Option<u64>,
    /// Seeds every random choice (user order, reads), so a run can be
    /// repeated.
    pub seed: u64,
    /// Logins in flight at once during setup.
    pub login_concurrency: usize,
    /// One request's limit.
    #[serde(with = "millis")]
    pub request_timeout: Duration,
    /// The product's sku; unique per run by default so runs never mix.
    pub sku: String,
    /// Usernames are this prefix and a number.
    pub user_prefix: String,
}

impl Options {
    /// Options with the defaults, for a run against `target`, seeded with
    /// `seed` (which also names the sku and the users).
    pub fn new(target: &str, admin_token: &str, seed: u64) -> Self {
        let run = format!("{:x}", seed & 0xff_ffff_ffff);
        Self {
            target: target.to_owned(),
            admin_token: admin_token.to_owned(),
            users: 2_000,
            stock: 500,
            per_user_limit: 1,
            quantity: 1,
            load: Load::Closed {
                concurrency: 64,
                think_time: Duration::ZERO,
            },
            read_ratio: 0.5,
            duration: Duration::from_secs(60),
            max_requests: None,
            seed,
            login_concurrency: 32,
            request_timeout: Duration::from_secs(10),
            sku: format!("STORM-{run}"),
            user_prefix: format!("storm-{run}-"),
        }
    }

    /// Refuses options that cannot make a meaningful run, naming the
    /// option and the problem.
    pub fn validate(&self) -> Result<(), StormError> {
        let bad =
            |option: &'static str, problem: String| Err(StormError::Option { option, problem });
        if self.users == 0 {
            return bad("users", "must be at least 1".into());
        }
        if self.stock < 1 {
            return bad("stock", format!("must be at least 1, not {}", self.stock));
        }
        if self.per_user_limit < 1 {
            return bad(
                "per-user-limit",
                format!("must be at least 1, not {}", self.per_user_limit),
            );
        }
        if self.quantity < 1 || self.quantity > self.per_user_limit {
            return bad(
                "quantity",
                format!(
                    "must be between 1 and the per-user limit ({}), not {}",
                    self.per_user_limit, self.quantity
                ),
            );
        }
        if !(0.0..1.0).contains(&self.read_ratio) {
            return bad(
                "read-ratio",
                format!("must be at least 0 and below 1, not {}", self.read_ratio),
            );
        }
        if self.duration.is_zero() {
            return bad("duration", "must be more than 0".into());
        }
        if self.max_requests == Some(0) {
            return bad("requests", "must be at least 1".into());
        }
        if self.login_concurrency == 0 {
            return bad("login-concurrency", "must be at least 1".into());
        }
        if self.request_timeout.is_zero() {
            return bad("timeout", "must be more than 0".into());
        }
        if self.sku.is_empty() || self.user_prefix.is_empty() {
            return bad(
                "sku",
                "the sku and the user prefix must not be empty".into(),
            );
        }
        match self.load {
            Load::Closed { concurrency: 0, .. } => bad("concurrency", "must be at least 1".into()),
            Load::Open { rate, .. } if !(rate.is_finite() && rate > 0.0) => {
                bad("rate", format!("must be a number above 0, not {rate}"))
            }
            Load::Open {
                max_in_flight: 0, ..
            } => bad("max-in-flight", "must be at least 1".into()),
            _ => Ok(()),
        }
    }
}

/// Durations in reports are milliseconds.
mod millis {
    use std::time::Duration;

    pub(crate) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Options {
        Options::new("http://127.0.0.1:1", "token", 7)
    }

    #[test]
    fn the_defaults_are_valid_and_name_the_run_after_the_seed() {
        let o = options();
        assert!(o.validate().is_ok());
        assert_eq!(o.sku, "STORM-7");
        assert_eq!(o.user_prefix, "storm-7-");
    }

    #[test]
    fn bad_options_are_named() {
        type Change = fn(&mut Options);
        let cases: [(Change, &str); 7] = [
            (|o| o.users = 0, "users"),
            (|o| o.stock = 0, "stock"),
            (|o| o.quantity = 2, "quantity"),
            (|o| o.read_ratio = 1.0, "read-ratio"),
            (|o| o.duration = Duration::ZERO, "duration"),
            (
                |o| {
                    o.load = Load::Open {
                        rate: 0.0,
                        max_in_flight: 1,
                    }
                },
                "rate",
            ),
            (
                |o| {
                    o.load = Load::Closed {
                        concurrency: 0,
                        think_time: Duration::ZERO,
                    }
                },
                "concurrency",
            ),
        ];
        for (change, name) in cases {
            let mut o = options();
            change(&mut o);
            match o.validate() {
                Err(StormError::Option { option, .. }) => assert_eq!(option, name),
                other => panic!("{name}: {other:?}"),
            }
        }
    }
}
