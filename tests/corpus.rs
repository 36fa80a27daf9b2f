//! The adversarial request corpus, at two depths. Every case in tests/corpus/*.txt is sent on its own connection
//! to ONE running server (once with one worker, once with two: the readiness set works differently in each), which
//! must answer with exactly the expected statuses, close (or keep) the connection as
//! expected, and still answer a fresh `GET /healthz` afterwards. Every case also runs through the connection
//! machine alone (`sre_mini::conn`, no socket, the clock moved by hand), which must give the same answers.
//! The format is described in tests/corpus/README.md.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{BIN, Reader, Response, Server, load};

const MIN_CASES: usize = 60;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Expected {
    status: u16,
    head_only: bool,
}

#[derive(Debug)]
struct Case {
    file: String,
    name: String,
    source: String,
    expect: Vec<Expected>,
    close: bool,
    /// Sent in order; before each segment after the first, one expected response is read (`{await}`).
    segments: Vec<Vec<u8>>,
}

/// Decodes the escapes and directives of a `raw:` section (its lines already joined without line breaks).
fn decode_raw(text: &str, ctx: &str) -> Result<Vec<Vec<u8>>, String> {
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
fn parse_file(path: &Path) -> Result<Vec<Case>, String> {
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
        match lines.next() {
            Some((_, "raw:")) => {}
            _ => return Err(format!("{ctx}: expected 'raw:'")),
        }
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
        cases.push(Case { file: file.clone(), name: name.to_string(), source, expect, close, segments });
    }
    Ok(cases)
}

fn load_corpus() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/corpus")
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

/// Runs one case on its own connection; Err describes the first deviation.
fn run_case(server: &Server, case: &Case, index: usize) -> Result<Vec<u16>, String> {
    let mut conn = Reader::connect(server.addr, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    let mut got = Vec::new();
    let mut expected = case.expect.iter();
    let check = |conn: &mut Reader, want: &Expected, got: &mut Vec<u16>| -> Result<Response, String> {
        let r = conn.response(want.head_only).map_err(|e| format!("after {got:?}: no response: {e}"))?;
        got.push(r.status);
        if r.status != want.status {
            return Err(format!("status {} where {} was expected (responses so far {got:?})", r.status, want.status));
        }
        Ok(r)
    };
    let mut last = None;
    for (n, seg) in case.segments.iter().enumerate() {
        if n > 0 {
            last = Some(check(&mut conn, expected.next().unwrap(), &mut got)?);
        }
        if let Err(e) = conn.send(seg) {
            return Err(format!("write of segment {n} failed: {} (responses so far {got:?})", common::describe(&e)));
        }
    }
    for want in expected {
        last = Some(check(&mut conn, want, &mut got)?);
    }
    let last = last.unwrap();
    if case.close {
        if !last.closes() {
            return Err(format!("last response ({}) has no Connection: close", last.status));
        }
        conn.expect_eof(IO_TIMEOUT).map_err(|e| format!("after the last response: {e}"))?;
    } else {
        if last.closes() {
            return Err(format!("last response ({}) says Connection: close; the connection should go on", last.status));
        }
        let id = format!("corpus-followup-{index}");
        conn.send(format!("GET /healthz HTTP/1.1\r\nHost: corpus\r\nX-Request-Id: {id}\r\n\r\n").as_bytes())
            .map_err(|e| format!("follow-up write failed: {}", common::describe(&e)))?;
        let r = conn.response(false).map_err(|e| format!("follow-up on the same connection: {e}"))?;
        if r.status != 200 || r.header("x-request-id") != Some(id.as_str()) {
            return Err(format!(
                "follow-up on the same connection got {} (X-Request-Id {:?}): an extra or missing response",
                r.status,
                r.header("x-request-id")
            ));
        }
    }
    Ok(got)
}

#[test]
fn corpus_format_and_size() {
    let cases = load_corpus();
    let names: BTreeSet<_> = cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), cases.len(), "case names must be unique");
    assert!(cases.len() >= MIN_CASES, "{} cases; the corpus must keep at least {MIN_CASES}", cases.len());
    for must in
        ["cl-te-classic", "te-cl-classic", "te-xchunked", "tls-client-hello", "http2-version", "expect-100-continue"]
    {
        assert!(names.contains(must), "corpus lost case {must}");
    }
    // The escape decoder itself.
    assert_eq!(
        decode_raw(r"a\r\n\t\0\\\x7b{repeat 3 xy}{await}z", "t").unwrap(),
        vec![b"a\r\n\t\0\\{xyxyxy".to_vec(), b"z".to_vec()]
    );
}

/// One worker: the readiness set's entries are persistent and change only with a connection's interest.
#[test]
fn corpus_against_one_server() {
    corpus_against_a_server_with_workers("1");
}

/// Several workers: every entry is one-shot and re-armed after each report, by whichever worker took it.
#[test]
fn corpus_against_one_server_with_two_workers() {
    corpus_against_a_server_with_workers("2");
}

