//! The one HTTP client of the integration tests: a connection with its own input buffer ([`Reader`]) and the one
//! response parser ([`Response`], [`split_response`]). The buffer stays with the connection, so reading one response
//! never consumes the next: pipelining, interim 100 answers and "then the server closes" checks all read from the
//! same place. Problems come back as `Err` text, so a case or a drill can collect every failure; a test that
//! wants to stop at the first one unwraps.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response head longer than this is a broken server, not a slow one.
const MAX_HEAD: usize = 64 * 1024;

pub fn describe(e: &io::Error) -> String {
    match e.kind() {
        ErrorKind::ConnectionReset => "connection reset".into(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut => "timed out".into(),
        ErrorKind::UnexpectedEof => "EOF before a complete response".into(),
        _ => e.to_string(),
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A response head as sent, split into its status and field lines without copying: the parser both the owned
/// [`Response`] and the load path ([`Reader::count_responses`]) read through.
struct Head<'a> {
    status: u16,
    fields: &'a str,
}

impl<'a> Head<'a> {
    /// `head` is everything up to and including the empty line. Every field line must have a colon.
    fn parse(head: &'a [u8]) -> Result<Head<'a>, String> {
        let text = std::str::from_utf8(head).map_err(|_| "non-UTF-8 response head".to_string())?;
        let (status_line, fields) = text.split_once("\r\n").unwrap_or((text, ""));
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        if let Some(l) = fields.split("\r\n").find(|l| !l.is_empty() && !l.contains(':')) {
            return Err(format!("bad header line {l:?}"));
        }
        Ok(Head { status, fields })
    }

    /// Field lines as (name, value), the value without surrounding whitespace.
    fn fields(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.fields.split("\r\n").filter_map(|l| l.split_once(':')).map(|(k, v)| (k, v.trim()))
    }

    fn field(&self, name: &str) -> Option<&'a str> {
        self.fields().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    fn body_len(&self, head_only: bool) -> Result<usize, String> {
        body_len(self.status, self.field("content-length"), head_only)
    }
}

/// Body bytes that follow a head: none for an interim (1xx) response or an answer to HEAD, else Content-Length,
/// which the server sends on every response.
fn body_len(status: u16, content_length: Option<&str>, head_only: bool) -> Result<usize, String> {
    if status < 200 || head_only {
        return Ok(0);
    }
    content_length
        .ok_or("response without Content-Length")?
        .parse()
        .map_err(|_| "bad Content-Length in response".to_string())
}

impl Response {
    /// Parses a response head (everything up to and including the empty line). The body is left empty;
    /// [`Response::body_len`] says how much of it follows.
    pub fn parse_head(head: &[u8]) -> Result<Response, String> {
        let h = Head::parse(head)?;
        let headers = h.fields().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Ok(Response { status: h.status, headers, body: Vec::new() })
    }

    /// Body bytes that follow this head (see [`body_len`]).
    pub fn body_len(&self, head_only: bool) -> Result<usize, String> {
        body_len(self.status, self.header("content-length"), head_only)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn closes(&self) -> bool {
        self.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The first complete response at the start of `buf` and how many bytes it took; `Ok(None)` while it is
/// incomplete. `head_only`: an answer to HEAD (no body).
pub fn split_response(buf: &[u8], head_only: bool) -> Result<Option<(Response, usize)>, String> {
    let Some(head_end) = find(buf, b"\r\n\r\n").map(|i| i + 4) else {
        return Ok(None);
    };
    let mut r = Response::parse_head(&buf[..head_end])?;
    let end = head_end + r.body_len(head_only)?;
    let Some(body) = buf.get(head_end..end) else {
        return Ok(None);
    };
    r.body = body.to_vec();
    Ok(Some((r, end)))
}

/// A connection with an input buffer: responses are parsed from it without a syscall per byte, and whatever
/// arrived after one response waits there for the next read.
pub struct Reader {
    pub stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
}

impl Reader {
    pub fn new(stream: TcpStream) -> Reader {
        Reader { stream, buf: Vec::with_capacity(16 * 1024), pos: 0 }
    }

    /// Connects with a timeout and sets read/write timeouts.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Reader> {
        let s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        let _ = s.set_nodelay(true);
        Ok(Reader::new(s))
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads more bytes into the buffer; `UnexpectedEof` on EOF.
    fn fill(&mut self) -> io::Result<()> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + 16 * 1024, 0);
        let r = self.stream.read(&mut self.buf[len..]);
        match r {
            Ok(0) => {
                self.buf.truncate(len);
                Err(ErrorKind::UnexpectedEof.into())
            }
            Ok(n) => {
                self.buf.truncate(len + n);
                Ok(())
            }
            Err(e) => {
                self.buf.truncate(len);
                Err(e)
            }
        }
    }

    /// Bytes received but not yet parsed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads exactly one response, interim (1xx) ones included. `head_only`: a HEAD answer (no body).
    pub fn response(&mut self, head_only: bool) -> Result<Response, String> {
        loop {
            let pending = &self.buf[self.pos..];
            if let Some((r, used)) = split_response(pending, head_only)? {
                self.pos += used;
                return Ok(r);
            }
            let in_body = find(pending, b"\r\n\r\n").is_some();
            if !in_body && pending.len() > MAX_HEAD {
                return Err("response head over 64 KiB".into());
            }
            self.fill().map_err(|e| if in_body { format!("{} (in the body)", describe(&e)) } else { describe(&e) })?;
        }
    }

    /// The next final response (1xx skipped).
    pub fn final_response(&mut self, head_only: bool) -> Result<Response, String> {
        loop {
            let r = self.response(head_only)?;
            if r.status >= 200 {
                return Ok(r);
            }
        }
    }

    /// Ok when the peer closes cleanly (EOF, no reset) within `within` and sent nothing more.
    pub fn expect_eof(&mut self, within: Duration) -> Result<(), String> {
        if !self.buffered().is_empty() {
            return Err(format!("{} unexpected bytes after the last response", self.buffered().len()));
        }
        self.stream.set_read_timeout(Some(within)).map_err(|e| e.to_string())?;
        let mut b = [0u8; 512];
        match self.stream.read(&mut b) {
            Ok(0) => Ok(()),
            Ok(n) => Err(format!("{n} unexpected bytes instead of EOF: {:?}", String::from_utf8_lossy(&b[..n]))),
            Err(e) => Err(format!("no clean EOF: {}", describe(&e))),
        }
    }

    /// True when the server closes the connection (EOF or reset) within 5 s; false when a byte more arrives or
    /// the connection is merely silent that long, since a server that forgets to close also stays silent.
    /// Looser than [`Reader::expect_eof`] only in accepting a reset.
    pub fn is_closed(&mut self) -> bool {
        if !self.buffered().is_empty() {
            return false;
        }
        self.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        }
    }

    /// Everything until EOF: what is buffered, then the rest of the stream.
    pub fn read_to_end(&mut self, out: &mut Vec<u8>) -> io::Result<usize> {
        let buffered = self.buf.len() - self.pos;
        out.extend_from_slice(&self.buf[self.pos..]);
        self.pos = self.buf.len();
        Ok(buffered + self.stream.read_to_end(out)?)
    }

    /// Fast path for load: reads `n` responses, checking each status and skipping bodies. Returns how many of
    /// them carried `Connection: close`. It reads the borrowed head instead of building a [`Response`], because a
    /// drill pushes a million responses through it and must not become the load generator's bottleneck.
    pub fn count_responses(&mut self, n: usize, want_status: u16) -> Result<usize, String> {
        let mut closes = 0;
        for _ in 0..n {
            let head_end = loop {
                if let Some(i) = find(&self.buf[self.pos..], b"\r\n\r\n") {
                    break self.pos + i + 4;
                }
                self.fill().map_err(|e| describe(&e))?;
            };
            let raw = &self.buf[self.pos..head_end];
            let head = Head::parse(raw)?;
            if head.status != want_status {
                return Err(format!(
                    "status {:?}, wanted {want_status}",
                    String::from_utf8_lossy(&raw[..raw.len().min(40)])
                ));
            }
            let len = head.body_len(false)?;
            if head.field("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
                closes += 1;
            }
            self.pos = head_end;
            while self.buf.len() - self.pos < len {
                self.fill().map_err(|e| describe(&e))?;
            }
            self.pos += len;
        }
        Ok(closes)
    }
}
