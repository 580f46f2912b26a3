//! Routing: which pool serves a request, by Host and path prefix.
//!
//! Routes are tried most specific first: a route naming a host before one
//! that matches any host, then the longest path prefix. Prefixes match on
//! segment boundaries, so `/api` serves `/api` and `/api/orders` but not
//! `/apiary`: the surprise nginx's plain prefix `location` gives.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::admission::{Admission, Admitted, Entry, Scope};
use crate::config::RouteConfig;
use crate::error::GatewayError;
use crate::fields::Fields;
use crate::pool::Pool;

/// One route, resolved to its pool.
#[derive(Debug)]
pub(crate) struct Route {
    host: Option<String>,
    prefix: String,
    pub(crate) pool: Arc<Pool>,
    pub(crate) connect_timeout: Duration,
    pub(crate) first_byte_timeout: Duration,
    pub(crate) total_timeout: Option<Duration>,
    /// Admission control, when the route has any (see `admission`).
    admission: Option<Arc<Admission>>,
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
        previous: Option<&Route>,
    ) -> Result<Self, getrandom::Error> {
        let (host, prefix) = matched(config);
        let kept = previous
            .filter(|p| p.pool.name == pool.name)
            .and_then(|p| p.admission.as_ref());
        let admission = match config.admission() {
            Some(wanted) => Some(match kept.filter(|a| *a.config() == wanted) {
                Some(kept) => Arc::clone(kept),
                None => {
                    let scope = Scope {
                        pool: &pool.name,
                        host: host.as_deref(),
                        prefix: &prefix,
                    };
                    Arc::new(Admission::new(wanted, scope)?)
                }
            }),
            None => None,
        };
        Ok(Self {
            connect_timeout: config.connect_timeout,
            first_byte_timeout: config.first_byte_timeout,
            total_timeout: config.total_timeout,
            admission,
            host,
            prefix,
            pool,
        })
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
}

/// The routing table, sorted most specific first.
#[derive(Debug)]
pub(crate) struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub(crate) fn new(mut routes: Vec<Route>) -> Self {
        routes.sort_by_key(|r| (r.host.is_none(), std::cmp::Reverse(r.prefix.len())));
        Self { routes }
    }

    /// The routes, in matching order; workers build one client per route.
    pub(crate) fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route for the same host and path prefix as `config`, if any.
    pub(crate) fn same(&self, config: &RouteConfig) -> Option<&Route> {
        let (host, prefix) = matched(config);
        self.routes
            .iter()
            .find(|r| r.prefix == prefix && r.host == host)
    }

    /// The index of the route serving `host` (port already removed) and `path`.
    pub(crate) fn find(&self, host: Option<&str>, path: &str) -> Option<usize> {
        self.routes.iter().position(|r| r.matches(host, path))
    }
}

/// The host (lowercase) and path prefix (without a trailing `/`) a route
/// of `config` matches.
fn matched(config: &RouteConfig) -> (Option<String>, String) {
    let host = config.host.as_ref().map(|h| h.to_ascii_lowercase());
    (host, config.path_prefix.trim_end_matches('/').to_owned())
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

    #[test]
    fn strips_ports() {
        assert_eq!(host_without_port("example.com:8080"), "example.com");
        assert_eq!(host_without_port("example.com"), "example.com");
        assert_eq!(host_without_port("[::1]:8080"), "[::1]");
    }
}
