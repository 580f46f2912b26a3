//! Active health checks: every backend of a pool that has a
//! `[pools.NAME.health_check]` is probed on its own schedule, and taken out
//! of (or put back into) rotation when enough results in a row say so.
//!
//! A probe is a TCP connect, or with `path` an HTTP/1.1 `GET` that must
//! answer 2xx or 3xx, each within the check's timeout. Results are counted
//! as HAProxy counts them: `fall` failures in a row take an up backend out,
//! `rise` passes in a row bring a down one back, and one result the other
//! way resets the count, so a flapping backend does not flap the pool.
//! Backends start up, as HAProxy's do: a gateway that starts in front of a
//! healthy pool serves at once, and a dead backend is out after `fall`
//! intervals.
//!
//! The checks run on a thread of their own, so a slow backend's probes
//! never queue behind client traffic (or the reverse). Taking a backend out
//! only stops new picks; requests already in flight to it finish. A reload
//! restarts the checks for the new pools; a backend that stayed starts
//! them from the state it had, so a down backend still needs `rise` passes.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http::header::{CONNECTION, HOST, USER_AGENT};
use http_body_util::Empty;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use stampede_balance::Out;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::Shared;
use crate::config::HealthCheckConfig;
use crate::pool::Pool;
use crate::server::Current;

/// Consecutive results and the state they add up to, for one backend.
#[derive(Debug)]
pub(crate) struct Verdicts {
    up: bool,
    /// Results in a row that disagree with `up`.
    against: u32,
    rise: u32,
    fall: u32,
}

impl Verdicts {
    /// Starts `up` (or down), with the pool's `rise` and `fall`.
    pub(crate) fn new(up: bool, rise: u32, fall: u32) -> Self {
        Self {
            up,
            against: 0,
            rise,
            fall,
        }
    }

    /// Counts one check's result; the new state when it changed.
    pub(crate) fn record(&mut self, passed: bool) -> Option<bool> {
        if passed == self.up {
            self.against = 0;
            return None;
        }
        self.against += 1;
        let needed = if self.up { self.fall } else { self.rise };
        if self.against < needed {
            return None;
        }
        self.up = passed;
        self.against = 0;
        Some(self.up)
    }
}

/// Checks every backend of every checked pool of the current
/// configuration, until the gateway stops.
pub(crate) fn run(mut current: Current, mut stop: watch::Receiver<bool>) -> std::io::Result<()> {
    crate::server::runtime()?.block_on(async move {
        loop {
            let checks = start(&current.borrow_and_update(), &stop);
            tokio::select! {
                changed = current.changed() => if changed.is_err() { return Ok(()) },
                _ = stop.wait_for(|stop| *stop) => return Ok(()),
            }
            // Dropping the set aborts the old configuration's checks.
            drop(checks);
        }
    })
}

/// Starts the checks of every checked pool of `shared`.
fn start(shared: &Shared, stop: &watch::Receiver<bool>) -> JoinSet<()> {
    let mut checks = JoinSet::new();
    for pool in &shared.pools {
        let Some(config) = &pool.health_check else {
            continue;
        };
        for index in 0..pool.backends.len() {
            let watched = watch_backend(Arc::clone(pool), index, config.clone(), stop.clone());
            checks.spawn(watched);
        }
    }
    checks
}

async fn watch_backend(
    pool: Arc<Pool>,
    index: usize,
    config: HealthCheckConfig,
    mut stop: watch::Receiver<bool>,
) {
    let backend = &pool.backends[index];
    let up = !backend.is_out(Out::Unhealthy);
    let mut verdicts = Verdicts::new(up, config.rise, config.fall);
    let mut ticks = tokio::time::interval(config.interval);
    // A check that overran its slot is not made up for with a burst.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let probe = probe(backend.addr, config.path.as_deref());
        let result = match tokio::time::timeout(config.timeout, probe).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", config.timeout)),
        };
        let Some(up) = verdicts.record(result.is_ok()) else {
            continue;
        };
        pool.set_out(index, Out::Unhealthy, !up);
        match result {
            Ok(()) => {
                tracing::info!(pool = %pool.name, backend = %backend.id, "Backend is up again: its health checks pass.")
            }
            Err(error) => {
                tracing::warn!(pool = %pool.name, backend = %backend.id, %error, "Backend is down: its health checks fail.")
            }
        }
    }
}

/// One check: a connect, and the `GET path` when there is one.
async fn probe(addr: SocketAddr, path: Option<&str>) -> Result<(), String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let Some(path) = path else {
        return Ok(());
    };
    let (mut sender, connection) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let request = Request::get(path)
        .header(HOST, addr.to_string())
        .header(USER_AGENT, "stampede-health-check")
        .header(CONNECTION, "close")
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    // The connection runs beside this task until the head arrives; the body
    // is not needed, and aborting the driver closes the socket.
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await;
    driver.abort();
    let response = response.map_err(|e| e.to_string())?;
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(format!("{path} answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::Verdicts;

    #[test]
    fn fall_failures_in_a_row_take_it_out_and_rise_passes_bring_it_back() {
        let mut v = Verdicts::new(true, 2, 3);
        assert_eq!(v.record(false), None);
        assert_eq!(v.record(false), None);
        assert_eq!(v.record(false), Some(false), "third failure in a row");
        assert_eq!(v.record(false), None, "already down");
        assert_eq!(v.record(true), None);
        assert_eq!(v.record(true), Some(true), "second pass in a row");
    }

    #[test]
    fn one_result_the_other_way_resets_the_count() {
        let mut v = Verdicts::new(true, 2, 2);
        for _ in 0..10 {
            assert_eq!(v.record(false), None);
            assert_eq!(v.record(true), None, "a flapping backend stays up");
        }
        assert_eq!(v.record(false), None);
        assert_eq!(v.record(false), Some(false));
        for _ in 0..10 {
            assert_eq!(v.record(true), None);
            assert_eq!(v.record(false), None, "and a flapping dead one stays down");
        }
    }
}
