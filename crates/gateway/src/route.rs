//! Routing: which pool (or directory of static files) serves a request,
//! by Host and path prefix.
//!
//! Routes are tried most specific first: a route naming a host before one
//! that matches any host, then the longest path prefix. Prefixes match on
//! segment boundaries, so `/api` serves `/api` and `/api/orders` but not
//! `/apiary`: the surprise nginx's plain prefix `location` gives.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use crate::admission::{Admission, Admitted, Entry, Scope};
use crate::cache::ResponseCache;
use crate::compress;
use crate::config::{CompressionConfig, RouteConfig};
use crate::error::GatewayError;
use crate::fields::Fields;
use crate::files::Files;
use crate::pool::Pool;

/// What a route matches: a host (any when `None`) and a path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Matcher {
    /// Lowercase.
    host: Option<String>,
    /// Without a trailing `/` (empty for `/`).
    pub(crate) prefix: String,
}

impl Matcher {
    /// What a route of `config` matches.
    pub(crate) fn of(config: &RouteConfig) -> Self {
        Self {
            host: config.host.as_ref().map(|h| h.to_ascii_lowercase()),
            prefix: config.path_prefix.trim_end_matches('/').to_owned(),
        }
    }

    fn matches(&self, host: Option<&str>, path: &str) -> bool {
        let host_ok = match (&self.host, host) {
            (None, _) => true,
            (Some(want), Some(host)) => want.eq_ignore_ascii_case(host),
            (Some(_), None) => false,
        };
        host_ok
            && path.starts_with(&self.prefix)
            && matches!(path.as_bytes().get(self.prefix.len()), None | Some(b'/'))
    }

    /// Sorts more specific matchers first: a host before none, then the
    /// longer prefix.
    fn specificity(&self) -> (bool, std::cmp::Reverse<usize>) {
        (self.host.is_none(), std::cmp::Reverse(self.prefix.len()))
    }
}

/// One route, resolved to its pool.
#[derive(Debug)]
pub(crate) struct Route {
    matcher: Matcher,
    pub(crate) pool: Arc<Pool>,
    pub(crate) connect_timeout: Duration,
    pub(crate) first_byte_timeout: Duration,
    pub(crate) total_timeout: Option<Duration>,
    /// Admission control, when the route has any (see `admission`).
    admission: Option<Arc<Admission>>,
    /// The codings its answers are compressed with (`compress = true`).
    pub(crate) compress: Option<CompressionConfig>,
    /// The `Cache-Control` of answers that have none (see
    /// [`Route::cache_control_for`]).
    cache_control: Option<HeaderValue>,
    /// Its response cache, if it has one.
    pub(crate) cache: Option<ResponseCache>,
}

impl Route {
    /// The route of `config`, served by `pool`; fails only when no random
    /// key can be drawn for its waiting room. On a reload, `previous` is
    /// the route it replaces (same host and prefix): when its admission
    /// settings and pool are unchanged, the new route keeps its admission
    /// state, so that no place already taken, no bucket and no one waiting
    /// in line is forgotten.
    pub(crate) fn new(
        config: &RouteConfig,
        pool: Arc<Pool>,
        compression: Option<&CompressionConfig>,
        previous: Option<&Route>,
    ) -> Result<Self, getrandom::Error> {
        let matcher = Matcher::of(config);
        let kept = previous
            .filter(|p| p.pool.name == pool.name)
            .and_then(|p| p.admission.as_ref());
        let admission = match config.admission() {
            Some(wanted) => Some(match kept.filter(|a| *a.config() == wanted) {
                Some(kept) => Arc::clone(kept),
                None => {
                    let scope = Scope {
                        pool: &pool.name,
                        host: matcher.host.as_deref(),
                        prefix: &matcher.prefix,
                    };
                    Arc::new(Admission::new(wanted, scope)?)
                }
            }),
            None => None,
        };
        let compress = compression.filter(|_| config.compress).cloned();
        let cache = config.response_cache.as_ref().map(|cache| {
            let label = format!(
                "{}{}",
                matcher.host.as_deref().unwrap_or(""),
                config.path_prefix
            );
            ResponseCache::new(cache, compress.as_ref(), &pool.name, &label)
        });
        Ok(Self {
            cache_control: config
                .cache_control
                .as_deref()
                .and_then(|value| HeaderValue::from_str(value).ok()),
            compress,
            cache,
            connect_timeout: config.connect_timeout,
            first_byte_timeout: config.first_byte_timeout,
            total_timeout: config.total_timeout,
            admission,
            matcher,
            pool,
        })
    }

