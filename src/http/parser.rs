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

use crate::config::Config;

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
    /// The configuration's defaults (`MAX_REQUEST_LINE_BYTES`, `MAX_HEADER_BYTES`, `MAX_HEADER_FIELDS`).
    pub const DEFAULT: Limits = Limits {
        max_request_line: Config::DEFAULT.max_request_line_bytes,
        max_header_bytes: Config::DEFAULT.max_header_bytes,
        max_header_fields: Config::DEFAULT.max_header_fields,
    };
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

crate::labels::reasons! {
    /// Why a request head was rejected. Each variant is one rule, with its status code.
    pub enum ParseError {
        /// RFC 9112 §3: request line longer than the limit (414).
        RequestLineTooLong => 414, "request_line_too_long", "request line too long", limit RequestLineTooLong;
        /// RFC 6585 §5: field section larger than the limit (431).
        HeaderSectionTooLarge => 431, "header_too_large", "header section too large", limit HeaderTooLarge;
        /// RFC 6585 §5: more field lines than the limit (431).
        TooManyFields => 431, "too_many_fields", "too many header fields", limit TooManyFields;
        /// RFC 9112 §3: not `method SP request-target SP HTTP-version CRLF` with single spaces,
        /// or more than one empty line before it (§2.2).
        BadRequestLine => 400, "bad_request_line", "malformed request line";
        /// RFC 9110 §9.1: the method is not a token.
        BadMethod => 400, "bad_method", "malformed method";
        /// RFC 9112 §3.2: a byte outside the URI characters, bad percent-encoding, or a form not
        /// allowed for the method.
        BadTarget => 400, "bad_target", "malformed request target";
        /// RFC 9112 §2.3: not `HTTP/` DIGIT `.` DIGIT, or no version at all (HTTP/0.9 style).
        BadVersion => 400, "bad_version", "malformed HTTP version";
        /// RFC 9110 §15.6.6: HTTP major version other than 1 (505).
        UnsupportedVersion => 505, "unsupported_version", "HTTP version not supported";
        /// RFC 9112 §2.2: LF not preceded by CR.
        BareLf => 400, "bare_lf", "bare LF line ending";
        /// RFC 9112 §2.2: CR not followed by LF.
        BareCr => 400, "bare_cr", "bare CR";
        /// RFC 9112 §5: field name empty, not a token, or a line without a colon.
        BadFieldName => 400, "bad_field_name", "malformed header field name";
        /// RFC 9112 §5.1: whitespace between the field name and the colon.
        SpaceBeforeColon => 400, "space_before_colon", "whitespace before colon in header field";
        /// RFC 9112 §5.2: a line folded with leading whitespace (obs-fold).
        ObsFold => 400, "obs_fold", "obsolete line folding";
        /// RFC 9110 §5.5: NUL, CTL or DEL in a field value.
        BadFieldValue => 400, "bad_field_value", "invalid character in header field value";
        /// RFC 9112 §3.2: HTTP/1.1 request without Host.
        MissingHost => 400, "missing_host", "missing Host header";
        /// RFC 9112 §3.2: more than one Host field line.
        DuplicateHost => 400, "duplicate_host", "more than one Host header";
        /// RFC 9112 §3.2: Host value not `uri-host [ ":" port ]`.
        BadHost => 400, "bad_host", "invalid Host header";
        /// RFC 9112 §6.3: Content-Length not 1*DIGIT, or too big for u64.
        BadContentLength => 400, "bad_content_length", "invalid Content-Length";
        /// RFC 9112 §6.3: more than one Content-Length field line (even with equal values).
        DuplicateContentLength => 400, "duplicate_content_length", "more than one Content-Length";
        /// RFC 9112 §6.1: both Content-Length and Transfer-Encoding.
        ContentLengthWithTransferEncoding => 400, "content_length_with_transfer_encoding",
            "Content-Length together with Transfer-Encoding";
        /// RFC 9112 §6.1: Transfer-Encoding list with an empty element or a non-token coding.
        BadTransferEncoding => 400, "bad_transfer_encoding", "malformed Transfer-Encoding";
        /// RFC 9112 §6.3: the final transfer coding is not `chunked`.
        TransferEncodingNotChunked => 400, "transfer_encoding_not_chunked", "final transfer coding is not chunked";
        /// RFC 9112 §6.1: `chunked` applied more than once.
        ChunkedTwice => 400, "chunked_twice", "chunked applied more than once";
        /// RFC 9112 §6.1: Transfer-Encoding on an HTTP/1.0 request.
        TransferEncodingOnHttp10 => 400, "transfer_encoding_on_http10", "Transfer-Encoding in an HTTP/1.0 request";
        /// RFC 9112 §6.1: a transfer coding other than plain `chunked` (501).
        UnknownTransferCoding => 501, "unknown_transfer_coding", "transfer coding not implemented";
        /// RFC 9110 §10.1.1: an expectation other than `100-continue` (417).
        UnsupportedExpectation => 417, "unsupported_expectation", "expectation not supported";
    }
}

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
    if i >= limit && b != CR && b != LF { Err(ParseError::RequestLineTooLong.into()) } else { Ok(b) }
}

