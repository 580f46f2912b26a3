//! The gateway's configuration: the TOML file, the quick flags, and the
//! validation that turns either into a [`Config`] the gateway can run.
//!
//! Every mistake is reported as one [`ConfigError`] naming the key (as a
//! dotted path like `pools.shop.backends[1]`) and the problem, so that a user
//! fixing a file is never left guessing. `examples/gateway.toml` at the root
//! of the repository shows every option with its default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use stampede_balance::StrategyKind;
pub use stampede_config::ConfigError;
use stampede_config::quote;

mod de;
mod edge;
mod files;
mod ops;
mod tls;

pub use edge::ResponseCacheConfig;
pub use files::{Algorithm, CacheConfig, CompressionConfig, FileCacheConfig};
pub use ops::{ADMIN_TOKEN_ENV, AdminToken, OpsConfig};
pub(crate) use tls::Certificate;
pub use tls::{CertificateFiles, TlsConfig};

/// The whole gateway configuration, as validated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where clients connect (HTTP/1.1 and h2c with prior knowledge).
    #[serde(default = "defaults::listen", deserialize_with = "de::socket_addr")]
    pub listen: SocketAddr,
    /// Where `/metrics`, `/healthz`, the backends' state, drains and the
    /// operations page are served; never exposed to clients.
    #[serde(default, deserialize_with = "de::opt_socket_addr")]
    pub admin_listen: Option<SocketAddr>,
    /// The bearer token of the admin listener's `/backends`, drains and
    /// operations page (`STAMPEDE_ADMIN_TOKEN` wins over it). None: those
    /// but the page stay open, as before there was a token.
    #[serde(default, deserialize_with = "ops::admin_token")]
    pub admin_token: Option<AdminToken>,
    /// The operations page's sale data; none: the page shows the pools only.
    #[serde(default)]
    pub ops: Option<OpsConfig>,
    /// Worker threads, each with its own event loop; 0 means one per core.
    #[serde(default)]
    pub workers: usize,
    /// How long a shutdown waits for in-flight requests before closing them.
    #[serde(default = "defaults::drain_timeout", deserialize_with = "de::duration")]
    pub drain_timeout: Duration,
    /// Peers whose `X-Forwarded-*` and `Forwarded` headers are believed.
    /// Anyone else's are replaced by what the gateway itself sees.
    #[serde(default, deserialize_with = "de::ip_nets")]
    pub trusted_proxies: Vec<IpNet>,
    /// Limits on what a client may send.
    #[serde(default)]
    pub limits: Limits,
    /// TLS termination on an HTTPS listener beside `listen`; none: plain
    /// HTTP only.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Upstream pools by name.
    pub pools: BTreeMap<String, PoolConfig>,
    /// Which pool serves which Host and path prefix; the most specific wins.
    /// May be empty when a `[[tcp]]` or `[[redirect]]` listener serves.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// The authoritative DNS responder (see the gateway's `dns` module);
    /// none when absent.
    #[serde(default)]
    pub dns: Option<DnsConfig>,
    /// L4 listeners: TCP connections balanced over a pool, bytes copied
    /// both ways (see the gateway's `l4` module).
    #[serde(default)]
    pub tcp: Vec<TcpConfig>,
    /// Redirect listeners: every HTTP request answered with a redirect to
    /// the backend a pool chooses (see the gateway's `redirect` module).
    #[serde(default)]
    pub redirect: Vec<RedirectConfig>,
    /// On-the-fly compression of static files, and of the answers of
    /// routes with `compress = true`; none when absent.
    #[serde(default)]
    pub compression: Option<CompressionConfig>,
    /// The static files kept in memory.
    #[serde(default)]
    pub file_cache: FileCacheConfig,
}

/// `[dns]`: names answered with the healthy backends of a pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// Where queries arrive, over UDP and TCP on the same port.
    #[serde(default = "defaults::dns_listen", deserialize_with = "de::socket_addr")]
    pub listen: SocketAddr,
    /// The TTL of every answer: short, so that resolvers follow health.
    #[serde(default = "defaults::dns_ttl", deserialize_with = "de::duration")]
    pub ttl: Duration,
    /// The names answered, each with its pool.
    pub names: Vec<DnsNameConfig>,
}

/// `[[dns.names]]`: one name and the pool whose backends answer it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsNameConfig {
    /// The name, answered authoritatively (`shop.example.com`).
    #[serde(deserialize_with = "de::dns_name")]
    pub name: hickory_server::proto::rr::Name,
    /// The pool whose backends are the answer.
    pub pool: String,
    /// Every backend in rotation, or the strategy's pick.
    #[serde(default)]
    pub answer: DnsAnswer,
    /// What to answer while no backend of the pool is in rotation.
    #[serde(default)]
    pub when_all_down: WhenAllDown,
}

/// What a DNS answer holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DnsAnswer {
    /// Every backend in rotation, the list rotated by one per query.
    #[default]
    All,
    /// The one backend the pool's strategy picks for the querier's address.
    Pick,
}

