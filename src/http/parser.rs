//! The pure HTTP/1.1 request-head parser (RFC 9112, RFC 9110), modelled on `httparse`.
//!
//! * Zero-copy: every string in [`RequestHead`] borrows from the input buffer.
//! * No I/O and no allocation beyond the `fields` vector.
//! * No panics on any input: bytes are read with `get`, never by indexing, and nothing
//!   derived from the input is unwrapped.
//! * Linear in the input: one left-to-right scan, then a pass over the fields.
//! * Incremental by re-parsing: the caller passes the whole buffer each time more bytes
//!   arrive. The scan stops at the first byte that makes the buffer an invalid prefix, so an
//!   error, once visible, stays the same however many more bytes arrive, and `Partial` means
//!   every byte so far is a valid prefix of a request head.
//!
//! Strictness: where RFC 9112 lets a recipient choose between leniency and rejection, this
//! parser rejects. The choices made where the RFC is silent or permissive:
//! * A Host or absolute-form port must be 1 to 5 digits with a value up to 65535 (RFC 3986
//!   allows an empty port; we reject `host:`). Userinfo in an absolute-form target is
//!   rejected (RFC 9110 §4.2.4 says to treat it as an error).
//! * Transfer-Encoding: empty list elements get 400 (RFC 9110 §5.6.1 would ignore them; they
//!   are a smuggling vector). A transfer coding with parameters (`chunked;x=1`) is a coding we
//!   do not implement: 501, after the 400 checks (final coding must be `chunked`, once).
//! * Expect: any expectation other than `100-continue` gets 417 on both versions; a
//!   `100-continue` on HTTP/1.0 is ignored. Empty list elements in Expect and Connection are
//!   ignored (RFC 9110 §5.6.1).
//! * A line that starts with whitespace right after the request line is rejected as obs-fold
//!   (RFC 9112 §2.2 allows rejecting it).

use std::fmt;

/// Size limits for one request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line, without its CRLF (RFC 9112 §3: at least 8000 should work).
    pub max_request_line: usize,
    /// Largest field section: all field lines with their CRLFs, without the final empty line.
    pub max_header_bytes: usize,
    /// Most field lines.
    pub max_header_fields: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits { max_request_line: 16384, max_header_bytes: 32768, max_header_fields: 100 };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (no Content-Length, no Transfer-Encoding).
    None,
    ContentLength(u64),
    Chunked,
}

/// One field line: the name as sent, the value with surrounding whitespace (OWS) removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// A token, case-sensitive.
    pub method: &'a str,
    /// The request-target as sent (validated visible ASCII).
    pub target: &'a str,
    /// Origin-form: the path before `?`. Absolute-form: the path after the authority (`/` if
    /// empty). Asterisk-form: `*`. Authority-form (CONNECT): the authority.
    pub path: &'a str,
    /// After `?`, without it.
    pub query: Option<&'a str>,
    pub version: Version,
    /// In order, as received.
    pub fields: Vec<Field<'a>>,
    pub framing: Framing,
    /// HTTP/1.1: unless Connection has `close`. HTTP/1.0: only if Connection has `keep-alive`
    /// (and not `close`).
    pub keep_alive: bool,
    /// `Expect: 100-continue` on HTTP/1.1.
    pub expect_continue: bool,
}

