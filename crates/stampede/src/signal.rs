//! The signals that end a role: Ctrl-C (SIGINT) and SIGTERM (what
//! Kubernetes and systemd send).
//!
//! The handlers are installed before the role starts listening, so that a
//! supervisor that signals as soon as it sees the "listening" line still gets
//! a graceful shutdown rather than the default action (death, exit 143).

use std::io;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Installed handlers, for roles that run on a tokio runtime of their own.
pub(crate) struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    /// Installs the handlers now; must be called inside a tokio runtime.
    pub(crate) fn install() -> io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Completes when SIGINT or SIGTERM arrives (or has arrived since
    /// `install`).
    pub(crate) async fn recv(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
