//! Finding where a `Transfer-Encoding: chunked` body ends, without decoding it.
//!
//! The gateway relays HTTP/1.1 bodies byte for byte, so for a chunked body it
//! only needs two facts: where the body ends (so the message is complete and
//! the connection can carry the next one) and how many payload bytes it holds
//! (for the body size limit). [`ChunkedScanner`] gives both from the bytes as
//! they pass through. hyper's decoder would re-frame the body instead, which
//! costs a copy and an allocation per chunk; this scanner allocates nothing
//! and skips chunk data in bulk, reading only the framing byte by byte.
//!
//! The grammar is RFC 9112 §7.1:
//!
//! ```text
//! chunked-body = *chunk last-chunk trailer-section CRLF
//! chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! last-chunk   = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext    = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! ```
//!
//! A proxy that frames a body differently from the server behind it lets a
//! client smuggle a request past it, so anything ambiguous is rejected rather
//! than guessed at:
//!
//! - a bare LF, or a CR not followed by LF, anywhere in the framing;
//! - a chunk-size that is empty, has leading whitespace, a sign or `0x`, or is
//!   longer than 16 hex digits (which is exactly what fits in a `u64`);
//! - whitespace after the size that does not lead to a `;` (BWS is allowed
//!   only before an extension);
//! - more than 4096 bytes between a chunk-size and its CRLF, and a trailer
//!   section over 16384 bytes, so that neither can grow without bound.
//!
//! Extension and trailer contents are otherwise passed through unexamined.

/// A chunk-size may have at most this many hex digits: 16 of them fill a
/// `u64`, so counting digits is the overflow check.
const MAX_SIZE_DIGITS: u8 = 16;
/// The most bytes a chunk line may hold between its size and its CRLF (BWS
/// and extensions).
const MAX_EXTENSION_LEN: u16 = 4096;
/// The most bytes the trailer fields may take, CRLFs included, not counting
/// the final empty line.
const MAX_TRAILER_LEN: u16 = 16384;

/// Follows one chunked body through the pieces it arrives in.
#[derive(Debug)]
pub(crate) struct ChunkedScanner {
    state: State,
}

/// What one [`ChunkedScanner::scan`] call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scanned {
    /// How many leading bytes of the input belong to the body.
    pub(crate) consumed: usize,
    /// How many of the consumed bytes are chunk data.
    pub(crate) payload: u64,
    /// Whether the body has ended.
    pub(crate) done: bool,
}

/// Why a chunked body was rejected.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ChunkedError {
    /// A chunk-size that is empty or holds something other than hex digits.
    #[error("invalid chunk size")]
    InvalidSize,
    /// A chunk-size longer than 16 hex digits.
    #[error("chunk size overflows 64 bits")]
    SizeOverflow,
    /// A chunk line with more than 4096 bytes after its size.
    #[error("chunk extensions longer than 4096 bytes")]
    ExtensionTooLong,
    /// A trailer section larger than 16384 bytes.
    #[error("chunked trailers longer than 16384 bytes")]
    TrailerTooLong,
    /// An LF without a CR before it.
    #[error("bare LF in chunked framing")]
    BareLf,
    /// A CR not followed by LF, or chunk data not followed by CRLF.
    #[error("missing CRLF in chunked framing")]
    MissingCrlf,
}

/// Where the scanner is in the grammar.
#[derive(Debug, Clone, Copy)]
enum State {
    /// In a chunk-size: `digits` hex digits so far, worth `size`.
    Size { digits: u8, size: u64 },
    /// In BWS after the size, `len` bytes of it: only a `;` may follow.
    Bws { size: u64, len: u16 },
    /// In the extensions, `len` bytes after the size.
    Ext { size: u64, len: u16 },
    /// After the CR of a chunk line.
    SizeLf { size: u64 },
    /// In chunk data, `remaining` bytes to go.
    Data { remaining: u64 },
    /// After chunk data, before its CR.
    DataCr,
    /// After the CR following chunk data.
    DataLf,
    /// At the start of a trailer field line or of the final empty line,
    /// `len` bytes into the trailer section.
    Trailer { len: u16 },
    /// Inside a trailer field line.
    Field { len: u16 },
    /// After the CR of a trailer field line.
    TrailerLf { len: u16 },
    /// After the CR of the final empty line.
    FinalLf,
    /// The body has ended.
    Done,
    /// The body was rejected; the connection cannot be used further.
    Failed(ChunkedError),
}