impl<'a> RequestHead<'a> {
    /// The value of the first field with this name (ASCII case-insensitive).
    pub fn field(&self, name: &str) -> Option<&'a [u8]> {
        self.fields.iter().find(|f| f.name.eq_ignore_ascii_case(name.as_bytes())).map(|f| f.value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Every byte so far is valid; the head is not complete yet.
    Partial,
    /// `head_len` counts every byte of the head, including a leading CRLF and the final
    /// empty line; the body or the next pipelined request starts there.
    Complete { head: RequestHead<'a>, head_len: usize },
}

/// Why a request head was rejected. Each variant is one rule, with its status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// RFC 9112 §3: request line longer than the limit (414).
    RequestLineTooLong,
    /// RFC 6585 §5: field section larger than the limit (431).
    HeaderSectionTooLarge,
    /// RFC 6585 §5: more field lines than the limit (431).
    TooManyFields,
    /// RFC 9112 §3: not `method SP request-target SP HTTP-version CRLF` with single spaces,
    /// or more than one empty line before it (§2.2).
    BadRequestLine,
    /// RFC 9110 §9.1: the method is not a token.
    BadMethod,
    /// RFC 9112 §3.2: a byte outside the URI characters, bad percent-encoding, or a form not
    /// allowed for the method.
    BadTarget,
    /// RFC 9112 §2.3: not `HTTP/` DIGIT `.` DIGIT, or no version at all (HTTP/0.9 style).
    BadVersion,
    /// RFC 9110 §15.6.6: HTTP major version other than 1 (505).
    UnsupportedVersion,
    /// RFC 9112 §2.2: LF not preceded by CR.
    BareLf,
    /// RFC 9112 §2.2: CR not followed by LF.
    BareCr,
    /// RFC 9112 §5: field name empty, not a token, or a line without a colon.
    BadFieldName,
    /// RFC 9112 §5.1: whitespace between the field name and the colon.
    SpaceBeforeColon,
    /// RFC 9112 §5.2: a line folded with leading whitespace (obs-fold).
    ObsFold,
    /// RFC 9110 §5.5: NUL, CTL or DEL in a field value.
    BadFieldValue,
    /// RFC 9112 §3.2: HTTP/1.1 request without Host.
    MissingHost,
    /// RFC 9112 §3.2: more than one Host field line.
    DuplicateHost,
    /// RFC 9112 §3.2: Host value not `uri-host [ ":" port ]`.
    BadHost,
    /// RFC 9112 §6.3: Content-Length not 1*DIGIT, or too big for u64.
    BadContentLength,
    /// RFC 9112 §6.3: more than one Content-Length field line (even with equal values).
    DuplicateContentLength,
    /// RFC 9112 §6.1: both Content-Length and Transfer-Encoding.
    ContentLengthWithTransferEncoding,
    /// RFC 9112 §6.1: Transfer-Encoding list with an empty element or a non-token coding.
    BadTransferEncoding,
    /// RFC 9112 §6.3: the final transfer coding is not `chunked`.
    TransferEncodingNotChunked,
    /// RFC 9112 §6.1: `chunked` applied more than once.
    ChunkedTwice,
    /// RFC 9112 §6.1: Transfer-Encoding on an HTTP/1.0 request.
    TransferEncodingOnHttp10,
    /// RFC 9112 §6.1: a transfer coding other than plain `chunked` (501).
    UnknownTransferCoding,
    /// RFC 9110 §10.1.1: an expectation other than `100-continue` (417).
    UnsupportedExpectation,
}

impl ParseError {
    /// Every variant, for pre-initialising metrics.
    pub const ALL: &'static [ParseError] = &[
        ParseError::RequestLineTooLong,
        ParseError::HeaderSectionTooLarge,
        ParseError::TooManyFields,
        ParseError::BadRequestLine,
        ParseError::BadMethod,
        ParseError::BadTarget,
        ParseError::BadVersion,
        ParseError::UnsupportedVersion,
        ParseError::BareLf,
        ParseError::BareCr,
        ParseError::BadFieldName,
        ParseError::SpaceBeforeColon,
        ParseError::ObsFold,
        ParseError::BadFieldValue,
        ParseError::MissingHost,
        ParseError::DuplicateHost,
        ParseError::BadHost,
        ParseError::BadContentLength,
        ParseError::DuplicateContentLength,
        ParseError::ContentLengthWithTransferEncoding,
        ParseError::BadTransferEncoding,
        ParseError::TransferEncodingNotChunked,
        ParseError::ChunkedTwice,
        ParseError::TransferEncodingOnHttp10,
        ParseError::UnknownTransferCoding,
        ParseError::UnsupportedExpectation,
    ];