    /// The `Cache-Control` to add to the answer to a `method` request: the
    /// route's `cache_control`, for reads (see
    /// [`crate::cache::rules::takes_default_cache_control`] for which answers take it).
    pub(crate) fn cache_control_for(&self, method: &str) -> Option<&HeaderValue> {
        self.cache_control
            .as_ref()
            .filter(|_| matches!(method, "GET" | "HEAD"))
    }

    /// Whether the fast path must hand a `method` request with `fields`
    /// to hyper, which alone compresses and fills the cache (the fast path
    /// answers only the hits, see `h1`).
    pub(crate) fn needs_hyper(&self, method: &str, fields: &(impl Fields + ?Sized)) -> bool {
        let cached = self.cache.is_some() && matches!(method, "GET" | "HEAD");
        cached
            || self
                .compress
                .as_ref()
                .is_some_and(|compression| compress::negotiable(compression, fields))
    }

    /// Lets a request from `client` in, or says why not (see
    /// [`Admission::enter`]).
    pub(crate) fn enter(
        &self,
        client: IpAddr,
        fields: &(impl Fields + ?Sized),
    ) -> Result<Entry, GatewayError> {
        match &self.admission {
            Some(admission) => admission.enter(client, fields),
            None => Ok(Entry::default()),
        }
    }

    /// A place for one request under the route's limit (`None` when it has
    /// none; `place` when the request has one already); see
    /// [`Admission::admit`].
    pub(crate) async fn admit(&self, place: Admitted) -> Result<Admitted, GatewayError> {
        match &self.admission {
            Some(admission) => admission.admit(place).await,
            None => Ok(place),
        }
    }
}

/// What serves a request: the index of a pool's route, or a directory.
#[derive(Debug)]
pub(crate) enum Found<'a> {
    Pool(usize),
    Files(&'a Arc<Files>),
}

/// The routing table, sorted most specific first: the routes to pools,
/// and apart from them those to directories, so that the pools' routes
/// keep indices of their own (workers hold a client per route).
#[derive(Debug)]
pub(crate) struct Router {
    routes: Vec<Route>,
    files: Vec<Arc<Files>>,
}

impl Router {
    pub(crate) fn new(mut routes: Vec<Route>, mut files: Vec<Arc<Files>>) -> Self {
        routes.sort_by_key(|r| r.matcher.specificity());
        files.sort_by_key(|f| f.matcher.specificity());
        Self { routes, files }
    }

    /// The routes, in matching order; workers build one client per route.
    pub(crate) fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route for the same host and path prefix as `config`, if any.
    pub(crate) fn same(&self, config: &RouteConfig) -> Option<&Route> {
        let matcher = Matcher::of(config);
        self.routes.iter().find(|r| r.matcher == matcher)
    }

    /// What serves `host` (port already removed) and `path`: the most
    /// specific of the pools' route and the directories' that match.
    pub(crate) fn find(&self, host: Option<&str>, path: &str) -> Option<Found<'_>> {
        let pool = self
            .routes
            .iter()
            .position(|r| r.matcher.matches(host, path));
        // Most gateways serve no files: then this is one empty loop.
        let files = self.files.iter().find(|f| f.matcher.matches(host, path));
        match (pool, files) {
            (Some(i), Some(files))
                if files.matcher.specificity() < self.routes[i].matcher.specificity() =>
            {
                Some(Found::Files(files))
            }
            (Some(i), _) => Some(Found::Pool(i)),
            (None, files) => files.map(Found::Files),
        }
    }
}

/// The host part of a Host header or authority: `Example.com:8080` → `Example.com`.
pub(crate) fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split(']')
            .next()
            .map_or(host, |h| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(host: Option<&str>, prefix: &str) -> Matcher {
        Matcher {
            host: host.map(str::to_owned),
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let statics = matcher(None, "/static");
        assert!(statics.matches(None, "/static"));
        assert!(statics.matches(None, "/static/app.css"));
        assert!(!statics.matches(None, "/staticx"));
        assert!(matcher(None, "/").matches(Some("a"), "/anything"));
        assert!(!matcher(Some("a.test"), "/").matches(None, "/"));
    }

    #[test]
    fn more_specific_sorts_first() {
        let by_host = matcher(Some("a.test"), "/");
        let longer = matcher(None, "/static");
        let root = matcher(None, "/");
        assert!(by_host.specificity() < longer.specificity());
        assert!(longer.specificity() < root.specificity());
    }

    #[test]
    fn strips_ports() {
        assert_eq!(host_without_port("example.com:8080"), "example.com");
        assert_eq!(host_without_port("example.com"), "example.com");
        assert_eq!(host_without_port("[::1]:8080"), "[::1]");
    }
}