impl ChunkedScanner {
    /// A scanner at the start of a chunked body.
    pub(crate) fn new() -> Self {
        let state = State::Size { digits: 0, size: 0 };
        Self { state }
    }

    /// Scans the next bytes of the body. `consumed` is how many bytes of
    /// `input` belong to the body (all of them unless the body ends inside
    /// `input`, in which case the bytes after the final CRLF belong to the
    /// next message and are not consumed); `payload` is how many of the
    /// consumed bytes are chunk data; `done` is true once the last-chunk,
    /// trailers and final CRLF have been consumed. Calling again after done
    /// returns consumed 0; calling again after an error returns the error.
    pub(crate) fn scan(&mut self, input: &[u8]) -> Result<Scanned, ChunkedError> {
        let (mut pos, mut payload) = (0, 0);
        while pos < input.len() && !matches!(self.state, State::Done | State::Failed(_)) {
            self.state = match self.state {
                State::Data { remaining } => {
                    // The hot path: skip as much chunk data as is here.
                    let available = input.len() - pos;
                    let take = usize::try_from(remaining).map_or(available, |r| r.min(available));
                    pos += take;
                    payload += take as u64;
                    match remaining - take as u64 {
                        0 => State::DataCr,
                        remaining => State::Data { remaining },
                    }
                }
                state => {
                    pos += 1;
                    step(state, input[pos - 1]).unwrap_or_else(State::Failed)
                }
            };
        }
        match self.state {
            State::Failed(error) => Err(error),
            state => Ok(Scanned {
                consumed: pos,
                payload,
                done: matches!(state, State::Done),
            }),
        }
    }

    #[cfg(test)]
    /// Whether the whole body, trailers and final CRLF included, has been seen.
    pub(crate) fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }
}

/// The state after one framing byte (`scan` handles `Data`, `Done` and
/// `Failed` itself).
fn step(state: State, byte: u8) -> Result<State, ChunkedError> {
    use ChunkedError::{BareLf, ExtensionTooLong, InvalidSize, MissingCrlf, SizeOverflow};
    let expects_lf = matches!(
        state,
        State::SizeLf { .. } | State::DataLf | State::TrailerLf { .. } | State::FinalLf
    );
    if byte == b'\n' && !expects_lf {
        return Err(BareLf);
    }
    Ok(match state {
        State::Size { digits, size } => match (char::from(byte).to_digit(16), digits) {
            (Some(_), MAX_SIZE_DIGITS) => return Err(SizeOverflow),
            (Some(digit), _) => {
                let (digits, size) = (digits + 1, size << 4 | u64::from(digit));
                State::Size { digits, size }
            }
            (None, 0) => return Err(InvalidSize),
            (None, _) if byte == b'\r' => State::SizeLf { size },
            (None, _) => return step(State::Bws { size, len: 0 }, byte),
        },
        State::Ext { size, .. } if byte == b'\r' => State::SizeLf { size },
        State::Bws { size, len } | State::Ext { size, len } => {
            if len == MAX_EXTENSION_LEN {
                return Err(ExtensionTooLong);
            }
            let len = len + 1;
            match (state, byte) {
                (State::Ext { .. }, _) | (_, b';') => State::Ext { size, len },
                (_, b' ' | b'\t') => State::Bws { size, len },
                _ => return Err(InvalidSize),
            }
        }
        State::SizeLf { size: 0 } if byte == b'\n' => State::Trailer { len: 0 },
        State::SizeLf { size } if byte == b'\n' => State::Data { remaining: size },
        State::DataCr if byte == b'\r' => State::DataLf,
        State::DataLf if byte == b'\n' => State::Size { digits: 0, size: 0 },
        State::Trailer { .. } if byte == b'\r' => State::FinalLf,
        State::Trailer { len } | State::Field { len } => match byte {
            b'\r' => State::TrailerLf { len: trailer(len)? },
            _ => State::Field { len: trailer(len)? },
        },
        State::TrailerLf { len } if byte == b'\n' => State::Trailer { len: trailer(len)? },
        State::FinalLf if byte == b'\n' => State::Done,
        State::SizeLf { .. } | State::DataCr | State::DataLf => return Err(MissingCrlf),
        State::TrailerLf { .. } | State::FinalLf => return Err(MissingCrlf),
        State::Data { .. } | State::Done | State::Failed(_) => state,
    })
}