    /// The response status for this rejection.
    pub fn status(self) -> u16 {
        match self {
            ParseError::RequestLineTooLong => 414,
            ParseError::HeaderSectionTooLarge | ParseError::TooManyFields => 431,
            ParseError::UnsupportedVersion => 505,
            ParseError::UnknownTransferCoding => 501,
            ParseError::UnsupportedExpectation => 417,
            _ => 400,
        }
    }

    /// A short snake_case label, for the `reason` metric label and logs.
    pub fn reason(self) -> &'static str {
        match self {
            ParseError::RequestLineTooLong => "request_line_too_long",
            ParseError::HeaderSectionTooLarge => "header_too_large",
            ParseError::TooManyFields => "too_many_fields",
            ParseError::BadRequestLine => "bad_request_line",
            ParseError::BadMethod => "bad_method",
            ParseError::BadTarget => "bad_target",
            ParseError::BadVersion => "bad_version",
            ParseError::UnsupportedVersion => "unsupported_version",
            ParseError::BareLf => "bare_lf",
            ParseError::BareCr => "bare_cr",
            ParseError::BadFieldName => "bad_field_name",
            ParseError::SpaceBeforeColon => "space_before_colon",
            ParseError::ObsFold => "obs_fold",
            ParseError::BadFieldValue => "bad_field_value",
            ParseError::MissingHost => "missing_host",
            ParseError::DuplicateHost => "duplicate_host",
            ParseError::BadHost => "bad_host",
            ParseError::BadContentLength => "bad_content_length",
            ParseError::DuplicateContentLength => "duplicate_content_length",
            ParseError::ContentLengthWithTransferEncoding => "content_length_with_transfer_encoding",
            ParseError::BadTransferEncoding => "bad_transfer_encoding",
            ParseError::TransferEncodingNotChunked => "transfer_encoding_not_chunked",
            ParseError::ChunkedTwice => "chunked_twice",
            ParseError::TransferEncodingOnHttp10 => "transfer_encoding_on_http10",
            ParseError::UnknownTransferCoding => "unknown_transfer_coding",
            ParseError::UnsupportedExpectation => "unsupported_expectation",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::RequestLineTooLong => "request line too long",
            ParseError::HeaderSectionTooLarge => "header section too large",
            ParseError::TooManyFields => "too many header fields",
            ParseError::BadRequestLine => "malformed request line",
            ParseError::BadMethod => "malformed method",
            ParseError::BadTarget => "malformed request target",
            ParseError::BadVersion => "malformed HTTP version",
            ParseError::UnsupportedVersion => "HTTP version not supported",
            ParseError::BareLf => "bare LF line ending",
            ParseError::BareCr => "bare CR",
            ParseError::BadFieldName => "malformed header field name",
            ParseError::SpaceBeforeColon => "whitespace before colon in header field",
            ParseError::ObsFold => "obsolete line folding",
            ParseError::BadFieldValue => "invalid character in header field value",
            ParseError::MissingHost => "missing Host header",
            ParseError::DuplicateHost => "more than one Host header",
            ParseError::BadHost => "invalid Host header",
            ParseError::BadContentLength => "invalid Content-Length",
            ParseError::DuplicateContentLength => "more than one Content-Length",
            ParseError::ContentLengthWithTransferEncoding => "Content-Length together with Transfer-Encoding",
            ParseError::BadTransferEncoding => "malformed Transfer-Encoding",
            ParseError::TransferEncodingNotChunked => "final transfer coding is not chunked",
            ParseError::ChunkedTwice => "chunked applied more than once",
            ParseError::TransferEncodingOnHttp10 => "Transfer-Encoding in an HTTP/1.0 request",
            ParseError::UnknownTransferCoding => "transfer coding not implemented",
            ParseError::UnsupportedExpectation => "expectation not supported",
        })
    }
}

