//! An upstream pool as the proxy uses it: its backends, the strategy that
//! chooses among them, and how a request is turned into the strategy's input
//! (the hash key, the sticky cookie).
//!
//! # Slow start
//!
//! A backend that comes back into rotation (healthy again, ejection over,
//! undrained after a deploy, or added to the pool by a reload) has cold
//! caches, connection pools and JIT; handed its full share at once it can
//! fall over again. With `slow_start = WINDOW` it takes each pick the
//! strategy gives it with a probability that ramps linearly from 10 % to
//! 100 % over the window (Envoy's slow start with its default aggression
//! and minimum weight); a pick it declines goes to another available
//! primary chosen at random. Its traffic is then that share of what the
//! strategy would give it, whichever strategy it is, without every strategy
//! learning about time. A client pinned to it by a sticky cookie stays.
//! Strategies that hash are refused a slow start at validation: moving a
//! key's requests elsewhere is exactly what they exist not to do.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::header::HeaderValue;
use http::uri::Authority;
use stampede_balance::strategy::Sticky;
use stampede_balance::{Backend, Out, Pick, Strategy};

use crate::config::{BackendConfig, HashOn, HealthCheckConfig, PoolConfig};
use crate::ejection::Ejection;
use crate::fields::Fields;
use crate::retry::{Retries, Tried};
use crate::telemetry::{BackendMetrics, RequestMetrics};

/// One pool, shared by every worker thread.
#[derive(Debug)]
pub(crate) struct Pool {
    pub(crate) name: Arc<str>,
    /// Position among the gateway's pools, for per-worker tables.
    pub(crate) index: usize,
    pub(crate) backends: Vec<Arc<Backend>>,
    /// Each backend's `host:port` as a URI authority, parallel to `backends`,
    /// formatted once rather than per request.
    pub(crate) authorities: Vec<Authority>,
    /// Metric handles, parallel to `backends`.
    pub(crate) metrics: Vec<Arc<BackendMetrics>>,
    /// Metric handles for requests that failed before a backend was chosen.
    pub(crate) unassigned: Arc<RequestMetrics>,
    /// `backends[..primaries]` are the primaries, the rest backups.
    primaries: usize,
    strategy: Box<dyn Strategy>,
    /// Chooses among the backups while no primary is available.
    backup_strategy: Option<Box<dyn Strategy>>,
    panic_threshold: f64,
    /// Turns of the fail-open rotation.
    panic_turn: AtomicUsize,
    hash_on: HashOn,
    sticky_cookie: Option<String>,
    pub(crate) http2: bool,
    pub(crate) max_idle_per_backend: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) health_check: Option<HealthCheckConfig>,
    slow_start: Option<Duration>,
    ejection: Option<Ejection>,
    pub(crate) retries: Option<Retries>,
}

/// The backend chosen for one request.
#[derive(Debug)]
pub(crate) struct Choice {
    pub(crate) index: usize,
    /// A `Set-Cookie` to send when the client is not yet pinned to this backend.
    pub(crate) set_cookie: Option<HeaderValue>,
}

impl Pool {
    /// The pool as `config` says; after a reload, `previous` is the pool of
    /// the same name in the configuration it replaces, whose backends that
    /// stay keep their state (see [`carry_over`]).
    pub(crate) fn new(
        index: usize,
        name: &str,
        config: &PoolConfig,
        previous: Option<&Pool>,
    ) -> Self {
        // Primaries first, then backups: each strategy sees its own slice,
        // and an index into either is an index into `backends`.
        let (primary, backup): (Vec<_>, Vec<_>) = config.backends.iter().partition(|b| !b.backup);
        let backends: Vec<Arc<Backend>> = primary
            .iter()
            .chain(&backup)
            .map(|b| carry_over(b, config, previous))
            .collect();
        let primaries = primary.len();
        let mut strategy = config.strategy.build(&backends[..primaries]);
        if config.sticky.is_some() {
            strategy = Box::new(Sticky::new(strategy, &backends[..primaries]));
        }
        let backup_strategy =
            (!backup.is_empty()).then(|| config.strategy.build(&backends[primaries..]));
        let pool = Self {
            name: name.into(),
            index,
            authorities: backends
                .iter()
                .map(|b| {
                    Authority::try_from(b.addr.to_string())
                        .expect("a socket address is an authority")
                })
                .collect(),
            // A backend that stays across a reload keeps its figures, so
            // that the operations page's rates do not start over.
            metrics: backends
                .iter()
                .map(|b| {
                    previous
                        .and_then(|p| p.metrics_of(&b.id))
                        .unwrap_or_else(|| Arc::new(BackendMetrics::new(name, &b.id)))
                })
                .collect(),
            unassigned: Arc::new(RequestMetrics::new(name, "none")),
            backends,
            primaries,
            strategy,
            backup_strategy,
            panic_threshold: config.panic_threshold,
            panic_turn: AtomicUsize::new(0),
            hash_on: config.hash_on.clone(),
            sticky_cookie: config.sticky.as_ref().map(|s| s.cookie.clone()),
            http2: config.http2,
            max_idle_per_backend: config.max_idle_per_backend,
            idle_timeout: config.idle_timeout,
            health_check: config.health_check.clone(),
            slow_start: config.slow_start,
            retries: config.retries.as_ref().map(|c| Retries::new(c, name)),
            ejection: config
                .ejection
                .clone()
                .map(|c| Ejection::new(c, config.backends.len())),
        };
        for (backend, metrics) in pool.backends.iter().zip(&pool.metrics) {
            metrics.set_up(backend.is_available());
        }
        pool
    }

