//! Starting Sentry reports for a role, from `--sentry-dsn` (or
//! `SENTRY_DSN`) or else the role's `sentry_dsn` key.

use std::process::ExitCode;

use stampede_telemetry::sentry::{self, Reports};

/// Exit code for a configuration that cannot be run (as for the roles).
const EXIT_CONFIG: u8 = 2;

/// Starts reporting to the flag's DSN, or else the file's; `None` when
/// neither is set. A bad DSN is a configuration error, exit code 2.
pub(crate) fn start(
    role: &str,
    name: &str,
    flag: Option<String>,
    file: Option<&str>,
) -> Result<Option<Reports>, ExitCode> {
    let (dsn, key) = match (flag, file) {
        (Some(dsn), _) => (dsn, "--sentry-dsn (or SENTRY_DSN)"),
        (None, Some(dsn)) => (dsn.to_owned(), "sentry_dsn"),
        (None, None) => return Ok(None),
    };
    sentry::start(&dsn, name).map(Some).map_err(|error| {
        eprintln!("stampede {role}: {key}: {error}");
        ExitCode::from(EXIT_CONFIG)
    })
}