impl std::error::Error for ParseError {}

/// Why the scan stopped early.
enum Stop {
    Partial,
    Error(ParseError),
}

impl From<ParseError> for Stop {
    fn from(e: ParseError) -> Self {
        Stop::Error(e)
    }
}

const CR: u8 = b'\r';
const LF: u8 = b'\n';

/// Parse a request head from the start of `buf` (see the module docs).
pub fn parse_head<'a>(buf: &'a [u8], limits: &Limits) -> Result<Parsed<'a>, ParseError> {
    match parse(buf, limits) {
        Ok((head, head_len)) => Ok(Parsed::Complete { head, head_len }),
        Err(Stop::Partial) => Ok(Parsed::Partial),
        Err(Stop::Error(e)) => Err(e),
    }
}

/// RFC 9110 §5.6.2: tchar.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
        )
}

/// RFC 3986 §2.2 sub-delims.
fn is_sub_delim(b: u8) -> bool {
    matches!(b, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=')
}

/// RFC 3986 §2.3 unreserved.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Bytes allowed in a request-target besides `%`: pchar, `/`, `?`, and the brackets of an
/// IP-literal authority (checked again when the form is known).
fn is_target_byte(b: u8) -> bool {
    is_unreserved(b) || is_sub_delim(b) || matches!(b, b':' | b'@' | b'/' | b'?' | b'[' | b']')
}

/// RFC 9110 §5.5: field-vchar, SP and HTAB (obs-text is allowed as opaque bytes).
pub(crate) fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

/// RFC 9110 §5.6.3: OWS trimmed on both sides.
pub(crate) fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| b != b' ' && b != b'\t');
    let end = v.iter().rposition(|&b| b != b' ' && b != b'\t');
    match (start, end) {
        (Some(s), Some(e)) => v.get(s..=e).unwrap_or(&[]),
        _ => &[],
    }
}

fn slice(buf: &[u8], from: usize, to: usize) -> &[u8] {
    buf.get(from..to).unwrap_or(&[])
}

fn byte(buf: &[u8], i: usize) -> Result<u8, Stop> {
    buf.get(i).copied().ok_or(Stop::Partial)
}

/// At a CR at index `i`: Ok if LF follows, Partial if the buffer ends there, else bare CR.
fn expect_lf(buf: &[u8], i: usize) -> Result<(), Stop> {
    match buf.get(i.saturating_add(1)) {
        None => Err(Stop::Partial),
        Some(&LF) => Ok(()),
        Some(_) => Err(ParseError::BareCr.into()),
    }
}

/// A byte of the request line: content bytes at or past `limit` make the line too long.
fn line_byte(buf: &[u8], i: usize, limit: usize) -> Result<u8, Stop> {
    let b = byte(buf, i)?;
    if i >= limit && b != CR && b != LF {
        return Err(ParseError::RequestLineTooLong.into());
    }
    Ok(b)
}

/// A byte of a field line: any byte at or past `limit` makes the section too large.
fn field_byte(buf: &[u8], i: usize, limit: usize) -> Result<u8, Stop> {
    let b = byte(buf, i)?;
    if i >= limit {
        return Err(ParseError::HeaderSectionTooLarge.into());
    }
    Ok(b)
}

/// The error for an unexpected CR, LF or whitespace in the request line; `other` otherwise.
fn line_error(buf: &[u8], i: usize, b: u8, other: ParseError) -> Stop {
    match b {
        CR => match expect_lf(buf, i) {
            Ok(()) => other.into(),
            Err(stop) => stop,
        },
        LF => ParseError::BareLf.into(),
        b' ' | b'\t' => ParseError::BadRequestLine.into(),
        _ => other.into(),
    }
}