    /// Whether backend `index` is a backup.
    pub(crate) fn is_backup(&self, index: usize) -> bool {
        index >= self.primaries
    }

    /// The metric handles of the backend named `id`, if the pool has it.
    fn metrics_of(&self, id: &str) -> Option<Arc<BackendMetrics>> {
        let index = self.backends.iter().position(|b| b.id == id)?;
        Some(Arc::clone(&self.metrics[index]))
    }

    /// Sets or clears one reason to keep backend `index` out of rotation,
    /// and publishes whether it is in rotation now.
    pub(crate) fn set_out(&self, index: usize, reason: Out, out: bool) {
        let backend = &self.backends[index];
        backend.set_out(reason, out);
        self.metrics[index].set_up(backend.is_available());
    }

    /// Counts an answer of backend `index` for passive ejection: `failed`
    /// for a 5xx or no answer at all.
    pub(crate) fn observe(&self, index: usize, failed: bool) {
        if let Some(ejection) = &self.ejection {
            ejection.observe(self, index, failed);
        }
    }

    /// The backend for a retry of a request that `tried` these, noted in
    /// `tried`: if the pool retries, the request has retries left, another
    /// backend is available and the budget allows (see the `retry` module).
    pub(crate) fn retry(&self, tried: &mut Tried) -> Option<Choice> {
        let retries = self.retries.as_ref()?;
        if tried.as_slice().len() > retries.max as usize {
            return None;
        }
        let choice = self.alternative(tried.as_slice())?;
        if !retries.withdraw() {
            return None;
        }
        tried.push(choice.index);
        Some(choice)
    }

    /// The backend for another try of a connection that failed before
    /// anything was sent, which is always safe: as [`Pool::retry`] when the
    /// pool retries, else one other backend.
    pub(crate) fn retry_connect(&self, tried: &mut Tried) -> Option<Choice> {
        if self.retries.is_some() {
            return self.retry(tried);
        }
        if tried.as_slice().len() > 1 {
            return None;
        }
        let choice = self.alternative(tried.as_slice())?;
        tried.push(choice.index);
        Some(choice)
    }

    /// Another backend for a retry: the next available primary after the
    /// last tried that was not tried yet, or else such a backup.
    fn alternative(&self, tried: &[usize]) -> Option<Choice> {
        let last = *tried.last()?;
        let untried = |range: std::ops::Range<usize>| {
            let n = range.len();
            let start = range.start;
            (1..=n)
                .map(move |step| start + (last + step) % n)
                .find(|&i| !tried.contains(&i) && self.backends[i].is_available())
        };
        let index =
            untried(0..self.primaries).or_else(|| untried(self.primaries..self.backends.len()))?;
        Some(Choice {
            index,
            set_cookie: self.sticky_cookie_for(index, None),
        })
    }

