//! The shop node's configuration: a TOML file (`--config`), flags that
//! override it, and the admin token from `STAMPEDE_ADMIN_TOKEN`.
//!
//! Every option has a default suited to one node on a laptop except the
//! admin token, which has none on purpose: a shop without one refuses to
//! start rather than run with a guessable secret.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use stampede_config::{ConfigError, de};

/// The environment variable that holds the admin token.
pub const ADMIN_TOKEN_ENV: &str = "STAMPEDE_ADMIN_TOKEN";

/// Shortest admin token accepted: long enough not to be guessed online.
const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// A validated shop configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    #[serde(default = "defaults::listen", deserialize_with = "de::socket_addr")]
    pub listen: SocketAddr,
    /// `sqlite://PATH` or `postgres://USER@HOST/DB`.
    #[serde(default)]
    pub database_url: String,
    /// `redis://HOST:PORT/DB`: when given, sessions live in Redis (with
    /// their lifetime as TTL) instead of the store.
    #[serde(default)]
    pub redis_url: Option<String>,
    /// This node's name in logs.
    #[serde(default = "defaults::node_name")]
    pub node_name: String,
    /// Where `/metrics` and `/healthz` are served, apart from the API
    /// (none: no metrics are kept).
    #[serde(default, deserialize_with = "de::opt_socket_addr")]
    pub admin_listen: Option<SocketAddr>,
    /// A request slower than this is logged at WARN rather than INFO.
    #[serde(default = "defaults::slow_request", deserialize_with = "de::duration")]
    pub slow_request: Duration,
    /// Where ERROR log lines are reported, a Sentry DSN (none: nowhere);
    /// `--sentry-dsn` or `SENTRY_DSN` override it.
    #[serde(default)]
    pub sentry_dsn: Option<String>,
    /// The bearer token of the admin calls (or `STAMPEDE_ADMIN_TOKEN`).
    #[serde(default)]
    pub admin_token: String,
    /// Peers whose `X-Real-IP`/`X-Forwarded-For`/`X-Forwarded-Proto` are
    /// believed (the gateways in front of this node).
    #[serde(
        default = "defaults::trusted_proxies",
        deserialize_with = "de::ip_nets"
    )]
    pub trusted_proxies: Vec<IpNet>,
    /// How long in-flight requests may finish after SIGTERM.
    #[serde(default = "defaults::drain_timeout", deserialize_with = "de::duration")]
    pub drain_timeout: Duration,
    /// The store's pools and read replicas.
    #[serde(default)]
    pub database: DatabaseConfig,
    /// The reservation path.
    #[serde(default)]
    pub orders: OrdersConfig,
    /// Sessions.
    #[serde(default)]
    pub sessions: SessionsConfig,
    /// Password hashing cost.
    #[serde(default)]
    pub passwords: PasswordsConfig,
    /// Limits on failed logins.
    #[serde(default)]
    pub login_limits: LoginLimitsConfig,
    /// Request size limits.
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// `[database]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Connections this node may open.
    pub max_connections: u32,
    /// How long a request waits for a connection before `503`.
    #[serde(deserialize_with = "de::duration")]
    pub acquire_timeout: Duration,
    /// How long an unused connection stays open; zero: until it dies.
    #[serde(deserialize_with = "de::duration")]
    pub idle_timeout: Duration,
    /// How long a connection lives before it is replaced; zero: forever.
    #[serde(deserialize_with = "de::duration")]
    pub max_lifetime: Duration,
    /// PostgreSQL read replicas (`postgres://...` URLs) for the reads that
    /// may be stale; each gets a pool like the primary's.
    pub replicas: Vec<String>,
    /// A replica further behind the primary than this is skipped.
    #[serde(deserialize_with = "de::duration")]
    pub replica_max_lag: Duration,
    /// After a user's write, how long that user's reads go to the primary
    /// (with replicas only; zero: never).
    #[serde(deserialize_with = "de::duration")]
    pub read_your_writes: Duration,
}

