//! Incremental decoder for the chunked transfer coding (RFC 9112 §7.1).
//!
//! It validates and discards the body: no data is stored, and the state is a few integers,
//! so memory is bounded whatever the input. [`ChunkedDecoder::feed`] takes any split of the
//! byte stream; the result depends only on the bytes, never on how they were split, because
//! every decision is taken on one byte in a fixed state (chunk data is skipped in bulk, which
//! is equivalent). No panics on any input and no `unsafe`.
//!
//! Grammar (RFC 9112 §7.1):
//! ```text
//! chunked-body   = *chunk last-chunk trailer-section CRLF
//! chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size     = 1*HEXDIG            ; at most 16 digits (leading zeros count)
//! last-chunk     = 1*("0") [ chunk-ext ] CRLF
//! trailer-section = *( field-line CRLF )
//! ```
//! Chunk extensions are skipped as httparse skips them: after the size, optional whitespace, then
//! `;` and anything up to the CR, bounded in length. What could split one message into two for
//! another parser is still refused there: control characters and a bare LF or CR. No server
//! gives extensions a meaning, so checking their syntax guards nothing.

use super::parser::{is_field_value_byte, is_tchar};
use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedLimits {
    /// Most body bytes (sum of chunk sizes); more is 413.
    pub max_body: u64,
    /// Most bytes of chunk extensions on one chunk-size line (after the digits, before CRLF).
    pub max_chunk_ext: usize,
    /// Most bytes of trailer field lines (with their CRLFs, without the final CRLF).
    pub max_trailer_bytes: usize,
    /// Most trailer field lines.
    pub max_trailer_fields: usize,
}

impl ChunkedLimits {
    /// The configuration's defaults: `MAX_BODY_BYTES`, and the header limits for the trailer section. Chunk
    /// extensions have no variable: 1 KiB is far beyond any real use and keeps a size line short.
    pub const DEFAULT: ChunkedLimits = ChunkedLimits {
        max_body: Config::DEFAULT.max_body_bytes,
        max_chunk_ext: 1024,
        max_trailer_bytes: Config::DEFAULT.max_header_bytes,
        max_trailer_fields: Config::DEFAULT.max_header_fields,
    };
}

/// The result of one [`ChunkedDecoder::feed`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feed {
    /// Bytes of `input` that belong to the chunked body. Equal to the input length unless
    /// `done`; when `done`, the next pipelined request starts at `consumed`.
    pub consumed: usize,
    /// The whole body, with its trailer section, has been read.
    pub done: bool,
}