struct RequestLine<'a> {
    method: &'a str,
    target: &'a str,
    version: Version,
    /// Index just past the LF.
    end: usize,
}

fn ascii_str(bytes: &[u8], err: ParseError) -> Result<&str, Stop> {
    std::str::from_utf8(bytes).map_err(|_| Stop::Error(err))
}

/// RFC 9112 §3: request-line = method SP request-target SP HTTP-version CRLF.
fn parse_request_line<'a>(buf: &'a [u8], start: usize, limits: &Limits) -> Result<RequestLine<'a>, Stop> {
    let limit = start.saturating_add(limits.max_request_line);
    let mut i = start;

    // method = token
    loop {
        let b = line_byte(buf, i, limit)?;
        if b == b' ' {
            break;
        }
        if !is_tchar(b) {
            return Err(match b {
                // An empty line here is a second leading CRLF (RFC 9112 §2.2 allows one).
                CR | LF | b'\t' => line_error(buf, i, b, ParseError::BadRequestLine),
                _ => ParseError::BadMethod.into(),
            });
        }
        i += 1;
    }
    if i == start {
        // Leading whitespace.
        return Err(ParseError::BadRequestLine.into());
    }
    let method = ascii_str(slice(buf, start, i), ParseError::BadMethod)?;
    i += 1;

    // request-target
    let target_start = i;
    loop {
        let b = line_byte(buf, i, limit)?;
        match b {
            b' ' => break,
            b'%' => {
                for _ in 0..2 {
                    i += 1;
                    let h = line_byte(buf, i, limit)?;
                    if !h.is_ascii_hexdigit() {
                        return Err(ParseError::BadTarget.into());
                    }
                }
                i += 1;
            }
            CR | LF | b'\t' => {
                // A line that ends after the target has no version (HTTP/0.9 style).
                let other = if i == target_start { ParseError::BadRequestLine } else { ParseError::BadVersion };
                return Err(line_error(buf, i, b, other));
            }
            _ if is_target_byte(b) => i += 1,
            _ => return Err(ParseError::BadTarget.into()),
        }
    }
    if i == target_start {
        // Two spaces after the method.
        return Err(ParseError::BadRequestLine.into());
    }
    let target = ascii_str(slice(buf, target_start, i), ParseError::BadTarget)?;
    i += 1;

    // HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3), case-sensitive.
    for &want in b"HTTP/" {
        let b = line_byte(buf, i, limit)?;
        if b != want {
            return Err(line_error(buf, i, b, ParseError::BadVersion));
        }
        i += 1;
    }
    let mut digits = [0u8; 2];
    for (n, d) in digits.iter_mut().enumerate() {
        if n == 1 {
            let b = line_byte(buf, i, limit)?;
            if b != b'.' {
                return Err(line_error(buf, i, b, ParseError::BadVersion));
            }
            i += 1;
        }
        let b = line_byte(buf, i, limit)?;
        if !b.is_ascii_digit() {
            return Err(line_error(buf, i, b, ParseError::BadVersion));
        }
        *d = b - b'0';
        i += 1;
    }
    let b = line_byte(buf, i, limit)?;
    if b != CR {
        return Err(line_error(buf, i, b, ParseError::BadVersion));
    }
    expect_lf(buf, i)?;
    let [major, minor] = digits;
    if major != 1 {
        return Err(ParseError::UnsupportedVersion.into());
    }
    // RFC 9112 §2.3 / RFC 9110 §2.5: a higher 1.x minor is handled as the highest we know.
    let version = if minor == 0 { Version::Http10 } else { Version::Http11 };
    Ok(RequestLine { method, target, version, end: i + 2 })
}

