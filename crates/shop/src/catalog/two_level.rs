//! A cache in two levels: this node's memory (moka) in front of Redis,
//! which every node shares, in front of whatever loads the value.
//!
//! A miss in memory asks Redis; a miss there too runs the loader and
//! leaves its result in both levels. Concurrent misses for one key on a
//! node share one such lookup (moka's `try_get_with`): a thousand requests
//! for a product nobody has loaded yet make one Redis read and at most one
//! load. Across nodes, the first to load spares the others the store.
//!
//! # Freshness
//!
//! Each value carries the instant until which it is fresh enough, counted
//! from when the store held it, not from when it reached this level: a
//! value read from Redis keeps only the time it had left there, and a value
//! loaded from a replica starts that replica's lag short. So the bound
//! holds end to end, however the value travelled.
//!
//! # Redis away
//!
//! The shared level is an optimisation, never a dependency: when Redis
//! fails, this node says so once, loads from the store for the next second
//! without asking Redis, and then tries it again. The values served are as
//! fresh as ever; only the store sees more reads.
//!
//! # Counted
//!
//! Each lookup counts a hit or a miss of memory (a request that waited on
//! another's load counts as a hit: it cost the store nothing), and each
//! read of Redis a hit or a miss of the shared level, in
//! `stampede_shop_cache_requests_total`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use serde::Serialize;
use serde::de::DeserializeOwned;
use stampede_redis::{Redis, cache};

use crate::api::Chain;
use crate::telemetry::CacheCounters;

/// How long the shared level is left alone after it failed.
const REST_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// A value and the instant it stops being fresh.
#[derive(Debug)]
struct Fresh<V> {
    value: Arc<V>,
    until: Instant,
}

impl<V> Clone for Fresh<V> {
    fn clone(&self) -> Self {
        Self {
            value: Arc::clone(&self.value),
            until: self.until,
        }
    }
}

/// Expires each entry at its own `until`.
struct UntilStale;

impl<V> Expiry<String, Fresh<V>> for UntilStale {
    fn expire_after_create(&self, _: &String, value: &Fresh<V>, now: Instant) -> Option<Duration> {
        Some(value.until.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _: &String,
        value: &Fresh<V>,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.until.saturating_duration_since(now))
    }
}

/// Redis as the second level, and when it may be asked again.
struct Shared {
    redis: Redis,
    resting_until: Mutex<Option<Instant>>,
}

impl Shared {
    /// False while resting after a failure.
    fn available(&self) -> bool {
        let mut resting = self.resting_until.lock().unwrap_or_else(|e| e.into_inner());
        match *resting {
            Some(until) if Instant::now() < until => false,
            Some(_) => {
                *resting = None;
                tracing::info!("Shared cache: asking Redis again.");
                true
            }
            None => true,
        }
    }

    fn failed(&self, error: &stampede_redis::RedisError) {
        let mut resting = self.resting_until.lock().unwrap_or_else(|e| e.into_inner());
        if resting.is_none() {
            tracing::warn!(error = %Chain(error), "Shared cache: Redis failed; loading from the store without it for a second.");
        }
        *resting = Some(Instant::now() + REST_AFTER_FAILURE);
    }
}

/// A two-level cache of `V` by string key.
pub(crate) struct TwoLevel<V> {
    memory: Cache<String, Fresh<V>>,
    shared: Option<Shared>,
    /// Prefixes this cache's keys in Redis, so several caches share it.
    namespace: &'static str,
    freshness: Duration,
    counters: CacheCounters,
}