    /// Chooses a backend for a request from `client`, or `None` when no
    /// backend is available.
    pub(crate) fn choose(
        &self,
        client: IpAddr,
        path: &str,
        headers: &(impl Fields + ?Sized),
    ) -> Option<Choice> {
        let ip_bytes = ip_bytes(client);
        let hash_key: &[u8] = match &self.hash_on {
            HashOn::ClientIp => &ip_bytes,
            HashOn::Path => path.as_bytes(),
            HashOn::Header(name) => headers.field(name.as_str()).unwrap_or(&[]),
            HashOn::Cookie(name) => headers.cookie(name).map_or(&[], str::as_bytes),
        };
        let sticky = self
            .sticky_cookie
            .as_deref()
            .and_then(|c| headers.cookie(c));
        let pick = Pick {
            client_ip: client,
            hash_key,
            sticky,
        };
        let (primaries, backups) = self.backends.split_at(self.primaries);
        if let Some(index) = self.panic_pick() {
            let set_cookie = self.sticky_cookie_for(index, sticky);
            return Some(Choice { index, set_cookie });
        }
        let index = match self.strategy.pick(primaries, &pick) {
            Some(index) => self.ramp(index, sticky),
            None => self.primaries + self.backup_strategy.as_ref()?.pick(backups, &pick)?,
        };
        let set_cookie = self.sticky_cookie_for(index, sticky);
        Some(Choice { index, set_cookie })
    }

    /// Primary `index` as the strategy picked it, or, when it is in a slow
    /// start and declines this pick, another (see the module docs).
    fn ramp(&self, index: usize, sticky: Option<&str>) -> usize {
        let Some(share) = self.warming(index) else {
            return index;
        };
        let backend = &self.backends[index];
        if sticky == Some(backend.id.as_str()) || fastrand::f64() < share {
            return index;
        }
        let n = self.primaries;
        let start = fastrand::usize(..n);
        (0..n)
            .map(|step| (start + step) % n)
            .find(|&i| i != index && self.backends[i].is_available())
            .unwrap_or(index)
    }

    /// The share of its picks backend `index` takes while in a slow start;
    /// `None` once it is over (or there is none).
    pub(crate) fn warming(&self, index: usize) -> Option<f64> {
        let window = self.slow_start?;
        let backend = &self.backends[index];
        let since = backend.returned_for()?;
        if since >= window {
            backend.settle();
            return None;
        }
        Some(ramp_share(since, window))
    }

    /// When too few primaries are in rotation (below the panic threshold),
    /// the next primary in turn that is not drained, healthy or not.
    fn panic_pick(&self) -> Option<usize> {
        if !self.failing_open() {
            return None;
        }
        let primaries = &self.backends[..self.primaries];
        let turn = self.panic_turn.fetch_add(1, Ordering::Relaxed);
        (0..primaries.len())
            .map(|step| (turn + step) % primaries.len())
            .find(|&i| !primaries[i].is_out(Out::Draining))
    }

    /// Whether fewer primaries are in rotation than the panic threshold
    /// asks for, so that the pool fails open.
    fn failing_open(&self) -> bool {
        if self.panic_threshold <= 0.0 {
            return false;
        }
        let primaries = &self.backends[..self.primaries];
        let available = primaries.iter().filter(|b| b.is_available()).count();
        (available as f64) < self.panic_threshold * primaries.len() as f64
    }

    /// Every backend that [`Pool::choose`] may pick now, in the pool's
    /// order: the available primaries, or while there is none the
    /// available backups; while the pool fails open, every primary that
    /// is not drained. Empty when nothing is in rotation.
    pub(crate) fn in_rotation(&self) -> Vec<&Arc<Backend>> {
        let (primaries, backups) = self.backends.split_at(self.primaries);
        if self.failing_open() {
            return primaries
                .iter()
                .filter(|b| !b.is_out(Out::Draining))
                .collect();
        }
        fn available(set: &[Arc<Backend>]) -> Vec<&Arc<Backend>> {
            set.iter().filter(|b| b.is_available()).collect()
        }
        let in_rotation = available(primaries);
        if in_rotation.is_empty() {
            return available(backups);
        }
        in_rotation
    }

    /// The `Set-Cookie` that pins a client to backend `index`, unless the
    /// client's cookie (`sticky`) already names it.
    fn sticky_cookie_for(&self, index: usize, sticky: Option<&str>) -> Option<HeaderValue> {
        let name = self.sticky_cookie.as_deref()?;
        let id = &self.backends[index].id;
        if sticky == Some(id.as_str()) {
            return None;
        }
        HeaderValue::from_str(&format!("{name}={id}; Path=/; HttpOnly; SameSite=Lax")).ok()
    }
}

