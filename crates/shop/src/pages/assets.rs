//! The storefront's stylesheet and script: hand-written files in
//! `crates/shop/assets/`, built into the binary, and named by their
//! content (`app.0123456789.css`) so that a cache may keep them forever
//! and a new version is a new name.
//!
//! The gateway serves them in production: `stampede up` writes them into
//! its data directory for a static route, and `stampede shop
//! --export-assets DIR` does it for other deployments. A node serves them
//! too, under the same paths, for a gateway that only proxies.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use axum::extract::Path as UrlPath;
use axum::response::{IntoResponse, Response};
use blake2::{Blake2s256, Digest};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use http::{HeaderValue, StatusCode};

/// The path prefix the pages link them under.
pub const PREFIX: &str = "/assets";

/// What a fingerprinted name may be cached for: forever, in practice.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// One file.
#[derive(Debug)]
pub struct Asset {
    /// The fingerprinted file name, such as `app.0123456789.js`.
    pub name: String,
    /// Its media type.
    pub content_type: &'static str,
    /// Its contents.
    pub body: &'static str,
}

/// Every file, in the order of [`css`], [`js`] and [`icon`].
static ASSETS: LazyLock<[Asset; 3]> = LazyLock::new(|| {
    [
        asset(
            "app",
            "css",
            "text/css; charset=utf-8",
            include_str!("../../assets/app.css"),
        ),
        asset(
            "app",
            "js",
            "text/javascript; charset=utf-8",
            include_str!("../../assets/app.js"),
        ),
        asset(
            "icon",
            "svg",
            "image/svg+xml",
            include_str!("../../assets/icon.svg"),
        ),
    ]
});

/// `stem.HASH.extension`, where the hash is ten decimal digits of the
/// contents' BLAKE2s: decimal, so that it always has a digit, which is
/// how the gateway tells a fingerprint from a word.
fn asset(stem: &str, extension: &str, content_type: &'static str, body: &'static str) -> Asset {
    let digest = Blake2s256::digest(body.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let hash = u64::from_le_bytes(first) % 10_000_000_000;
    Asset {
        name: format!("{stem}.{hash:010}.{extension}"),
        content_type,
        body,
    }
}

/// Every asset.
pub fn all() -> &'static [Asset] {
    &*ASSETS
}

/// The stylesheet's URL path.
pub(super) fn css() -> String {
    format!("{PREFIX}/{}", ASSETS[0].name)
}

/// The script's URL path.
pub(super) fn js() -> String {
    format!("{PREFIX}/{}", ASSETS[1].name)
}

/// The icon's URL path.
pub(super) fn icon() -> String {
    format!("{PREFIX}/{}", ASSETS[2].name)
}

/// Writes every asset into `dir` (created if missing), for a static route
/// of the gateway; older versions there are left for pages still open.
pub fn export(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    all()
        .iter()
        .map(|asset| {
            let path = dir.join(&asset.name);
            std::fs::write(&path, asset.body)?;
            Ok(path)
        })
        .collect()
}

/// `GET /assets/{name}`: a file by its fingerprinted name, cached forever.
pub(super) async fn serve(UrlPath(name): UrlPath<String>) -> Response {
    let Some(asset) = all().iter().find(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "no such asset\n").into_response();
    };
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
        (CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE)),
        (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    ];
    (headers, asset.body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_a_content_hash() {
        let css = &all()[0];
        assert!(css.name.starts_with("app.") && css.name.ends_with(".css"));
        let hash = css.name.trim_start_matches("app.").trim_end_matches(".css");
        assert_eq!(hash.len(), 10);
        assert!(hash.bytes().all(|b| b.is_ascii_digit()));
        let other = asset("app", "css", "text/css", "body { color: red }");
        assert_ne!(other.name, css.name, "other contents, another name");
        assert_eq!(asset("app", "css", "text/css", css.body).name, css.name);
    }

    #[test]
    fn export_writes_every_file() {
        let dir = std::env::temp_dir().join(format!("stampede-assets-{}", std::process::id()));
        let written = export(&dir).expect("export");
        assert_eq!(written.len(), all().len());
        for (path, asset) in written.iter().zip(all()) {
            assert_eq!(std::fs::read_to_string(path).expect("read"), asset.body);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