/// Scan the field section starting at `start`; returns the index past the final CRLF.
fn parse_fields<'a>(buf: &'a [u8], start: usize, limits: &Limits, fields: &mut Vec<Field<'a>>) -> Result<usize, Stop> {
    let limit = start.saturating_add(limits.max_header_bytes);
    let mut i = start;
    loop {
        let b = byte(buf, i)?;
        if b == CR {
            // The empty line that ends the head.
            expect_lf(buf, i)?;
            return Ok(i + 2);
        }
        let b = field_byte(buf, i, limit)?;
        if b == LF {
            return Err(ParseError::BareLf.into());
        }
        if fields.len() >= limits.max_header_fields {
            return Err(ParseError::TooManyFields.into());
        }
        if b == b' ' || b == b'\t' {
            // RFC 9112 §5.2 (obs-fold) and §2.2 (whitespace after the start line).
            return Err(ParseError::ObsFold.into());
        }

        // field-name = token, then ":" with no whitespace before it.
        let name_start = i;
        let mut b = b;
        while is_tchar(b) {
            i += 1;
            b = field_byte(buf, i, limit)?;
        }
        match b {
            b':' if i > name_start => {}
            b' ' | b'\t' if i > name_start => return Err(ParseError::SpaceBeforeColon.into()),
            CR => {
                expect_lf(buf, i)?;
                return Err(ParseError::BadFieldName.into());
            }
            LF => return Err(ParseError::BareLf.into()),
            _ => return Err(ParseError::BadFieldName.into()),
        }
        let name = slice(buf, name_start, i);
        i += 1;

        // field-value, up to CRLF.
        let value_start = i;
        loop {
            let b = field_byte(buf, i, limit)?;
            match b {
                CR => {
                    let next = field_byte(buf, i + 1, limit)?;
                    if next != LF {
                        return Err(ParseError::BareCr.into());
                    }
                    break;
                }
                LF => return Err(ParseError::BareLf.into()),
                _ if is_field_value_byte(b) => i += 1,
                _ => return Err(ParseError::BadFieldValue.into()),
            }
        }
        let value = trim_ows(slice(buf, value_start, i));
        fields.push(Field { name, value });
        i += 2;
    }
}

fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Result<(RequestHead<'a>, usize), Stop> {
    // RFC 9112 §2.2: ignore at least one empty line before the request line; we allow one.
    let start = match byte(buf, 0)? {
        CR => {
            expect_lf(buf, 0)?;
            2
        }
        LF => return Err(ParseError::BareLf.into()),
        _ => 0,
    };
    let line = parse_request_line(buf, start, limits)?;
    let (path, query) = classify_target(line.method, line.target)?;

    let mut fields = Vec::new();
    let head_len = parse_fields(buf, line.end, limits, &mut fields)?;
    let sem = check_fields(&fields, line.version)?;

    let head = RequestHead {
        method: line.method,
        target: line.target,
        path,
        query,
        version: line.version,
        fields,
        framing: sem.framing,
        keep_alive: sem.keep_alive,
        expect_continue: sem.expect_continue,
    };
    Ok((head, head_len))
}

/// RFC 9112 §3.2: which request-target form, and whether the method allows it.
fn classify_target<'a>(method: &str, target: &'a str) -> Result<(&'a str, Option<&'a str>), ParseError> {
    let bytes = target.as_bytes();
    if method == "CONNECT" {
        // §3.2.3: authority-form = uri-host ":" port, only for CONNECT.
        if !valid_authority(bytes, true) {
            return Err(ParseError::BadTarget);
        }
        return Ok((target, None));
    }
    if bytes.first() == Some(&b'/') {
        // §3.2.1 origin-form = absolute-path [ "?" query ].
        if has_brackets(bytes) {
            return Err(ParseError::BadTarget);
        }
        return Ok(split_query(target));
    }
    if target == "*" {
        // §3.2.4 asterisk-form, only for OPTIONS.
        return if method == "OPTIONS" { Ok(("*", None)) } else { Err(ParseError::BadTarget) };
    }
    // §3.2.2 absolute-form: http or https (scheme case-insensitive), non-empty authority.
    let rest = strip_prefix_ci(target, "http://")
        .or_else(|| strip_prefix_ci(target, "https://"))
        .ok_or(ParseError::BadTarget)?;
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at_checked(auth_end).ok_or(ParseError::BadTarget)?;
    // RFC 9110 §4.2.4: userinfo is deprecated; its presence is treated as an error.
    if authority.contains('@') || !valid_authority(authority.as_bytes(), false) {
        return Err(ParseError::BadTarget);
    }
    if has_brackets(tail.as_bytes()) {
        return Err(ParseError::BadTarget);
    }
    let (path, query) = split_query(tail);
    let path = if path.is_empty() { "/" } else { path };
    Ok((path, query))
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) { s.get(prefix.len()..) } else { None }
}

