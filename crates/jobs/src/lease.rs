//! Named leases with fencing tokens: for work that must have one runner at
//! a time across every worker (a scheduler, a sweeper).
//!
//! A lease is held until `expires_at` unless renewed. Each new holder gets
//! a token one higher than the last one ever issued for that name (rows
//! are never deleted, only let lapse), so a holder that was paused past its
//! lease can be told apart from the current one by any store it writes to.
//!
//! The rules are the [`Leases`] trait, kept by the store (these functions,
//! `impl Leases for Db`) or by Redis (`impl Leases for Redis`, see
//! `stampede-redis`' `leases`); one conformance suite checks both.

use std::time::Duration;

use sqlx::Row;
use stampede_redis::{Redis, RedisError};
use stampede_store::{Db, StoreError, now_ms};

use crate::BoxFuture;

/// A lease keeper that failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Redis failed or is away.
    #[error(transparent)]
    Redis(#[from] RedisError),
}

/// Named leases with fencing tokens, wherever they are kept.
pub trait Leases: Send + Sync {
    /// Takes the lease `name` for `holder` for `ttl` if nobody holds it (or
    /// its holder let it lapse); `None` while someone else holds it.
    fn acquire<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Lease>, LeaseError>>;

    /// Extends a held lease by `ttl` from now; false if it was lost.
    fn renew<'a>(
        &'a self,
        lease: &'a Lease,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, LeaseError>>;

    /// Gives a held lease up at once, so the next holder need not wait.
    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), LeaseError>>;
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2)
}

impl Leases for Db {
    fn acquire<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Lease>, LeaseError>> {
        Box::pin(async move { Ok(acquire(self, name, holder, ttl_ms(ttl)).await?) })
    }

    fn renew<'a>(
        &'a self,
        lease: &'a Lease,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, LeaseError>> {
        Box::pin(async move { Ok(renew(self, lease, ttl_ms(ttl)).await?) })
    }

    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), LeaseError>> {
        Box::pin(async move { Ok(release(self, lease).await?) })
    }
}

impl Leases for Redis {
    fn acquire<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Lease>, LeaseError>> {
        Box::pin(async move {
            let token = stampede_redis::leases::acquire(self, name, holder, ttl).await?;
            Ok(token.map(|token| Lease {
                name: name.to_owned(),
                holder: holder.to_owned(),
                token,
            }))
        })
    }

    fn renew<'a>(
        &'a self,
        lease: &'a Lease,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, LeaseError>> {
        Box::pin(async move {
            let (name, holder) = (&lease.name, &lease.holder);
            Ok(stampede_redis::leases::renew(self, name, holder, lease.token, ttl).await?)
        })
    }

    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), LeaseError>> {
        Box::pin(async move {
            let (name, holder) = (&lease.name, &lease.holder);
            Ok(stampede_redis::leases::release(self, name, holder, lease.token).await?)
        })
    }
}

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
