//! The keys of static-file routes (`routes[N].static_dir`, `routes[N].cache`)
//! and of `[compression]` and `[file_cache]`. The directory is checked, and made canonical,
//! while the file is validated: a typo in `static_dir` is refused by
//! `--check` rather than answering `404` to every request.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::de;

/// `routes[N].cache`: the `Cache-Control` of a static route's answers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// `max-age` for ordinary names: short, since the file may change
    /// under the same name.
    #[serde(deserialize_with = "de::duration")]
    pub max_age: Duration,
    /// `max-age` for fingerprinted names (`app.3f9a2c1b.css`), sent with
    /// `immutable`: a new version gets a new name.
    #[serde(deserialize_with = "de::duration")]
    pub immutable_max_age: Duration,
    /// `s-maxage`, for a CDN or shared cache in front; none by default, so
    /// that shared caches follow `max_age`.
    #[serde(deserialize_with = "de::opt_duration")]
    pub s_maxage: Option<Duration>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(10 * 60),
            immutable_max_age: Duration::from_secs(365 * 24 * 60 * 60),
            s_maxage: None,
        }
    }
}

/// `[file_cache]`: the files each static route keeps in memory, so that
/// serving one costs no system call (see the gateway's `files` module).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileCacheConfig {
    /// Memory per static route for file contents, compressed copies
    /// included; `0` serves every file from disk.
    pub max_bytes: u64,
    /// Larger files are streamed from disk instead.
    pub max_file_bytes: u64,
    /// How long a file, once looked at, is served without looking again: a
    /// file changed on disk is served as it was for at most this long (as
    /// nginx's `open_file_cache_valid`).
    #[serde(deserialize_with = "de::duration")]
    pub revalidate: Duration,
}

impl Default for FileCacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            max_file_bytes: 1024 * 1024,
            revalidate: Duration::from_secs(1),
        }
    }
}

/// `[compression]`: answers compressed on the fly for clients that accept
/// it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionConfig {
    /// Off: answers go as they are (precompressed siblings are still used).
    pub enabled: bool,
    /// Smaller answers are sent as they are: compressing them saves less
    /// than a packet and costs CPU.
    pub min_bytes: u64,
    /// The encodings offered; the client's `Accept-Encoding` chooses among
    /// them.
    pub algorithms: Vec<Algorithm>,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_bytes: 1024,
            algorithms: vec![Algorithm::Br, Algorithm::Zstd, Algorithm::Gzip],
        }
    }
}

impl CompressionConfig {
    /// Whether `algorithm` is offered.
    pub fn offers(&self, algorithm: Algorithm) -> bool {
        self.enabled && self.algorithms.contains(&algorithm)
    }

    /// Whether it offers any coding at all.
    pub fn compresses(&self) -> bool {
        self.enabled && !self.algorithms.is_empty()
    }
}

/// A content coding the gateway can compress with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Brotli.
    Br,
    /// Zstandard.
    Zstd,
    /// gzip.
    Gzip,
}

/// `dir` made absolute and canonical (symlinks resolved), so that a
/// request's file can be checked to lie under it; or the problem.
pub(super) fn canonical_dir(dir: &Path) -> Result<PathBuf, String> {
    let canonical = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    if !canonical.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_plain_file_is_no_directory() {
        assert!(canonical_dir(Path::new("/no/such/dir")).is_err());
        let file = std::env::current_exe().unwrap();
        let problem = canonical_dir(&file).unwrap_err();
        assert!(problem.contains("is not a directory"), "{problem}");
        assert!(canonical_dir(Path::new(".")).unwrap().is_absolute());
    }
}
