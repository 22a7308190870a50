//! Where a request's body ends, found by the connection guard as the bytes pass, so pingora
//! is only ever handed the bytes of the request it is serving and the next pipelined
//! request stays with the guard (whose head checks it must pass like any other).
//!
//! A chunked body is read strictly (RFC 9112 §7.1): a size of 1 to 16 hex digits, optional
//! extensions after `;`, every line ended by CRLF, chunk data followed by CRLF, trailer
//! lines, and the empty line. pingora and httparse accept more (a bare LF inside an
//! extension, whitespace after the size); whatever either side of a proxy reads leniently is
//! where a smuggled request hides, so anything else ends the connection.

use std::fmt;

/// Longest chunk-size line (size and extensions), like pingora's 8 KiB partial chunk head.
pub const MAX_CHUNK_LINE: usize = 8 * 1024;
/// Largest trailer section.
pub const MAX_TRAILERS: usize = 16 * 1024;

/// Why a chunked body was refused. The text is safe to show the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    Size,
    LineEnd,
    LineTooLong,
    DataEnd,
    Trailer,
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChunkError::Size => "a chunk size is not 1 to 16 hex digits",
            ChunkError::LineEnd => "a chunk line does not end with CRLF",
            ChunkError::LineTooLong => "a chunk-size line is longer than 8 KiB",
            ChunkError::DataEnd => "chunk data is not followed by CRLF",
            ChunkError::Trailer => "the trailer section is malformed or larger than 16 KiB",
        })
    }
}

impl std::error::Error for ChunkError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the size digits: how many so far.
    Size {
        digits: u8,
    },
    /// Whitespace after the size, before `;` (BWS).
    SizeSpace,
    /// In the extensions, up to the CR.
    Extension,
    /// CR seen at the end of the size line; LF expected.
    SizeLf,
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line, or of the empty line that ends the body.
    TrailerStart,
    TrailerLine,
    TrailerLf,
    FinalLf,
    Done,
}

/// The end of a chunked body, found incrementally.
#[derive(Debug, Clone)]
pub struct ChunkedScan {
    state: State,
    /// Bytes of the current size line, or of the trailer section.
    line: usize,
    /// The size of the chunk whose size line is being read.
    size: u64,
}

impl Default for ChunkedScan {
    fn default() -> Self {
        ChunkedScan {
            state: State::Size { digits: 0 },
            line: 0,
            size: 0,
        }
    }
}

