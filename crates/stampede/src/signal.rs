//! The signals that end a role: Ctrl-C (SIGINT) and SIGTERM (what
//! Kubernetes and systemd send).
//!
//! The handlers are installed before the role starts listening, so that a
//! supervisor that signals as soon as it sees the "listening" line still gets
//! a graceful shutdown rather than the default action (death, exit 143).

use std::io;

use tokio::runtime::Runtime;
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

/// Installed handlers with a small runtime of their own, for roles that
/// run their own threads and just block until it is time to stop.
pub(crate) struct ShutdownSignal {
    runtime: Runtime,
    signals: Signals,
}

impl ShutdownSignal {
    /// Installs the handlers now; from here on SIGINT and SIGTERM are caught.
    pub(crate) fn install() -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let signals = runtime.block_on(async { Signals::install() })?;
        Ok(Self { runtime, signals })
    }

    /// Blocks until SIGINT or SIGTERM arrives (or has arrived since `install`).
    pub(crate) fn wait(self) {
        self.runtime.block_on(self.signals.recv());
    }
}
