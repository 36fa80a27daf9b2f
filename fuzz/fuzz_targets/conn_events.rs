//! Connection machine: arbitrary event sequences (bytes in arbitrary splits, EOF, /work results, the clock,
//! partial writes, drain, shutdown, socket errors). Invariants: no panic; answers leave in the order their
//! records were emitted (the status lines written are the records' statuses, in order; a close may drop only the
//! unwritten tail); nothing is queued or emitted after `Close`; the in-flight gauge never goes below zero and is
//! zero once the connection is closed.
#![no_main]

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sre_mini::App;
use sre_mini::config::Config;
use sre_mini::conn::{Conn, Effect, Env, Settings, WorkResult};
use sre_mini::state::Phase;

const VARS: &[(&str, &str)] = &[
    ("DRILLS", "off"),
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

fuzz_target!(|data: &[u8]| {
    let config = Config::from_lookup(|k| VARS.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())).unwrap();
    let settings = Settings::new(&config);
    let app = App::new(config);
    let gauge = AtomicI64::new(0);
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
        let env = Env { app: &app, in_flight: &gauge, settings: &settings, date: "D", now };
        match op % 9 {
            0..=2 => {
                let start = i.min(data.len());
                let end = (start + arg).min(data.len());
                conn.received(&env, &data[start..end], &mut fx);
                i = end;
            }
            3 => conn.peer_closed(&env, &mut fx),
            4 => {
                let r = [WorkResult::Done, WorkResult::Panicked, WorkResult::Refused][arg % 3];
                conn.work_done(&env, r, &mut fx);
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
                    app.state.advance(Phase::ShuttingDown);
                } else {
                    conn.abort(&env, &mut fx);
                }
            }
        }
        for e in fx.drain(..) {
            assert!(!closed, "effect after Close: {e:?}");
            match e {
                Effect::Record(r) => recorded.push(r.status),
                Effect::Close { .. } => closed = true,
                Effect::PanicDrill { .. } => panic!("drill route reached with no drill in the input"),
                _ => {}
            }
        }
        assert!(gauge.load(Ordering::Relaxed) >= 0, "in-flight below zero");
        assert_eq!(closed, conn.is_closed());
        if closed {
            assert!(conn.output().is_empty(), "output queued after Close");
            assert_eq!(gauge.load(Ordering::Relaxed), 0, "in-flight not back to zero after Close");
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
    let env = Env { app: &app, in_flight: &gauge, settings: &settings, date: "D", now };
    conn.abort(&env, &mut fx);
    assert_eq!(gauge.load(Ordering::Relaxed), 0, "in-flight not back to zero");
});
