//! Named leases with fencing tokens: for work that must have one runner at
//! a time across every worker (a scheduler, a sweeper).
//!
//! A lease is held until `expires_at` unless renewed. Each new holder gets
//! a token one higher than the last one ever issued for that name (rows
//! are never deleted, only let lapse), so a holder that was paused past its
//! lease can be told apart from the current one by any store it writes to.

use sqlx::Row;
use stampede_store::{Db, StoreError, now_ms};

/// A held lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The lease's name.
    pub name: String,
    /// Who holds it.
    pub holder: String,
    /// The fencing token: higher than every earlier holder's.
    pub token: i64,
}

/// Takes the lease `name` for `holder` for `ttl_ms` if nobody holds it (or
/// its holder let it lapse); `None` while someone else holds it.
pub async fn acquire(
    db: &Db,
    name: &str,
    holder: &str,
    ttl_ms: i64,
) -> Result<Option<Lease>, StoreError> {
    let now = now_ms();
    let row = sqlx::query(
        "INSERT INTO leases (name, holder, token, expires_at) VALUES ($1, $2, 1, $3)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, token = leases.token + 1, expires_at = excluded.expires_at
         WHERE leases.expires_at <= $4
         RETURNING token",
    )
    .bind(name)
    .bind(holder)
    .bind(now.saturating_add(ttl_ms))
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    row.map(|row| {
        Ok(Lease {
            name: name.to_owned(),
            holder: holder.to_owned(),
            token: row.try_get(0)?,
        })
    })
    .transpose()
}

/// Extends a held lease by `ttl_ms` from now; false if it was lost (it
/// lapsed and another holder took it, or it lapsed at all).
pub async fn renew(db: &Db, lease: &Lease, ttl_ms: i64) -> Result<bool, StoreError> {
    let now = now_ms();
    let done = sqlx::query(
        "UPDATE leases SET expires_at = $4 WHERE name = $1 AND holder = $2 AND token = $3 AND expires_at > $5",
    )
    .bind(&lease.name)
    .bind(&lease.holder)
    .bind(lease.token)
    .bind(now.saturating_add(ttl_ms))
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives a held lease up at once, so the next holder need not wait.
pub async fn release(db: &Db, lease: &Lease) -> Result<(), StoreError> {
    sqlx::query("UPDATE leases SET expires_at = 0 WHERE name = $1 AND holder = $2 AND token = $3")
        .bind(&lease.name)
        .bind(&lease.holder)
        .bind(lease.token)
        .execute(db.pool())
        .await?;
    Ok(())
}