fn split_query(s: &str) -> (&str, Option<&str>) {
    match s.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (s, None),
    }
}

fn has_brackets(bytes: &[u8]) -> bool {
    bytes.iter().any(|&b| b == b'[' || b == b']')
}

/// `uri-host [ ":" port ]` (RFC 3986 §3.2.2–3.2.3), with a non-empty host and, when present,
/// a port of 1 to 5 digits up to 65535. `port_required` for authority-form.
pub(crate) fn valid_authority(bytes: &[u8], port_required: bool) -> bool {
    let (host_ok, port) = if let Some(rest) = bytes.strip_prefix(b"[") {
        let Some(close) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let inner = slice(rest, 0, close);
        let after = rest.get(close + 1..).unwrap_or(&[]);
        let port = match after {
            [] => None,
            [b':', port @ ..] => Some(port),
            _ => return false,
        };
        (valid_ip_literal(inner), port)
    } else {
        match bytes.iter().position(|&b| b == b':') {
            Some(colon) => (valid_reg_name(slice(bytes, 0, colon)), Some(bytes.get(colon + 1..).unwrap_or(&[]))),
            None => (valid_reg_name(bytes), None),
        }
    };
    if !host_ok {
        return false;
    }
    match port {
        None => !port_required,
        Some(p) => valid_port(p),
    }
}

fn valid_port(p: &[u8]) -> bool {
    if p.is_empty() || p.len() > 5 || !p.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let value = p.iter().fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'));
    value <= 65535
}

/// reg-name = 1*( unreserved / pct-encoded / sub-delims ), non-empty here (also covers IPv4).
fn valid_reg_name(bytes: &[u8]) -> bool {
    if bytes.is_empty() {
        return false;
    }
    let mut it = bytes.iter();
    while let Some(&b) = it.next() {
        if b == b'%' {
            let hex = |h: Option<&u8>| h.is_some_and(u8::is_ascii_hexdigit);
            if !hex(it.next()) || !hex(it.next()) {
                return false;
            }
        } else if !is_unreserved(b) && !is_sub_delim(b) {
            return false;
        }
    }
    true
}

/// IP-literal contents: an IPv6 address (no zone) or IPvFuture.
fn valid_ip_literal(inner: &[u8]) -> bool {
    if let [b'v' | b'V', rest @ ..] = inner {
        // IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
        let Some(dot) = rest.iter().position(|&b| b == b'.') else {
            return false;
        };
        let ver = slice(rest, 0, dot);
        let tail = rest.get(dot + 1..).unwrap_or(&[]);
        return !ver.is_empty()
            && ver.iter().all(u8::is_ascii_hexdigit)
            && !tail.is_empty()
            && tail.iter().all(|&b| is_unreserved(b) || is_sub_delim(b) || b == b':');
    }
    std::str::from_utf8(inner).ok().and_then(|s| s.parse::<std::net::Ipv6Addr>().ok()).is_some()
}

struct Semantics {
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
}