impl<V> TwoLevel<V>
where
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// At most `capacity` entries in memory, each at most `freshness` old;
    /// with `redis`, a shared level under `namespace`.
    pub(crate) fn new(
        capacity: u64,
        freshness: Duration,
        redis: Option<Redis>,
        namespace: &'static str,
    ) -> Self {
        Self {
            memory: Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilStale)
                .build(),
            shared: redis.map(|redis| Shared {
                redis,
                resting_until: Mutex::new(None),
            }),
            namespace,
            freshness,
            counters: CacheCounters::new(),
        }
    }

    /// The value under `key`, from memory, Redis, or else `load`, which
    /// answers the value and how stale its source may be (a replica's lag;
    /// zero for the primary).
    pub(crate) async fn get_with<E, L>(&self, key: &str, load: L) -> Result<Arc<V>, Arc<E>>
    where
        E: Send + Sync + 'static,
        L: Future<Output = Result<(V, Duration), E>>,
    {
        let missed = AtomicBool::new(false);
        let lookup = async {
            missed.store(true, Ordering::Relaxed);
            let asked = Instant::now();
            if let Some(hit) = self.read_shared(key).await {
                return Ok(hit);
            }
            let (value, lag) = load.await?;
            let until = asked + self.freshness.saturating_sub(lag);
            let fresh = Fresh {
                value: Arc::new(value),
                until,
            };
            self.write_shared(key, &fresh).await;
            Ok(fresh)
        };
        let fresh = self.memory.try_get_with_by_ref(key, lookup).await;
        self.counters.memory(!missed.load(Ordering::Relaxed));
        Ok(fresh?.value)
    }

    /// The value under `key` if this node's memory holds it.
    pub(crate) async fn peek(&self, key: &str) -> Option<Arc<V>> {
        self.memory.get(key).await.map(|fresh| fresh.value)
    }

    /// Stores `value`, true now, in memory, and in Redis too when `share`.
    pub(crate) async fn put(&self, key: &str, value: V, share: bool) {
        let fresh = Fresh {
            value: Arc::new(value),
            until: Instant::now() + self.freshness,
        };
        if share {
            self.write_shared(key, &fresh).await;
        }
        self.memory.insert(key.to_owned(), fresh).await;
    }

    /// Drops `keys` from both levels (a write made them wrong).
    pub(crate) async fn forget(&self, keys: &[&str]) {
        for key in keys {
            self.memory.invalidate(*key).await;
        }
        if let Some(shared) = self.shared.as_ref().filter(|s| s.available()) {
            let names: Vec<String> = keys.iter().map(|key| self.name(key)).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            if let Err(error) = cache::forget(&shared.redis, &names).await {
                shared.failed(&error);
            }
        }
    }

    fn name(&self, key: &str) -> String {
        format!("{}:{key}", self.namespace)
    }

    async fn read_shared(&self, key: &str) -> Option<Fresh<V>> {
        let shared = self.shared.as_ref().filter(|s| s.available())?;
        let (text, fresh_for) = match cache::get(&shared.redis, &self.name(key)).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                self.counters.shared(false);
                return None;
            }
            Err(error) => {
                shared.failed(&error);
                return None;
            }
        };
        // Unreadable JSON (another version's shape) is a miss, not an error.
        let value = serde_json::from_str(&text).ok();
        self.counters.shared(value.is_some());
        let value = value?;
        Some(Fresh {
            value: Arc::new(value),
            until: Instant::now() + fresh_for,
        })
    }

    async fn write_shared(&self, key: &str, fresh: &Fresh<V>) {
        let Some(shared) = self.shared.as_ref().filter(|s| s.available()) else {
            return;
        };
        let fresh_for = fresh.until.saturating_duration_since(Instant::now());
        if fresh_for.is_zero() {
            return;
        }
        let Ok(text) = serde_json::to_string(&*fresh.value) else {
            return;
        };
        if let Err(error) = cache::put(&shared.redis, &self.name(key), &text, fresh_for).await {
            shared.failed(&error);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use stampede_redis::Timeouts;

    use super::*;

    type Loads = Arc<AtomicUsize>;

    /// A load that takes a while (so misses overlap) and counts itself.
    async fn counted(loads: Loads, value: &str, lag: Duration) -> Result<(String, Duration), ()> {
        loads.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok((value.to_owned(), lag))
    }

    fn memory_only() -> TwoLevel<String> {
        TwoLevel::new(100, Duration::from_secs(1), None, "test")
    }

    /// A namespace of its own, so runs sharing one Redis never meet.
    fn unique_namespace() -> &'static str {
        let name = format!("test-{}-{:016x}", std::process::id(), fastrand::u64(..));
        Box::leak(name.into_boxed_str())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_thousand_concurrent_misses_make_one_load() {
        let cache = Arc::new(memory_only());
        let loads = Loads::default();
        let readers: Vec<_> = (0..1000)
            .map(|_| {
                let (cache, loads) = (Arc::clone(&cache), Arc::clone(&loads));
                tokio::spawn(async move {
                    let load = counted(loads, "v", Duration::ZERO);
                    cache.get_with("k", load).await.map(|v| (*v).clone())
                })
            })
            .collect();
        for reader in readers {
            assert_eq!(reader.await.expect("reader").ok().as_deref(), Some("v"));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_laggy_source_leaves_less_freshness() {
        let cache = memory_only();
        let loads = Loads::default();
        let lag = Duration::from_millis(900);
        let first = cache
            .get_with("k", counted(loads.clone(), "old", lag))
            .await;
        assert_eq!(first.ok().as_deref().map(String::as_str), Some("old"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let second = cache
            .get_with("k", counted(loads.clone(), "new", lag))
            .await;
        assert_eq!(second.ok().as_deref().map(String::as_str), Some("new"));
        assert_eq!(loads.load(Ordering::SeqCst), 2, "the first was stale");
    }

    #[tokio::test]
    async fn a_value_put_replaces_the_loaded_one_and_forget_drops_it() {
        let cache = memory_only();
        let loads = Loads::default();
        let _ = cache
            .get_with("k", counted(loads.clone(), "a", Duration::ZERO))
            .await;
        cache.put("k", "b".to_owned(), false).await;
        assert_eq!(
            cache.peek("k").await.as_deref().map(String::as_str),
            Some("b")
        );
        cache.forget(&["k"]).await;
        assert_eq!(cache.peek("k").await, None);
    }

    #[tokio::test]
    async fn one_nodes_load_serves_another_through_redis_with_what_freshness_it_had_left() {
        let Some(url) = stampede_testkit::redis_url() else {
            return;
        };
        let namespace = unique_namespace();
        let node = || {
            let redis = Redis::connect(&url, Timeouts::default()).expect("REDIS_URL");
            TwoLevel::<String>::new(100, Duration::from_secs(1), Some(redis), namespace)
        };
        let (one, other) = (node(), node());
        let loads = Loads::default();
        let loaded = one
            .get_with("k", counted(loads.clone(), "v", Duration::ZERO))
            .await;
        assert_eq!(loaded.ok().as_deref().map(String::as_str), Some("v"));
        tokio::time::sleep(Duration::from_millis(700)).await;
        let shared = other
            .get_with("k", counted(loads.clone(), "w", Duration::ZERO))
            .await;
        assert_eq!(shared.ok().as_deref().map(String::as_str), Some("v"));
        assert_eq!(loads.load(Ordering::SeqCst), 1, "served from Redis");
        // The copy expires when the original does, not a second after.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let reloaded = other
            .get_with("k", counted(loads.clone(), "w", Duration::ZERO))
            .await;
        assert_eq!(reloaded.ok().as_deref().map(String::as_str), Some("w"));
        one.forget(&["k"]).await;
    }

    #[tokio::test]
    async fn without_redis_every_read_still_loads_and_none_waits_on_it() {
        // Nothing listens on port 1.
        let redis = Redis::connect("redis://127.0.0.1:1", Timeouts::default()).expect("a URL");
        let cache = TwoLevel::<String>::new(100, Duration::ZERO, Some(redis), "test");
        let loads = Loads::default();
        for _ in 0..3 {
            let started = Instant::now();
            let value = cache
                .get_with("k", counted(loads.clone(), "v", Duration::ZERO))
                .await;
            assert_eq!(value.ok().as_deref().map(String::as_str), Some("v"));
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{:?}",
                started.elapsed()
            );
        }
        assert_eq!(
            loads.load(Ordering::SeqCst),
            3,
            "freshness zero: each read loads"
        );
        let resting = cache.shared.as_ref().is_some_and(|s| !s.available());
        assert!(resting, "a failed Redis is left alone for a while");
    }
}