/// The answer while a pool has no backend in rotation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenAllDown {
    /// Every backend of the pool: clients try them rather than get nothing
    /// (a health check can be wrong; the backends may still serve).
    #[default]
    All,
    /// `SERVFAIL`: resolvers try another server or report the failure.
    Servfail,
}

/// `[[tcp]]`: an L4 listener in front of a pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    /// Where clients connect.
    #[serde(deserialize_with = "de::socket_addr")]
    pub listen: SocketAddr,
    /// The pool whose backends take the connections.
    pub pool: String,
    /// Longest wait for a backend's TCP connection; then another backend
    /// is tried (see the `l4` module).
    #[serde(
        default = "defaults::connect_timeout",
        deserialize_with = "de::duration"
    )]
    pub connect_timeout: Duration,
    /// A PROXY protocol header sent to the backend first, telling it the
    /// client's address; none when absent.
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// A connection with no byte either way for this long is closed; none
    /// when absent (PostgreSQL and Redis clients idle for hours).
    #[serde(default, deserialize_with = "de::opt_duration")]
    pub idle_timeout: Option<Duration>,
}

/// The PROXY protocol version a `[[tcp]]` listener speaks to its backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// The text header, `PROXY TCP4 ...\r\n`.
    V1,
    /// The binary header.
    V2,
}

/// `[[redirect]]`: an HTTP listener that sends clients to a backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectConfig {
    /// Where clients connect (HTTP/1.1).
    #[serde(deserialize_with = "de::socket_addr")]
    pub listen: SocketAddr,
    /// The pool whose backends clients are sent to.
    pub pool: String,
    /// The scheme of the `Location`: `http` or `https`.
    #[serde(default = "defaults::scheme")]
    pub scheme: String,
}

/// Limits on client requests, each answered with its own status code.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request head (request line and headers) in bytes; beyond it `431`.
    pub max_header_bytes: usize,
    /// Largest request body in bytes; beyond it `413`.
    pub max_body_bytes: u64,
    /// How long a connection may sit idle, or take to send a request head,
    /// before it is closed.
    #[serde(deserialize_with = "de::duration")]
    pub idle_timeout: Duration,
    /// How long a request body may stall between two reads; beyond it `408`.
    #[serde(deserialize_with = "de::duration")]
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 32 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
        }
    }
}

/// One upstream pool: its backends and how to choose among them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// The balancing strategy (see `stampede_balance::StrategyKind`).
    #[serde(default = "defaults::strategy", deserialize_with = "de::strategy")]
    pub strategy: StrategyKind,
    /// The backends, as `"host:port"` or `{ address = "host:port", weight = 2 }`.
    /// May be empty when `discover` finds them.
    #[serde(default)]
    pub backends: Vec<BackendConfig>,
    /// More backends, found by resolving a name again and again (see the
    /// gateway's `discover` module); none when absent.
    #[serde(default)]
    pub discover: Option<DiscoverConfig>,
    /// What hashing strategies hash.
    #[serde(default, deserialize_with = "de::hash_on")]
    pub hash_on: HashOn,
    /// Sticky sessions: pin a client to the backend named in this cookie.
    #[serde(default)]
    pub sticky: Option<StickyConfig>,
    /// Speak HTTP/2 (h2c, prior knowledge) to these backends instead of HTTP/1.1.
    #[serde(default)]
    pub http2: bool,
    /// Idle keep-alive connections kept per backend and worker thread.
    #[serde(default = "defaults::max_idle_per_backend")]
    pub max_idle_per_backend: usize,
    /// How long an idle backend connection is kept; keep it below the
    /// backend's own keep-alive timeout to avoid reusing a closing socket.
    #[serde(
        default = "defaults::pool_idle_timeout",
        deserialize_with = "de::duration"
    )]
    pub idle_timeout: Duration,
    /// Below this share of primaries in rotation (0 to 1), the pool fails
    /// open: requests go to every primary that is not drained, in turn,
    /// healthy or not, rather than piling onto the few left (Envoy's panic
    /// threshold). 0, the default, never fails open.
    #[serde(default)]
    pub panic_threshold: f64,
    /// A backend that comes back into rotation (healthy again, ejection
    /// over, undrained, or added by a reload) takes a share of its picks
    /// that ramps from 10 % to all of them over this window (see the
    /// gateway's `pool` module). None: back at full share at once.
    #[serde(default, deserialize_with = "de::opt_duration")]
    pub slow_start: Option<Duration>,
    /// Active health checks; without this table every backend counts as up.
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    /// Passive ejection of backends whose live answers keep failing;
    /// without this table nothing is ejected.
    #[serde(default)]
    pub ejection: Option<EjectionConfig>,
    /// Retries on another backend where safe; without this table a failed
    /// exchange is answered at once.
    #[serde(default)]
    pub retries: Option<RetryConfig>,
}