/// The backend `config` describes. A backend the `previous` pool had at
/// the same address stays the same backend, so a reload loses neither its
/// in-flight count (which least-conn balances on), its latency average, its
/// drain nor its health; with another weight it is rebuilt (strategies read
/// weights once) but keeps its drain and health. Health it keeps only while
/// the pool still checks it: without checks nothing would ever clear it.
fn carry_over(config: &BackendConfig, pool: &PoolConfig, previous: Option<&Pool>) -> Arc<Backend> {
    let old = previous.and_then(|p| p.backends.iter().find(|b| b.addr == config.address));
    let backend = match old {
        Some(old) if old.weight == config.weight.max(1) => Arc::clone(old),
        Some(old) => {
            let backend = Backend::new(config.address, config.weight);
            backend.set_out(Out::Draining, old.is_out(Out::Draining));
            backend.set_out(Out::Unhealthy, old.is_out(Out::Unhealthy));
            Arc::new(backend)
        }
        None => {
            let backend = Backend::new(config.address, config.weight);
            // New to a running pool: it starts slow too.
            if previous.is_some() {
                backend.mark_returned(std::time::Instant::now());
            }
            Arc::new(backend)
        }
    };
    if pool.health_check.is_none() {
        backend.set_out(Out::Unhealthy, false);
    }
    backend
}

/// The least share of its picks a backend in slow start takes: Envoy's
/// default `min_weight_percent`, so that it is tried at all at first.
const SLOW_START_FLOOR: f64 = 0.1;

/// The share of picks `since` into a slow start of `window`: linear from
/// the floor to 1.
fn ramp_share(since: Duration, window: Duration) -> f64 {
    let progress = since.as_secs_f64() / window.as_secs_f64();
    (SLOW_START_FLOOR + (1.0 - SLOW_START_FLOOR) * progress).min(1.0)
}