fn corpus_against_a_server_with_workers(workers: &str) {
    let cases = load_corpus();
    assert!(cases.len() >= MIN_CASES);
    let server = Server::start(&[
        ("HEADER_TIMEOUT_MS", "1000"),
        ("BODY_TIMEOUT_MS", "1000"),
        ("WORK_DELAY_MS", "100"),
        ("WORKERS", workers),
    ]);
    eprintln!("corpus: {} cases from tests/corpus/*.txt against {BIN} with WORKERS={workers}", cases.len());
    let started = Instant::now();
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let t = Instant::now();
        let outcome = run_case(&server, case, i);
        let health = load::timed_get(server.addr, "/healthz", IO_TIMEOUT);
        let health_ok = matches!(&health, Ok((r, _)) if r.status == 200);
        let close = if case.close { "close" } else { "keep" };
        match &outcome {
            Ok(got) => println!("ok   {:<44} {got:?} {close} ({:.0} ms)", case.name, load::ms(t.elapsed())),
            Err(e) => {
                println!("FAIL {:<44} {e}", case.name);
                failures.push(format!("{}/{}: {e}\n      [{}]", case.file, case.name, case.source));
            }
        }
        if !health_ok {
            failures.push(format!("{}/{}: /healthz afterwards: {health:?}", case.file, case.name));
            break;
        }
    }
    let mut server = server;
    assert!(server.child.try_wait().unwrap().is_none(), "the server exited during the corpus");
    let panics = server.metric("sremini_panics_total");
    assert_eq!(panics, 0.0, "handler panics during the corpus");
    eprintln!("corpus: {} cases, {} failed, {:.1} s", cases.len(), failures.len(), started.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "{} corpus case(s) failed:\n  {}", failures.len(), failures.join("\n  "));
}

/// Splits `out` into answers with the test client's one response parser; HEAD answers (per `expect`) carry no
/// body.
fn answers(out: &[u8], expect: &[Expected]) -> Result<Vec<Response>, String> {
    let mut got = Vec::new();
    let mut rest = out;
    while !rest.is_empty() {
        let head_only = expect.get(got.len()).is_some_and(|e| e.head_only);
        let (r, used) = common::split_response(rest, head_only)?.ok_or("an incomplete answer at the end")?;
        rest = &rest[used..];
        got.push(r);
    }
    Ok(got)
}

/// Runs one case through the connection machine alone: no socket, the clock moved by hand, /work finished at once.
fn run_case_in_machine(case: &Case) -> Result<Vec<u16>, String> {
    use sre_mini::conn::{Conn, Effect, Env, Settings, WorkResult};
    use std::sync::atomic::AtomicI64;
    let vars = [("HEADER_TIMEOUT_MS", "1000"), ("BODY_TIMEOUT_MS", "1000"), ("WORK_DELAY_MS", "100")];
    let lookup = |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
    let config = sre_mini::config::Config::from_lookup(lookup).unwrap();
    let settings = Settings::new(&config);
    let app = sre_mini::App::new(config);
    app.state.advance(sre_mini::state::Phase::Serving);
    let gauge = AtomicI64::new(0);
    let mut now = Instant::now();
    let mut conn = Conn::new(now);
    let (mut out, mut fx, mut closed) = (Vec::new(), Vec::new(), false);
    // Carries out effects and takes all output, as a client that reads everything would.
    let settle = |conn: &mut Conn, env: &Env, fx: &mut Vec<Effect>, out: &mut Vec<u8>, closed: &mut bool| loop {
        let mut work = false;
        for e in fx.drain(..) {
            match e {
                Effect::StartWork { .. } => work = true,
                Effect::Close { .. } => *closed = true,
                _ => {}
            }
        }
        if work {
            conn.work_done(env, WorkResult::Done, fx);
            continue;
        }
        let n = conn.output().len();
        if n == 0 {
            break;
        }
        out.extend_from_slice(conn.output());
        conn.written(env, n, fx);
    };
    let mk = |now| Env { app: &app, in_flight: &gauge, settings: &settings, date: "D", now };
    for seg in &case.segments {
        let env = mk(now);
        conn.received(&env, seg, &mut fx);
        settle(&mut conn, &env, &mut fx, &mut out, &mut closed);
    }
    // Cases that end in a timeout: move the clock past it.
    for _ in 0..3 {
        if answers(&out, &case.expect)?.len() >= case.expect.len() {
            break;
        }
        now += Duration::from_millis(1000);
        let env = mk(now);
        conn.tick(&env, &mut fx);
        settle(&mut conn, &env, &mut fx, &mut out, &mut closed);
    }
    let got = answers(&out, &case.expect)?;
    let statuses: Vec<u16> = got.iter().map(|a| a.status).collect();
    let want: Vec<u16> = case.expect.iter().map(|e| e.status).collect();
    if statuses != want {
        return Err(format!("statuses {statuses:?} where {want:?} were expected"));
    }
    let last_closes = got.last().is_some_and(Response::closes);
    let reading = conn.interest(&settings).read && !closed;
    if case.close && !last_closes {
        return Err("the last answer has no Connection: close".into());
    }
    if !case.close {
        if last_closes {
            return Err("the last answer says Connection: close; the connection should go on".into());
        }
        let before = out.len();
        let env = mk(now);
        conn.received(&env, b"GET /healthz HTTP/1.1\r\nHost: corpus\r\n\r\n", &mut fx);
        settle(&mut conn, &env, &mut fx, &mut out, &mut closed);
        let follow = answers(&out[before..], &[])?;
        if follow.len() != 1 || follow[0].status != 200 || !reading {
            return Err("no single 200 for a follow-up on the same connection".into());
        }
    }
    if gauge.load(std::sync::atomic::Ordering::Relaxed) != 0 {
        return Err("requests left in flight".into());
    }
    Ok(statuses)
}

#[test]
fn corpus_through_the_connection_machine() {
    let cases = load_corpus();
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| run_case_in_machine(c).err().map(|e| format!("{}/{}: {e}", c.file, c.name)))
        .collect();
    assert!(
        failures.is_empty(),
        "{} corpus case(s) failed in the machine:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