/// `[orders]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrdersConfig {
    /// How long an unpaid reservation holds its stock.
    #[serde(deserialize_with = "de::duration")]
    pub hold: Duration,
    /// Most reservations committed in one transaction.
    pub max_batch: usize,
    /// Most reservations waiting per sku before `503 overloaded`.
    pub max_waiting: usize,
}

/// `[sessions]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    /// How long a session lasts after login.
    #[serde(deserialize_with = "de::duration")]
    pub ttl: Duration,
}

/// `[passwords]`: argon2id parameters for new hashes (stored hashes carry
/// their own, so changing these never locks anyone out).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordsConfig {
    /// Memory per hash, KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

/// `[login_limits]`: failed logins allowed per window before `429`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginLimitsConfig {
    /// The counting window.
    #[serde(deserialize_with = "de::duration")]
    pub window: Duration,
    /// Failures per username per window.
    pub failures_per_user: i64,
    /// Failures per client IP per window.
    pub failures_per_ip: i64,
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest JSON body of an ordinary call.
    pub max_body_bytes: usize,
    /// Largest JSON body of an admin call (10,000 users fit).
    pub max_admin_body_bytes: usize,
}

mod defaults {
    use std::net::SocketAddr;
    use std::time::Duration;

    use ipnet::IpNet;

    pub(super) fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8000))
    }
    pub(super) fn node_name() -> String {
        "shop".into()
    }
    pub(super) fn trusted_proxies() -> Vec<IpNet> {
        ["127.0.0.0/8", "::1/128"]
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect()
    }
    pub(super) fn drain_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub(super) fn slow_request() -> Duration {
        Duration::from_millis(500)
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
            // sqlx's defaults.
            idle_timeout: Duration::from_secs(10 * 60),
            max_lifetime: Duration::from_secs(30 * 60),
            replicas: Vec::new(),
            replica_max_lag: Duration::from_millis(500),
            read_your_writes: Duration::from_secs(5),
        }
    }
}

impl Default for OrdersConfig {
    fn default() -> Self {
        Self {
            hold: Duration::from_secs(600),
            max_batch: 512,
            max_waiting: 20_000,
        }
    }
}

impl Default for SessionsConfig {
    fn default() -> Self {
        // Django's SESSION_COOKIE_AGE: two weeks.
        Self {
            ttl: Duration::from_secs(14 * 24 * 3600),
        }
    }
}

impl Default for PasswordsConfig {
    fn default() -> Self {
        // OWASP's minimum for argon2id: 19 MiB, 2 passes, 1 lane.
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl Default for LoginLimitsConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(300),
            failures_per_user: 5,
            failures_per_ip: 100,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_admin_body_bytes: 16 * 1024 * 1024,
        }
    }
}

/// The flags of `stampede shop`, each overriding the file's key.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--database-url`.
    pub database_url: Option<String>,
    /// `--node-name`.
    pub node_name: Option<String>,
    /// `--redis-url`.
    pub redis_url: Option<String>,
    /// `--admin-listen`.
    pub admin_listen: Option<String>,
    /// `--slow-request`.
    pub slow_request: Option<Duration>,
}

impl Config {
    /// Loads the file (if any), applies the flags and the admin token from
    /// `admin_token_env` (the value of `STAMPEDE_ADMIN_TOKEN`), validates.
    pub fn load(
        file: Option<&Path>,
        flags: &Flags,
        admin_token_env: Option<String>,
    ) -> Result<Self, ConfigError> {
        let (text, origin) = match file {
            Some(path) => (
                stampede_config::read_file(path)?,
                path.display().to_string(),
            ),
            None => (String::new(), "flags".to_owned()),
        };
        let mut config: Config = stampede_config::parse(&text, &origin, Some(&text))?;
        config.apply(flags)?;
        if let Some(token) = admin_token_env.filter(|t| !t.is_empty()) {
            config.admin_token = token;
        }
        config.validate(&origin)?;
        Ok(config)
    }