crate::labels::reasons! {
    /// Why a chunked body was rejected. Each variant is one rule, with its status code.
    /// Reasons are distinct from the parser's except `body_too_large`, which is the limit-rejection reason.
    pub enum ChunkedError {
        /// RFC 9112 §7.1: chunk-size not 1*HEXDIG, or junk after it.
        BadChunkSize => 400, "bad_chunk_size", "malformed chunk size";
        /// RFC 9112 §7.1: more than 16 hex digits.
        ChunkSizeTooLong => 400, "chunk_size_too_long", "chunk size too long";
        /// RFC 9112 §7.1.1: a control character in a chunk extension.
        BadChunkExt => 400, "bad_chunk_ext", "control character in chunk extension";
        /// RFC 9112 §7.1.1: chunk extensions longer than the limit.
        ChunkExtTooLong => 400, "chunk_ext_too_long", "chunk extension too long";
        /// RFC 9112 §7.1: chunk-data not followed by CRLF (more data than the size said).
        MissingDataCrlf => 400, "chunk_data_no_crlf", "chunk data not followed by CRLF";
        /// RFC 9112 §2.2: LF not preceded by CR.
        BareLf => 400, "chunked_bare_lf", "bare LF in chunked body";
        /// RFC 9112 §2.2: CR not followed by LF.
        BareCr => 400, "chunked_bare_cr", "bare CR in chunked body";
        /// RFC 9110 §15.5.14: the body is larger than the limit (413).
        BodyTooLarge => 413, "body_too_large", "request body too large", limit BodyTooLarge;
        /// RFC 9112 §7.1.2 / §5: trailer field name empty or not a token, or no colon.
        BadTrailerName => 400, "bad_trailer_name", "malformed trailer field name";
        /// RFC 9112 §5.1: whitespace between a trailer field name and the colon.
        TrailerSpaceBeforeColon => 400, "trailer_space_before_colon", "whitespace before colon in trailer field";
        /// RFC 9112 §5.2: obs-fold in the trailer section.
        TrailerObsFold => 400, "trailer_obs_fold", "obsolete line folding in trailer";
        /// RFC 9110 §5.5: NUL, CTL or DEL in a trailer field value.
        BadTrailerValue => 400, "bad_trailer_value", "invalid character in trailer field value";
        /// RFC 6585 §5: trailer section larger than the limit (431).
        TrailerTooLarge => 431, "trailer_too_large", "trailer section too large", limit HeaderTooLarge;
        /// RFC 6585 §5: more trailer fields than the limit (431).
        TooManyTrailerFields => 431, "too_many_trailer_fields", "too many trailer fields", limit TooManyFields;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first hex digit of a chunk-size.
    SizeStart,
    /// In the hex digits.
    Size,
    /// BWS after the size: a `;` must follow.
    SizeWs,
    /// After `;`: skipped up to the CR.
    Ext,
    /// CR seen at the end of the chunk-size line.
    SizeLf,
    /// In chunk-data, with this many bytes left.
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    FinalLf,
    Done,
    Failed(ChunkedError),
}

/// Decodes (validates and discards) one chunked body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    limits: ChunkedLimits,
    state: State,
    /// The chunk size being read.
    size: u64,
    size_digits: u8,
    /// Sum of the sizes of all chunks announced so far, including the current one.
    declared: u64,
    /// Body bytes read so far.
    body: u64,
    ext_len: usize,
    trailer_bytes: usize,
    trailer_fields: usize,
}

impl ChunkedDecoder {
    pub fn new(limits: ChunkedLimits) -> Self {
        ChunkedDecoder {
            limits,
            state: State::SizeStart,
            size: 0,
            size_digits: 0,
            declared: 0,
            body: 0,
            ext_len: 0,
            trailer_bytes: 0,
            trailer_fields: 0,
        }
    }

    /// Body bytes (chunk-data) read so far.
    pub fn body_len(&self) -> u64 {
        self.body
    }

    /// Feed the next bytes of the stream. After an error, every later call returns the same
    /// error; after `done`, later calls consume nothing.
    pub fn feed(&mut self, input: &[u8]) -> Result<Feed, ChunkedError> {
        let mut i = 0;
        loop {
            match self.state {
                State::Failed(e) => return Err(e),
                State::Done => return Ok(Feed { consumed: i, done: true }),
                State::Data(left) => {
                    let avail = input.len().saturating_sub(i);
                    let take = usize::try_from(left).map_or(avail, |l| l.min(avail));
                    // `take` fits in u64: it is at most `left`.
                    let taken = u64::try_from(take).unwrap_or(left);
                    i += take;
                    self.body = self.body.saturating_add(taken);
                    let left = left.saturating_sub(taken);
                    self.state = if left == 0 { State::DataCr } else { State::Data(left) };
                    if i >= input.len() {
                        return Ok(Feed { consumed: i, done: false });
                    }
                }
                _ => {
                    let Some(&b) = input.get(i) else {
                        return Ok(Feed { consumed: i, done: false });
                    };
                    i += 1;
                    if let Err(e) = self.step(b) {
                        self.state = State::Failed(e);
                        return Err(e);
                    }
                }
            }
        }
    }

    fn ext_byte(&mut self) -> Result<(), ChunkedError> {
        self.ext_len = self.ext_len.saturating_add(1);
        if self.ext_len > self.limits.max_chunk_ext { Err(ChunkedError::ChunkExtTooLong) } else { Ok(()) }
    }

    fn trailer_byte(&mut self) -> Result<(), ChunkedError> {
        self.trailer_bytes = self.trailer_bytes.saturating_add(1);
        if self.trailer_bytes > self.limits.max_trailer_bytes { Err(ChunkedError::TrailerTooLarge) } else { Ok(()) }
    }

