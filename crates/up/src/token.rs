//! The admin token the shop nodes check on `/api/v1/admin/*`.
//!
//! A shop node has no default token (the contract forbids one baked into the
//! binary), so `up` supplies one: `STAMPEDE_ADMIN_TOKEN` when it is set, so
//! that a deployment's own secret is used as is; otherwise the token in
//! `<data-dir>/admin-token`, generated (32 random bytes, hex, mode 0600) on
//! the first start and reused after, so that scripts holding it keep working
//! across restarts. The token is handed to the children through their
//! environment, never on a command line where `ps` would show it, and `up`
//! never prints it: it says where it is.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::UpError;
use crate::files;

/// The environment variable the shop reads its token from.
pub const TOKEN_VARIABLE: &str = "STAMPEDE_ADMIN_TOKEN";

/// The file name of the generated token in the data directory.
const TOKEN_FILE: &str = "admin-token";

/// Where the admin token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// The `STAMPEDE_ADMIN_TOKEN` environment variable.
    Environment,
    /// A file in the data directory.
    File {
        /// The file.
        path: PathBuf,
        /// Whether this start generated it.
        generated: bool,
    },
}

/// The token and where it came from. Its `Debug` hides the secret.
#[derive(Clone)]
pub(crate) struct AdminToken {
    secret: String,
    source: TokenSource,
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminToken")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl AdminToken {
    /// The token from `STAMPEDE_ADMIN_TOKEN`, or else from (or into) the
    /// data directory.
    pub(crate) fn load(data_dir: &Path) -> Result<Self, UpError> {
        Self::from(std::env::var(TOKEN_VARIABLE).ok(), data_dir)
    }

    fn from(variable: Option<String>, data_dir: &Path) -> Result<Self, UpError> {
        // An empty variable is a mistake rather than a token: treat it as unset.
        if let Some(secret) = variable.filter(|v| !v.trim().is_empty()) {
            return Ok(Self {
                secret,
                source: TokenSource::Environment,
            });
        }
        let path = data_dir.join(TOKEN_FILE);
        let generated = files::create_private(&path, &files::random_hex(32)?)?;
        let text = files::read_if_exists(&path)?.unwrap_or_default();
        Ok(Self {
            secret: parse(&text, &path)?,
            source: TokenSource::File { path, generated },
        })
    }

    /// A token as if from the environment, for tests.
    #[cfg(test)]
    pub(crate) fn given(secret: &str) -> Self {
        Self {
            secret: secret.to_owned(),
            source: TokenSource::Environment,
        }
    }

    /// The secret, for the children's environment and the seeding calls.
    pub(crate) fn secret(&self) -> &str {
        &self.secret
    }

    /// Where it came from.
    pub(crate) fn source(&self) -> &TokenSource {
        &self.source
    }
}

/// The token in a token file: one line of visible ASCII, since it travels
/// in an `Authorization` header.
fn parse(text: &str, path: &Path) -> Result<String, UpError> {
    let token = text.trim();
    let damaged = |problem| UpError::DamagedFile {
        path: path.to_owned(),
        problem,
    };
    if token.is_empty() {
        return Err(damaged("it is empty"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(damaged("a token is one word of visible ASCII characters"));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::tests::{TempDir, mode};

    #[test]
    fn the_variable_wins_and_no_file_is_written() {
        let dir = TempDir::new();
        let token = AdminToken::from(Some("from-env".into()), &dir.0).expect("token");
        assert_eq!(token.secret(), "from-env");
        assert_eq!(token.source(), &TokenSource::Environment);
        assert!(!dir.0.join(TOKEN_FILE).exists());
    }

    #[test]
    fn without_the_variable_a_file_is_generated_once_then_reused() {
        let dir = TempDir::new();
        let path = dir.0.join(TOKEN_FILE);
        let first = AdminToken::from(None, &dir.0).expect("generated");
        assert_eq!(
            first.source(),
            &TokenSource::File {
                path: path.clone(),
                generated: true
            }
        );
        assert_eq!(first.secret().len(), 64);
        assert_eq!(mode(&path), 0o600);

        let second = AdminToken::from(Some("  ".into()), &dir.0).expect("reused");
        assert_eq!(second.secret(), first.secret());
        assert_eq!(
            second.source(),
            &TokenSource::File {
                path,
                generated: false
            }
        );
    }

    #[test]
    fn a_hand_written_file_is_trimmed_and_checked() {
        let dir = TempDir::new();
        let path = dir.0.join(TOKEN_FILE);
        std::fs::write(&path, "my-token\n").expect("write");
        let token = AdminToken::from(None, &dir.0).expect("token");
        assert_eq!(token.secret(), "my-token");

        std::fs::write(&path, "\n").expect("write");
        let error = AdminToken::from(None, &dir.0).expect_err("empty");
        assert!(error.to_string().contains("it is empty"), "{error}");
        std::fs::write(&path, "two words").expect("write");
        assert!(AdminToken::from(None, &dir.0).is_err());
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let dir = TempDir::new();
        let token = AdminToken::from(Some("hunter2".into()), &dir.0).expect("token");
        assert!(!format!("{token:?}").contains("hunter2"));
    }
}
