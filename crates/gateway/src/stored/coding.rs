//! Content codings: which ones a client accepts (`Accept-Encoding`), which
//! types are worth compressing, and compressing a body held in memory.
//!
//! The compressors are the flate2, brotli and zstd crates that tower-http
//! itself uses through async-compression; a stored body is compressed once,
//! when it is stored, so the levels lean towards size over speed.

use std::io::Write;

use crate::config::Algorithm;
use crate::fields::Fields;

/// The codings this gateway offers, in its order of preference: brotli
/// makes the smallest text, zstd is the fastest to decode.
pub(crate) const PREFERENCE: [Algorithm; 3] = [Algorithm::Br, Algorithm::Zstd, Algorithm::Gzip];

/// The codings a request accepts, from its `Accept-Encoding`: each one's
/// quality in thousandths, `0` for not acceptable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Accepted {
    /// In the order of [`PREFERENCE`].
    quality: [u16; 3],
}

impl Accepted {
    /// What `fields` accept: each coding named with its q-value (1 when it
    /// has none), the others at the q-value of `*` if present (RFC 9110
    /// §12.5.3). A client without `Accept-Encoding` is sent the identity
    /// coding.
    pub(crate) fn of(fields: &(impl Fields + ?Sized)) -> Self {
        let mut named: [Option<u16>; 3] = [None; 3];
        let mut star = 0;
        for item in fields.tokens("accept-encoding") {
            let mut parts = item.split(|&b| b == b';');
            let coding = parts.next().unwrap_or_default().trim_ascii();
            let quality = parts.find_map(|p| quality(p.trim_ascii())).unwrap_or(1000);
            if coding == b"*" {
                star = quality;
            } else if let Some(index) = index_of(coding) {
                named[index] = Some(quality);
            }
        }
        Self {
            quality: named.map(|q| q.unwrap_or(star)),
        }
    }

    /// Whether `algorithm` is accepted.
    pub(crate) fn accepts(self, algorithm: Algorithm) -> bool {
        self.quality(algorithm) > 0
    }

    /// The quality of `algorithm`, in thousandths.
    pub(crate) fn quality(self, algorithm: Algorithm) -> u16 {
        let index = PREFERENCE.iter().position(|a| *a == algorithm);
        index.map_or(0, |i| self.quality[i])
    }
}

/// The index in [`PREFERENCE`] of a coding's name.
fn index_of(coding: &[u8]) -> Option<usize> {
    let name = match coding.to_ascii_lowercase().as_slice() {
        b"br" => Algorithm::Br,
        b"zstd" => Algorithm::Zstd,
        b"gzip" | b"x-gzip" => Algorithm::Gzip,
        _ => return None,
    };
    PREFERENCE.iter().position(|a| *a == name)
}

/// The q-value of an `Accept-Encoding` parameter, in thousandths, when it
/// is one (`q=0.5` → 500); a malformed one counts as 0.
fn quality(param: &[u8]) -> Option<u16> {
    let value = param
        .strip_prefix(b"q=")
        .or_else(|| param.strip_prefix(b"Q="))?;
    let text = std::str::from_utf8(value).ok()?;
    let parsed = text.parse::<f32>().ok().filter(|q| (0.0..=1.0).contains(q));
    Some(parsed.map_or(0, |q| (q * 1000.0).round() as u16))
}

/// The `Content-Encoding` token of `algorithm`.
pub(crate) fn token(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::Br => "br",
        Algorithm::Zstd => "zstd",
        Algorithm::Gzip => "gzip",
    }
}

/// Whether a `Content-Type` is text that compresses well: `text/*` but
/// event streams (compression would hold events back), JSON, JavaScript,
/// XML, SVG, WebAssembly. Images, video, audio, fonts in WOFF2 and
/// archives are compressed already.
pub(crate) fn compressible_type(content_type: &[u8]) -> bool {
    let essence = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii()
        .to_ascii_lowercase();
    let essence = essence.as_slice();
    (essence.starts_with(b"text/") && essence != b"text/event-stream")
        || matches!(
            essence,
            b"application/json"
                | b"application/javascript"
                | b"application/xml"
                | b"application/wasm"
                | b"image/svg+xml"
        )
        || essence.ends_with(b"+json")
        || essence.ends_with(b"+xml")
}