/// `[pools.NAME.discover]`: a name whose addresses are the pool's backends
/// beside the static ones, such as a Kubernetes headless Service's.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverConfig {
    /// `host:port`: every address `host` resolves to, at `port`. Not
    /// resolved at validation: a name with no address yet (no pod ready)
    /// is a running cluster's normal state, not a mistake in the file.
    pub dns: String,
    /// Time between two resolutions.
    #[serde(
        default = "defaults::discover_interval",
        deserialize_with = "de::duration"
    )]
    pub interval: Duration,
}

/// The most retries per request a pool may configure.
pub const MAX_RETRIES: u32 = 5;

/// `[pools.NAME.retries]` (see the gateway's `retry` module).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Retries per request at most, each on a backend not yet tried.
    #[serde(default = "defaults::max_retries")]
    pub max: u32,
    /// Tokens each request earns the budget; a retry spends one.
    #[serde(default = "defaults::budget_ratio")]
    pub budget_ratio: f64,
    /// Retries per second the budget allows however little traffic there is.
    #[serde(default = "defaults::budget_floor")]
    pub budget_floor: u32,
}

/// `[pools.NAME.ejection]`: when live failures take a backend out, and
/// for how long (see the gateway's `ejection` module).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EjectionConfig {
    /// 5xx answers or failed exchanges in a row that eject a backend.
    #[serde(default = "defaults::consecutive_failures")]
    pub consecutive_failures: u32,
    /// The first ejection's length; each further one in a streak doubles.
    #[serde(default = "defaults::base_ejection", deserialize_with = "de::duration")]
    pub base_time: Duration,
    /// The longest ejection; a backend clear of trouble this long starts
    /// its next streak at `base_time`.
    #[serde(default = "defaults::max_ejection", deserialize_with = "de::duration")]
    pub max_time: Duration,
    /// The largest share of the pool ejected at once (0 to 1).
    #[serde(default = "defaults::max_share")]
    pub max_share: f64,
}

/// `[pools.NAME.health_check]`: how the gateway probes each backend of a
/// pool, and how many results in a row change its mind (HAProxy's `rise`
/// and `fall`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// `GET` this path and expect a 2xx or 3xx; absent: a TCP connect is
    /// the check.
    #[serde(default)]
    pub path: Option<String>,
    /// Time between two checks of one backend.
    #[serde(
        default = "defaults::check_interval",
        deserialize_with = "de::duration"
    )]
    pub interval: Duration,
    /// How long one check may take before it counts as failed.
    #[serde(default = "defaults::check_timeout", deserialize_with = "de::duration")]
    pub timeout: Duration,
    /// Passed checks in a row that bring a down backend back.
    #[serde(default = "defaults::rise")]
    pub rise: u32,
    /// Failed checks in a row that take an up backend out.
    #[serde(default = "defaults::fall")]
    pub fall: u32,
}

/// One backend of a pool.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// Where to connect.
    pub address: SocketAddr,
    /// Relative share of traffic for weighted strategies.
    pub weight: u32,
    /// Serves only while no primary (non-backup) backend of the pool is
    /// available.
    pub backup: bool,
}

/// What a hashing strategy hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HashOn {
    /// The client's IP address (after trusted-proxy resolution).
    #[default]
    ClientIp,
    /// A request header's value (`header:X-User`).
    Header(http::HeaderName),
    /// A cookie's value (`cookie:sessionid`).
    Cookie(String),
    /// The request path (`path`).
    Path,
}

/// Cookie-based sticky sessions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StickyConfig {
    /// The cookie the gateway sets to name the chosen backend.
    #[serde(default = "defaults::sticky_cookie")]
    pub cookie: String,
}

/// A route: requests whose Host and path match go to `pool`, or are
/// answered with files from `static_dir`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Host to match (without port, case-insensitive); absent matches any host.
    #[serde(default)]
    pub host: Option<String>,
    /// Path prefix to match, on segment boundaries (`/api` matches `/api/x`, not `/apix`).
    #[serde(default = "defaults::path_prefix")]
    pub path_prefix: String,
    /// The pool that serves this route; exactly one of `pool` and
    /// `static_dir`.
    #[serde(default)]
    pub pool: Option<String>,
    /// The directory whose files this route serves, the path after the
    /// prefix naming the file; canonical once validated.
    #[serde(default)]
    pub static_dir: Option<PathBuf>,
    /// With `static_dir`: the `Cache-Control` of its answers.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Longest wait for a TCP connection to a backend; then `502`.
    #[serde(
        default = "defaults::connect_timeout",
        deserialize_with = "de::duration"
    )]
    pub connect_timeout: Duration,
    /// Longest wait from sending the request to the response head; then `504`.
    #[serde(
        default = "defaults::first_byte_timeout",
        deserialize_with = "de::duration"
    )]
    pub first_byte_timeout: Duration,
    /// Longest a whole exchange may take, body included; none by default so
    /// that downloads and WebSockets are not cut.
    #[serde(default, deserialize_with = "de::opt_duration")]
    pub total_timeout: Option<Duration>,
    /// Requests of this route in flight at once at most; beyond, up to
    /// `max_queue` wait (for `queue_timeout` at most) and the rest get
    /// `503 overloaded` with `Retry-After`. None: no limit.
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    /// Requests that may wait for a place under `max_concurrency`.
    #[serde(default)]
    pub max_queue: usize,
    /// The longest a request waits in that queue.
    #[serde(default = "defaults::queue_timeout", deserialize_with = "de::duration")]
    pub queue_timeout: Duration,
    /// A token bucket for the route's requests, or for each client's;
    /// beyond it `429 rate_limited` with `Retry-After`. None: no limit.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// A line for new visitors while the route is at capacity; needs
    /// `max_concurrency`. None: no waiting room.
    #[serde(default)]
    pub waiting_room: Option<WaitingRoomConfig>,
    /// Compress the pool's answers for clients that accept it, as
    /// `[compression]` says (which must then compress).
    #[serde(default)]
    pub compress: bool,
    /// The `Cache-Control` of answers to `GET` and `HEAD` whose backend
    /// sent none (and no cookie); none by default.
    #[serde(default)]
    pub cache_control: Option<String>,
    /// Answers kept in memory for a short while, one backend request per
    /// page however many clients ask; none by default.
    #[serde(default)]
    pub response_cache: Option<ResponseCacheConfig>,
}

