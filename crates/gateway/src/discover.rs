//! Backends found through DNS: a pool with `discover = { dns =
//! "shop-headless.default.svc.cluster.local:8080" }` takes every address
//! the name resolves to as a backend, beside its static `backends`, and
//! follows the name as it changes.
//!
//! A Kubernetes headless Service (`clusterIP: None`) is such a name: it
//! resolves to the addresses of the Service's ready pods, so the gateway
//! balances over the pods themselves, with its own strategy, health checks
//! and retries, rather than over one ClusterIP that kube-proxy spreads per
//! connection (and so unevenly, over keep-alive connections). A Docker
//! Compose service name with several replicas resolves the same way.
//!
//! Every `interval` the name is resolved again (the system resolver, as
//! `getaddrinfo` sees it: `/etc/hosts`, then the DNS servers of
//! `/etc/resolv.conf`). When the set of addresses changed, the pool is
//! rebuilt by the machinery of a reload: a new [`Shared`] is built from the
//! running configuration and the new set, and published. So an address that
//! stays keeps its backend, with its health, drain and in-flight count; a
//! new one starts as a reload's new backend does (up, in a slow start if the
//! pool has one); a removed one takes no new request, and the requests
//! already on it finish, as on a reload that removes it. A configuration
//! reload keeps the discovered addresses of the pools that still discover
//! the same name, so a pool is never emptied until the next resolution.
//!
//! A resolution that fails (a timeout, a server failure, or a name with no
//! address at all, which is what a headless Service with no ready pod
//! answers) changes nothing: the pool keeps the addresses it had, and the
//! health checks judge them. A DNS hiccup must not empty a pool that
//! serves.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::Shared;
use crate::config::{BackendConfig, Config, DiscoverConfig, PoolConfig};
use crate::server::{Current, Publisher};

/// The addresses discovered per pool name, each list sorted and without
/// duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Discovered(BTreeMap<String, Vec<SocketAddr>>);

impl Discovered {
    /// What stays of these addresses under `next`, the configuration a
    /// reload replaces `running` with: those of pools that still discover
    /// the same name.
    pub(crate) fn kept(&self, running: &Config, next: &Config) -> Self {
        let discover =
            |config: &Config, pool: &str| config.pools.get(pool).and_then(|p| p.discover.clone());
        let same = |pool: &str| {
            let (old, new) = (discover(running, pool), discover(next, pool));
            old.is_some() && old.map(|d| d.dns) == new.map(|d| d.dns)
        };
        Self(
            self.0
                .iter()
                .filter(|(pool, _)| same(pool))
                .map(|(pool, addrs)| (pool.clone(), addrs.clone()))
                .collect(),
        )
    }

    /// These addresses with pool `pool`'s replaced by `addrs`.
    fn with(&self, pool: &str, addrs: Vec<SocketAddr>) -> Self {
        let mut next = self.clone();
        next.0.insert(pool.to_owned(), addrs);
        next
    }

    fn of(&self, pool: &str) -> &[SocketAddr] {
        self.0.get(pool).map_or(&[], Vec::as_slice)
    }

    /// Pool `name` as `config` says, with the addresses discovered for it
    /// added as primaries of weight 1. An address already among the static
    /// backends stays as the file lists it (weight, backup).
    pub(crate) fn pool(&self, name: &str, config: &PoolConfig) -> PoolConfig {
        let mut pool = config.clone();
        let found = self
            .of(name)
            .iter()
            .filter(|addr| !config.backends.iter().any(|b| b.address == **addr))
            .map(|&address| BackendConfig {
                address,
                weight: 1,
                backup: false,
            });
        pool.backends.extend(found);
        pool
    }
}

/// What changed between two sorted address lists.
#[derive(Debug, PartialEq, Eq)]
struct Change {
    added: Vec<SocketAddr>,
    removed: Vec<SocketAddr>,
}