    fn apply(&mut self, flags: &Flags) -> Result<(), ConfigError> {
        if let Some(listen) = &flags.listen {
            self.listen = de::parse_addr(listen)
                .map_err(|problem| ConfigError::invalid("flags", "--listen", problem))?;
        }
        if let Some(url) = &flags.database_url {
            self.database_url.clone_from(url);
        }
        if let Some(name) = &flags.node_name {
            self.node_name.clone_from(name);
        }
        if let Some(url) = &flags.redis_url {
            self.redis_url = Some(url.clone());
        }
        if let Some(admin) = &flags.admin_listen {
            let addr = de::parse_addr(admin)
                .map_err(|problem| ConfigError::invalid("flags", "--admin-listen", problem))?;
            self.admin_listen = Some(addr);
        }
        if let Some(slow) = flags.slow_request {
            self.slow_request = slow;
        }
        Ok(())
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let fail = |key: &str, problem: String| Err(ConfigError::invalid(origin, key, problem));
        if self.database_url.is_empty() {
            return fail(
                "database_url",
                "no database: pass --database-url sqlite://PATH or postgres://USER@HOST/DB".into(),
            );
        }
        if let Some(url) = &self.redis_url
            && !url.starts_with("redis://")
        {
            return fail(
                "redis_url",
                format!("`{url}` is not a Redis URL (redis://HOST:PORT/DB)"),
            );
        }
        if let Some(dsn) = &self.sentry_dsn
            && let Err(error) = stampede_telemetry::sentry::check_dsn(dsn)
        {
            return fail("sentry_dsn", error.to_string());
        }
        if self.admin_token.is_empty() {
            return fail(
                "admin_token",
                format!(
                    "no admin token: set {ADMIN_TOKEN_ENV} (or admin_token in the config file); there is no default"
                ),
            );
        }
        if self.admin_token.len() < MIN_ADMIN_TOKEN_LEN {
            return fail(
                "admin_token",
                format!("the admin token must be at least {MIN_ADMIN_TOKEN_LEN} characters"),
            );
        }
        let positive = [
            (
                "database.max_connections",
                u64::from(self.database.max_connections),
            ),
            ("orders.max_batch", self.orders.max_batch as u64),
            ("orders.max_waiting", self.orders.max_waiting as u64),
            ("passwords.iterations", u64::from(self.passwords.iterations)),
            (
                "passwords.parallelism",
                u64::from(self.passwords.parallelism),
            ),
            (
                "login_limits.failures_per_user",
                self.login_limits.failures_per_user.max(0) as u64,
            ),
            (
                "login_limits.failures_per_ip",
                self.login_limits.failures_per_ip.max(0) as u64,
            ),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return fail(key, "must be at least 1".into());
        }
        if self.passwords.memory_kib < 8 * self.passwords.parallelism {
            return fail(
                "passwords.memory_kib",
                "must be at least 8 KiB per lane (argon2's minimum)".into(),
            );
        }
        let durations = [
            ("login_limits.window", self.login_limits.window),
            ("orders.hold", self.orders.hold),
            ("sessions.ttl", self.sessions.ttl),
            ("database.replica_max_lag", self.database.replica_max_lag),
        ];
        if let Some((key, _)) = durations.iter().find(|(_, d)| d.is_zero()) {
            return fail(key, "must be longer than zero".into());
        }
        self.validate_replicas(origin)
    }

