//! The corpus format (tests/corpus/README.md): reads tests/corpus/*.txt into cases. One decoder for both readers:
//! tests/corpus.rs, which sends every case to a live server and through the connection machine, and the
//! parser's unit tests (src/http/parser.rs, which includes this file by path), which check every case's
//! `reason:` against `parse_head`. It uses std only, so it compiles in either crate.
// Each reader uses a different part of a case.
#![allow(dead_code)]

use std::path::Path;

#[derive(Debug)]
pub struct Expected {
    pub status: u16,
    pub head_only: bool,
}

#[derive(Debug)]
pub struct Case {
    pub file: String,
    pub name: String,
    pub source: String,
    pub expect: Vec<Expected>,
    pub close: bool,
    /// The parser's metric reason label (`ParseError::reason`) when the head itself is rejected.
    pub reason: Option<String>,
    /// Sent in order; before each segment after the first, one expected response is read (`{await}`).
    pub segments: Vec<Vec<u8>>,
}

impl Case {
    /// Every byte of the case, as one buffer.
    pub fn raw(&self) -> Vec<u8> {
        self.segments.concat()
    }
}

/// Decodes the escapes and directives of a `raw:` section (its lines already joined without line breaks).
pub fn decode_raw(text: &str, ctx: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut segments = vec![Vec::new()];
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'{' {
            let end = text[i..].find('}').map(|e| i + e).ok_or_else(|| format!("{ctx}: unclosed {{"))?;
            let directive = &text[i + 1..end];
            if directive == "await" {
                segments.push(Vec::new());
            } else if let Some(rest) = directive.strip_prefix("repeat ") {
                let (n, what) = rest.split_once(' ').ok_or_else(|| format!("{ctx}: bad repeat {directive:?}"))?;
                let n: usize = n.parse().map_err(|_| format!("{ctx}: bad repeat count {n:?}"))?;
                let unit = unescape(what, ctx)?;
                let seg = segments.last_mut().unwrap();
                for _ in 0..n {
                    seg.extend_from_slice(&unit);
                }
            } else {
                return Err(format!("{ctx}: unknown directive {{{directive}}}"));
            }
            i = end + 1;
        } else {
            let next = text[i..].find('{').map_or(bytes.len(), |e| i + e);
            segments.last_mut().unwrap().extend(unescape(&text[i..next], ctx)?);
            i = next;
        }
    }
    Ok(segments)
}

fn unescape(s: &str, ctx: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let e = *b.get(i + 1).ok_or_else(|| format!("{ctx}: trailing backslash"))?;
        i += 2;
        match e {
            b'r' => out.push(b'\r'),
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'0' => out.push(0),
            b'\\' => out.push(b'\\'),
            b'x' => {
                let hex = s.get(i..i + 2).ok_or_else(|| format!("{ctx}: short \\x escape"))?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("{ctx}: bad \\x{hex}"))?);
                i += 2;
            }
            other => return Err(format!("{ctx}: unknown escape \\{}", other as char)),
        }
    }
    Ok(out)
}

/// Parses one corpus file. Any formatting problem is an error: the corpus must stay unambiguous.
pub fn parse_file(path: &Path) -> Result<Vec<Case>, String> {
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    let data = std::fs::read(path).map_err(|e| format!("{file}: {e}"))?;
    if let Some(pos) = data.iter().position(|&b| !(b == b'\n' || (0x20..0x7f).contains(&b))) {
        return Err(format!("{file}: byte {pos} is not printable ASCII (write it as an escape)"));
    }
    let text = String::from_utf8(data).unwrap();
    let mut cases = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line.strip_prefix("=== ").ok_or_else(|| format!("{file}:{}: expected '=== name'", n + 1))?;
        let ctx = format!("{file}:{} ({name})", n + 1);
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(format!("{ctx}: case names are [a-z0-9-]"));
        }
        let mut field = |key: &str| -> Result<String, String> {
            let (_, l) = lines.next().ok_or_else(|| format!("{ctx}: missing {key}"))?;
            l.strip_prefix(key)
                .and_then(|v| v.strip_prefix(": "))
                .map(str::to_string)
                .ok_or_else(|| format!("{ctx}: expected '{key}: ...', found {l:?}"))
        };
        let source = field("source")?;
        let expect = field("expect")?
            .split_whitespace()
            .map(|tok| {
                let (head_only, code) = match tok.strip_prefix("head:") {
                    Some(c) => (true, c),
                    None => (false, tok),
                };
                code.parse()
                    .map(|status| Expected { status, head_only })
                    .map_err(|_| format!("{ctx}: bad status {tok}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let close = match field("close")?.as_str() {
            "yes" => true,
            "no" => false,
            other => return Err(format!("{ctx}: close is yes or no, not {other:?}")),
        };
        let reason = match lines.next() {
            Some((_, l)) if l.starts_with("reason: ") => {
                let r = &l["reason: ".len()..];
                if r.is_empty() || !r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
                    return Err(format!("{ctx}: a reason is a snake_case label, not {r:?}"));
                }
                match lines.next() {
                    Some((_, "raw:")) => Some(r.to_string()),
                    _ => return Err(format!("{ctx}: expected 'raw:' after 'reason:'")),
                }
            }
            Some((_, "raw:")) => None,
            _ => return Err(format!("{ctx}: expected 'reason: ...' or 'raw:'")),
        };
        let mut raw = String::new();
        while let Some((m, l)) = lines.peek() {
            if l.starts_with("=== ") {
                break;
            }
            if l.ends_with(' ') {
                return Err(format!("{file}:{}: raw line ends in a space (write \\x20)", m + 1));
            }
            raw.push_str(l);
            lines.next();
        }
        let segments = decode_raw(&raw, &ctx)?;
        if expect.is_empty() || source.trim().is_empty() || segments.iter().all(Vec::is_empty) {
            return Err(format!("{ctx}: needs a source, at least one expected status and raw bytes"));
        }
        if segments.len() > expect.len() {
            return Err(format!("{ctx}: more {{await}} than expected responses"));
        }
        cases.push(Case { file: file.clone(), name: name.to_string(), source, expect, close, reason, segments });
    }
    Ok(cases)
}

/// Every case of every `*.txt` file in `dir`, files in name order. A format error panics.
pub fn load(dir: &Path) -> Vec<Case> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for f in files {
        cases.extend(parse_file(&f).unwrap_or_else(|e| panic!("corpus format: {e}")));
    }
    cases
}
