//! Relaying a body from one socket to another as it arrives, bytes
//! unchanged, never holding more of it than one read.
//!
//! The head the gateway wrote is sent together with the first bytes of the
//! body that arrived with the head, so a small message costs one write.

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::chunked::{ChunkedError, ChunkedScanner};
use super::head::Framing;

/// Smallest free space a read is given, so bodies move in large pieces.
const READ_SPACE: usize = 16 * 1024;

/// Why a relay stopped before the end of the body.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RelayError {
    /// Reading the sender failed, or it closed before the body ended.
    #[error("the sender broke off: {0}")]
    Source(io::Error),
    /// Writing to the receiver failed.
    #[error("the receiver broke off: {0}")]
    Sink(io::Error),
    /// The body is larger than allowed.
    #[error("body larger than {0} bytes")]
    TooLarge(u64),
    /// The sender stalled for longer than allowed.
    #[error("body stalled")]
    Stalled,
    /// The exchange's deadline passed.
    #[error("deadline passed")]
    Deadline,
    /// The chunked framing is malformed.
    #[error("malformed chunked body: {0}")]
    Chunked(#[from] ChunkedError),
}

/// Limits on one body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimits {
    /// Most payload bytes.
    pub(crate) max: u64,
    /// Longest wait for the next bytes.
    pub(crate) stall: Option<Duration>,
    /// When the whole exchange must be over.
    pub(crate) deadline: Option<Instant>,
}

/// Where a body stands: how much is left, and the chunk scanner.
#[derive(Debug)]
struct Cursor {
    framing: Framing,
    remaining: u64,
    scanner: ChunkedScanner,
    payload: u64,
}

impl Cursor {
    fn new(framing: Framing) -> Self {
        Self {
            framing,
            remaining: match framing {
                Framing::Length(n) => n,
                _ => 0,
            },
            scanner: ChunkedScanner::new(),
            payload: 0,
        }
    }

    /// How many of `bytes` belong to the body, and whether it ends there.
    fn take(&mut self, bytes: &[u8], limits: &BodyLimits) -> Result<(usize, bool), RelayError> {
        let (n, payload, done) = match self.framing {
            Framing::Empty => (0, 0, true),
            Framing::Length(_) => {
                let n = self.remaining.min(bytes.len() as u64);
                self.remaining -= n;
                (n as usize, n, self.remaining == 0)
            }
            Framing::Chunked => {
                let scanned = self.scanner.scan(bytes)?;
                (scanned.consumed, scanned.payload, scanned.done)
            }
            Framing::UntilClose => (bytes.len(), bytes.len() as u64, false),
        };
        self.payload += payload;
        if self.payload > limits.max {
            return Err(RelayError::TooLarge(limits.max));
        }
        Ok((n, done))
    }
}

/// Sends `head` and then the body of `framing` from `src` to `dst`. `buf`
/// holds bytes already read from `src`; what follows the body (a pipelined
/// next message) is left in it.
pub(crate) async fn relay(
    head: &mut Vec<u8>,
    src: &mut TcpStream,
    buf: &mut BytesMut,
    dst: &mut TcpStream,
    framing: Framing,
    limits: BodyLimits,
) -> Result<(), RelayError> {
    let mut cursor = Cursor::new(framing);
    let (n, mut done) = cursor.take(buf, &limits)?;
    head.extend_from_slice(&buf[..n]);
    buf.advance(n);
    dst.write_all(head).await.map_err(RelayError::Sink)?;
    while !done {
        if read_more(src, buf, &limits).await? == 0 {
            return match framing {
                Framing::UntilClose => Ok(()),
                _ => Err(RelayError::Source(io::ErrorKind::UnexpectedEof.into())),
            };
        }
        let n;
        (n, done) = cursor.take(buf, &limits)?;
        dst.write_all(&buf[..n]).await.map_err(RelayError::Sink)?;
        buf.advance(n);
    }
    Ok(())
}

/// Reads what `src` has next into `buf` under the stall timeout and the
/// deadline; 0 at end of stream.
pub(crate) async fn read_more(
    src: &mut TcpStream,
    buf: &mut BytesMut,
    limits: &BodyLimits,
) -> Result<usize, RelayError> {
    buf.reserve(READ_SPACE);
    let read = src.read_buf(buf);
    let stall_at = limits.stall.map(|s| Instant::now() + s);
    let wait = match (stall_at, limits.deadline) {
        (Some(s), Some(d)) => Some((s.min(d), s < d)),
        (Some(s), None) => Some((s, true)),
        (None, Some(d)) => Some((d, false)),
        (None, None) => None,
    };
    let result = match wait {
        None => read.await,
        Some((at, stalled)) => match tokio::time::timeout_at(at, read).await {
            Ok(result) => result,
            Err(_) if stalled => return Err(RelayError::Stalled),
            Err(_) => return Err(RelayError::Deadline),
        },
    };
    result.map_err(RelayError::Source)
}
