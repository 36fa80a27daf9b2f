//! Connection machine: arbitrary event sequences (bytes in arbitrary splits, EOF, late answers, the clock,
//! partial writes, drain, shutdown, socket errors), with requests answered from a canned table: no application.
//! Invariants: no panic; answers leave in the order their records were emitted (the status lines written are the
//! records' statuses, in order; a close may drop only the unwritten tail); nothing is queued or emitted after
//! `Close`; the in-flight count never goes below zero and is zero once the connection is closed.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sre_mini::config::Config;
use sre_mini::conn::{Conn, Effect, Env, Request, Settings};
use sre_mini::http::response::Response;

const VARS: &[(&str, &str)] = &[
    ("MAX_HEADER_BYTES", "1024"),
    ("MAX_HEADER_FIELDS", "8"),
    ("MAX_BODY_BYTES", "64"),
    ("MAX_REQUESTS_PER_CONNECTION", "4"),
    ("HEADER_TIMEOUT_MS", "100"),
    ("BODY_TIMEOUT_MS", "100"),
    ("IDLE_TIMEOUT_MS", "1000"),
    ("WRITE_TIMEOUT_MS", "100"),
];

/// Status codes of the final (non-100) answers in `out`, in order.
fn statuses(out: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(out);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .filter(|&s| s != 100)
        .collect()
}

/// The canned answer: a path starting with /l is answered later (as /work is), others now by their length.
fn canned(req: &Request) -> Option<Response> {
    let status = [200, 404, 400, 503][req.path.len() % 4];
    (!req.path.starts_with("/l")).then(|| Response::text(status, "canned\n"))
}

fuzz_target!(|data: &[u8]| {
    let config = Config::from_lookup(|k| VARS.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())).unwrap();
    let settings = Settings::new(&config);
    let mut shutting_down = false;
    let mut gauge = 0i64;
    let mut later: Option<Box<Request>> = None;
    let mut now = Instant::now();
    let mut conn = Conn::new(now);
    let mut fx = Vec::new();
    let mut written = Vec::new();
    let mut recorded = Vec::new();
    let mut closed = false;
    let mut i = 0;
    while i < data.len() {
        let op = data[i];
        let arg = data.get(i + 1).copied().unwrap_or(0) as usize;
        i += 2;
        let env = Env { settings: &settings, date: "D", now, shutting_down };
        match op % 9 {
            0..=2 => {
                let start = i.min(data.len());
                let end = (start + arg).min(data.len());
                conn.received(&env, &data[start..end], &mut fx);
                i = end;
            }
            3 => conn.peer_closed(&env, &mut fx),
            4 => {
                if let Some(req) = later.take() {
                    conn.respond(&env, *req, Response::text([200, 500, 503][arg % 3], "late\n"), &mut fx);
                }
            }
            5 => {
                now += Duration::from_millis(arg as u64 * 10);
                let env = Env { now, ..env };
                conn.tick(&env, &mut fx);
            }
            6 => {
                let n = conn.output().len().min(if arg == 0 { usize::MAX } else { arg * 64 });
                written.extend_from_slice(&conn.output()[..n]);
                conn.written(&env, n, &mut fx);
            }
            7 => conn.drain(&env, &mut fx),
            _ => {
                if arg % 2 == 0 {
                    shutting_down = true;
                } else {
                    conn.abort(&mut fx);
                }
            }
        }
        let mut k = 0;
        while k < fx.len() {
            let e = std::mem::replace(&mut fx[k], Effect::Linger);
            k += 1;
            assert!(!closed, "effect after Close: {e:?}");
            match e {
                Effect::Head => gauge += 1,
                Effect::Request(req) => match canned(&req) {
                    Some(resp) => conn.respond(&env, *req, resp, &mut fx),
                    None => later = Some(req),
                },
                Effect::Record(r) => {
                    gauge -= i64::from(r.req.in_flight);
                    recorded.push(r.status);
                }
                Effect::Close { abandoned } => {
                    gauge -= i64::from(abandoned);
                    closed = true;
                }
                _ => {}
            }
        }
        fx.clear();
        assert!(gauge >= 0, "in-flight below zero");
        assert_eq!(closed, conn.is_closed());
        if closed {
            assert!(conn.output().is_empty(), "output queued after Close");
            assert_eq!(gauge, 0, "in-flight not back to zero after Close");
        }
    }
    // Whatever is still queued goes out. The written stream holds the recorded answers in record order; a close
    // (socket error, write timeout) may drop the unwritten tail, never an answer in the middle.
    written.extend_from_slice(conn.output());
    let sent = statuses(&written);
    assert!(recorded.starts_with(&sent), "answers out of record order: wrote {sent:?}, recorded {recorded:?}");
    if !closed {
        assert_eq!(sent, recorded, "a recorded answer missing from the output");
    }
    conn.abort(&mut fx);
    for e in fx.drain(..) {
        if let Effect::Close { abandoned } = e {
            gauge -= i64::from(abandoned);
        }
    }
    assert_eq!(gauge, 0, "in-flight not back to zero");
});