/// Whether an answer with `fields` is worth compressing: a compressible
/// type, at least `min_bytes` long when its length is known.
pub(crate) fn worth_compressing(fields: &(impl Fields + ?Sized), min_bytes: u64) -> bool {
    let length = fields
        .field("content-length")
        .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok());
    fields.field("content-type").is_some_and(compressible_type)
        && length.is_none_or(|n| n >= min_bytes)
}

/// `body` compressed with `algorithm`. CPU-bound: a large body belongs off
/// the event loop.
pub(crate) fn compress(algorithm: Algorithm, body: &[u8]) -> std::io::Result<Vec<u8>> {
    let out = Vec::with_capacity(body.len() / 3 + 64);
    match algorithm {
        Algorithm::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::new(6));
            encoder.write_all(body)?;
            encoder.finish()
        }
        Algorithm::Br => {
            let mut out = out;
            let params = brotli::enc::BrotliEncoderParams {
                quality: 6,
                ..Default::default()
            };
            brotli::BrotliCompress(&mut &body[..], &mut out, &params)?;
            Ok(out)
        }
        Algorithm::Zstd => zstd::bulk::compress(body, 6),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use http::{HeaderMap, HeaderValue};

    use super::*;

    fn accepted(value: &str) -> Accepted {
        let mut headers = HeaderMap::new();
        headers.insert("accept-encoding", HeaderValue::from_str(value).unwrap());
        Accepted::of(&headers)
    }

    #[test]
    fn accept_encoding_reads_names_quality_and_star() {
        let all = accepted("gzip, deflate, br, zstd");
        assert!(PREFERENCE.iter().all(|a| all.quality(*a) == 1000));
        assert_eq!(Accepted::of(&HeaderMap::new()), Accepted::default());
        let ranked = accepted("br;q=0.5, gzip");
        assert_eq!(ranked.quality(Algorithm::Br), 500);
        assert_eq!(ranked.quality(Algorithm::Gzip), 1000);
        assert!(!accepted("gzip;q=2").accepts(Algorithm::Gzip), "malformed");
        let gzip_only = accepted("br;q=0, gzip;q=0.8");
        assert!(gzip_only.accepts(Algorithm::Gzip));
        assert!(!gzip_only.accepts(Algorithm::Br));
        assert!(!gzip_only.accepts(Algorithm::Zstd));
        let star = accepted("*, zstd;q=0.000");
        assert!(star.accepts(Algorithm::Br) && !star.accepts(Algorithm::Zstd));
        assert_eq!(accepted("identity"), Accepted::default());
        assert!(accepted("GZIP;Q=0.5").accepts(Algorithm::Gzip));
        assert!(accepted("gzip;q=0.01").accepts(Algorithm::Gzip));
    }

    #[test]
    fn text_compresses_media_does_not() {
        for yes in [
            "text/html; charset=utf-8",
            "text/css",
            "application/json",
            "application/javascript",
            "image/svg+xml",
            "application/ld+json",
        ] {
            assert!(compressible_type(yes.as_bytes()), "{yes}");
        }
        for no in [
            "image/png",
            "video/mp4",
            "font/woff2",
            "application/zip",
            "text/event-stream",
        ] {
            assert!(!compressible_type(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn each_coding_round_trips() {
        let text = "a flash sale, a ticket drop, a vaccine slot; ".repeat(200);
        for algorithm in PREFERENCE {
            let packed = compress(algorithm, text.as_bytes()).unwrap();
            assert!(packed.len() < text.len() / 5, "{algorithm:?}");
            let mut unpacked = Vec::new();
            match algorithm {
                Algorithm::Gzip => {
                    flate2::read::GzDecoder::new(&packed[..])
                        .read_to_end(&mut unpacked)
                        .unwrap();
                }
                Algorithm::Br => {
                    brotli::Decompressor::new(&packed[..], 4096)
                        .read_to_end(&mut unpacked)
                        .unwrap();
                }
                Algorithm::Zstd => unpacked = zstd::bulk::decompress(&packed, text.len()).unwrap(),
            }
            assert_eq!(unpacked, text.as_bytes(), "{algorithm:?}");
        }
    }
}