/// One more byte of trailer section, if it still fits.
fn trailer(len: u16) -> Result<u16, ChunkedError> {
    let more = (len < MAX_TRAILER_LEN).then_some(len + 1);
    more.ok_or(ChunkedError::TrailerTooLong)
}

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::{Index, select};

    use super::*;
    use ChunkedError::*;

    type Fed = Result<(usize, u64, bool), ChunkedError>;

    /// `(consumed, payload, done)` from scanning `input`.
    fn feed(scanner: &mut ChunkedScanner, input: &[u8]) -> Fed {
        scanner.scan(input).map(|s| (s.consumed, s.payload, s.done))
    }

    fn scan(input: &[u8]) -> Fed {
        feed(&mut ChunkedScanner::new(), input)
    }

    /// The payload of a whole body, checking that all of it was consumed.
    fn payload(input: &[u8]) -> u64 {
        let (consumed, payload, done) = scan(input).unwrap();
        assert_eq!((consumed, done), (input.len(), true));
        payload
    }

    /// Encodes `chunks` with `ext` on every chunk line and `trailers` at the end.
    fn encode(chunks: &[Vec<u8>], upper: bool, ext: &str, trailers: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in chunks {
            let size = format!("{:x}", chunk.len());
            let size = if upper { size.to_uppercase() } else { size };
            out.extend_from_slice(format!("{size}{ext}\r\n").as_bytes());
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("0{ext}\r\n").as_bytes());
        for field in trailers {
            out.extend_from_slice(format!("{field}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    #[test]
    fn valid_bodies() {
        assert_eq!(payload(b"0\r\n\r\n"), 0);
        assert_eq!(payload(b"5\r\nhello\r\n0\r\n\r\n"), 5);
        let three = b"5\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n";
        assert_eq!(payload(three), 12);
        assert_eq!(payload(b"5;a=b;flag\r\nhello\r\n0;last=\"x;y\"\r\n\r\n"), 5);
        assert_eq!(payload(b"5 \t ;a\r\nhello\r\n000\r\n\r\n"), 5);
        assert_eq!(payload(b"0\r\nExpires: never\r\nX-A: b\r\n\r\n"), 0);
        let mut hex = b"A\r\n0123456789\r\n1aF\r\n".to_vec();
        hex.extend([b'\n'; 0x1af].iter().chain(b"\r\n0\r\n\r\n"));
        assert_eq!(payload(&hex), 10 + 0x1af);
        assert_eq!(scan(b"FFFFFFFFFFFFFFFF\r\n"), Ok((18, 0, false)));
    }

    #[test]
    fn leaves_the_next_message_alone() {
        let (first, second) = (b"3\r\nabc\r\n0\r\nT: 1\r\n\r\n", b"2\r\nde\r\n0\r\n\r\n");
        let mut scanner = ChunkedScanner::new();
        let both = [first.as_slice(), second].concat();
        assert_eq!(feed(&mut scanner, &both), Ok((first.len(), 3, true)));
        assert!(scanner.is_done());
        assert_eq!(feed(&mut scanner, second), Ok((0, 0, true)));
        assert_eq!(payload(second), 2);
    }

    #[test]
    fn limits() {
        let ext = |n: usize| format!("5;{}\r\nhello\r\n0\r\n\r\n", "a".repeat(n - 1));
        assert_eq!(payload(ext(4096).as_bytes()), 5);
        assert_eq!(scan(ext(4097).as_bytes()), Err(ExtensionTooLong));
        let spaces = format!("5{}", " ".repeat(4097));
        assert_eq!(scan(spaces.as_bytes()), Err(ExtensionTooLong));
        // A field line of `n` bytes, CRLF included.
        let trailer = |n: usize| format!("0\r\nX: {}\r\n\r\n", "v".repeat(n - 5));
        assert_eq!(payload(trailer(16384).as_bytes()), 0);
        assert_eq!(scan(trailer(16385).as_bytes()), Err(TrailerTooLong));
        assert_eq!(scan(b"00000000000000001\r\n"), Err(SizeOverflow));
    }

    #[test]
    fn rejects() {
        let rejected = |error, inputs: &[&str]| {
            for input in inputs {
                assert_eq!(scan(input.as_bytes()), Err(error), "{input:?}");
            }
        };
        rejected(
            InvalidSize,
            &["\r\n", ";a\r\n", " 5\r\n", "+5\r\n", "-5\r\n"],
        );
        rejected(InvalidSize, &["0x5\r\n", "g\r\n", "5 \r\n", "5 a;\r\n"]);
        rejected(BareLf, &["\n", "5\n", "5 \n", "5;a\n", "5\r\nhello\n"]);
        rejected(BareLf, &["0\r\n\n", "0\r\nX: 1\n"]);
        rejected(MissingCrlf, &["5\rX", "5\r\nhelloX", "5\r\nhello\rX"]);
        rejected(MissingCrlf, &["0\r\nX: 1\rY\r\n", "0\r\n\r\r"]);
        rejected(SizeOverflow, &["1ffffffffffffffff\r\n"]);
    }

    #[test]
    fn errors_across_pieces_stick() {
        let mut scanner = ChunkedScanner::new();
        assert_eq!(feed(&mut scanner, b"5\r"), Ok((2, 0, false)));
        assert_eq!(feed(&mut scanner, b"\nhel"), Ok((4, 3, false)));
        assert_eq!(feed(&mut scanner, b"lo\n"), Err(BareLf));
        assert_eq!(feed(&mut scanner, b"\r\n0\r\n\r\n"), Err(BareLf));
        assert!(!scanner.is_done());
    }

    proptest! {
        /// Any body cut anywhere: done exactly at its end, all of it consumed
        /// and nothing after it, payload equal to the chunk sizes.
        #[test]
        fn pieces_add_up(
            chunks in vec(vec(any::<u8>(), 1..300), 0..6),
            upper: bool,
            ext in select(vec!["", ";a", ";name=value;x", " \t;q=\"a;b\"", "\t; x = 1"]),
            trailers in vec(select(vec!["X-A: 1", "Expires: never", "e:"]), 0..3),
            next: bool,
            cuts in vec(any::<Index>(), 0..8),
        ) {
            let body = encode(&chunks, upper, ext, &trailers);
            let after: &[u8] = if next { b"GET / HTTP/1.1\r\n\r\n" } else { b"" };
            let wire = [&body, after].concat();
            let mut ends: Vec<usize> = cuts.iter().map(|cut| cut.index(wire.len() + 1)).collect();
            ends.push(wire.len());
            ends.sort_unstable();
            let mut scanner = ChunkedScanner::new();
            let (mut start, mut consumed, mut payload) = (0, 0, 0);
            for end in ends {
                let was_done = scanner.is_done();
                let scanned = scanner.scan(&wire[start..end]).unwrap();
                let expected = if was_done { 0 } else { end.min(body.len()) - start };
                prop_assert_eq!(scanned.consumed, expected);
                prop_assert_eq!(scanned.done, end >= body.len());
                consumed += scanned.consumed;
                payload += scanned.payload;
                start = end;
            }
            prop_assert_eq!(consumed, body.len());
            prop_assert_eq!(payload, chunks.iter().map(|c| c.len() as u64).sum::<u64>());
        }

        /// Garbage, mostly framing bytes, in two pieces: no panic, never more
        /// consumed than given, and an error stays an error.
        #[test]
        fn garbage_is_safe(
            bytes in vec(prop_oneof![any::<u8>(), select(b"0aAfFgx;= \t\r\n:".to_vec())], 0..256),
            cut: Index,
        ) {
            let (first, second) = bytes.split_at(cut.index(bytes.len() + 1));
            let mut scanner = ChunkedScanner::new();
            for piece in [first, second] {
                match scanner.scan(piece) {
                    Ok(scanned) => {
                        prop_assert!(scanned.consumed <= piece.len());
                        prop_assert!(scanned.payload <= scanned.consumed as u64);
                        prop_assert_eq!(scanned.done, scanner.is_done());
                    }
                    Err(error) => {
                        prop_assert_eq!(scanner.scan(b"0\r\n\r\n"), Err(error));
                        break;
                    }
                }
            }
        }
    }
}
