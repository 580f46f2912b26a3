-- The job queue and the leases (crates/jobs). Portable SQL, as 0001.

-- One row per job, for its whole life: available -> running -> completed,
-- or back to available (retry, reclaim, release), or dead when its
-- attempts are spent. `attempt` counts claims and never goes down: it is
-- the fencing token that makes a stale worker's report a no-op.
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    queue        TEXT NOT NULL,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    priority     BIGINT NOT NULL,
    state        TEXT NOT NULL,
    attempt      BIGINT NOT NULL,
    max_attempts BIGINT NOT NULL,
    run_at       BIGINT NOT NULL,
    heartbeat_at BIGINT,
    worker       TEXT,
    unique_key   TEXT UNIQUE,
    last_error   TEXT,
    created_at   BIGINT NOT NULL,
    finished_at  BIGINT
);
-- What a claim scans: the ready jobs of a queue, best first.
CREATE INDEX jobs_ready ON jobs (queue, state, priority, run_at);
-- What the reclaimer scans: running jobs by last sign of life.
CREATE INDEX jobs_running ON jobs (state, heartbeat_at);

-- Named leases for work that must have a single runner. `token` only ever
-- grows (a lease is never deleted, only let lapse), so it fences.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    token      BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