/// The address as 16 bytes (IPv4 mapped), so the hash of an address does not
/// depend on the socket family it arrived on.
fn ip_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use stampede_balance::StrategyKind;

    use super::*;
    use crate::config::Config;

    fn pool(backends: &str) -> Pool {
        pool_with("", backends)
    }

    fn pool_with(settings: &str, backends: &str) -> Pool {
        let toml = format!(
            "routes = [{{ pool = \"web\" }}]\n[pools.web]\n{settings}\nbackends = {backends}\n"
        );
        let config = Config::from_toml(&toml, "test.toml").expect("config");
        Pool::new(0, "web", &config.pools["web"], None)
    }

    fn pick(pool: &Pool) -> usize {
        let headers: &[httparse::Header<'_>] = &[];
        pool.choose(IpAddr::V4(Ipv4Addr::LOCALHOST), "/", headers)
            .expect("a backend")
            .index
    }

    #[test]
    fn a_discovering_pool_with_nothing_found_yet_chooses_nothing() {
        for (name, _) in StrategyKind::ALL {
            let pool = pool_with(
                &format!("strategy = \"{name}\"\ndiscover = {{ dns = \"shop:8080\" }}"),
                "[]",
            );
            let headers: &[httparse::Header<'_>] = &[];
            let choice = pool.choose(IpAddr::V4(Ipv4Addr::LOCALHOST), "/", headers);
            assert!(choice.is_none(), "{name}");
            assert!(pool.in_rotation().is_empty(), "{name}");
        }
    }

    #[test]
    fn backups_serve_only_while_no_primary_is_available() {
        let pool = pool(
            r#"[{ address = "127.0.0.1:9003", backup = true }, "127.0.0.1:9001", "127.0.0.1:9002"]"#,
        );
        let ids: Vec<&str> = pool.backends.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(
            ids,
            ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"],
            "primaries first"
        );
        assert!((0..20).all(|_| pick(&pool) < 2));
        pool.backends[0].set_out(Out::Unhealthy, true);
        assert!((0..20).all(|_| pick(&pool) == 1), "one primary left");
        pool.backends[1].set_out(Out::Draining, true);
        assert!((0..20).all(|_| pick(&pool) == 2), "only the backup");
        pool.backends[0].set_out(Out::Unhealthy, false);
        assert!((0..20).all(|_| pick(&pool) == 0), "a primary is back");
    }

    #[test]
    fn in_rotation_is_what_choose_may_pick() {
        let pool = pool_with(
            "panic_threshold = 0.5",
            r#"["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003", { address = "127.0.0.1:9004", backup = true }]"#,
        );
        let ids = |pool: &Pool| -> Vec<String> {
            pool.in_rotation().iter().map(|b| b.id.clone()).collect()
        };
        assert_eq!(
            ids(&pool),
            ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]
        );
        pool.set_out(0, Out::Ejected, true);
        assert_eq!(ids(&pool), ["127.0.0.1:9002", "127.0.0.1:9003"]);
        pool.set_out(1, Out::Unhealthy, true);
        pool.set_out(2, Out::Draining, true);
        assert_eq!(
            ids(&pool),
            ["127.0.0.1:9001", "127.0.0.1:9002"],
            "failing open: every primary not drained"
        );
        let no_panic = pool_with(
            "",
            r#"["127.0.0.1:9001", { address = "127.0.0.1:9004", backup = true }]"#,
        );
        no_panic.set_out(0, Out::Unhealthy, true);
        assert_eq!(ids(&no_panic), ["127.0.0.1:9004"], "the backup");
        no_panic.set_out(1, Out::Unhealthy, true);
        assert!(no_panic.in_rotation().is_empty());
    }

    #[test]
    fn a_slow_start_ramps_from_the_floor_to_the_full_share() {
        let window = Duration::from_secs(10);
        assert!((ramp_share(Duration::ZERO, window) - 0.1).abs() < 1e-9);
        assert!((ramp_share(Duration::from_secs(5), window) - 0.55).abs() < 1e-9);
        assert_eq!(ramp_share(Duration::from_secs(20), window), 1.0);
    }

    #[test]
    fn a_returning_backend_takes_a_small_share_until_its_slow_start_is_over() {
        let pool = pool_with(
            "slow_start = \"1h\"",
            r#"["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]"#,
        );
        pool.set_out(2, Out::Unhealthy, true);
        pool.set_out(2, Out::Unhealthy, false);
        let share = pool.warming(2).expect("warming");
        assert!(share < 0.11, "{share}");
        let to_returning = (0..3000).filter(|_| pick(&pool) == 2).count();
        // Round-robin gives it 1000 of 3000; it takes about a tenth of them.
        assert!((40..200).contains(&to_returning), "{to_returning}");
        assert_eq!(pool.warming(0), None, "the others never left");
    }

    #[test]
    fn a_retry_goes_to_an_untried_primary_before_a_backup() {
        let pool = pool(
            r#"["127.0.0.1:9001", "127.0.0.1:9002", { address = "127.0.0.1:9003", backup = true }]"#,
        );
        assert_eq!(pool.alternative(&[0]).map(|c| c.index), Some(1));
        assert_eq!(pool.alternative(&[1]).map(|c| c.index), Some(0));
        assert_eq!(pool.alternative(&[0, 1]).map(|c| c.index), Some(2));
        assert_eq!(pool.alternative(&[0, 1, 2]).map(|c| c.index), None);
        pool.backends[1].set_out(Out::Unhealthy, true);
        assert_eq!(
            pool.alternative(&[0]).map(|c| c.index),
            Some(2),
            "skips the unavailable"
        );
    }

    #[test]
    fn below_the_panic_threshold_the_pool_fails_open_but_honours_drains() {
        let toml = "routes = [{ pool = \"web\" }]\n[pools.web]\npanic_threshold = 0.5\n\
                    backends = [\"127.0.0.1:9001\", \"127.0.0.1:9002\", \"127.0.0.1:9003\"]\n";
        let config = Config::from_toml(toml, "test.toml").expect("config");
        let pool = Pool::new(0, "web", &config.pools["web"], None);
        let headers: &[httparse::Header<'_>] = &[];
        let pick = || {
            pool.choose(IpAddr::V4(Ipv4Addr::LOCALHOST), "/", headers)
                .map(|c| c.index)
        };
        pool.backends[0].set_out(Out::Unhealthy, true);
        assert!(
            (0..12).all(|_| pick() != Some(0)),
            "two of three in rotation: no panic"
        );
        pool.backends[1].set_out(Out::Ejected, true);
        let picked: std::collections::BTreeSet<_> = (0..12).filter_map(|_| pick()).collect();
        assert_eq!(
            picked,
            [0, 1, 2].into(),
            "one of three: every primary in turn"
        );
        pool.backends[2].set_out(Out::Draining, true);
        let picked: std::collections::BTreeSet<_> = (0..12).filter_map(|_| pick()).collect();
        assert_eq!(
            picked,
            [0, 1].into(),
            "a drained backend stays out even in panic"
        );
    }
}