/// `routes[N].waiting_room` (see the gateway's `admission::room` module).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WaitingRoomConfig {
    /// The cookie holding a visitor's pass or ticket.
    pub cookie: String,
    /// How long a pass lets its visitor in.
    #[serde(deserialize_with = "de::duration")]
    pub pass_time: Duration,
    /// How often a waiting visitor asks again (`Retry-After`, `Refresh`);
    /// a ticket not asked about for three intervals is abandoned.
    #[serde(deserialize_with = "de::duration")]
    pub poll_interval: Duration,
    /// The most visitors waiting at once; beyond, newcomers get `503
    /// overloaded`.
    pub max_waiting: usize,
    /// The key passes and tickets are signed with, so that passes stay good
    /// across restarts and on other gateways with the same secret. None: a
    /// random key per process.
    pub secret: Option<String>,
}

impl Default for WaitingRoomConfig {
    fn default() -> Self {
        Self {
            cookie: "stampede_room".to_owned(),
            pass_time: Duration::from_secs(10 * 60),
            poll_interval: Duration::from_secs(5),
            max_waiting: 1_000_000,
            secret: None,
        }
    }
}

/// `routes[N].rate_limit`: a token bucket (see the gateway's
/// `admission::rate` module).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per second, sustained.
    pub rate: f64,
    /// Requests that may come at once after a quiet spell (the bucket's
    /// size); absent: one second's worth, `rate` rounded up.
    #[serde(default)]
    pub burst: Option<u32>,
    /// Whose requests share a bucket: the whole route's, or each client
    /// address's.
    #[serde(default)]
    pub per: RateKey,
    /// With `per = "client_ip"`, the most client buckets kept; beyond, the
    /// least used are forgotten (and their clients start afresh).
    #[serde(default = "defaults::max_clients")]
    pub max_clients: u64,
}

impl RateLimitConfig {
    /// The bucket's size: `burst`, or one second's worth.
    pub fn burst(&self) -> u32 {
        self.burst
            .unwrap_or_else(|| (self.rate.ceil() as u32).max(1))
    }
}

/// What a rate limit counts requests by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateKey {
    /// One bucket for the whole route.
    #[default]
    Route,
    /// One bucket per client address, after trusted-proxy resolution.
    ClientIp,
}

/// The keys of a route that its admission control is built from (see the
/// gateway's `admission` module), gathered in one value that compares with
/// `==`, so that a reload can tell whether a route's admission state (the
/// places taken, the queue) may carry over.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionConfig {
    /// `max_concurrency`.
    pub max_concurrency: Option<usize>,
    /// `max_queue`.
    pub max_queue: usize,
    /// `queue_timeout`.
    pub queue_timeout: Duration,
    /// `rate_limit`.
    pub rate_limit: Option<RateLimitConfig>,
    /// `waiting_room`.
    pub waiting_room: Option<WaitingRoomConfig>,
}

impl RouteConfig {
    /// The route's admission keys; `None` when it has no admission control.
    pub fn admission(&self) -> Option<AdmissionConfig> {
        (self.max_concurrency.is_some() || self.rate_limit.is_some()).then(|| AdmissionConfig {
            max_concurrency: self.max_concurrency,
            max_queue: self.max_queue,
            queue_timeout: self.queue_timeout,
            rate_limit: self.rate_limit.clone(),
            waiting_room: self.waiting_room.clone(),
        })
    }
}

mod defaults {
    use std::net::SocketAddr;
    use std::time::Duration;

    use stampede_balance::StrategyKind;

