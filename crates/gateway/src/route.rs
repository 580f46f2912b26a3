//! Routing: which pool serves a request, by Host and path prefix.
//!
//! Routes are tried most specific first: a route naming a host before one
//! that matches any host, then the longest path prefix. Prefixes match on
//! segment boundaries, so `/api` serves `/api` and `/api/orders` but not
//! `/apiary`: the surprise nginx's plain prefix `location` gives.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::admission::{Admission, Admitted};
use crate::config::RouteConfig;
use crate::error::GatewayError;
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
    pub(crate) fn new(config: &RouteConfig, pool: Arc<Pool>) -> Self {
        Self {
            host: config.host.as_ref().map(|h| h.to_ascii_lowercase()),
            prefix: config.path_prefix.trim_end_matches('/').to_owned(),
            connect_timeout: config.connect_timeout,
            first_byte_timeout: config.first_byte_timeout,
            total_timeout: config.total_timeout,
            admission: config
                .admission()
                .map(|admission| Arc::new(Admission::new(admission, &pool.name))),
            pool,
        }
    }

    /// Lets a request from `client` in, or says why not (see
    /// [`Admission::enter`]).
    pub(crate) fn enter(&self, client: IpAddr) -> Result<(), GatewayError> {
        match &self.admission {
            Some(admission) => admission.enter(client),
            None => Ok(()),
        }
    }

    /// A place for one request under the route's limit (`None` when it has
    /// none); see [`Admission::admit`].
    pub(crate) async fn admit(&self) -> Result<Admitted, GatewayError> {
        match &self.admission {
            Some(admission) => admission.admit().await,
            None => Ok(None),
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

    /// The index of the route serving `host` (port already removed) and `path`.
    pub(crate) fn find(&self, host: Option<&str>, path: &str) -> Option<usize> {
        self.routes.iter().position(|r| r.matches(host, path))
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

    #[test]
    fn strips_ports() {
        assert_eq!(host_without_port("example.com:8080"), "example.com");
        assert_eq!(host_without_port("example.com"), "example.com");
        assert_eq!(host_without_port("[::1]:8080"), "[::1]");
    }
}
