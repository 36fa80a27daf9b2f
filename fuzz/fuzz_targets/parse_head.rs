//! Request-head parser: never panics, and its verdicts are consistent.
//!
//! * `Complete` implies `head_len <= len`, the head ends with CRLFCRLF, and re-parsing
//!   `buf[..head_len]` gives the same head.
//! * Prefix consistency (what the server relies on when it re-parses a growing buffer): a
//!   prefix is `Partial`, or already has the verdict of the whole buffer. Every strict prefix
//!   of a complete head is `Partial`.
//! * Field names are tokens, values carry no CR, LF or NUL and are OWS-trimmed; counts and
//!   sizes respect the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sre_mini::http::parser::{Framing, Limits, ParseError, Parsed, RequestHead, Version, parse_head};

const SMALL: Limits = Limits { max_request_line: 40, max_header_bytes: 96, max_header_fields: 4 };

fuzz_target!(|data: &[u8]| {
    for limits in [Limits::DEFAULT, SMALL] {
        check(data, &limits);
    }
});

fn check(data: &[u8], limits: &Limits) {
    let whole = parse_head(data, limits);
    // Deterministic.
    assert_eq!(parse_head(data, limits), whole);
    if let Ok(Parsed::Complete { head, head_len }) = &whole {
        let head_len = *head_len;
        assert!(head_len <= data.len());
        let bytes = &data[..head_len];
        assert!(bytes.ends_with(b"\r\n\r\n"));
        invariants(head, limits);
        // The head alone parses to the same head.
        assert_eq!(parse_head(bytes, limits), whole);
        // Every strict prefix of the head is Partial (sampled for long heads).
        for n in prefix_lengths(head_len) {
            assert_eq!(parse_head(&data[..n], limits), Ok(Parsed::Partial), "prefix {n} of {head_len}");
        }
    } else {
        // Prefixes are Partial or already carry the same verdict.
        for n in prefix_lengths(data.len()) {
            match parse_head(&data[..n], limits) {
                Ok(Parsed::Partial) => {}
                Err(e) => assert_eq!(Err::<(), ParseError>(e), whole.clone().map(|_| ()), "prefix {n}"),
                Ok(Parsed::Complete { .. }) => panic!("prefix {n} complete but the whole is {whole:?}"),
            }
        }
    }
}

/// All strict prefix lengths for short inputs; about 64 spread out (plus the last few) for long ones.
fn prefix_lengths(len: usize) -> Vec<usize> {
    if len <= 300 {
        return (0..len).collect();
    }
    let step = len / 64;
    let mut v: Vec<usize> = (0..len).step_by(step.max(1)).collect();
    v.extend(len.saturating_sub(4)..len);
    v
}

fn invariants(head: &RequestHead<'_>, limits: &Limits) {
    assert!(!head.method.is_empty() && head.method.len() <= limits.max_request_line);
    assert!(!head.target.is_empty() && head.target.bytes().all(|b| b.is_ascii_graphic()));
    assert!(!head.target.contains('#'));
    assert!(!head.path.is_empty());
    assert!(head.fields.len() <= limits.max_header_fields);
    let mut section = 0usize;
    for f in &head.fields {
        assert!(!f.name.is_empty());
        assert!(f.name.iter().all(|&b| b.is_ascii_graphic() && !b"\"(),/:;<=>?@[\\]{}".contains(&b)));
        assert!(f.value.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f)));
        assert!(!f.value.starts_with(b" ") && !f.value.ends_with(b" "));
        assert!(!f.value.starts_with(b"\t") && !f.value.ends_with(b"\t"));
        section += f.name.len() + 1 + f.value.len() + 2;
    }
    assert!(section <= limits.max_header_bytes);
    let count = |name: &str| head.fields.iter().filter(|f| f.name.eq_ignore_ascii_case(name.as_bytes())).count();
    assert!(count("host") <= 1);
    if head.version == Version::Http11 {
        assert_eq!(count("host"), 1);
    }
    assert!(count("content-length") <= 1);
    match head.framing {
        Framing::Chunked => {
            assert_eq!(head.version, Version::Http11);
            assert_eq!(count("content-length"), 0);
            assert!(count("transfer-encoding") >= 1);
        }
        Framing::ContentLength(n) => {
            assert_eq!(count("transfer-encoding"), 0);
            let v = head.field("content-length").expect("ContentLength framing without the field");
            assert!(v.iter().all(u8::is_ascii_digit));
            assert_eq!(std::str::from_utf8(v).ok().and_then(|s| s.parse::<u64>().ok()), Some(n));
        }
        Framing::None => {
            assert_eq!(count("transfer-encoding"), 0);
            assert_eq!(count("content-length"), 0);
        }
    }
    if head.expect_continue {
        assert_eq!(head.version, Version::Http11);
    }
}