    pub(super) fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }
    pub(super) fn drain_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub(super) fn strategy() -> StrategyKind {
        StrategyKind::RoundRobin
    }
    pub(super) fn max_idle_per_backend() -> usize {
        256
    }
    pub(super) fn pool_idle_timeout() -> Duration {
        Duration::from_secs(50)
    }
    pub(super) fn sticky_cookie() -> String {
        "stampede_backend".to_owned()
    }
    pub(super) fn discover_interval() -> Duration {
        Duration::from_secs(5)
    }
    pub(super) fn check_interval() -> Duration {
        Duration::from_secs(2)
    }
    pub(super) fn check_timeout() -> Duration {
        Duration::from_secs(1)
    }
    pub(super) fn rise() -> u32 {
        2
    }
    pub(super) fn fall() -> u32 {
        3
    }
    pub(super) fn consecutive_failures() -> u32 {
        5
    }
    pub(super) fn base_ejection() -> Duration {
        Duration::from_secs(10)
    }
    pub(super) fn max_ejection() -> Duration {
        Duration::from_secs(300)
    }
    pub(super) fn max_share() -> f64 {
        0.5
    }
    pub(super) fn max_retries() -> u32 {
        1
    }
    pub(super) fn budget_ratio() -> f64 {
        0.2
    }
    pub(super) fn budget_floor() -> u32 {
        10
    }
    pub(super) fn max_clients() -> u64 {
        100_000
    }
    pub(super) fn queue_timeout() -> Duration {
        Duration::from_secs(1)
    }
    pub(super) fn dns_listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 5353))
    }
    pub(super) fn dns_ttl() -> Duration {
        Duration::from_secs(5)
    }
    pub(super) fn path_prefix() -> String {
        "/".to_owned()
    }
    pub(super) fn connect_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub(super) fn first_byte_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub(super) fn scheme() -> String {
        "http".to_owned()
    }
}

