//! The adversarial request corpus, at two depths. Every case in tests/corpus/*.txt is sent on its own connection
//! to ONE running server (once with one worker, once with two sharing one readiness set), which must answer with
//! exactly the expected statuses, close (or keep) the connection as expected, and still answer a fresh
//! `GET /healthz` afterwards; a case that names the parser's `reason:` must count once under that reason in
//! `sremini_parse_errors_total`. Every case also runs through the connection machine alone (`sre_mini::conn`, no
//! socket, the clock moved by hand), which must give the same answers.
//! The format is described in tests/corpus/README.md and decoded by tests/corpus/format.rs, which the parser's
//! unit tests read too (they check each case's `reason:` against the head parser).

mod common;
#[path = "corpus/format.rs"]
mod format;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{BIN, Reader, Response, Server, load};
use format::{Case, Expected, decode_raw};

const MIN_CASES: usize = 60;
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The configuration every case runs under, on the live server and in the machine alone (tests/corpus/README.md):
/// short header and body timeouts so the timeout cases end quickly, a short /work; every limit at its default.
const CORPUS_ENV: [(&str, &str); 3] =
    [("HEADER_TIMEOUT_MS", "1000"), ("BODY_TIMEOUT_MS", "1000"), ("WORK_DELAY_MS", "100")];

fn load_corpus() -> Vec<Case> {
    format::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus"))
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

/// One worker: every report comes back to the same thread.
#[test]
fn corpus_against_one_server() {
    corpus_against_a_server_with_workers("1");
}

/// Two workers on one readiness set: any of them may take a connection's next report.
#[test]
fn corpus_against_one_server_with_two_workers() {
    corpus_against_a_server_with_workers("2");
}

fn corpus_against_a_server_with_workers(workers: &str) {
    let cases = load_corpus();
    assert!(cases.len() >= MIN_CASES);
    let mut env = CORPUS_ENV.to_vec();
    env.push(("WORKERS", workers));
    let server = Server::start(&env);
    eprintln!("corpus: {} cases from tests/corpus/*.txt against {BIN} with WORKERS={workers}", cases.len());
    let started = Instant::now();
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let t = Instant::now();
        let counted_before = case.reason.as_ref().map(|_| parse_errors(&server));
        let outcome = run_case(&server, case, i).and_then(|got| match &counted_before {
            Some(before) => counted_once(before, &parse_errors(&server), case.reason.as_deref().unwrap()).map(|_| got),
            None => Ok(got),
        });
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

/// `sremini_parse_errors_total` by reason, from one scrape.
fn parse_errors(server: &Server) -> std::collections::BTreeMap<String, f64> {
    let text = server.get("/metrics").body_text();
    text.lines()
        .filter_map(|l| l.strip_prefix("sremini_parse_errors_total{reason=\""))
        .filter_map(|l| l.split_once("\"} "))
        .map(|(reason, v)| (reason.to_string(), v.parse().unwrap()))
        .collect()
}

/// A rejected head counts once, under the reason the case names, and under no other.
fn counted_once(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
    reason: &str,
) -> Result<(), String> {
    let moved: Vec<_> = after
        .iter()
        .map(|(r, v)| (r.as_str(), v - before.get(r).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d != 0.0)
        .collect();
    if moved == [(reason, 1.0)] {
        Ok(())
    } else {
        Err(format!("sremini_parse_errors_total moved by {moved:?}, expected +1 for reason {reason:?}"))
    }
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

/// Runs one case through the connection machine and the application: no socket, the clock moved by hand,
/// /work finished at once.
fn run_case_in_machine(case: &Case) -> Result<Vec<u16>, String> {
    use sre_mini::conn::{Conn, Effect, Env, Settings};
    let lookup = |k: &str| CORPUS_ENV.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
    let config = sre_mini::config::Config::from_lookup(lookup).unwrap();
    let settings = Settings::new(&config);
    let app = sre_mini::app::App::new(config);
    app.state.advance(sre_mini::state::Phase::Serving);
    let mut in_flight = 0i64;
    let mut now = Instant::now();
    let mut conn = Conn::new(now);
    let (mut out, mut fx, mut closed) = (Vec::new(), Vec::new(), false);
    // Carries out effects and takes all output, as a client that reads everything would.
    let mut settle = |conn: &mut Conn, env: &Env, fx: &mut Vec<Effect>, out: &mut Vec<u8>, closed: &mut bool| loop {
        let mut i = 0;
        while i < fx.len() {
            match std::mem::replace(&mut fx[i], Effect::Head) {
                Effect::Head => in_flight += 1,
                Effect::Record(r) => in_flight -= i64::from(r.req.in_flight),
                Effect::Close { abandoned } => {
                    in_flight -= i64::from(abandoned);
                    *closed = true;
                }
                Effect::Request(req) => {
                    let (tx, rx) = std::sync::mpsc::channel();
                    let mut log = sre_mini::log::LineBuffer::default();
                    let answered = app.answer(req, "corpus", &mut log, move |req, _| tx.send(req).unwrap());
                    let (req, resp) = match answered {
                        Some(answer) => answer,
                        None => (rx.recv().unwrap(), app.work_answer(sre_mini::bulkhead::WorkOutcome::Done)),
                    };
                    conn.respond(env, *req, resp, fx);
                }
                _ => {}
            }
            i += 1;
        }
        fx.clear();
        let n = conn.output().len();
        if n == 0 {
            break;
        }
        out.extend_from_slice(conn.output());
        conn.written(env, n, fx);
    };
    let mk = |now| Env { settings: &settings, date: "D", now, shutting_down: false };
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
    if in_flight != 0 {
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
