//! Sticky sessions: a request carrying a backend's id in its cookie goes
//! back to that backend.
//!
//! Some applications keep per-user state in a backend's memory (a cart, a
//! login, a queue position in a flash sale). Affinity by hashing moves users
//! when the pool changes; a cookie naming the backend does not. The gateway
//! sets the cookie on the first response ([`Backend::id`] is its value,
//! stable across reloads) and passes it back as [`Pick::sticky`]; this
//! strategy only honours it (HAProxy `cookie SERVERID insert`, nginx
//! `sticky cookie`).
//!
//! A cookie that names no backend of this pool (a removed server, a stale or
//! forged value), or one that is unavailable, is ignored and the request
//! goes to the wrapped strategy, like HAProxy's `option redispatch`: a dead
//! backend's users lose their state rather than their service. The gateway
//! then re-issues the cookie for the backend chosen.
//!
//! The id-to-index map is built once, so a pick is one hash lookup by
//! borrowed `&str`, without allocation.

use std::collections::HashMap;
use std::sync::Arc;

use crate::{Backend, Pick, Strategy};

/// Cookie affinity: the backend named by [`Pick::sticky`] when it exists
/// and is available, otherwise whatever the wrapped strategy picks. (The
/// file's module docs explain the algorithm.)
#[derive(Debug)]
pub struct Sticky {
    inner: Box<dyn Strategy>,
    by_id: HashMap<String, usize>,
}

impl Sticky {
    /// Honours sticky cookies naming one of `backends`, and asks `inner`
    /// (built for the same backends) otherwise. If two backends share an
    /// id, the first wins.
    pub fn new(inner: Box<dyn Strategy>, backends: &[Arc<Backend>]) -> Self {
        let mut by_id = HashMap::with_capacity(backends.len());
        for (i, b) in backends.iter().enumerate() {
            by_id.entry(b.id.clone()).or_insert(i);
        }
        Self { inner, by_id }
    }
}

impl Strategy for Sticky {
    fn pick(&self, backends: &[Arc<Backend>], request: &Pick<'_>) -> Option<usize> {
        let named = request
            .sticky
            .and_then(|id| self.by_id.get(id).map(|&i| (id, i)))
            .filter(|&(id, i)| {
                backends
                    .get(i)
                    .is_some_and(|b| b.id == id && b.is_available())
            });
        match named {
            Some((_, i)) => Some(i),
            None => self.inner.pick(backends, request),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Out;

    use super::*;
    use crate::strategy::RoundRobin;
    use crate::strategy::testing::{plain, pool};

    fn sticky(backends: &[Arc<Backend>]) -> Sticky {
        Sticky::new(Box::new(RoundRobin::new(backends)), backends)
    }

    fn with_cookie(cookie: &str) -> Pick<'_> {
        Pick {
            sticky: Some(cookie),
            ..plain()
        }
    }

    #[test]
    fn honours_the_cookie() {
        let backends = pool(&[1, 1, 1]);
        let s = sticky(&backends);
        assert_eq!(backends[2].id, "127.0.0.1:9002");
        for _ in 0..10 {
            assert_eq!(s.pick(&backends, &with_cookie("127.0.0.1:9002")), Some(2));
        }
    }

    #[test]
    fn falls_back_when_the_named_backend_is_unavailable() {
        let backends = pool(&[1, 1, 1]);
        backends[1].set_out(Out::Unhealthy, true);
        let s = sticky(&backends);
        let picks: Vec<_> = (0..4)
            .map(|_| s.pick(&backends, &with_cookie("127.0.0.1:9001")).unwrap())
            .collect();
        assert_eq!(picks, [0, 2, 2, 0], "round-robin, skipping 1");
    }

    #[test]
    fn falls_back_when_the_cookie_is_unknown_or_absent() {
        let backends = pool(&[1, 1]);
        let s = sticky(&backends);
        assert_eq!(s.pick(&backends, &with_cookie("10.9.9.9:80")), Some(0));
        assert_eq!(s.pick(&backends, &with_cookie("")), Some(1));
        assert_eq!(s.pick(&backends, &plain()), Some(0));
        for b in &backends {
            b.set_out(Out::Unhealthy, true);
        }
        assert_eq!(s.pick(&backends, &with_cookie("127.0.0.1:9000")), None);
    }
}