impl Change {
    fn between(old: &[SocketAddr], new: &[SocketAddr]) -> Self {
        Self {
            added: new.iter().filter(|a| !old.contains(a)).copied().collect(),
            removed: old.iter().filter(|a| !new.contains(a)).copied().collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// Resolves the name of every discovering pool of the current
/// configuration on its interval, publishing each change, until the
/// gateway stops. Runs on a thread of its own, so that a slow DNS server
/// never delays a request.
pub(crate) fn run(
    mut current: Current,
    publisher: Arc<Publisher>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    crate::server::runtime()?.block_on(async move {
        let mut following = Vec::new();
        let mut lookups = JoinSet::new();
        loop {
            // This thread's own publications change the state too; the
            // lookups restart only when what they follow changed.
            let wanted = discovering(&current.borrow_and_update().config);
            if wanted != following {
                lookups.abort_all();
                for (pool, discover) in &wanted {
                    let publisher = Arc::clone(&publisher);
                    lookups.spawn(follow(pool.clone(), discover.clone(), publisher));
                }
                following = wanted;
            }
            tokio::select! {
                changed = current.changed() => if changed.is_err() { return Ok(()) },
                _ = stop.wait_for(|stop| *stop) => return Ok(()),
            }
        }
    })
}

/// Every discovering pool of `config`, by name.
fn discovering(config: &Config) -> Vec<(String, DiscoverConfig)> {
    config
        .pools
        .iter()
        .filter_map(|(name, pool)| Some((name.clone(), pool.discover.clone()?)))
        .collect()
}

/// Resolves `discover.dns` for pool `pool` at once and then every interval.
async fn follow(pool: String, discover: DiscoverConfig, publisher: Arc<Publisher>) {
    let mut ticks = tokio::time::interval(discover.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let lookup = tokio::net::lookup_host(discover.dns.as_str());
        let addrs = match tokio::time::timeout(discover.interval, lookup).await {
            Ok(Ok(addrs)) => addrs.collect::<Vec<_>>(),
            Ok(Err(error)) => {
                tracing::warn!(pool, name = discover.dns, %error, "Discovery failed; the pool keeps its backends.");
                continue;
            }
            Err(_) => {
                tracing::warn!(
                    pool,
                    name = discover.dns,
                    "Discovery timed out; the pool keeps its backends."
                );
                continue;
            }
        };
        if addrs.is_empty() {
            continue;
        }
        if let Err(error) = publisher.update(|running| rediscovered(running, &pool, addrs)) {
            tracing::error!(pool, %error, "Discovered backends not applied.");
        }
    }
}

/// The state to publish for pool `pool` resolving to `addrs`; `None` when
/// nothing changed, or the pool no longer discovers (a reload came first).
fn rediscovered(
    running: &Shared,
    pool: &str,
    mut addrs: Vec<SocketAddr>,
) -> Option<Result<Shared, getrandom::Error>> {
    running.config.pools.get(pool)?.discover.as_ref()?;
    addrs.sort_unstable();
    addrs.dedup();
    let change = Change::between(running.discovered.of(pool), &addrs);
    if change.is_empty() {
        return None;
    }
    tracing::info!(pool, added = ?change.added, removed = ?change.removed, "Discovered backends changed.");
    let discovered = running.discovered.with(pool, addrs);
    Some(Shared::new(
        running.config.clone(),
        discovered,
        Some(running),
    ))
}

#[cfg(test)]
mod tests {
    use stampede_balance::Out;

    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn config(discover: &str) -> Config {
        let toml = format!(
            "routes = [{{ pool = \"shop\" }}]\n[pools.shop]\nbackends = [\"127.0.0.1:9000\"]\n\
             {discover}\n[pools.shop.health_check]\n"
        );
        Config::from_toml(&toml, "test.toml").expect("config")
    }

    const DISCOVER: &str = "discover = { dns = \"shop:8080\" }";

    fn backends(shared: &Shared) -> Vec<SocketAddr> {
        shared.pools[0].backends.iter().map(|b| b.addr).collect()
    }

    #[test]
    fn a_change_names_the_addresses_that_come_and_go() {
        let change = Change::between(&[addr(1), addr(2)], &[addr(2), addr(3)]);
        assert_eq!(change.added, [addr(3)]);
        assert_eq!(change.removed, [addr(1)]);
        assert!(Change::between(&[addr(1)], &[addr(1)]).is_empty());
    }

    #[test]
    fn a_new_set_adds_and_removes_backends_and_keeps_the_state_of_those_that_stay() {
        let start = Shared::new(config(DISCOVER), Discovered::default(), None).expect("state");
        assert_eq!(backends(&start), [addr(9000)]);
        let first = rediscovered(&start, "shop", vec![addr(2), addr(1), addr(2)])
            .expect("a change")
            .expect("state");
        assert_eq!(backends(&first), [addr(9000), addr(1), addr(2)]);
        let kept = &first.pools[0].backends[2];
        kept.set_out(Out::Unhealthy, true);

        let second = rediscovered(&first, "shop", vec![addr(2), addr(3)])
            .expect("a change")
            .expect("state");
        assert_eq!(backends(&second), [addr(9000), addr(2), addr(3)]);
        assert!(Arc::ptr_eq(kept, &second.pools[0].backends[1]));
        assert!(second.pools[0].backends[1].is_out(Out::Unhealthy));
        assert!(rediscovered(&second, "shop", vec![addr(3), addr(2)]).is_none());
    }

    #[test]
    fn a_static_backend_found_again_is_listed_once_as_the_file_says() {
        let start = Shared::new(config(DISCOVER), Discovered::default(), None).expect("state");
        let next = rediscovered(&start, "shop", vec![addr(9000), addr(1)])
            .expect("a change")
            .expect("state");
        assert_eq!(backends(&next), [addr(9000), addr(1)]);
    }

    #[test]
    fn a_reload_keeps_the_addresses_of_pools_that_still_discover_the_same_name() {
        let found = Discovered::default().with("shop", vec![addr(1)]);
        let running = config(DISCOVER);
        let other_interval = config("discover = { dns = \"shop:8080\", interval = \"9s\" }");
        assert_eq!(found.kept(&running, &other_interval), found);
        for next in [config("discover = { dns = \"cart:8080\" }"), config("")] {
            assert_eq!(found.kept(&running, &next), Discovered::default());
        }
    }

    #[test]
    fn a_pool_that_no_longer_discovers_ignores_a_late_answer() {
        let start = Shared::new(config(""), Discovered::default(), None).expect("state");
        assert!(rediscovered(&start, "shop", vec![addr(1)]).is_none());
    }
}