    fn validate_replicas(&self, origin: &str) -> Result<(), ConfigError> {
        let postgres =
            |url: &str| url.starts_with("postgres://") || url.starts_with("postgresql://");
        let replicas = &self.database.replicas;
        let problem = if let Some(url) = replicas.iter().find(|url| !postgres(url)) {
            format!("`{url}` is not a PostgreSQL URL (postgres://USER@HOST/DB)")
        } else if !replicas.is_empty() && !postgres(&self.database_url) {
            "read replicas need a PostgreSQL database_url (postgres://...)".to_owned()
        } else {
            return Ok(());
        };
        Err(ConfigError::invalid(origin, "database.replicas", problem))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, token: Option<&str>) -> Result<Config, String> {
        let dir = std::env::temp_dir().join(format!("stampede-shop-config-{}", fastrand_suffix()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let path = dir.join("shop.toml");
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        let result = Config::load(Some(&path), &Flags::default(), token.map(str::to_owned));
        let _ = std::fs::remove_dir_all(&dir);
        result.map_err(|e| e.to_string())
    }

    fn fastrand_suffix() -> String {
        format!("{}-{:?}", std::process::id(), std::thread::current().id()).replace(['(', ')'], "")
    }

    #[test]
    fn a_node_without_an_admin_token_refuses_to_start() {
        let error = load("database_url = \"sqlite://x.db\"", None).unwrap_err();
        assert!(
            error.contains("`admin_token`") && error.contains(ADMIN_TOKEN_ENV),
            "{error}"
        );
        let error = load(
            "database_url = \"sqlite://x.db\"\nadmin_token = \"short\"",
            None,
        )
        .unwrap_err();
        assert!(error.contains("at least 16"), "{error}");
    }

    #[test]
    fn a_redis_url_must_be_one() {
        let token = "a-token-of-16-chars";
        let base = minimal("sqlite://x.db", token);
        let config = load(
            &format!("redis_url = \"redis://127.0.0.1:6379/2\"\n{base}"),
            None,
        )
        .expect("a Redis URL");
        assert_eq!(
            config.redis_url.as_deref(),
            Some("redis://127.0.0.1:6379/2")
        );
        assert_eq!(load(&base, None).expect("none").redis_url, None);
        let error = load(&format!("redis_url = \"http://cache\"\n{base}"), None).unwrap_err();
        assert!(
            error.contains("`redis_url`") && error.contains("http://cache"),
            "{error}"
        );
    }

    fn minimal(database_url: &str, admin_token: &str) -> String {
        format!("database_url = \"{database_url}\"\nadmin_token = \"{admin_token}\"\n")
    }

    #[test]
    fn the_example_file_shows_the_defaults() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/shop.toml");
        let config = Config::load(
            Some(&example),
            &Flags::default(),
            Some("example-token-0123".into()),
        );
        let config = config.expect("examples/shop.toml is valid");
        let defaults = load(
            &minimal("sqlite://stampede-data/stampede.db", "example-token-0123"),
            None,
        )
        .unwrap();
        assert_eq!(format!("{config:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn replicas_are_postgres_urls_of_a_postgres_store() {
        let token = "a-token-of-16-chars";
        let replicas = "[database]\nreplicas = [\"postgres://u@replica/shop\"]\n";
        let config = load(
            &format!("{}{replicas}", minimal("postgres://u@primary/shop", token)),
            None,
        )
        .expect("a primary with a replica");
        assert_eq!(config.database.replicas, ["postgres://u@replica/shop"]);
        let error = load(
            &format!("{}{replicas}", minimal("sqlite://x.db", token)),
            None,
        )
        .unwrap_err();
        assert!(
            error.contains("`database.replicas`") && error.contains("PostgreSQL database_url"),
            "{error}"
        );
        let error = load(
            &format!(
                "{}[database]\nreplicas = [\"sqlite://copy.db\"]\n",
                minimal("postgres://u@primary/shop", token)
            ),
            None,
        )
        .unwrap_err();
        assert!(
            error.contains("`database.replicas`") && error.contains("sqlite://copy.db"),
            "{error}"
        );
    }

    #[test]
    fn the_environment_token_wins_over_the_file() {
        let text = minimal("sqlite://x.db", "file-token-0123456789");
        let config = load(&text, Some("env-token-0123456789")).unwrap();
        assert_eq!(config.admin_token, "env-token-0123456789");
    }

    #[test]
    fn bad_values_name_their_key() {
        let base = minimal("sqlite://x.db", "file-token-0123456789");
        for (extra, key) in [
            ("[orders]\nhold = \"forever\"", "orders.hold"),
            ("[orders]\nmax_batch = 0", "orders.max_batch"),
            ("[passwords]\nmemory_kib = 1", "passwords.memory_kib"),
            ("[limits]\nmax_body = 1", "limits"),
            ("listen = \"nowhere\"", "listen"),
            (
                "[database]\nreplica_max_lag = \"0s\"",
                "database.replica_max_lag",
            ),
        ] {
            let error = load(&format!("{base}{extra}\n"), None).unwrap_err();
            assert!(error.contains(&format!("`{key}")), "{extra}: {error}");
        }
    }
}