/// Elements of a comma-separated list (RFC 9110 §5.6.1) across every line of one field,
/// OWS-trimmed; empty elements are yielded as empty slices.
fn list_elements<'a, 'f>(fields: &'f [Field<'a>], name: &'static str) -> impl Iterator<Item = &'a [u8]> + 'f {
    fields
        .iter()
        .filter(move |f| f.name.eq_ignore_ascii_case(name.as_bytes()))
        .flat_map(|f| f.value.split(|&b| b == b','))
        .map(trim_ows)
}

fn check_fields(fields: &[Field<'_>], version: Version) -> Result<Semantics, ParseError> {
    let named = |name: &'static str| fields.iter().filter(move |f| f.name.eq_ignore_ascii_case(name.as_bytes()));

    // Host: RFC 9112 §3.2.
    let mut hosts = named("host");
    match (hosts.next(), hosts.next()) {
        (None, _) if version == Version::Http11 => return Err(ParseError::MissingHost),
        (Some(_), Some(_)) => return Err(ParseError::DuplicateHost),
        (Some(h), None) if !valid_authority(h.value, false) => return Err(ParseError::BadHost),
        _ => {}
    }

    // Content-Length: RFC 9112 §6.3 (and RFC 9110 §8.6).
    let mut cls = named("content-length");
    let content_length = match (cls.next(), cls.next()) {
        (Some(_), Some(_)) => return Err(ParseError::DuplicateContentLength),
        (Some(f), None) => Some(parse_content_length(f.value).ok_or(ParseError::BadContentLength)?),
        _ => None,
    };

    // Transfer-Encoding: RFC 9112 §6.1, §6.3.
    let framing = if named("transfer-encoding").next().is_some() {
        if version == Version::Http10 {
            return Err(ParseError::TransferEncodingOnHttp10);
        }
        if content_length.is_some() {
            return Err(ParseError::ContentLengthWithTransferEncoding);
        }
        check_transfer_encoding(fields)?;
        Framing::Chunked
    } else {
        match content_length {
            Some(n) => Framing::ContentLength(n),
            None => Framing::None,
        }
    };

    // Expect: RFC 9110 §10.1.1.
    let mut expect_continue = false;
    for e in list_elements(fields, "expect") {
        if e.is_empty() {
            continue;
        }
        if !e.eq_ignore_ascii_case(b"100-continue") {
            return Err(ParseError::UnsupportedExpectation);
        }
        expect_continue = version == Version::Http11;
    }

    // Connection: RFC 9112 §9.3.
    let (mut close, mut keep) = (false, false);
    for c in list_elements(fields, "connection") {
        close |= c.eq_ignore_ascii_case(b"close");
        keep |= c.eq_ignore_ascii_case(b"keep-alive");
    }
    let keep_alive = match version {
        Version::Http11 => !close,
        Version::Http10 => keep && !close,
    };

    Ok(Semantics { framing, keep_alive, expect_continue })
}

/// Content-Length = 1*DIGIT, without overflow.
fn parse_content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// The combined Transfer-Encoding list must be exactly `chunked` to be accepted.
fn check_transfer_encoding(fields: &[Field<'_>]) -> Result<(), ParseError> {
    let mut chunked_count = 0usize;
    let mut last_is_chunked = false;
    let mut other = false;
    for element in list_elements(fields, "transfer-encoding") {
        // transfer-coding = token *( OWS ";" OWS transfer-parameter )
        let (name, has_params) = match element.iter().position(|&b| b == b';') {
            Some(semi) => (trim_ows(slice(element, 0, semi)), true),
            None => (element, false),
        };
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(ParseError::BadTransferEncoding);
        }
        last_is_chunked = name.eq_ignore_ascii_case(b"chunked");
        if last_is_chunked {
            chunked_count += 1;
        }
        other |= has_params || !last_is_chunked;
    }
    if !last_is_chunked {
        return Err(ParseError::TransferEncodingNotChunked);
    }
    if chunked_count > 1 {
        return Err(ParseError::ChunkedTwice);
    }
    if other {
        return Err(ParseError::UnknownTransferCoding);
    }
    Ok(())
}