impl ChunkedScan {
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Read on through `bytes`, the next bytes of the body: how many of them belong to it
    /// (all of them, unless it ends among them).
    pub fn advance(&mut self, bytes: &[u8]) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < bytes.len() {
            if let State::Data { left } = self.state {
                // Chunk data is skipped, not looked at.
                let take = left.min((bytes.len() - i) as u64);
                i += take as usize;
                self.state = match left - take {
                    0 => State::DataCr,
                    left => State::Data { left },
                };
                continue;
            }
            if self.state == State::Done {
                break;
            }
            self.step(bytes[i])?;
            i += 1;
        }
        Ok(i)
    }

    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        use State::*;
        let in_size_line = matches!(self.state, Size { .. } | SizeSpace | Extension | SizeLf);
        if in_size_line {
            self.line += 1;
            if self.line > MAX_CHUNK_LINE {
                return Err(ChunkError::LineTooLong);
            }
        }
        let in_trailers = matches!(self.state, TrailerStart | TrailerLine | TrailerLf | FinalLf);
        if in_trailers {
            self.line += 1;
            if self.line > MAX_TRAILERS {
                return Err(ChunkError::Trailer);
            }
        }
        self.state = match self.state {
            Size { digits } => match (b as char).to_digit(16) {
                Some(d) if digits < 16 => {
                    // 16 digits at most: never overflows.
                    self.size = self.size << 4 | u64::from(d);
                    Size { digits: digits + 1 }
                }
                Some(_) => return Err(ChunkError::Size),
                None if digits == 0 => return Err(ChunkError::Size),
                None => match b {
                    b'\r' => SizeLf,
                    b';' => Extension,
                    b' ' | b'\t' => SizeSpace,
                    b'\n' => return Err(ChunkError::LineEnd),
                    _ => return Err(ChunkError::Size),
                },
            },
            SizeSpace => match b {
                b' ' | b'\t' => SizeSpace,
                b';' => Extension,
                _ => return Err(ChunkError::Size),
            },
            Extension => match b {
                b'\r' => SizeLf,
                b'\t' => Extension,
                b if b < 0x20 || b == 0x7f => return Err(ChunkError::LineEnd),
                _ => Extension,
            },
            SizeLf if b != b'\n' => return Err(ChunkError::LineEnd),
            SizeLf => {
                self.line = 0;
                match std::mem::take(&mut self.size) {
                    0 => TrailerStart,
                    left => Data { left },
                }
            }
            Data { .. } => unreachable!("data is skipped in advance"),
            DataCr if b == b'\r' => DataLf,
            DataLf if b == b'\n' => Size { digits: 0 },
            DataCr | DataLf => return Err(ChunkError::DataEnd),
            TrailerStart => match b {
                b'\r' => FinalLf,
                b if super::head::is_tchar(b) => TrailerLine,
                _ => return Err(ChunkError::Trailer),
            },
            TrailerLine => match b {
                b'\r' => TrailerLf,
                b'\t' => TrailerLine,
                b if b < 0x20 || b == 0x7f => return Err(ChunkError::Trailer),
                _ => TrailerLine,
            },
            TrailerLf if b == b'\n' => TrailerStart,
            FinalLf if b == b'\n' => Done,
            TrailerLf | FinalLf => return Err(ChunkError::Trailer),
            Done => Done,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The length of the body at the front of `bytes`, or why not, fed in one piece and
    /// then a byte at a time (which must agree).
    fn scan(bytes: &[u8]) -> Result<Option<usize>, ChunkError> {
        let mut whole = ChunkedScan::default();
        let n = whole.advance(bytes);
        let mut bytewise = ChunkedScan::default();
        let mut m = Ok(0);
        for i in 0..bytes.len() {
            match bytewise.advance(&bytes[i..=i]) {
                Ok(k) => m = m.map(|m| m + k),
                Err(e) => {
                    m = Err(e);
                    break;
                }
            }
            if bytewise.is_done() {
                break;
            }
        }
        assert_eq!(n, m, "one piece and byte by byte disagree on {bytes:?}");
        assert_eq!(whole.is_done(), bytewise.is_done());
        n.map(|n| whole.is_done().then_some(n))
    }

    #[test]
    fn well_formed_bodies_end_where_they_end() {
        let next = b"GET / HTTP/1.1\r\n";
        for body in [
            &b"0\r\n\r\n"[..],
            b"5\r\nhello\r\n0\r\n\r\n",
            b"5;name=value\r\nhello\r\n000\r\n\r\n",
            b"5 ;ext\r\nhello\r\n0\r\n\r\n",
            b"A\r\n0123456789\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n",
            b"0000000000000001\r\nx\r\n0\r\n\r\n",
        ] {
            let mut input = body.to_vec();
            input.extend_from_slice(next);
            assert_eq!(scan(&input), Ok(Some(body.len())), "{body:?}");
        }
        // Unfinished bodies want more.
        assert_eq!(scan(b"5\r\nhel"), Ok(None));
        assert_eq!(scan(b"0\r\nX: 1\r\n"), Ok(None));
    }

    #[test]
    fn ambiguous_chunks_are_refused() {
        for (body, want) in [
            (&b"0x5\r\nhello\r\n0\r\n\r\n"[..], ChunkError::Size),
            (b" 5\r\nhello\r\n0\r\n\r\n", ChunkError::Size),
            (b"5 \r\nhello\r\n0\r\n\r\n", ChunkError::Size),
            (b"+5\r\nhello\r\n0\r\n\r\n", ChunkError::Size),
            (b"-5\r\nhello\r\n0\r\n\r\n", ChunkError::Size),
            (b"\r\nhello\r\n0\r\n\r\n", ChunkError::Size),
            (b"10000000000000000\r\n", ChunkError::Size),
            (b"5\nhello\r\n0\r\n\r\n", ChunkError::LineEnd),
            (b"5\rhello\r\n0\r\n\r\n", ChunkError::LineEnd),
            (b"5;a\nb\r\nhello\r\n0\r\n\r\n", ChunkError::LineEnd),
            (b"5;a\x00\r\nhello\r\n0\r\n\r\n", ChunkError::LineEnd),
            (b"5\r\nhelloX\r\n0\r\n\r\n", ChunkError::DataEnd),
            (b"5\r\nhello\n0\r\n\r\n", ChunkError::DataEnd),
            (b"5\r\nhello0\r\n\r\n", ChunkError::DataEnd),
            (b"0\r\n\n", ChunkError::Trailer),
            (b"0\r\nX: 1\n\r\n", ChunkError::Trailer),
            (b"0\r\n: 1\r\n\r\n", ChunkError::Trailer),
            (b"0\r\n X: 1\r\n\r\n", ChunkError::Trailer),
            (b"0\r\nX: \x001\r\n\r\n", ChunkError::Trailer),
        ] {
            assert_eq!(scan(body), Err(want), "{body:?}");
        }
        let long = [b"5;".as_slice(), &[b'a'; MAX_CHUNK_LINE]].concat();
        assert_eq!(scan(&long), Err(ChunkError::LineTooLong));
        let mut trailers = b"0\r\n".to_vec();
        while trailers.len() <= MAX_TRAILERS + 8 {
            trailers.extend_from_slice(b"X-Long: aaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(scan(&trailers), Err(ChunkError::Trailer));
    }
}
