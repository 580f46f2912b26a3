//! Session lookups, coalesced: every request that needs its user asks the
//! store, but concurrent asks on one node share one query.
//!
//! Under a crowd nearly every request carries a session, and a query per
//! request made the session check the store's largest single cost (a
//! round trip, a parse and a plan for one index probe). Here a request
//! queues its token hash; a dispatcher takes everything queued so far and
//! asks for all of it with one `... WHERE token_hash IN (...)`. Nothing is
//! cached: each answer still comes from the store after the request
//! arrived, so a logout on any node is seen by the next request on every
//! node, as the contract says.
//!
//! The batching is this project's own for the same reason as the group
//! commit's (`stampede-inventory`): it is the hot path, and it must bound
//! its queue and its queries in flight, which generic loaders do not.
//!
//! Sessions live in the store, or in Redis when the node has a
//! `redis_url` ([`SessionStore`]); the batching is the same for both (an
//! `IN (...)` query or one `MGET`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use stampede_redis::{Redis, RedisError};
use stampede_store::{Db, StoreError, now_ms, sessions};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Where a node's sessions live.
#[derive(Debug, Clone)]
pub(crate) enum SessionStore {
    /// In the store's `sessions` table, purged by housekeeping.
    Store(Db),
    /// In Redis, each with its lifetime as TTL (see `stampede-redis`).
    Redis(Redis),
}

/// A session store that failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Redis failed or is away.
    #[error(transparent)]
    Redis(#[from] RedisError),
}

impl SessionStore {
    /// Records a session of `username` for `ttl`.
    pub(crate) async fn create(
        &self,
        token_hash: &str,
        username: &str,
        ttl: Duration,
    ) -> Result<(), SessionError> {
        match self {
            Self::Store(db) => {
                let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
                sessions::create(db, token_hash, username, now_ms() + ttl_ms).await?;
            }
            Self::Redis(redis) => {
                stampede_redis::sessions::create(redis, token_hash, username, ttl).await?;
            }
        }
        Ok(())
    }

    /// Ends a session on every node.
    pub(crate) async fn delete(&self, token_hash: &str) -> Result<(), SessionError> {
        match self {
            Self::Store(db) => sessions::delete(db, token_hash).await?,
            Self::Redis(redis) => stampede_redis::sessions::delete(redis, token_hash).await?,
        }
        Ok(())
    }

    async fn usernames(&self, hashes: &[&str]) -> Result<Vec<(String, String)>, SessionError> {
        Ok(match self {
            Self::Store(db) => sessions::usernames(db, hashes).await?,
            Self::Redis(redis) => stampede_redis::sessions::usernames(redis, hashes).await?,
        })
    }
}

/// Lookups in one query at most.
const MAX_BATCH: usize = 256;
/// Queries in flight at once per node; more lookups wait and join the
/// next batch, which is what makes batches grow under load.
const IN_FLIGHT: usize = 4;
/// Lookups that may wait; beyond, a request is answered `503 overloaded`.
const MAX_WAITING: usize = 16_384;

/// Why a lookup has no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LookupError {
    /// Too many lookups are waiting.
    #[error("too many session lookups waiting")]
    Overloaded,
    /// The session store failed (the same failure answers the whole batch).
    #[error(transparent)]
    Store(Arc<SessionError>),
    /// The dispatcher is gone (the node is stopping).
    #[error("session lookups stopped")]
    Stopped,
}

type Reply = oneshot::Sender<Result<Option<String>, Arc<SessionError>>>;

/// The node's session lookups, and the store they read.
#[derive(Debug, Clone)]
pub(crate) struct SessionLookups {
    queue: mpsc::Sender<(String, Reply)>,
    store: SessionStore,
}

impl SessionLookups {
    /// Starts the dispatcher on the current runtime.
    pub(crate) fn start(store: SessionStore) -> Self {
        let (queue, waiting) = mpsc::channel(MAX_WAITING);
        tokio::spawn(dispatch(store.clone(), waiting));
        Self { queue, store }
    }

    /// Where the sessions live, for creating and ending them.
    pub(crate) fn store(&self) -> &SessionStore {
        &self.store
    }

    /// The user of the live session whose token hashes to `token_hash`.
    pub(crate) async fn username(&self, token_hash: String) -> Result<Option<String>, LookupError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send((token_hash, reply))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => LookupError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => LookupError::Stopped,
            })?;
        match answer.await {
            Ok(Ok(user)) => Ok(user),
            Ok(Err(error)) => Err(LookupError::Store(error)),
            Err(_) => Err(LookupError::Stopped),
        }
    }
}

/// Takes what is queued, up to a batch, whenever a query slot is free.
async fn dispatch(store: SessionStore, mut waiting: mpsc::Receiver<(String, Reply)>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = waiting.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match waiting.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let store = store.clone();
        tokio::spawn(async move {
            answer(&store, batch).await;
            drop(slot);
        });
    }
}

async fn answer(store: &SessionStore, batch: Vec<(String, Reply)>) {
    let hashes: Vec<&str> = batch.iter().map(|(hash, _)| hash.as_str()).collect();
    match store.usernames(&hashes).await {
        Ok(found) => {
            // One user may have several requests in the batch: each gets
            // the answer, so look up rather than take.
            let users: HashMap<String, String> = found.into_iter().collect();
            for (hash, reply) in batch {
                let _ = reply.send(Ok(users.get(&hash).cloned()));
            }
        }
        Err(error) => {
            let error = Arc::new(error);
            for (_, reply) in batch {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use stampede_store::users;
    use stampede_testkit::TestDb;

    use super::*;

    #[tokio::test]
    async fn concurrent_lookups_share_queries_and_each_gets_its_answer() {
        let t = TestDb::sqlite().await;
        let alice = ("alice".to_owned(), "hash".to_owned());
        users::create_all(&t.db, &[alice]).await.expect("user");
        sessions::create(&t.db, "live", "alice", now_ms() + 60_000)
            .await
            .expect("session");
        let lookups = SessionLookups::start(SessionStore::Store(t.db.clone()));
        // More lookups than query slots: most of them queue and share.
        let asks: Vec<_> = (0..64)
            .map(|i| {
                let lookups = lookups.clone();
                let hash = if i % 2 == 0 { "live" } else { "unknown" };
                tokio::spawn(async move { (hash, lookups.username(hash.into()).await) })
            })
            .collect();
        for ask in asks {
            let (hash, user) = ask.await.expect("task");
            let expected = (hash == "live").then(|| "alice".to_owned());
            assert_eq!(user.expect("answer"), expected, "{hash}");
        }
    }

    #[tokio::test]
    async fn a_store_failure_answers_every_waiting_lookup() {
        let t = TestDb::sqlite().await;
        let lookups = SessionLookups::start(SessionStore::Store(t.db.clone()));
        t.db.pool().close().await;
        let failed = lookups.username("any".into()).await;
        assert!(matches!(failed, Err(LookupError::Store(_))), "{failed:?}");
    }
}
