//! The signals that end a role: Ctrl-C (SIGINT) and SIGTERM (what
//! Kubernetes and systemd send).
//!
//! The handlers are installed before the role starts listening, so that a
//! supervisor that signals as soon as it sees the "listening" line still gets
//! a graceful shutdown rather than the default action (death, exit 143).

use std::io;

use tokio::runtime::Runtime;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Installed signal handlers, waiting to be waited on.
pub(crate) struct ShutdownSignal {
    runtime: Runtime,
    interrupt: Signal,
    terminate: Signal,
}

impl ShutdownSignal {
    /// Installs the handlers now; from here on SIGINT and SIGTERM are caught.
    pub(crate) fn install() -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let _context = runtime.enter();
        let interrupt = signal(SignalKind::interrupt())?;
        let terminate = signal(SignalKind::terminate())?;
        drop(_context);
        Ok(Self {
            runtime,
            interrupt,
            terminate,
        })
    }

    /// Blocks until SIGINT or SIGTERM arrives (or has arrived since `install`).
    pub(crate) fn wait(mut self) {
        self.runtime.block_on(async {
            tokio::select! {
                _ = self.interrupt.recv() => {}
                _ = self.terminate.recv() => {}
            }
        });
    }
}
