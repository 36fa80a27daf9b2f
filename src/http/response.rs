//! Response encoding: status line, the headers every answer carries, and the body (none for HEAD).

use std::borrow::Cow;

use crate::labels::STATUSES;
use crate::{ascii, clock};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Cow<'static, [u8]>,
    /// One header that only some answers carry: `Allow` (405), `Retry-After` (503), `WWW-Authenticate` (401).
    pub header: Option<(&'static str, &'static str)>,
}

pub const TEXT: &str = "text/plain; charset=utf-8";

impl Response {
    pub fn text(status: u16, body: &'static str) -> Response {
        Response { status, content_type: TEXT, body: Cow::Borrowed(body.as_bytes()), header: None }
    }

    pub fn owned(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response { status, content_type, body: Cow::Owned(body), header: None }
    }

    pub fn with(mut self, name: &'static str, value: &'static str) -> Response {
        self.header = Some((name, value));
        self
    }
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        _ => STATUSES.iter().find(|(code, _)| *code == status).map_or("Unknown", |(_, phrase)| phrase),
    }
}

pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The `Date` header value, formatted at most once a second per owner.
#[derive(Default)]
pub struct DateCache {
    secs: i64,
    value: String,
}

impl DateCache {
    pub fn get(&mut self) -> &str {
        let (secs, _) = clock::unix_now();
        if secs != self.secs || self.value.is_empty() {
            self.secs = secs;
            self.value = clock::imf_fixdate(secs);
        }
        &self.value
    }
}

/// How the connection continues after this response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    Close,
    KeepAlive,
    /// HTTP/1.0 keep-alive must be confirmed explicitly.
    KeepAliveHttp10,
}

/// Appends the encoded response to `out`; returns the number of body bytes written.
pub fn encode(
    out: &mut Vec<u8>,
    resp: &Response,
    head_only: bool,
    request_id: &str,
    persistence: Persistence,
    date: &str,
) -> usize {
    out.extend_from_slice(b"HTTP/1.1 ");
    ascii::push_u64(out, u64::from(resp.status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(resp.status).as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    out.extend_from_slice(date.as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: ");
    out.extend_from_slice(resp.content_type.as_bytes());
    out.extend_from_slice(b"\r\nContent-Length: ");
    ascii::push_u64(out, resp.body.len() as u64);
    out.extend_from_slice(b"\r\nX-Request-Id: ");
    out.extend_from_slice(request_id.as_bytes());
    out.extend_from_slice(b"\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n");
    if let Some((name, value)) = resp.header {
        for part in [name.as_bytes(), b": ", value.as_bytes(), b"\r\n"] {
            out.extend_from_slice(part);
        }
    }
    match persistence {
        Persistence::Close => out.extend_from_slice(b"Connection: close\r\n"),
        Persistence::KeepAliveHttp10 => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        Persistence::KeepAlive => {}
    }
    out.extend_from_slice(b"\r\n");
    if head_only {
        0
    } else {
        out.extend_from_slice(&resp.body);
        resp.body.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_required_headers_and_head_has_no_body() {
        let r = Response::text(503, "busy\n").with("Retry-After", "1");
        let mut out = Vec::new();
        let n = encode(&mut out, &r, false, "abc", Persistence::Close, "Sun, 06 Nov 1994 08:49:37 GMT");
        let s = String::from_utf8(out).unwrap();
        assert_eq!(n, 5);
        assert!(s.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        for h in [
            "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n",
            "Content-Length: 5\r\n",
            "Content-Type: text/plain; charset=utf-8\r\n",
            "X-Request-Id: abc\r\n",
            "Retry-After: 1\r\n",
            "Connection: close\r\n",
        ] {
            assert!(s.contains(h), "{h}");
        }
        assert!(s.ends_with("\r\n\r\nbusy\n"));
        assert!(!s.to_ascii_lowercase().contains("server:"));

        let mut head = Vec::new();
        assert_eq!(encode(&mut head, &r, true, "abc", Persistence::KeepAlive, "d"), 0);
        let h = String::from_utf8(head).unwrap();
        assert!(h.contains("Content-Length: 5\r\n") && h.ends_with("\r\n\r\n") && !h.contains("Connection:"));
    }
}