    /// One byte in any state but Data, Done and Failed.
    fn step(&mut self, b: u8) -> Result<(), ChunkedError> {
        use ChunkedError as E;
        const CR: u8 = b'\r';
        const LF: u8 = b'\n';
        let ws = b == b' ' || b == b'\t';
        // Any LF outside the place right after a CR is a bare LF (RFC 9112 §2.2).
        let after_cr = matches!(self.state, State::SizeLf | State::DataLf | State::TrailerLf | State::FinalLf);
        if b == LF && !after_cr {
            return Err(E::BareLf);
        }
        self.state = match self.state {
            State::SizeStart | State::Size => {
                if let Some(d) = hex_value(b) {
                    self.size_digits = self.size_digits.saturating_add(1);
                    if self.size_digits > 16 {
                        return Err(E::ChunkSizeTooLong);
                    }
                    self.size = self.size.checked_mul(16).and_then(|s| s.checked_add(d)).ok_or(E::ChunkSizeTooLong)?;
                    if self.declared.saturating_add(self.size) > self.limits.max_body {
                        return Err(E::BodyTooLarge);
                    }
                    State::Size
                } else if self.state == State::SizeStart {
                    return Err(E::BadChunkSize);
                } else {
                    self.ext_len = 0;
                    match b {
                        CR => State::SizeLf,
                        b';' => {
                            self.ext_byte()?;
                            State::Ext
                        }
                        _ if ws => {
                            self.ext_byte()?;
                            State::SizeWs
                        }
                        _ => return Err(E::BadChunkSize),
                    }
                }
            }
            State::SizeWs => {
                self.ext_byte()?;
                match b {
                    b';' => State::Ext,
                    _ if ws => State::SizeWs,
                    _ => return Err(E::BadChunkSize),
                }
            }
            State::Ext => match b {
                CR => State::SizeLf,
                b'\t' | b' '..=0x7e | 0x80..=0xff => {
                    self.ext_byte()?;
                    State::Ext
                }
                _ => return Err(E::BadChunkExt),
            },
            // These states wait for the LF of a CRLF (the trailer line's, below, counts its byte first).
            State::SizeLf | State::DataLf | State::FinalLf if b != LF => return Err(E::BareCr),
            State::SizeLf => {
                self.declared = self.declared.saturating_add(self.size);
                let size = self.size;
                self.size = 0;
                self.size_digits = 0;
                if size == 0 { State::TrailerStart } else { State::Data(size) }
            }
            State::DataCr => match b {
                CR => State::DataLf,
                _ => return Err(E::MissingDataCrlf),
            },
            State::DataLf => State::SizeStart,
            State::TrailerStart => {
                if b == CR {
                    State::FinalLf
                } else {
                    self.trailer_byte()?;
                    if self.trailer_fields >= self.limits.max_trailer_fields {
                        return Err(E::TooManyTrailerFields);
                    }
                    self.trailer_fields += 1;
                    if ws {
                        return Err(E::TrailerObsFold);
                    }
                    if !is_tchar(b) {
                        return Err(E::BadTrailerName);
                    }
                    State::TrailerName
                }
            }
            State::TrailerName => {
                self.trailer_byte()?;
                match b {
                    b':' => State::TrailerValue,
                    _ if is_tchar(b) => State::TrailerName,
                    _ if ws => return Err(E::TrailerSpaceBeforeColon),
                    _ => return Err(E::BadTrailerName),
                }
            }
            State::TrailerValue => {
                self.trailer_byte()?;
                match b {
                    CR => State::TrailerLf,
                    _ if is_field_value_byte(b) => State::TrailerValue,
                    _ => return Err(E::BadTrailerValue),
                }
            }
            State::TrailerLf => {
                self.trailer_byte()?;
                if b != LF {
                    return Err(E::BareCr);
                }
                State::TrailerStart
            }
            State::FinalLf => State::Done,
            // Handled by `feed`; unreachable here, but harmless.
            s @ (State::Data(_) | State::Done | State::Failed(_)) => s,
        };
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u64> {
    char::from(b).to_digit(16).map(u64::from)
}

#[cfg(test)]
mod tests {
    use super::ChunkedError::*;
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    enum Outcome {
        /// Done after `consumed` bytes, with `body` data bytes.
        Done {
            consumed: usize,
            body: u64,
        },
        /// Every byte valid, body not finished.
        Incomplete {
            body: u64,
        },
        Failed(ChunkedError),
    }

    fn run_with(limits: ChunkedLimits, pieces: &[&[u8]]) -> Outcome {
        let mut d = ChunkedDecoder::new(limits);
        let mut total = 0;
        for piece in pieces {
            match d.feed(piece) {
                Err(e) => {
                    // The error sticks.
                    assert_eq!(d.feed(b"0\r\n\r\n"), Err(e));
                    return Outcome::Failed(e);
                }
                Ok(Feed { consumed, done }) => {
                    assert!(consumed <= piece.len());
                    total += consumed;
                    if done {
                        // Nothing more is taken after the end.
                        assert_eq!(d.feed(b"GET / HTTP/1.1\r\n"), Ok(Feed { consumed: 0, done: true }));
                        return Outcome::Done { consumed: total, body: d.body_len() };
                    }
                    assert_eq!(consumed, piece.len(), "not done, so everything is consumed");
                }
            }
        }
        Outcome::Incomplete { body: d.body_len() }
    }

    fn run(input: &[u8]) -> Outcome {
        run_with(ChunkedLimits::DEFAULT, &[input])
    }

    /// Exhaustive split invariance: byte by byte, every 2-split and every 3-split give the
    /// same outcome as feeding everything at once.
    fn assert_split_invariant(limits: ChunkedLimits, input: &[u8]) -> Outcome {
        let whole = run_with(limits, &[input]);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run_with(limits, &bytes), whole, "byte by byte: {:?}", String::from_utf8_lossy(input));
        for a in 0..=input.len() {
            let (x, y) = input.split_at(a);
            assert_eq!(run_with(limits, &[x, y]), whole, "split at {a}");
            if input.len() <= 64 {
                for b in a..=input.len() {
                    let (p, q) = (&input[..a], &input[a..b]);
                    assert_eq!(run_with(limits, &[p, q, &input[b..]]), whole, "split at {a},{b}");
                }
            }
        }
        whole
    }

    struct Case {
        rfc: &'static str,
        input: &'static [u8],
        want: Outcome,
    }

    fn done(consumed: usize, body: u64) -> Outcome {
        Outcome::Done { consumed, body }
    }

    fn cases() -> Vec<Case> {
        let c = |rfc, input, want| Case { rfc, input, want };
        vec![
            // Accepted.
            c("RFC 9112 §7.1", b"0\r\n\r\n", done(5, 0)),
            c("RFC 9112 §7.1", b"5\r\nhello\r\n0\r\n\r\n", done(15, 5)),
            c("RFC 9112 §7.1", b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", done(26, 11)),
            c("RFC 9112 §7.1", b"A\r\n0123456789\r\n0\r\n\r\n", done(20, 10)),
            c("RFC 9112 §7.1", b"a\r\n0123456789\r\n0\r\n\r\n", done(20, 10)),
            c("RFC 9112 §7.1", b"0005\r\nhello\r\n000\r\n\r\n", done(20, 5)),
            c("RFC 9112 §7.1", b"000000000000000F\r\n0123456789abcde\r\n0\r\n\r\n", done(40, 15)),
            c("RFC 9112 §7.1", b"5\r\n\r\n\r\n\r\r\n0\r\n\r\n", done(15, 5)),
            c("RFC 9112 §7.1", b"3\r\n\x00\xff\n\r\n0\r\n\r\n", done(13, 3)),
            c("RFC 9112 §7.1.1", b"5;name\r\nhello\r\n0;a=b\r\n\r\n", done(24, 5)),
            c("RFC 9112 §7.1.1", b"5 ; a = b ;c; d=\"x;\\\"y\" \t;e\r\nhello\r\n0\r\n\r\n", done(41, 5)),
            c("RFC 9112 §7.1.1", b"1;a=\"\"\r\nx\r\n0\r\n\r\n", done(16, 1)),
            c("RFC 9112 §7.1.2", b"0\r\nX-Sum: abc\r\nX-Empty:\r\n\r\n", done(27, 0)),
            c("RFC 9112 §7.1.2", b"1\r\nx\r\n0\r\nX: caf\xe9 \t1\r\n\r\n", done(23, 1)),
            // Pipelined bytes after the body are not consumed.
            c("RFC 9112 §9.3", b"1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n", done(11, 1)),
            c("RFC 9112 §9.3", b"0\r\n\r\n\r\n", done(5, 0)),
            // Incomplete but valid so far.
            c("RFC 9112 §7.1", b"", Outcome::Incomplete { body: 0 }),
            c("RFC 9112 §7.1", b"5\r\nhel", Outcome::Incomplete { body: 3 }),
            c("RFC 9112 §7.1", b"5\r\nhello\r\n0\r\nX: y\r\n", Outcome::Incomplete { body: 5 }),
            // chunk-size = 1*HEXDIG.
            c("RFC 9112 §7.1", b"\r\n\r\n", Outcome::Failed(BadChunkSize)),
            c("RFC 9112 §7.1", b"g\r\n", Outcome::Failed(BadChunkSize)),
            c("RFC 9112 §7.1", b"0x5\r\nhello\r\n0\r\n\r\n", Outcome::Failed(BadChunkSize)),
            c("RFC 9112 §7.1", b"-5\r\n", Outcome::Failed(BadChunkSize)),
            c("RFC 9112 §7.1", b"+5\r\n", Outcome::Failed(BadChunkSize)),
            c("RFC 9112 §7.1", b" 5\r\nhello\r\n0\r\n\r\n", Outcome::Failed(BadChunkSize)),
            c("RFC 9112 §7.1", b"5 \r\nhello\r\n0\r\n\r\n", Outcome::Failed(BadChunkSize)),
            c("RFC 9112 §7.1", b"5\t\r\nhello\r\n0\r\n\r\n", Outcome::Failed(BadChunkSize)),
            c("RFC 9112 §7.1", b"5x\r\nhello\r\n0\r\n\r\n", Outcome::Failed(BadChunkSize)),
            c("RFC 9112 §7.1", b"5,5\r\n", Outcome::Failed(BadChunkSize)),
            c("RFC 9112 §7.1", b"1\r\nx\r\n\r\n", Outcome::Failed(BadChunkSize)),
            c("RFC 9112 §7.1", b"00000000000000000\r\n\r\n", Outcome::Failed(ChunkSizeTooLong)),
            c("RFC 9112 §7.1", b"00000000000000001\r\n", Outcome::Failed(ChunkSizeTooLong)),
            // Chunk extensions: skipped whatever their syntax, but never with a control character in them.
            c("RFC 9112 §7.1.1", b"5;\r\nhello\r\n0\r\n\r\n", done(16, 5)),
            c("RFC 9112 §7.1.1", b"5;a \r\nhello\r\n0\r\n\r\n", done(18, 5)),
            c("RFC 9112 §7.1.1", b"5;a=\r\nhello\r\n0\r\n\r\n", done(18, 5)),
            c("RFC 9112 §7.1.1", b"5;a=b \r\nhello\r\n0\r\n\r\n", done(20, 5)),
            c("RFC 9112 §7.1.1", b"5;=b\r\nhello\r\n0\r\n\r\n", done(18, 5)),
            c("RFC 9112 §7.1.1", b"5;a=b=c\r\nhello\r\n0\r\n\r\n", done(21, 5)),
            c("RFC 9112 §7.1.1", b"5;a=\"b\r\nhello\r\n0\r\n\r\n", done(20, 5)),
            c("RFC 9112 §7.1.1", b"5;a=\"b\"c\r\nhello\r\n0\r\n\r\n", done(22, 5)),
            c("RFC 9112 §7.1.1", b"5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n", Outcome::Failed(BadChunkExt)),
            c("RFC 9112 §7.1.1", b"5;a=\"\\\x00\"\r\nhello\r\n0\r\n\r\n", Outcome::Failed(BadChunkExt)),
            c("RFC 9112 §7.1.1", b"5;a\x00\r\nhello\r\n0\r\n\r\n", Outcome::Failed(BadChunkExt)),
            c("RFC 9112 §7.1.1", b"5;a=b,c\r\nhello\r\n0\r\n\r\n", done(21, 5)),
            // Line endings.
            c("RFC 9112 §2.2", b"5\nhello\r\n0\r\n\r\n", Outcome::Failed(BareLf)),
            c("RFC 9112 §2.2", b"5\r\nhello\n0\r\n\r\n", Outcome::Failed(BareLf)),
            c("RFC 9112 §2.2", b"5\r\nhello\r\n0\n\r\n", Outcome::Failed(BareLf)),
            c("RFC 9112 §2.2", b"5\r\nhello\r\n0\r\n\n", Outcome::Failed(BareLf)),
            c("RFC 9112 §2.2", b"5;a\nhello\r\n0\r\n\r\n", Outcome::Failed(BareLf)),
            c("RFC 9112 §2.2", b"0\r\nX: y\n\r\n", Outcome::Failed(BareLf)),
            c("RFC 9112 §2.2", b"5\rhello\r\n0\r\n\r\n", Outcome::Failed(BareCr)),
            c("RFC 9112 §2.2", b"5\r\nhello\rx", Outcome::Failed(BareCr)),
            c("RFC 9112 §2.2", b"0\r\nX: y\rz\r\n\r\n", Outcome::Failed(BareCr)),
            c("RFC 9112 §2.2", b"0\r\n\rx", Outcome::Failed(BareCr)),
            // chunk-data is exactly chunk-size bytes, then CRLF.
            c("RFC 9112 §7.1", b"3\r\nhello\r\n0\r\n\r\n", Outcome::Failed(MissingDataCrlf)),
            c("RFC 9112 §7.1", b"5\r\nhelloX\r\n0\r\n\r\n", Outcome::Failed(MissingDataCrlf)),
            c("RFC 9112 §7.1", b"5\r\nhello0\r\n\r\n", Outcome::Failed(MissingDataCrlf)),
            // Trailer section: field lines like header fields.
            c("RFC 9112 §5", b"0\r\n: v\r\n\r\n", Outcome::Failed(BadTrailerName)),
            c("RFC 9112 §5", b"0\r\nNoColon\r\n\r\n", Outcome::Failed(BadTrailerName)),
            c("RFC 9112 §5", b"0\r\nX(y): v\r\n\r\n", Outcome::Failed(BadTrailerName)),
            c("RFC 9112 §5.1", b"0\r\nX : v\r\n\r\n", Outcome::Failed(TrailerSpaceBeforeColon)),
            c("RFC 9112 §5.2", b"0\r\nX: v\r\n w\r\n\r\n", Outcome::Failed(TrailerObsFold)),
            c("RFC 9112 §5.2", b"0\r\n\tX: v\r\n\r\n", Outcome::Failed(TrailerObsFold)),
            c("RFC 9110 §5.5", b"0\r\nX: a\x00b\r\n\r\n", Outcome::Failed(BadTrailerValue)),
            c("RFC 9110 §5.5", b"0\r\nX: a\x7f\r\n\r\n", Outcome::Failed(BadTrailerValue)),
        ]
    }

    #[test]
    fn table_with_exhaustive_splits() {
        for case in cases() {
            let got = assert_split_invariant(ChunkedLimits::DEFAULT, case.input);
            assert_eq!(got, case.want, "{}: {:?}", case.rfc, String::from_utf8_lossy(case.input));
        }
    }

    fn limits() -> ChunkedLimits {
        ChunkedLimits { max_body: 10, max_chunk_ext: 8, max_trailer_bytes: 16, max_trailer_fields: 2 }
    }

    #[test]
    fn limits_with_exhaustive_splits() {
        let l = limits();
        let check = |input: &[u8], want: Outcome| {
            assert_eq!(assert_split_invariant(l, input), want, "{:?}", String::from_utf8_lossy(input));
        };
        // RFC 9110 §15.5.14: 10 bytes is the cap; 11 is refused at the size, before any data.
        check(b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", done(25, 10));
        check(b"5\r\nhello\r\n6\r\n", Outcome::Failed(BodyTooLarge));
        check(b"B\r\n", Outcome::Failed(BodyTooLarge));
        check(b"00000B", Outcome::Failed(BodyTooLarge));
        check(b"ffffffffffffffff\r\n", Outcome::Failed(BodyTooLarge));
        // RFC 9112 §7.1: with no body cap, 16 hex digits still cannot overflow and 17 are refused.
        let open = ChunkedLimits { max_body: u64::MAX, ..l };
        assert_eq!(run_with(open, &[b"ffffffffffffffff\r\nabc"]), Outcome::Incomplete { body: 3 });
        assert_eq!(assert_split_invariant(open, b"10000000000000000\r\n"), Outcome::Failed(ChunkSizeTooLong));
        // RFC 9112 §7.1.1: extensions of 8 bytes (";abc=def") are fine, 9 are not.
        check(b"1;abc=def\r\nx\r\n0\r\n\r\n", done(19, 1));
        check(b"1;abc=defg\r\nx\r\n0\r\n\r\n", Outcome::Failed(ChunkExtTooLong));
        check(b"1        ;a\r\n", Outcome::Failed(ChunkExtTooLong));
        check(b"1;\"\"\"\"\"\"\"\"\"\"", Outcome::Failed(ChunkExtTooLong));
        // The ext limit is per line.
        check(b"1;abc=def\r\nx\r\n0;abc=def\r\n\r\n", done(27, 1));
        // RFC 6585 §5: trailer bytes (16) and fields (2).
        check(b"0\r\nA: 12345678901\r\n\r\n", done(21, 0));
        check(b"0\r\nA: 123456789012\r\n\r\n", Outcome::Failed(TrailerTooLarge));
        check(b"0\r\nA: 1\r\nB: 2\r\n\r\n", done(17, 0));
        check(b"0\r\nA: 1\r\nB: 2\r\nC", Outcome::Failed(TooManyTrailerFields));
        check(b"0\r\nA:1\r\nB:2222222222", Outcome::Failed(TrailerTooLarge));
    }

    #[test]
    fn default_limits_and_large_bodies() {
        // 1 MiB exactly is accepted, one byte more is 413.
        let mut body = b"100000\r\n".to_vec();
        body.resize(body.len() + (1 << 20), b'z');
        body.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(run(&body), done(body.len(), 1 << 20));
        // In uneven pieces too.
        let pieces: Vec<&[u8]> = body.chunks(4093).collect();
        assert_eq!(run_with(ChunkedLimits::DEFAULT, &pieces), done(body.len(), 1 << 20));
        assert_eq!(run(b"100001\r\n"), Outcome::Failed(BodyTooLarge));
        assert_eq!(run(b"80000\r\n"), Outcome::Incomplete { body: 0 });
        let mut two = b"80000\r\n".to_vec();
        two.resize(two.len() + 0x80000, b'a');
        two.extend_from_slice(b"\r\n80001\r\n");
        assert_eq!(run(&two), Outcome::Failed(BodyTooLarge));
    }

    #[test]
    fn error_metadata_is_complete_and_unique() {
        let mut reasons = std::collections::HashSet::new();
        for &e in ChunkedError::ALL {
            assert!(reasons.insert(e.reason()), "duplicate reason {}", e.reason());
            assert!(!e.to_string().is_empty());
        }
        assert_eq!(ChunkedError::ALL.len(), 14);
        assert_eq!(BodyTooLarge.status(), 413);
        assert_eq!(TrailerTooLarge.status(), 431);
        assert_eq!(TooManyTrailerFields.status(), 431);
        assert_eq!(BareLf.status(), 400);
        // Reasons do not collide with the parser's, so one metric label set serves both.
        for &p in super::super::parser::ParseError::ALL {
            assert!(!reasons.contains(p.reason()), "{}", p.reason());
        }
        let cases = cases();
        for &e in ChunkedError::ALL {
            let covered = cases.iter().any(|c| c.want == Outcome::Failed(e))
                || matches!(e, BodyTooLarge | ChunkExtTooLong | TrailerTooLarge | TooManyTrailerFields);
            assert!(covered, "no case for {e:?}");
        }
    }
}
