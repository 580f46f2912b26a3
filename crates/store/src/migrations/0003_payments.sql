-- Charges made by the payment job. One row per order at most: the primary
-- key is what makes "charged exactly once" hold however often the job runs.
CREATE TABLE charges (
    order_id     TEXT PRIMARY KEY,
    amount_cents BIGINT NOT NULL,
    token        TEXT NOT NULL,
    charged_at   BIGINT NOT NULL
);
