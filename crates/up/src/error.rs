//! Everything that can stop `stampede up`, each worded so the reader knows
//! what went wrong and what to do about it.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why the local cluster could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// The data directory could not be made or a file in it not written.
    #[error("cannot use {}: {source}; choose another --data-dir or fix its permissions", path.display())]
    DataDir {
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The `--shop-config` file is not there.
    #[error("--shop-config {}: {source}", path.display())]
    ShopConfig {
        /// The file given.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// A file `up` keeps in the data directory is not in the shape `up`
    /// writes it.
    #[error("{} is damaged ({problem}); delete it and start again", path.display())]
    DamagedFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The operating system gave no random bytes for a token or password.
    #[error("the operating system gave no random bytes: {0}")]
    Random(getrandom::Error),
    /// The gateway's port is in use already.
    #[error(
        "port {port} on 127.0.0.1 is taken ({source}); stop what uses it or choose another with --port (0 picks a free one)"
    )]
    PortTaken {
        /// The port asked for.
        port: u16,
        /// What binding it said.
        source: io::Error,
    },
    /// A child process could not be started at all.
    #[error("cannot start {name} from {}: {source}", binary.display())]
    Spawn {
        /// The child's name, such as `shop-1`.
        name: String,
        /// The program that was run.
        binary: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// A child exited while it was starting (or, for `migrate`, failed).
    #[error("{name} failed while starting ({status}): {last_line}")]
    StartFailed {
        /// The child's name.
        name: String,
        /// How it exited.
        status: String,
        /// Its last line of output, usually the reason.
        last_line: String,
    },
    /// A child did not say it was listening in time.
    #[error("{name} was not ready within {timeout:?} (its log is above, prefixed [{name}])")]
    NotReady {
        /// The child's name.
        name: String,
        /// How long `up` waited.
        timeout: Duration,
    },
    /// A child stopped on its own after the cluster was up.
    #[error("{name} stopped on its own ({status}); the other processes were stopped too")]
    ChildExited {
        /// The child's name.
        name: String,
        /// How it exited.
        status: String,
    },
    /// Some children had to be killed, or exited with an error, on the way
    /// down.
    #[error("not every process stopped cleanly: {0}")]
    UncleanStop(String),
    /// A call that seeds the demo data failed or was refused.
    #[error("seeding the demo data: {0}")]
    Seed(#[from] stampede_client::ClientError),
}
