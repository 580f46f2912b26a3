//! The data directory and the private files `up` keeps in it (the admin
//! token, the demo users' passwords), and the random secrets that go in them.
//!
//! Secrets are written once with `create_new` and mode 0600, so that a file
//! is never readable by other users, not even for a moment, and two `up`
//! processes racing on one data directory cannot overwrite each other's
//! secret: the second finds the first one's file and uses it.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::UpError;

/// Creates `path` (and its parents) if missing, as 0700 since it will hold
/// the database and secrets, and returns it absolute so that the URLs and
/// commands printed from it work from any folder.
pub(crate) fn data_dir(path: &Path) -> Result<PathBuf, UpError> {
    let error = |source| UpError::DataDir {
        path: path.to_owned(),
        source,
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(error)?;
    path.canonicalize().map_err(error)
}

/// `path` made absolute (the children run from the same folder, but a
/// printed command should work from anywhere), if the file exists: a
/// typo is named before any child starts.
pub(crate) fn existing(path: &Path) -> Result<PathBuf, UpError> {
    path.canonicalize().map_err(|source| UpError::ShopConfig {
        path: path.to_owned(),
        source,
    })
}

/// The contents of `path`, or `None` when there is no such file.
pub(crate) fn read_if_exists(path: &Path) -> Result<Option<String>, UpError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(UpError::DataDir {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes a new file readable only by its owner; `false` (and nothing
/// written) when the file exists already.
pub(crate) fn create_private(path: &Path, contents: &str) -> Result<bool, UpError> {
    let error = |source| UpError::DataDir {
        path: path.to_owned(),
        source,
    };
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(source) => return Err(error(source)),
    };
    let written = file
        .write_all(contents.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(source) = written {
        // A half-written secret would be read back as damaged next time.
        let _ = std::fs::remove_file(path);
        return Err(error(source));
    }
    Ok(true)
}

/// `bytes` random bytes from the operating system, as lowercase hex: fit
/// for a header, a JSON string and a shell word without any quoting.
pub(crate) fn random_hex(bytes: usize) -> Result<String, UpError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(UpError::Random)?;
    Ok(hex::encode(buf))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A new empty folder under the system's temporary directory, removed
    /// on drop.
    pub(crate) struct TempDir(pub(crate) PathBuf);

    impl TempDir {
        pub(crate) fn new() -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "stampede-up-test-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("create a temporary folder");
            Self(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    pub(crate) fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn secrets_are_hex_and_new_each_time() {
        let secret = random_hex(32).expect("random bytes");
        assert_eq!(secret.len(), 64);
        assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(secret, random_hex(32).expect("random bytes"));
    }

    #[test]
    fn private_files_are_0600_and_never_overwritten() {
        let dir = TempDir::new();
        let path = dir.0.join("secret");
        assert!(create_private(&path, "first").expect("create"));
        assert_eq!(mode(&path), 0o600);
        assert!(!create_private(&path, "second").expect("exists"));
        assert_eq!(
            read_if_exists(&path).expect("read").as_deref(),
            Some("first")
        );
        assert_eq!(read_if_exists(&dir.0.join("missing")).expect("read"), None);
    }

    #[test]
    fn the_data_dir_is_made_private_and_absolute() {
        let dir = TempDir::new();
        let nested = dir.0.join("a/b");
        let made = data_dir(&nested).expect("data dir");
        assert!(made.is_absolute());
        assert_eq!(mode(&made), 0o700);
        // An existing folder is fine too.
        assert_eq!(data_dir(&nested).expect("again"), made);
    }
}
