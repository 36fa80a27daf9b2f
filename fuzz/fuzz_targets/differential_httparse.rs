//! Differential: every head our parser accepts must be accepted by httparse 1.x with its
//! default (strict) config, with the same method, target, version, fields in order and length.
//!
//! One documented normalisation: httparse knows only HTTP/1.0 and HTTP/1.1, while we handle
//! HTTP/1.2–1.9 as 1.1 (RFC 9110 §2.5), so the minor digit is rewritten to 1 before httparse
//! sees the head.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sre_mini::http::parser::{Limits, Parsed, Version, parse_head};

fuzz_target!(|data: &[u8]| {
    let Ok(Parsed::Complete { head, head_len }) = parse_head(data, &Limits::DEFAULT) else { return };
    let mut buf = data[..head_len].to_vec();
    // Where the minor version digit is: after an optional leading CRLF and "METHOD SP TARGET SP HTTP/1.".
    let lead = if buf.starts_with(b"\r\n") { 2 } else { 0 };
    let minor = lead + head.method.len() + 1 + head.target.len() + 1 + b"HTTP/1.".len();
    assert_eq!(buf.get(minor - 7..minor), Some(&b"HTTP/1."[..]));
    if head.version == Version::Http11 {
        buf[minor] = b'1';
    }

    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    let status = match req.parse(&buf) {
        Ok(s) => s,
        Err(e) => panic!("httparse rejected a head we accepted: {e:?} {:?}", String::from_utf8_lossy(&buf)),
    };
    assert_eq!(status, httparse::Status::Complete(head_len), "head length");
    assert_eq!(req.method, Some(head.method));
    assert_eq!(req.path, Some(head.target));
    let version = match head.version {
        Version::Http10 => 0,
        Version::Http11 => 1,
    };
    assert_eq!(req.version, Some(version));
    assert_eq!(req.headers.len(), head.fields.len(), "field count");
    for (theirs, ours) in req.headers.iter().zip(&head.fields) {
        assert_eq!(theirs.name.as_bytes(), ours.name);
        assert_eq!(theirs.value, ours.value, "value of {}", theirs.name);
    }
});
