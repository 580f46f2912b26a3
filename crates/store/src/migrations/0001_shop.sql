-- The shop's tables. Portable SQL: it runs unchanged on SQLite and
-- PostgreSQL. Times are BIGINT milliseconds since the Unix epoch (UTC); ids
-- are TEXT made by the application.

CREATE TABLE users (
    username      TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

-- A session row is keyed by a hash of the cookie's token, so a copy of
-- the database does not hand out live sessions.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    username   TEXT NOT NULL REFERENCES users (username),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

CREATE TABLE products (
    sku            TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    price_cents    BIGINT NOT NULL,
    initial_stock  BIGINT NOT NULL,
    -- The hot row's hot column. The CHECK is the last line of defence
    -- against overselling: no code path can commit a negative stock.
    stock_left     BIGINT NOT NULL CHECK (stock_left >= 0),
    per_user_limit BIGINT NOT NULL,
    sale_starts_at BIGINT NOT NULL,
    created_at     BIGINT NOT NULL
);

-- No foreign key to users: an order is only ever made for the user of a
-- live session, and checking it would lock one users row per order inside
-- the hot row's transaction (measured: a sixth of a 512-order batch).
CREATE TABLE orders (
    order_id   TEXT PRIMARY KEY,
    username   TEXT NOT NULL,
    sku        TEXT NOT NULL REFERENCES products (sku),
    quantity   BIGINT NOT NULL CHECK (quantity > 0),
    status     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- The per-user limit sums a user's live orders of one sku.
CREATE INDEX orders_by_sku_user ON orders (sku, username);
CREATE INDEX orders_by_user ON orders (username, created_at);

-- A 201 remembered under its Idempotency-Key, per user, with the exact
-- body to replay and a fingerprint of the request it answered. Written in
-- the transaction that makes its order, so it needs no foreign key.
CREATE TABLE idempotency_keys (
    username    TEXT NOT NULL,
    idem_key    TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    order_id    TEXT NOT NULL,
    response    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (username, idem_key)
);

-- Failed logins counted per bucket ("ip:..." or "user:...") and window.
CREATE TABLE login_failures (
    bucket       TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    failures     BIGINT NOT NULL,
    PRIMARY KEY (bucket, window_start)
);
