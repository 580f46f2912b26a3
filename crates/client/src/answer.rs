//! What a hot-path call came back with, classified the contract's way.

use std::time::Duration;

use hyper::StatusCode;

use crate::{ClientError, Order, Raw, error_code};

/// What an order attempt or a product read came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// `201`: the order was reserved.
    Created,
    /// `200`: a read succeeded.
    Read,
    /// `409 sold_out`.
    SoldOut,
    /// `409 limit_exceeded`.
    LimitExceeded,
    /// `403 not_started`.
    NotStarted,
    /// `503` or `429`: the server shed the request; trying later is right.
    Overloaded,
    /// Any other status: an error the client cannot fix by waiting.
    Failed,
    /// No answer at all: the connection failed or the call timed out.
    Unanswered,
}

impl Outcome {
    /// Every outcome, in report order.
    pub const ALL: [Outcome; 8] = [
        Self::Created,
        Self::Read,
        Self::SoldOut,
        Self::LimitExceeded,
        Self::NotStarted,
        Self::Overloaded,
        Self::Failed,
        Self::Unanswered,
    ];

    /// The name reports use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Read => "read",
            Self::SoldOut => "sold_out",
            Self::LimitExceeded => "limit_exceeded",
            Self::NotStarted => "not_started",
            Self::Overloaded => "overloaded",
            Self::Failed => "failed",
            Self::Unanswered => "unanswered",
        }
    }

    /// Whether this is an error (as opposed to an answer the contract
    /// promises under a crowd).
    pub fn is_error(self) -> bool {
        matches!(self, Self::Failed | Self::Unanswered)
    }
}

/// One hot-path answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// What it came to.
    pub outcome: Outcome,
    /// The status, if there was an answer.
    pub status: Option<u16>,
    /// The order a `201` named, if its body held one.
    pub order: Option<Order>,
    /// How long the server asked the client to wait (`Retry-After`).
    pub retry_after: Option<Duration>,
    /// For failures: what went wrong, for the report.
    pub detail: Option<String>,
}

impl Answer {
    /// The answer to a call whose success is `success` (`201` for an
    /// order, `200` for a read).
    pub(crate) fn from_call(call: Result<Raw, ClientError>, success: StatusCode) -> Self {
        match call {
            Ok(raw) => Self::from_raw(&raw, success),
            Err(error) => Self {
                outcome: Outcome::Unanswered,
                status: None,
                order: None,
                retry_after: None,
                detail: Some(error.to_string()),
            },
        }
    }

    fn from_raw(raw: &Raw, success: StatusCode) -> Self {
        let code = || error_code(&raw.body);
        let outcome = match raw.status {
            status if status == success && status == StatusCode::CREATED => Outcome::Created,
            status if status == success => Outcome::Read,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => Outcome::Overloaded,
            StatusCode::CONFLICT => match code().as_deref() {
                Some("sold_out") => Outcome::SoldOut,
                Some("limit_exceeded") => Outcome::LimitExceeded,
                _ => Outcome::Failed,
            },
            StatusCode::FORBIDDEN if code().as_deref() == Some("not_started") => {
                Outcome::NotStarted
            }
            _ => Outcome::Failed,
        };
        let order = match outcome {
            Outcome::Created => serde_json::from_slice(&raw.body).ok(),
            _ => None,
        };
        let detail = (outcome == Outcome::Failed).then(|| {
            let body = String::from_utf8_lossy(&raw.body);
            format!("{}: {} {}", raw.what, raw.status.as_u16(), body.trim())
        });
        Self {
            outcome,
            status: Some(raw.status.as_u16()),
            order,
            retry_after: raw.retry_after,
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn raw(status: u16, body: &'static str) -> Raw {
        Raw {
            what: "POST /api/v1/orders".to_owned(),
            status: StatusCode::from_u16(status).unwrap(),
            retry_after: None,
            set_cookies: Vec::new(),
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    #[test]
    fn classifies_the_contracts_answers() {
        let cases = [
            (
                201,
                r#"{"order_id":"o1","sku":"A","quantity":1,"status":"reserved"}"#,
                Outcome::Created,
            ),
            (200, "{}", Outcome::Read),
            (
                409,
                r#"{"error":"sold_out","message":"m"}"#,
                Outcome::SoldOut,
            ),
            (
                409,
                r#"{"error":"limit_exceeded","message":"m"}"#,
                Outcome::LimitExceeded,
            ),
            (
                409,
                r#"{"error":"idempotency_mismatch","message":"m"}"#,
                Outcome::Failed,
            ),
            (
                403,
                r#"{"error":"not_started","message":"m"}"#,
                Outcome::NotStarted,
            ),
            (
                503,
                r#"{"error":"overloaded","message":"m"}"#,
                Outcome::Overloaded,
            ),
            (
                429,
                r#"{"error":"rate_limited","message":"m"}"#,
                Outcome::Overloaded,
            ),
            (500, "boom", Outcome::Failed),
        ];
        for (status, body, outcome) in cases {
            let success = if outcome == Outcome::Read {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            assert_eq!(
                Answer::from_raw(&raw(status, body), success).outcome,
                outcome,
                "{status} {body}"
            );
        }
        // An order answered `200` is not a reservation.
        assert_eq!(
            Answer::from_raw(&raw(200, "{}"), StatusCode::CREATED).outcome,
            Outcome::Failed
        );
    }

    #[test]
    fn a_201_names_its_order_and_a_failure_says_what_came_back() {
        let created = Answer::from_raw(
            &raw(
                201,
                r#"{"order_id":"o1","sku":"A","quantity":2,"status":"reserved","created_at":"x"}"#,
            ),
            StatusCode::CREATED,
        );
        let order = created.order.unwrap();
        assert_eq!((order.order_id.as_str(), order.quantity), ("o1", 2));
        let failed = Answer::from_raw(&raw(500, "boom\n"), StatusCode::CREATED);
        assert_eq!(
            failed.detail.as_deref(),
            Some("POST /api/v1/orders: 500 boom")
        );
    }
}