/// A byte of a field line: any byte at or past `limit` makes the section too large.
fn field_byte(buf: &[u8], i: usize, limit: usize) -> Result<u8, Stop> {
    let b = byte(buf, i)?;
    if i >= limit { Err(ParseError::HeaderSectionTooLarge.into()) } else { Ok(b) }
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
    s.split_once('?').map_or((s, None), |(path, query)| (path, Some(query)))
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
    port.map_or(!port_required, valid_port)
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
        content_length.map_or(Framing::None, Framing::ContentLength)
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

/// The request corpus decoder, shared with tests/corpus.rs: the corpus is the one home of request cases.
#[cfg(test)]
#[path = "../../tests/corpus/format.rs"]
mod corpus_format;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Result<Parsed<'_>, ParseError> {
        parse_head(input, &Limits::DEFAULT)
    }

    use ParseError::*;

    /// Every case of the request corpus (tests/corpus/*.txt), which also runs against a live server and through
    /// the connection machine (tests/corpus.rs). Rejected heads live there, each with its `reason:`.
    fn corpus() -> Vec<corpus_format::Case> {
        corpus_format::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus"))
    }

    fn verdict(got: &Result<Parsed<'_>, ParseError>) -> String {
        match got {
            Ok(Parsed::Partial) => "Partial".into(),
            Ok(Parsed::Complete { .. }) => "Complete".into(),
            Err(e) => format!("Err({})", e.reason()),
        }
    }

    /// A corpus case with `reason:` is rejected with exactly that reason and the status the case expects first.
    /// A case without one is not rejected by the head parser (its answer comes from routing, the body or a
    /// timeout), so no head rejection in the corpus goes without its reason; one whose first answer is not an
    /// error parses Complete.
    #[test]
    fn corpus_rejections_have_their_exact_reason() {
        let cases = corpus();
        assert!(cases.iter().any(|c| c.reason.is_some()), "no corpus case names a reason");
        let mut failures = Vec::new();
        for case in &cases {
            let raw = case.raw();
            let got = parse_all(&raw);
            let first = case.expect[0].status;
            let ok = match (&case.reason, &got) {
                (Some(want), Err(e)) => e.reason() == want && e.status() == first,
                (None, Ok(Parsed::Complete { .. })) => true,
                (None, Ok(Parsed::Partial)) => first >= 400,
                _ => false,
            };
            if !ok {
                failures.push(format!(
                    "{}/{} [{}]: reason {:?}, first status {first}, parse_head {}",
                    case.file,
                    case.name,
                    case.source,
                    case.reason,
                    verdict(&got)
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} corpus case(s) disagree with the parser:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }

    /// Left-to-right: every prefix of a rejected corpus head is Partial or already the same error, and bytes after
    /// the decisive one never change the verdict. Inputs over 4 KiB (the limit cases) are left out, the check
    /// being quadratic in the length; the `limits` test checks their prefixes at small limits.
    #[test]
    fn corpus_rejections_are_prefix_consistent() {
        for case in corpus().iter().filter(|c| c.reason.is_some()) {
            let input = case.raw();
            let Err(want) = parse_all(&input) else { continue };
            if input.len() > 4096 {
                continue;
            }
            for n in 0..input.len() {
                match parse_all(&input[..n]) {
                    Ok(Parsed::Partial) => {}
                    Err(e) => assert_eq!(e, want, "{}: prefix {n}", case.name),
                    Ok(Parsed::Complete { .. }) => panic!("{}: prefix {n} complete", case.name),
                }
            }
            let mut longer = input.clone();
            longer.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(parse_all(&longer), Err(want), "{} extended", case.name);
        }
    }

    /// An accepted head and what it must parse to.
    struct Accept {
        rfc: &'static str,
        input: &'static [u8],
        method: &'static str,
        path: &'static str,
        query: Option<&'static str>,
        version: Version,
        framing: Framing,
        keep_alive: bool,
        expect_continue: bool,
        fields: usize,
    }

    const GET11: Accept = Accept {
        rfc: "RFC 9112 §3",
        input: b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        method: "GET",
        path: "/",
        query: None,
        version: Version::Http11,
        framing: Framing::None,
        keep_alive: true,
        expect_continue: false,
        fields: 1,
    };

    const ACCEPTS: &[Accept] = &[
        GET11,
        Accept {
            rfc: "RFC 9112 §3.2.1",
            input: b"GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
            path: "/a/b",
            query: Some("x=1&y=%20"),
            ..GET11
        },
        Accept { rfc: "RFC 9112 §3.2.1", input: b"GET /? HTTP/1.1\r\nHost: a\r\n\r\n", query: Some(""), ..GET11 },
        Accept {
            rfc: "RFC 9112 §3.2.1",
            input: b"GET //a/./b/../c;p=1:@!$&'()*+,=-._~ HTTP/1.1\r\nHost: a\r\n\r\n",
            path: "//a/./b/../c;p=1:@!$&'()*+,=-._~",
            ..GET11
        },
        Accept {
            rfc: "RFC 9112 §3.2.2",
            input: b"GET http://example.com/p?q HTTP/1.1\r\nHost: example.com\r\n\r\n",
            path: "/p",
            query: Some("q"),
            ..GET11
        },
        Accept {
            rfc: "RFC 9112 §3.2.2",
            input: b"GET HTTPS://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n",
            path: "/",
            ..GET11
        },
        Accept {
            rfc: "RFC 9112 §3.2.2",
            input: b"GET http://[::1]:8080?x HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
            path: "/",
            query: Some("x"),
            ..GET11
        },
        Accept {
            rfc: "RFC 9112 §3.2.4",
            input: b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
            method: "OPTIONS",
            path: "*",
            ..GET11
        },
        Accept {
            rfc: "RFC 9112 §3.2.3",
            input: b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
            method: "CONNECT",
            path: "a.example:443",
            ..GET11
        },
        Accept {
            rfc: "RFC 9112 §3.2.3",
            input: b"CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n",
            method: "CONNECT",
            path: "[2001:db8::1]:443",
            ..GET11
        },
        Accept { rfc: "RFC 9110 §9.1", input: b"get / HTTP/1.1\r\nHost: a\r\n\r\n", method: "get", ..GET11 },
        Accept {
            rfc: "RFC 9110 §9.1",
            input: b"M-SEARCH!#$%&'*+.^_`|~ / HTTP/1.1\r\nHost: a\r\n\r\n",
            method: "M-SEARCH!#$%&'*+.^_`|~",
            ..GET11
        },
        Accept { rfc: "RFC 9112 §2.2", input: b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", ..GET11 },
        Accept { rfc: "RFC 9112 §2.3", input: b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", ..GET11 },
        Accept { rfc: "RFC 9112 §2.3", input: b"GET / HTTP/1.9\r\nHost: a\r\n\r\n", ..GET11 },
        // Keep-alive rules.
        Accept {
            rfc: "RFC 9112 §9.3",
            input: b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            keep_alive: false,
            fields: 2,
            ..GET11
        },
        Accept {
            rfc: "RFC 9112 §9.3",
            input: b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n",
            keep_alive: false,
            fields: 2,
            ..GET11
        },
        Accept {
            rfc: "RFC 9112 §9.3",
            input: b"GET / HTTP/1.1\r\nHost: a\r\nConnection: te\r\nConnection: close\r\n\r\n",
            keep_alive: false,
            fields: 3,
            ..GET11
        },
        Accept {
            rfc: "RFC 9112 §9.3",
            input: b"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n",
            fields: 2,
            ..GET11
        },
        Accept {
            rfc: "RFC 9112 §9.3",
            input: b"GET / HTTP/1.0\r\n\r\n",
            version: Version::Http10,
            keep_alive: false,
            fields: 0,
            ..GET11
        },
        Accept {
            rfc: "RFC 9112 §9.3",
            input: b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
            version: Version::Http10,
            fields: 1,
            ..GET11
        },
        Accept {
            rfc: "RFC 9112 §9.3",
            input: b"GET / HTTP/1.0\r\nConnection: foo,, keep-alive\r\n\r\n",
            version: Version::Http10,
            fields: 1,
            ..GET11
        },
        Accept {
            rfc: "RFC 9112 §9.3",
            input: b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
            version: Version::Http10,
            keep_alive: false,
            fields: 1,
            ..GET11
        },
        Accept {
            rfc: "RFC 9112 §9.3",
            input: b"GET / HTTP/1.0\r\nHost: a\r\nConnection: x\r\nConnection: keep-alive\r\n\r\n",
            version: Version::Http10,
            fields: 3,
            ..GET11
        },
        // Framing.
        Accept {
            rfc: "RFC 9112 §6.3",
            input: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0042\r\n\r\n",
            method: "POST",
            framing: Framing::ContentLength(42),
            fields: 2,
            ..GET11
        },
        Accept {
            rfc: "RFC 9112 §6.3",
            input: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n",
            method: "POST",
            framing: Framing::ContentLength(u64::MAX),
            fields: 2,
            ..GET11
        },
        Accept {
            rfc: "RFC 9112 §6.1",
            input: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            method: "POST",
            framing: Framing::Chunked,
            fields: 2,
            ..GET11
        },
        Accept {
            rfc: "RFC 9112 §6.1",
            input: b"POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding:\tChunKed \r\n\r\n",
            method: "POST",
            framing: Framing::Chunked,
            fields: 2,
            ..GET11
        },
        Accept {
            rfc: "RFC 9112 §6.1",
            input: b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n",
            method: "POST",
            version: Version::Http10,
            keep_alive: false,
            framing: Framing::ContentLength(3),
            fields: 1,
            ..GET11
        },
        // Expect.
        Accept {
            rfc: "RFC 9110 §10.1.1",
            input: b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n",
            method: "POST",
            framing: Framing::ContentLength(5),
            expect_continue: true,
            fields: 3,
            ..GET11
        },
        Accept {
            rfc: "RFC 9110 §10.1.1",
            input: b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
            method: "POST",
            version: Version::Http10,
            keep_alive: false,
            framing: Framing::ContentLength(5),
            fields: 2,
            ..GET11
        },
        // Field values: OWS trimmed, obs-text opaque, HTAB inside.
        Accept {
            rfc: "RFC 9110 §5.5",
            input: b"GET / HTTP/1.1\r\nHost: a\r\nX-Latin: caf\xe9 \xff\t\r\n\r\n",
            fields: 2,
            ..GET11
        },
        Accept {
            rfc: "RFC 9110 §5.5",
            input: b"GET / HTTP/1.1\r\nHost:a\r\nX-Empty:\r\nX-Tab:\t a\tb \t\r\n\r\n",
            fields: 3,
            ..GET11
        },
        Accept { rfc: "RFC 9112 §3.2", input: b"GET / HTTP/1.1\r\nHost: 192.0.2.1:80\r\n\r\n", ..GET11 },
        Accept { rfc: "RFC 9112 §3.2", input: b"GET / HTTP/1.1\r\nHost: [v7.fe:x]\r\n\r\n", ..GET11 },
        Accept { rfc: "RFC 9112 §3.2", input: b"GET / HTTP/1.1\r\nHost: xn--caf-dma.example%2E:0\r\n\r\n", ..GET11 },
    ];

    #[test]
    fn accepts_valid_heads_with_exact_values() {
        for case in ACCEPTS {
            let ctx = format!("{}: {:?}", case.rfc, String::from_utf8_lossy(case.input));
            let Ok(Parsed::Complete { head, head_len }) = parse_all(case.input) else {
                panic!("{ctx}: {:?}", parse_all(case.input));
            };
            assert_eq!(head_len, case.input.len(), "{ctx}");
            assert_eq!(head.method, case.method, "{ctx}");
            assert_eq!(head.path, case.path, "{ctx}");
            assert_eq!(head.query, case.query, "{ctx}");
            assert_eq!(head.version, case.version, "{ctx}");
            assert_eq!(head.framing, case.framing, "{ctx}");
            assert_eq!(head.keep_alive, case.keep_alive, "{ctx}");
            assert_eq!(head.expect_continue, case.expect_continue, "{ctx}");
            assert_eq!(head.fields.len(), case.fields, "{ctx}");
        }
    }

    /// Split invariance: every strict prefix of a valid head is Partial.
    #[test]
    fn every_prefix_of_a_valid_head_is_partial() {
        for case in ACCEPTS {
            for n in 0..case.input.len() {
                assert_eq!(parse_all(&case.input[..n]), Ok(Parsed::Partial), "{} prefix {n}", case.rfc);
            }
        }
    }

    #[test]
    fn fields_are_zero_copy_in_order_and_trimmed() {
        let input = b"GET /x HTTP/1.1\r\nHost:  a.example \r\nX-Two: 1\r\nx-two:\t2 3\t\r\nX-Latin: caf\xe9\r\n\r\n";
        let Ok(Parsed::Complete { head, .. }) = parse_all(input) else { panic!() };
        let fields: Vec<(&[u8], &[u8])> = head.fields.iter().map(|f| (f.name, f.value)).collect();
        assert_eq!(
            fields,
            vec![(&b"Host"[..], &b"a.example"[..]), (b"X-Two", b"1"), (b"x-two", b"2 3"), (b"X-Latin", b"caf\xe9"),]
        );
        assert_eq!(head.field("x-TWO"), Some(&b"1"[..]));
        assert_eq!(head.field("host"), Some(&b"a.example"[..]));
        assert_eq!(head.field("missing"), None);
        assert_eq!(head.target, "/x");
        // Zero-copy: the value points into the input.
        let range = input.as_ptr_range();
        assert!(range.contains(&head.fields[0].value.as_ptr()));
    }

    /// RFC 9112 §9.3 / §2.2: pipelined bytes after the head are left for the caller.
    #[test]
    fn head_len_stops_at_the_end_of_the_head() {
        let input =
            b"\r\nPOST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: a\r\n\r\n";
        let Ok(Parsed::Complete { head, head_len }) = parse_all(input) else { panic!() };
        assert_eq!(head.path, "/a");
        assert_eq!(&input[head_len..head_len + 3], b"abc");
        let rest = &input[head_len + 3..];
        let Ok(Parsed::Complete { head, head_len }) = parse_all(rest) else { panic!() };
        assert_eq!(head.path, "/b");
        assert_eq!(head_len, rest.len());
        // Garbage right after the head is not our business.
        let input = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\x00\xff\n\r";
        assert!(matches!(parse_all(input), Ok(Parsed::Complete { head_len: 27, .. })));
    }

    fn small() -> Limits {
        Limits { max_request_line: 16, max_header_bytes: 32, max_header_fields: 3 }
    }

    #[test]
    fn limits() {
        // RFC 9112 §3: the line "GET /23456789012 HTTP/1.1" is 25 bytes; 16 is the limit.
        let l = small();
        // Exactly at the limit (16 bytes before CRLF) is fine.
        let ok = b"GET /234 HTTP/1.0\r\n\r\n";
        assert_eq!(ok.len() - 4, 17);
        let ok16 = b"GET /23 HTTP/1.0\r\n\r\n";
        assert!(matches!(parse_head(ok16, &l), Ok(Parsed::Complete { .. })));
        assert_eq!(parse_head(ok, &l), Err(RequestLineTooLong));
        // Detected before the line ends: 17 bytes without CRLF.
        assert_eq!(parse_head(b"GET /234567890123", &l), Err(RequestLineTooLong));
        assert_eq!(parse_head(b"GET /23456789012", &l), Ok(Parsed::Partial));
        // A leading CRLF does not count.
        assert!(matches!(parse_head(b"\r\nGET /23 HTTP/1.0\r\n\r\n", &l), Ok(Parsed::Complete { .. })));
        // Default limits: a request line of 8000 octets is accepted (RFC 9112 §3), 16 KiB + 1 is not.
        let mut long = b"GET /".to_vec();
        long.resize(8000 - 9, b'a');
        long.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(matches!(parse_all(&long), Ok(Parsed::Complete { .. })));
        let mut long = b"GET /".to_vec();
        long.resize(16385, b'a');
        assert_eq!(parse_all(&long), Err(RequestLineTooLong));
        long.truncate(16384);
        assert_eq!(parse_all(&long), Ok(Parsed::Partial));

        // RFC 6585 §5: field section of 32 bytes at most (field lines with CRLFs).
        let head = |fields: &str| format!("GET / HTTP/1.0\r\n{fields}\r\n").into_bytes();
        let exactly = head("X: 12345678901234567890123456\r\n");
        let field_bytes = exactly.len() - 16 - 2;
        assert_eq!(field_bytes, 31);
        assert!(matches!(parse_head(&exactly, &l), Ok(Parsed::Complete { .. })));
        let at_limit = head("X: 123456789012345678901234567\r\n");
        assert!(matches!(parse_head(&at_limit, &l), Ok(Parsed::Complete { .. })));
        let over = head("X: 1234567890123456789012345678\r\n");
        assert_eq!(parse_head(&over, &l), Err(HeaderSectionTooLarge));
        // Detected without the end of the section.
        assert_eq!(parse_head(&over[..16 + 33], &l), Err(HeaderSectionTooLarge));
        assert_eq!(parse_head(&over[..16 + 32], &l), Ok(Parsed::Partial));
        assert_eq!(
            parse_head(b"GET / HTTP/1.0\r\nA: 1\r\nB: 2222222222222222222222222222", &l),
            Err(HeaderSectionTooLarge)
        );

        // Field count: 3 allowed, the 4th is refused as soon as it starts.
        assert!(matches!(
            parse_head(b"GET / HTTP/1.0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", &l),
            Ok(Parsed::Complete { .. })
        ));
        assert_eq!(parse_head(b"GET / HTTP/1.0\r\nA:1\r\nB:2\r\nC:3\r\nD", &l), Err(TooManyFields));
        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for _ in 0..99 {
            many.extend_from_slice(b"X: y\r\n");
        }
        let done = [many.as_slice(), b"\r\n"].concat();
        assert!(matches!(parse_all(&done), Ok(Parsed::Complete { .. })));
        many.extend_from_slice(b"X: y\r\n\r\n");
        assert_eq!(parse_all(&many), Err(TooManyFields));
    }

    #[test]
    fn error_metadata_is_complete_and_unique() {
        let mut reasons = std::collections::HashSet::new();
        for &e in ParseError::ALL {
            assert!(reasons.insert(e.reason()), "duplicate reason {}", e.reason());
            assert!(e.reason().bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()));
            assert!(!e.to_string().is_empty());
            assert!(matches!(e.status(), 400 | 414 | 417 | 431 | 501 | 505));
        }
        assert_eq!(ParseError::ALL.len(), 26);
        assert_eq!(RequestLineTooLong.status(), 414);
        assert_eq!(HeaderSectionTooLarge.status(), 431);
        assert_eq!(TooManyFields.status(), 431);
        assert_eq!(UnsupportedVersion.status(), 505);
        assert_eq!(UnknownTransferCoding.status(), 501);
        assert_eq!(UnsupportedExpectation.status(), 417);
        assert_eq!(BareLf.status(), 400);
        // Every variant is the reason of at least one corpus case.
        let cases = corpus();
        for &e in ParseError::ALL {
            assert!(cases.iter().any(|c| c.reason.as_deref() == Some(e.reason())), "no corpus case for {e:?}");
        }
    }

    #[test]
    fn empty_and_tiny_inputs_are_partial() {
        for input in [&b""[..], b"\r", b"\r\n", b"G", b"GET", b"GET ", b"GET /", b"GET / H", b"GET / HTTP/1.1\r"] {
            assert_eq!(parse_all(input), Ok(Parsed::Partial), "{input:?}");
        }
    }
}
