//! The files a static route keeps in memory: what nginx gets from its
//! `open_file_cache` and the kernel's page cache together, held as
//! [`Stored`] answers so that serving a hot file is a map lookup and one
//! write, on either path, with no system call and no blocking thread.
//!
//! A file, once looked at, is trusted for `revalidate` (`[file_cache]`);
//! then the next request for it looks again (`stat`, containment,
//! precompressed siblings), off the event loop, while any other request
//! for the same file waits for that one look rather than making its own.
//! A file whose size and modification time are unchanged keeps its
//! contents and compressed copies; only a changed one is read and
//! compressed again. Missing files are remembered too, so that a flood of
//! requests for names that do not exist costs one look per name and
//! period, not one blocking call each.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use moka::future::Cache;
use moka::ops::compute::{CompResult, Op};

use super::{Found, cache_control, look_up};
use crate::config::{CacheConfig, CompressionConfig, FileCacheConfig};
use crate::stored::{self, Stored};

/// What a route needs to read its files: shared with the blocking loads.
#[derive(Debug)]
pub(super) struct Source {
    /// Canonical (see `config::files`).
    pub(super) root: PathBuf,
    pub(super) cache: CacheConfig,
    pub(super) compression: Option<CompressionConfig>,
    pub(super) limits: FileCacheConfig,
}

/// A request path as last looked at.
#[derive(Debug)]
pub(super) struct Looked {
    checked: Instant,
    /// `None`: no such file under the root.
    pub(super) found: Option<Found>,
    /// The file's answer, when it is small enough to keep.
    pub(super) stored: Option<Arc<Stored>>,
}

/// A route's files in memory, by request path.
#[derive(Debug)]
pub(super) struct Memory {
    source: Arc<Source>,
    looked: Cache<String, Arc<Looked>>,
}

impl Memory {
    pub(super) fn new(source: Source) -> Self {
        let looked = Cache::builder()
            .max_capacity(source.limits.max_bytes)
            .weigher(|path: &String, looked: &Arc<Looked>| {
                let stored = looked.stored.as_ref().map_or(0, |s| s.weight());
                u32::try_from(path.len() + stored + 256).unwrap_or(u32::MAX)
            })
            .build();
        Self {
            source: Arc::new(source),
            looked,
        }
    }

    /// The route's `Cache-Control` settings.
    pub(super) fn cache(&self) -> &CacheConfig {
        &self.source.cache
    }

    /// The file at `path` (percent-encoded, relative to the route's
    /// prefix), looked at within the last `revalidate`.
    pub(super) async fn look(&self, path: &str) -> Arc<Looked> {
        if let Some(looked) = self.looked.get(path).await
            && self.fresh(&looked)
        {
            return looked;
        }
        let source = Arc::clone(&self.source);
        let owned = path.to_owned();
        // One look per path at a time: concurrent requests wait for it.
        let computed = self
            .looked
            .entry_by_ref(path)
            .and_compute_with(|current| async move {
                let previous = current.map(|entry| entry.into_value());
                if previous.as_ref().is_some_and(|p| self.fresh(p)) {
                    return Op::Nop;
                }
                let loaded =
                    tokio::task::spawn_blocking(move || load(&source, &owned, previous.as_deref()))
                        .await;
                match loaded {
                    Ok(looked) => Op::Put(Arc::new(looked)),
                    Err(_) => Op::Remove,
                }
            })
            .await;
        match computed {
            CompResult::Inserted(entry)
            | CompResult::ReplacedWith(entry)
            | CompResult::Unchanged(entry) => entry.into_value(),
            CompResult::Removed(_) | CompResult::StillNone(_) => Arc::new(Looked {
                checked: Instant::now(),
                found: None,
                stored: None,
            }),
        }
    }

    fn fresh(&self, looked: &Looked) -> bool {
        looked.checked.elapsed() < self.source.limits.revalidate
    }
}

/// Looks at `path` again; keeps `previous`'s contents when the file is
/// unchanged. Blocking.
fn load(source: &Source, path: &str, previous: Option<&Looked>) -> Looked {
    let found = look_up(&source.root, path);
    let stored = found.as_ref().and_then(|found| {
        let unchanged = previous
            .and_then(|p| p.found.as_ref().zip(p.stored.as_ref()))
            .filter(|(before, _)| before.same_version(found));
        match unchanged {
            Some((_, stored)) => Some(Arc::clone(stored)),
            None if found.len <= source.limits.max_file_bytes.min(source.limits.max_bytes) => {
                read(source, path, found).map(Arc::new)
            }
            None => None,
        }
    });
    Looked {
        checked: Instant::now(),
        found,
        stored,
    }
}

/// The answer for `found`, read whole with its precompressed siblings and
/// compressed as `[compression]` says; `None` when it cannot be read (it
/// is then served from disk, which reports the problem).
fn read(source: &Source, path: &str, found: &Found) -> Option<Stored> {
    let body = std::fs::read(&found.path).ok()?;
    let content_type = mime_guess::from_path(path)
        .first_raw()
        .unwrap_or("application/octet-stream");
    let fields: Vec<(HeaderName, HeaderValue)> = vec![
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
        (header::LAST_MODIFIED, stored::http_date(found.modified)),
        (header::ETAG, found.etag.clone()),
        (header::CACHE_CONTROL, cache_control(&source.cache, path)),
    ];
    let mut answer = Stored::new(fields, Bytes::from(body));
    for sibling in &found.siblings {
        let encoded = std::fs::read(&sibling.path).ok()?;
        answer = answer.with_encoded(sibling.algorithm, Bytes::from(encoded));
    }
    Some(answer.compressed(source.compression.as_ref()))
}