/// The quick flags of `stampede gateway`: one listener, one pool, one route.
#[derive(Debug, Clone, Default)]
pub struct QuickFlags {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--backend`, repeated.
    pub backends: Vec<String>,
    /// `--strategy`.
    pub strategy: Option<String>,
    /// `--admin-listen`.
    pub admin_listen: Option<String>,
    /// `--workers`.
    pub workers: Option<usize>,
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = stampede_config::read_file(path)?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        Self::parse(text, origin, Some(text))
    }

    /// `source` is the text positions refer to, when they mean something to
    /// the user (not for the TOML generated from flags).
    fn parse(text: &str, origin: &str, source: Option<&str>) -> Result<Self, ConfigError> {
        let config: Config = stampede_config::parse(text, origin, source)?;
        config
            .validate()
            .map_err(|(key, problem)| ConfigError::invalid(origin, key, problem))
    }

    /// Builds a configuration from the quick flags: one pool named
    /// `default` behind one catch-all route.
    pub fn from_flags(flags: &QuickFlags) -> Result<Self, ConfigError> {
        let mut toml = String::new();
        if let Some(listen) = &flags.listen {
            toml.push_str(&format!("listen = {}\n", quote(listen)));
        }
        if let Some(admin) = &flags.admin_listen {
            toml.push_str(&format!("admin_listen = {}\n", quote(admin)));
        }
        if let Some(workers) = flags.workers {
            toml.push_str(&format!("workers = {workers}\n"));
        }
        let backends: Vec<String> = flags.backends.iter().map(|b| quote(b)).collect();
        toml.push_str(&format!(
            "routes = [{{ pool = \"default\" }}]\n[pools.default]\nbackends = [{}]\n",
            backends.join(", ")
        ));
        if let Some(strategy) = &flags.strategy {
            toml.push_str(&format!("strategy = {}\n", quote(strategy)));
        }
        Self::parse(&toml, "flags", None).map_err(|e| match e {
            ConfigError::Invalid { key, problem, .. } => ConfigError::Invalid {
                origin: "flags".into(),
                key: flag_name(&key).to_owned(),
                problem,
            },
            other => other,
        })
    }

    /// Applies the value of `STAMPEDE_ADMIN_TOKEN` (unset or empty: the
    /// file's `admin_token` stays), checked as the file's would be.
    pub fn with_admin_token_env(mut self, value: Option<String>) -> Result<Self, ConfigError> {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            let token = AdminToken::new(&value)
                .map_err(|problem| ConfigError::invalid(ADMIN_TOKEN_ENV, "admin_token", problem))?;
            self.admin_token = Some(token);
        }
        Ok(self)
    }

    /// The number of worker threads to run (resolving 0 to the core count).
    pub fn worker_threads(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// Checks what the types alone cannot: references between sections,
    /// non-empty sets, and the certificate files `[tls]` names (which are
    /// read here). Returns the offending key and the problem.
    fn validate(mut self) -> Result<Self, (String, String)> {
        for (name, pool) in &self.pools {
            if pool.backends.is_empty() && pool.discover.is_none() {
                return Err((
                    format!("pools.{name}.backends"),
                    "the pool has no backends; list at least one \"host:port\", or find them with `discover`".into(),
                ));
            }
            if let Some(discover) = &pool.discover {
                discover
                    .validate()
                    .map_err(|(key, problem)| (format!("pools.{name}.discover.{key}"), problem))?;
            }
            if !(0.0..=1.0).contains(&pool.panic_threshold) {
                return Err((
                    format!("pools.{name}.panic_threshold"),
                    format!("must be between 0 and 1, not {}", pool.panic_threshold),
                ));
            }
            // Discovered backends are primaries.
            if pool.discover.is_none() && pool.backends.iter().all(|b| b.backup) {
                return Err((
                    format!("pools.{name}.backends"),
                    "every backend is a backup; at least one must not be".into(),
                ));
            }
            if pool.hash_on != HashOn::ClientIp && !pool.strategy.uses_hash_key() {
                return Err((
                    format!("pools.{name}.hash_on"),
                    format!(
                        "strategy `{}` does not hash; hash_on needs `consistent-hash` or `maglev`",
                        pool.strategy.name()
                    ),
                ));
            }
            if let Some(window) = pool.slow_start {
                let key = format!("pools.{name}.slow_start");
                if window.is_zero() {
                    return Err((key, "must be more than 0 (leave it out for none)".into()));
                }
                if pool.strategy.hashes() {
                    return Err((
                        key,
                        format!(
                            "strategy `{}` places requests by their key, which a slow start would move; use it with round-robin, weighted-round-robin, random, least-conn or p2c-ewma",
                            pool.strategy.name()
                        ),
                    ));
                }
            }
            if let Some(retries) = &pool.retries {
                retries
                    .validate()
                    .map_err(|(key, problem)| (format!("pools.{name}.retries.{key}"), problem))?;
            }
            if let Some(ejection) = &pool.ejection {
                ejection
                    .validate()
                    .map_err(|(key, problem)| (format!("pools.{name}.ejection.{key}"), problem))?;
            }
            if let Some(check) = &pool.health_check {
                check.validate().map_err(|(key, problem)| {
                    (format!("pools.{name}.health_check.{key}"), problem)
                })?;
            }
        }
        let other_listeners =
            !self.tcp.is_empty() || !self.redirect.is_empty() || self.dns.is_some();
        if self.routes.is_empty() && !other_listeners {
            return Err((
                "routes".into(),
                "nothing to serve: add a route (or a [[tcp]] or [[redirect]] listener, or [dns])"
                    .into(),
            ));
        }
        for (i, route) in self.routes.iter_mut().enumerate() {
            route
                .validate_target()
                .map_err(|(key, problem)| (format!("routes[{i}].{key}"), problem))?;
        }
        for (i, route) in self.routes.iter().enumerate() {
            if let Some(pool) = &route.pool {
                self.pool_named(pool, || format!("routes[{i}].pool"))?;
            }
            route
                .validate_admission()
                .and_then(|()| route.validate_edge(self.compression.as_ref()))
                .map_err(|(key, problem)| (format!("routes[{i}].{key}"), problem))?;
            if !route.path_prefix.starts_with('/') {
                return Err((
                    format!("routes[{i}].path_prefix"),
                    format!("`{}` must start with `/`", route.path_prefix),
                ));
            }
        }
        if let Some(ops) = &self.ops {
            self.pool_named(&ops.shop_pool, || "ops.shop_pool".into())?;
            if self.admin_listen.is_none() {
                return Err((
                    "ops".into(),
                    "the operations page is served on the admin listener: set admin_listen".into(),
                ));
            }
        }
        if let Some(dns) = &self.dns {
            dns.validate(&self.pools)
                .map_err(|(key, problem)| (format!("dns.{key}"), problem))?;
        }
        for (i, tcp) in self.tcp.iter().enumerate() {
            let pool = self.pool_named(&tcp.pool, || format!("tcp[{i}].pool"))?;
            tcp.validate(pool)
                .map_err(|(key, problem)| (key.scoped(i, &tcp.pool), problem))?;
        }
        for (i, redirect) in self.redirect.iter().enumerate() {
            self.pool_named(&redirect.pool, || format!("redirect[{i}].pool"))?;
            if !matches!(redirect.scheme.as_str(), "http" | "https") {
                return Err((
                    format!("redirect[{i}].scheme"),
                    format!("`{}`: expected http or https", redirect.scheme),
                ));
            }
        }
        if self.limits.max_header_bytes < 8192 {
            return Err((
                "limits.max_header_bytes".into(),
                "must be at least 8192".into(),
            ));
        }
        if let Some(tls) = &mut self.tls {
            tls.validate()
                .map_err(|(key, problem)| (format!("tls.{key}"), problem))?;
        }
        Ok(self)
    }

    /// The pool `name`, or the error naming `key` (built only on failure).
    fn pool_named(
        &self,
        name: &str,
        key: impl FnOnce() -> String,
    ) -> Result<&PoolConfig, (String, String)> {
        self.pools.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.pools.keys().map(String::as_str).collect();
            (
                key(),
                format!("no pool named `{name}` (pools: {})", known.join(", ")),
            )
        })
    }
}

/// Where a `[[tcp]]` listener's problem lies: in the listener's own key,
/// or in its pool's.
enum TcpKey {
    Own(&'static str),
    Pool(&'static str),
}

impl TcpKey {
    /// The dotted key for listener `index` in front of `pool`.
    fn scoped(self, index: usize, pool: &str) -> String {
        match self {
            Self::Own(key) => format!("tcp[{index}].{key}"),
            Self::Pool(key) => format!("pools.{pool}.{key}"),
        }
    }
}

impl TcpConfig {
    /// Checks the listener, and that its pool balances per connection: an
    /// L4 listener sees no headers, cookies or paths, only the client's
    /// address.
    fn validate(&self, pool: &PoolConfig) -> Result<(), (TcpKey, String)> {
        if self.connect_timeout.is_zero() {
            return Err((TcpKey::Own("connect_timeout"), "must be more than 0".into()));
        }
        if self.idle_timeout.is_some_and(|t| t.is_zero()) {
            return Err((
                TcpKey::Own("idle_timeout"),
                "must be more than 0 (leave it out for none)".into(),
            ));
        }
        let per_connection = "the pool serves a [[tcp]] listener, which sees no headers, \
                              cookies or paths, only the client's address";
        if pool.hash_on != HashOn::ClientIp {
            return Err((
                TcpKey::Pool("hash_on"),
                format!("{per_connection}: hash on client-ip"),
            ));
        }
        if pool.sticky.is_some() {
            return Err((
                TcpKey::Pool("sticky"),
                format!("{per_connection}: no sticky cookie can be set; use ip-hash"),
            ));
        }
        Ok(())
    }
}

/// The longest DNS TTL: answers must follow health, and a day is already
/// far beyond that.
const MAX_DNS_TTL: Duration = Duration::from_secs(24 * 60 * 60);

impl DnsConfig {
    /// Checks the names against the pools; the key returned is relative to
    /// `dns`.
    fn validate(&self, pools: &BTreeMap<String, PoolConfig>) -> Result<(), (String, String)> {
        if self.ttl.subsec_nanos() != 0 || self.ttl > MAX_DNS_TTL {
            return Err((
                "ttl".into(),
                "must be whole seconds, at most 24h (a TTL has no fractions)".into(),
            ));
        }
        if self.names.is_empty() {
            return Err((
                "names".into(),
                "no names; add at least one [[dns.names]]".into(),
            ));
        }
        for (i, entry) in self.names.iter().enumerate() {
            if let Some(first) = self.names[..i].iter().position(|n| n.name == entry.name) {
                return Err((
                    format!("names[{i}].name"),
                    format!("`{}` is already dns.names[{first}]", entry.name),
                ));
            }
            let Some(pool) = pools.get(&entry.pool) else {
                let known: Vec<&str> = pools.keys().map(String::as_str).collect();
                return Err((
                    format!("names[{i}].pool"),
                    format!(
                        "no pool named `{}` (pools: {})",
                        entry.pool,
                        known.join(", ")
                    ),
                ));
            };
            // Each query asks for one family and is picked for on its own:
            // over a mixed pool, the A and the AAAA query of one client
            // could both pick a backend of the other family and get nothing.
            let families = |v4| pool.backends.iter().any(|b| b.address.is_ipv4() == v4);
            if entry.answer == DnsAnswer::Pick && families(true) && families(false) {
                return Err((
                    format!("names[{i}].answer"),
                    format!(
                        "`pick` needs a pool of one address family; pool `{}` mixes IPv4 and IPv6 (use `all`)",
                        entry.pool
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl RouteConfig {
    /// Checks that the route is served by a pool or a directory, not both
    /// nor neither, and makes the directory canonical; the key returned is
    /// relative to the route.
    fn validate_target(&mut self) -> Result<(), (String, String)> {
        match (&self.pool, &mut self.static_dir) {
            (Some(_), None) => Ok(()),
            (None, Some(dir)) => {
                *dir = files::canonical_dir(dir).map_err(|p| ("static_dir".into(), p))?;
                if self.admission().is_some() {
                    let key = match self.max_concurrency {
                        Some(_) => "max_concurrency",
                        None => "rate_limit",
                    };
                    return Err((
                        key.into(),
                        "a static_dir route has no admission control; files are cheap to serve"
                            .into(),
                    ));
                }
                Ok(())
            }
            (Some(_), Some(_)) => Err((
                "static_dir".into(),
                "a route is served by a pool or a static_dir, not both".into(),
            )),
            (None, None) => Err((
                "pool".into(),
                "missing: name the pool that serves the route, or a static_dir".into(),
            )),
        }
    }

    /// Checks the route's admission keys; the key returned is relative to
    /// the route.
    fn validate_admission(&self) -> Result<(), (String, String)> {
        if self.max_concurrency == Some(0) {
            return Err((
                "max_concurrency".into(),
                "must be at least 1 (leave it out for no limit)".into(),
            ));
        }
        if let Some(rate_limit) = &self.rate_limit {
            rate_limit
                .validate()
                .map_err(|(key, problem)| (format!("rate_limit.{key}"), problem))?;
        }
        if let Some(room) = &self.waiting_room {
            if self.max_concurrency.is_none() {
                return Err((
                    "waiting_room".into(),
                    "a waiting room needs max_concurrency: it lets visitors in as places \
                     under that limit free up"
                        .into(),
                ));
            }
            room.validate()
                .map_err(|(key, problem)| (format!("waiting_room.{key}"), problem))?;
        }
        Ok(())
    }
}

impl RateLimitConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err((
                "rate".into(),
                format!(
                    "must be requests per second, more than 0, not {}",
                    self.rate
                ),
            ));
        }
        if self.burst == Some(0) {
            return Err(("burst".into(), "must be at least 1".into()));
        }
        if self.max_clients == 0 {
            return Err(("max_clients".into(), "must be at least 1".into()));
        }
        Ok(())
    }
}

/// Shortest `secret` of a waiting room: 128 bits as hex digits.
const MIN_SECRET_LEN: usize = 32;

impl WaitingRoomConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if self.cookie.is_empty() || !self.cookie.bytes().all(token) {
            return Err((
                "cookie".into(),
                format!(
                    "`{}` is not a cookie name (letters, digits, `-`, `_`, ...)",
                    self.cookie
                ),
            ));
        }
        if self.poll_interval < Duration::from_secs(1) {
            return Err(("poll_interval".into(), "must be at least 1s".into()));
        }
        if self.pass_time < Duration::from_secs(1) {
            return Err(("pass_time".into(), "must be at least 1s".into()));
        }
        if self.max_waiting == 0 {
            return Err(("max_waiting".into(), "must be at least 1".into()));
        }
        if self
            .secret
            .as_ref()
            .is_some_and(|s| s.len() < MIN_SECRET_LEN)
        {
            return Err((
                "secret".into(),
                format!(
                    "must be at least {MIN_SECRET_LEN} characters (e.g. `openssl rand -hex 32`)"
                ),
            ));
        }
        Ok(())
    }
}

impl RetryConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        if !(1..=MAX_RETRIES).contains(&self.max) {
            return Err((
                "max".into(),
                format!("must be 1 to {MAX_RETRIES}, not {}", self.max),
            ));
        }
        if !(0.0..=1.0).contains(&self.budget_ratio) {
            return Err((
                "budget_ratio".into(),
                format!("must be between 0 and 1, not {}", self.budget_ratio),
            ));
        }
        Ok(())
    }
}

impl DiscoverConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        let port = self.dns.rsplit_once(':').and_then(|(host, port)| {
            let port = port.parse::<u16>().ok().filter(|&p| p != 0)?;
            (!host.is_empty()).then_some(port)
        });
        if port.is_none() {
            return Err((
                "dns".into(),
                format!(
                    "`{}`: expected HOST:PORT, like shop-headless.default.svc.cluster.local:8080",
                    self.dns
                ),
            ));
        }
        if self.interval < Duration::from_secs(1) {
            return Err((
                "interval".into(),
                "must be at least 1s (each resolution asks the DNS server)".into(),
            ));
        }
        Ok(())
    }
}

impl EjectionConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        if self.consecutive_failures == 0 {
            return Err(("consecutive_failures".into(), "must be at least 1".into()));
        }
        if self.base_time.is_zero() || self.base_time > self.max_time {
            return Err((
                "base_time".into(),
                "must be more than 0 and at most max_time".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.max_share) {
            return Err((
                "max_share".into(),
                format!("must be between 0 and 1, not {}", self.max_share),
            ));
        }
        Ok(())
    }
}

impl HealthCheckConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        if let Some(path) = &self.path
            && !path.starts_with('/')
        {
            return Err(("path".into(), format!("`{path}` must start with `/`")));
        }
        if self.interval.is_zero() {
            return Err(("interval".into(), "must be more than 0".into()));
        }
        if self.timeout.is_zero() || self.timeout > self.interval {
            return Err((
                "timeout".into(),
                "must be more than 0 and at most the interval".into(),
            ));
        }
        if self.rise == 0 || self.fall == 0 {
            let key = if self.rise == 0 { "rise" } else { "fall" };
            return Err((key.into(), "must be at least 1".into()));
        }
        Ok(())
    }
}

/// Maps a key of the generated TOML back to the flag the user typed.
fn flag_name(key: &str) -> &str {
    match key.split(['.', '[']).next().unwrap_or(key) {
        "listen" => "--listen",
        "admin_listen" => "--admin-listen",
        "workers" => "--workers",
        "pools" if key.ends_with("strategy") => "--strategy",
        "pools" => "--backend",
        _ => key,
    }
}

#[cfg(test)]
mod tests;
