//! The service contract, end to end against the built binary: endpoints, headers, HTTP/1.1 framing and
//! persistence, rejections, limits, shutdown, the panic drill and configuration errors.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Reader, Server, run_to_exit};

const FAST: &[(&str, &str)] = &[("WORK_DELAY_MS", "50")];

#[test]
fn every_endpoint_row_with_drills_on() {
    let s = Server::start(FAST);
    let cases: &[(&str, &str, u16, Option<&str>)] = &[
        ("GET", "/healthz", 200, None),
        ("HEAD", "/healthz", 200, None),
        ("GET", "/readyz", 200, None),
        ("HEAD", "/readyz", 200, None),
        ("GET", "/metrics", 200, None),
        ("HEAD", "/metrics", 200, None),
        ("GET", "/work", 200, None),
        ("HEAD", "/work", 200, None),
        ("GET", "/work?cpu_ms=20", 200, None),
        ("GET", "/work?cpu_ms=1001", 400, None),
        ("GET", "/work?cpu_ms=x", 400, None),
        ("GET", "/fail/ready", 200, None),
        ("GET", "/readyz", 503, None),
        ("POST", "/recover/ready", 200, None),
        ("GET", "/readyz", 200, None),
        ("POST", "/fail/ready", 200, None),
        ("GET", "/recover/ready", 200, None),
        ("GET", "/fail/work?ratio=abc", 400, None),
        ("GET", "/fail/work?ratio=2", 400, None),
        ("POST", "/fail/work", 200, None),
        ("GET", "/work", 500, None),
        ("GET", "/recover/work", 200, None),
        ("GET", "/work", 200, None),
        ("POST", "/recover/work", 200, None),
        ("HEAD", "/fail/ready", 405, Some("GET, POST")),
        ("HEAD", "/panic", 405, Some("GET, POST")),
        ("POST", "/healthz", 405, Some("GET, HEAD")),
        ("DELETE", "/work", 405, Some("GET, HEAD")),
        ("PUT", "/metrics", 405, Some("GET, HEAD")),
        ("GET", "/", 404, None),
        ("GET", "/healthz/", 404, None),
        ("PATCH", "/nowhere", 404, None),
    ];
    for &(method, path, status, allow) in cases {
        let r = s.request(format!("{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        assert_eq!(r.status, status, "{method} {path}");
        assert_eq!(r.header("allow"), allow, "{method} {path}");
    }
}

#[test]
fn drills_off_answers_404_on_drill_routes() {
    let s = Server::start(&[("DRILLS", "off"), ("WORK_DELAY_MS", "10")]);
    for path in ["/fail/ready", "/recover/ready", "/fail/work", "/recover/work", "/panic"] {
        for method in ["GET", "POST"] {
            let r = s.request(format!("{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
            assert_eq!(r.status, 404, "{method} {path}");
        }
    }
    assert_eq!(s.get("/readyz").status, 200, "readiness untouched");
    assert_eq!(s.get("/work").status, 200);
    assert_eq!(s.get("/healthz").status, 200);
}

#[test]
fn every_response_carries_the_required_headers() {
    let s = Server::start(FAST);
    for raw in [
        &b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"[..],
        b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\n\r\n",
        b"BAD\r\n\r\n",
    ] {
        let r = s.request(raw);
        for h in ["content-length", "content-type", "date", "x-request-id"] {
            assert!(r.header(h).is_some(), "{h} missing for {:?}", String::from_utf8_lossy(raw));
        }
        assert!(r.header("server").is_none(), "no Server header");
        let date = r.header("date").unwrap();
        assert_eq!(date.len(), 29, "IMF-fixdate: {date}");
        assert!(date.ends_with(" GMT") && date.as_bytes()[3] == b',');
    }
}

#[test]
fn request_id_is_echoed_only_when_well_formed() {
    let s = Server::start(FAST);
    let echo = |id: &str| {
        s.request(format!("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Request-Id: {id}\r\n\r\n").as_bytes())
            .header("x-request-id")
            .unwrap()
            .to_string()
    };
    assert_eq!(echo("abc-123_DEF.9"), "abc-123_DEF.9");
    let long = "a".repeat(128);
    assert_eq!(echo(&long), long);
    for bad in ["a".repeat(129), "has space".into(), "quote\"d".into(), "semi;colon".into()] {
        let got = echo(&bad);
        assert_ne!(got, bad);
        assert!(got.len() <= 128 && got.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
    }
    let a = s.get("/healthz").header("x-request-id").unwrap().to_string();
    let b = s.get("/healthz").header("x-request-id").unwrap().to_string();
    assert_ne!(a, b, "generated ids differ");
}

#[test]
fn head_answers_carry_get_headers_and_no_body() {
    let s = Server::start(FAST);
    for path in ["/healthz", "/readyz", "/work"] {
        let get = s.get(path);
        let mut c = s.connect();
        c.send(format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).unwrap();
        let head = c.final_response(true).unwrap();
        assert_eq!(head.status, get.status);
        assert_eq!(head.header("content-length"), get.header("content-length"), "{path}");
        assert_eq!(head.header("content-type"), get.header("content-type"));
        // No body bytes: the next response on the connection must start right away.
        c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        assert_eq!(c.final_response(false).unwrap().status, 200, "{path}");
    }
    let m = s.request(b"HEAD /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(m.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    assert!(m.header("content-length").unwrap().parse::<usize>().unwrap() > 1000);
}

#[test]
fn keep_alive_follows_each_versions_rules() {
    let s = Server::start(FAST);
    // HTTP/1.1: persistent by default, for as many requests as we like.
    let mut c = s.connect();
    for _ in 0..20 {
        c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = c.final_response(false).unwrap();
        assert_eq!(r.status, 200);
        assert!(!r.closes());
    }
    c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    assert!(c.final_response(false).unwrap().closes());
    assert!(c.is_closed());

    // HTTP/1.0: closes unless asked to keep alive, and then says so.
    let mut c = s.connect();
    c.send(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    assert!(c.final_response(false).unwrap().closes());
    assert!(c.is_closed());
    let mut c = s.connect();
    c.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
    let r = c.final_response(false).unwrap();
    assert_eq!(r.header("connection"), Some("keep-alive"));
    c.send(b"GET /readyz HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(c.final_response(false).unwrap().status, 200);
    assert!(c.is_closed());
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = Server::start(&[("WORK_DELAY_MS", "200")]);
    let mut c = s.connect();
    // /work in the middle takes 200 ms on another thread; the answers must still come in request order.
    c.send(
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Request-Id: one\r\n\r\n\
          GET /work HTTP/1.1\r\nHost: t\r\nX-Request-Id: two\r\n\r\n\
          GET /nope HTTP/1.1\r\nHost: t\r\nX-Request-Id: three\r\n\r\n\
          HEAD /readyz HTTP/1.1\r\nHost: t\r\nX-Request-Id: four\r\n\r\n\
          GET /metrics HTTP/1.1\r\nHost: t\r\nX-Request-Id: five\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let expected =
        [("one", 200, false), ("two", 200, false), ("three", 404, false), ("four", 200, true), ("five", 200, false)];
    for (id, status, head) in expected {
        let r = c.final_response(head).unwrap();
        assert_eq!((r.header("x-request-id").unwrap(), r.status), (id, status));
    }
    assert!(c.is_closed());
}

/// More pipelined answers than the socket buffers hold, to a client that starts reading late: the server must
/// wait for the socket to take more, with one worker and with two. The requests all fit in one read, so no new
/// input wakes the server: only asking for writability does, and without it the answers stall until the write
/// timeout.
#[test]
fn a_late_reader_gets_every_pipelined_answer() {
    // 1,800 requests of 35 bytes stay under the 64 KiB of unanswered input a connection reads ahead; 1,800
    // metrics pages of about 9 KiB are more than loopback's socket buffers take.
    const REQUESTS: usize = 1_800;
    for workers in ["1", "2"] {
        let s = Server::start(&[("WORKERS", workers)]);
        let mut c = s.connect();
        let mut all = b"GET /metrics HTTP/1.1\r\nHost:t\r\n\r\n".repeat(REQUESTS - 1);
        all.extend_from_slice(b"GET /metrics HTTP/1.1\r\nHost:t\r\nConnection: close\r\n\r\n");
        c.send(&all).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let closes = c.count_responses(REQUESTS, 200).unwrap_or_else(|e| panic!("WORKERS={workers}: {e}"));
        assert_eq!(closes, 1, "WORKERS={workers}: only the last answer closes");
        c.expect_eof(Duration::from_secs(5)).unwrap_or_else(|e| panic!("WORKERS={workers}: {e}"));
    }
}

#[test]
fn bodies_are_framed_read_and_discarded() {
    let s = Server::start(&[("MAX_BODY_BYTES", "1000")]);
    let mut c = s.connect();
    // Content-Length body, then a chunked one with an extension and a trailer, then a plain request.
    c.send(b"POST /fail/work?ratio=0 HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world").unwrap();
    assert_eq!(c.final_response(false).unwrap().status, 200);
    c.send(b"POST /recover/work HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n").unwrap();
    assert_eq!(c.final_response(false).unwrap().status, 200);
    c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n").unwrap();
    assert_eq!(c.final_response(false).unwrap().status, 200);
    // A body on GET is framed too: the bytes after it are the next request, not part of this one.
    c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nGET GET /nope HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(c.final_response(false).unwrap().status, 200);
    assert_eq!(c.final_response(false).unwrap().status, 404);

    // Over the cap: 413 at once, without reading the body, and the connection closes.
    let r = s.request(b"POST /recover/work HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n");
    assert_eq!(r.status, 413);
    assert!(r.closes());
    let mut c = s.connect();
    c.send(b"POST /recover/work HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n").unwrap();
    let r = c.final_response(false).unwrap();
    assert_eq!(r.status, 413, "chunked bodies obey the same cap");
    assert!(r.closes());
    // A malformed chunked body is rejected even where the route ignores bodies.
    let r = s.request(b"POST /recover/work HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    assert_eq!(r.status, 400);
    assert!(r.closes());
}

#[test]
fn work_bulkhead_rejects_at_once_and_probes_keep_answering() {
    let s = Server::start(&[("WORK_MAX_CONCURRENT", "4"), ("WORK_DELAY_MS", "2000")]);
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = s.connect();
        c.send(b"GET /work HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        held.push(c);
    }
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..5 {
        let t = Instant::now();
        let r = s.get("/work");
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(t.elapsed() < Duration::from_secs(1), "503 must come at once, took {:?}", t.elapsed());
    }
    // Probes while /work is saturated: each answered well within 100 ms.
    let mut worst = Duration::ZERO;
    for path in ["/healthz", "/readyz", "/metrics"].iter().cycle().take(30) {
        let t = Instant::now();
        assert_eq!(s.get(path).status, 200);
        worst = worst.max(t.elapsed());
    }
    assert!(worst < Duration::from_millis(100), "slowest probe {worst:?}");
    for mut c in held {
        assert_eq!(c.final_response(false).unwrap().status, 200);
    }
    assert_eq!(s.metric("sremini_work_rejections_total"), 5.0);
}

#[test]
fn connection_cap_refuses_clearly_and_per_connection_cap_closes() {
    let s = Server::start(&[("MAX_CONNECTIONS", "3"), ("MAX_REQUESTS_PER_CONNECTION", "3")]);
    let held: Vec<Reader> = (0..3).map(|_| s.connect()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut c = s.connect();
    let r = c.final_response(false).expect("a refusal, not a reset");
    assert_eq!(r.status, 503);
    assert!(r.closes());
    assert!(c.is_closed());
    drop(held);
    std::thread::sleep(Duration::from_millis(100));
    let mut c = s.connect();
    for i in 1..=3 {
        c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = c.final_response(false).unwrap();
        assert_eq!(r.closes(), i == 3, "request {i}");
    }
    assert!(c.is_closed());
    assert!(s.metric("sremini_limit_rejections_total{reason=\"connection_cap\"}") >= 1.0);
}

#[test]
fn idle_and_slow_connections_do_not_hold_workers() {
    // One worker only: if an idle or half-sent connection held it, the probe below could not be answered.
    let s = Server::start(&[("WORKERS", "1")]);
    let mut idle = s.connect();
    idle.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    idle.final_response(false).unwrap();
    let mut slow = s.connect();
    slow.send(b"GET /healthz HTTP/1.1\r\nHo").unwrap();
    let t = Instant::now();
    assert_eq!(s.get("/healthz").status, 200);
    assert!(t.elapsed() < Duration::from_millis(500));
    slow.send(b"st: t\r\n\r\n").unwrap();
    assert_eq!(slow.final_response(false).unwrap().status, 200);
}

#[test]
fn shutdown_drains_in_flight_work_then_exits_zero() {
    let mut s = Server::start(&[("WORK_DELAY_MS", "1500"), ("SHUTDOWN_DELAY_MS", "700"), ("DRAIN_TIMEOUT_MS", "5000")]);
    let addr = s.addr;
    let workers: Vec<_> = (0..20)
        .map(|_| {
            let mut c = s.connect();
            c.send(b"GET /work HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            std::thread::spawn(move || c.final_response(false).ok().map(|r| (r.status, r.closes())))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let signalled = Instant::now();
    s.signal("TERM");
    s.wait_log("\"msg\":\"signal\"", Duration::from_secs(2));
    // Unready at once, alive, and still serving during the delay, with Connection: close.
    let r = s.get("/readyz");
    assert_eq!(r.status, 503);
    let r = s.request(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(r.closes(), "every response closes while shutting down");
    assert_eq!(s.get("/recover/ready").status, 409);
    for w in workers {
        assert_eq!(w.join().unwrap(), Some((200, true)), "in-flight /work completes with 200");
    }
    s.wait_log("\"msg\":\"draining\"", Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(100));
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(), "listener closed after the delay");
    let status = s.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(signalled.elapsed() >= Duration::from_millis(700));
    s.wait_log("\"msg\":\"stopped\"", Duration::from_secs(1));
}

#[test]
fn drain_timeout_abandons_and_exits_non_zero() {
    let mut s = Server::start(&[("WORK_DELAY_MS", "5000"), ("SHUTDOWN_DELAY_MS", "0"), ("DRAIN_TIMEOUT_MS", "300")]);
    let mut c = s.connect();
    c.send(b"GET /work HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    s.signal("TERM");
    let status = s.wait_exit(Duration::from_secs(5));
    assert_ne!(status.code(), Some(0));
    let stopped = s.wait_log("\"msg\":\"stopped\"", Duration::from_secs(1));
    assert!(stopped.contains("\"abandoned_requests\":1"), "{stopped}");
}

#[test]
fn a_second_signal_exits_at_once() {
    let mut s = Server::start(&[("SHUTDOWN_DELAY_MS", "30000")]);
    s.signal("TERM");
    s.wait_log("\"msg\":\"signal\"", Duration::from_secs(2));
    let t = Instant::now();
    s.signal("INT");
    let status = s.wait_exit(Duration::from_secs(3));
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(status.code(), Some(128 + 2));
}

#[test]
fn panic_drill_kills_the_process_with_a_logged_error() {
    let mut s = Server::start(&[]);
    let mut c = s.connect();
    let t = Instant::now();
    c.send(b"POST /panic HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let status = s.wait_exit(Duration::from_secs(1));
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(status.code(), Some(101));
    let line = s.wait_log("panic drill", Duration::from_secs(1));
    assert!(line.contains("\"level\":\"error\""));
}

#[test]
fn bad_config_exits_2_with_one_line_naming_the_variable() {
    for (name, value) in [
        ("PORT", "http"),
        ("WORK_DELAY_MS", "60001"),
        ("SHUTDOWN_DELAY_MS", "-1"),
        ("DRAIN_TIMEOUT_MS", "1e3"),
        ("DRILLS", "maybe"),
        ("WORK_MAX_CONCURRENT", "0"),
        ("HEADER_TIMEOUT_MS", "31000"),
    ] {
        let (status, stdout, stderr) = run_to_exit(&[(name, value)], &[]);
        assert_eq!(status.code(), Some(2), "{name}={value}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(name) && stderr.contains("accepts"), "{stderr}");
        assert!(!stderr.contains("panicked"));
        assert!(stdout.is_empty());
    }
    let (status, _, stderr) = run_to_exit(&[], &["--bogus"]);
    assert_eq!(status.code(), Some(2));
    assert_eq!(stderr.lines().count(), 1);
}

#[test]
fn help_lists_every_variable_and_probe_mode_works() {
    let (status, stdout, _) = run_to_exit(&[], &["--help"]);
    assert!(status.success());
    for v in sre_mini::config::VARS {
        assert!(stdout.contains(v.name), "{}", v.name);
    }
    let s = Server::start(&[]);
    let url = format!("http://127.0.0.1:{}/healthz", s.addr.port());
    assert!(run_to_exit(&[], &["probe", &url]).0.success());
    s.get("/fail/ready");
    let url = format!("http://127.0.0.1:{}/readyz", s.addr.port());
    assert_eq!(run_to_exit(&[], &["probe", &url]).0.code(), Some(1));
    assert_eq!(run_to_exit(&[], &["probe", "http://127.0.0.1:1/healthz"]).0.code(), Some(1));
}

#[test]
fn request_log_lines_have_every_field_escaped_and_bounded() {
    let s = Server::start(&[]);
    let ua = format!("evil\"agent\\{}", "u".repeat(3000));
    s.request(
        format!("GET /healthz HTTP/1.1\r\nHost: t\r\nUser-Agent: {ua}\r\nX-Request-Id: trace-1\r\n\r\n").as_bytes(),
    );
    let line = s.wait_log("\"request_id\":\"trace-1\"", Duration::from_secs(2));
    for key in [
        "ts",
        "level",
        "msg",
        "method",
        "route",
        "path",
        "status",
        "duration_ms",
        "bytes",
        "remote",
        "request_id",
        "user_agent",
    ] {
        assert!(line.contains(&format!("\"{key}\":")), "{key} missing: {line}");
    }
    assert!(line.contains("evil\\\"agent\\\\"));
    assert!(line.len() < 2_000, "user agent truncated to 1 KiB");
    let ts = common::json_field(&line, "ts").unwrap();
    assert!(ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
    let starting = s.wait_log("\"msg\":\"starting\"", Duration::from_secs(1));
    assert!(starting.contains("\"config\":{") && starting.contains("\"work_delay_ms\":2000"));
}

#[test]
fn readme_documents_every_variable_with_its_default_and_range() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for v in sre_mini::config::VARS {
        let row = format!("| `{}` | {} | {} |", v.name, v.default, v.accepts);
        assert!(readme.contains(&row), "README config table lacks or disagrees with: {row}");
    }
    // And nothing else: every row of the table is a variable the binary reads, each once.
    let rows: Vec<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split_once('`').map(|(name, _)| name))
        .filter(|name| name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
        .collect();
    let vars: Vec<&str> = sre_mini::config::VARS.iter().map(|v| v.name).collect();
    assert_eq!(rows, vars, "README config table rows, in order");
}

#[test]
fn every_state_changing_request_leaves_exactly_one_audit_record() {
    let mut s = Server::start(FAST);
    // (method, target, status, action, from, to, X-Forwarded-For)
    let drills: &[(&str, &str, u16, &str, &str, &str, &str)] = &[
        ("POST", "/fail/ready", 200, "fail_ready", "off", "failed", "203.0.113.7"),
        ("GET", "/fail/ready", 200, "fail_ready", "failed", "failed", ""),
        ("POST", "/recover/ready", 200, "recover_ready", "failed", "off", ""),
        ("POST", "/fail/work?ratio=0.5", 200, "fail_work", "0", "0.5", "198.51.100.2, 10.0.0.1"),
        ("GET", "/fail/work?ratio=2", 400, "fail_work", "0.5", "0.5", ""),
        ("POST", "/recover/work", 200, "recover_work", "0.5", "0", ""),
    ];
    for (i, &(method, target, status, action, from, to, xff)) in drills.iter().enumerate() {
        let xff_header = if xff.is_empty() { String::new() } else { format!("X-Forwarded-For: {xff}\r\n") };
        let raw = format!(
            "{method} {target} HTTP/1.1\r\nHost: t\r\nUser-Agent: auditor/{i}\r\nX-Request-Id: audit-{i}\r\n{xff_header}Connection: close\r\n\r\n"
        );
        assert_eq!(s.request(raw.as_bytes()).status, status, "{method} {target}");
        // The record is written before the response, but the harness reads stdout on its own thread: poll.
        let needle = format!("\"request_id\":\"audit-{i}\"");
        let deadline = Instant::now() + Duration::from_secs(2);
        let line = loop {
            let found = s
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains("\"msg\":\"audit\"") && l.contains(&needle))
                .cloned();
            match found {
                Some(l) => break l,
                None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                None => panic!("no audit record for {method} {target} within 2 s"),
            }
        };
        assert_eq!(common::json_field(&line, "action").as_deref(), Some(action), "{line}");
        assert_eq!(common::json_field(&line, "from").as_deref(), Some(from), "{line}");
        assert_eq!(common::json_field(&line, "to").as_deref(), Some(to), "{line}");
        let changed = if from == to { "false" } else { "true" };
        assert_eq!(common::json_field(&line, "changed").as_deref(), Some(changed), "{line}");
        assert_eq!(common::json_field(&line, "method").as_deref(), Some(method), "{line}");
        assert_eq!(common::json_field(&line, "user_agent"), Some(format!("auditor/{i}")), "{line}");
        assert!(common::json_field(&line, "remote").is_some_and(|r| r.starts_with("127.0.0.1:")), "{line}");
        assert!(line.contains(&format!("\"status\":{status}")), "{line}");
        assert_eq!(common::json_field(&line, "forwarded_for").unwrap_or_default(), xff, "{line}");
    }
    // Requests that change nothing leave no record: probes, metrics, /work, a drill route with a method it refuses.
    s.get("/healthz");
    s.get("/readyz");
    s.get("/work");
    assert_eq!(s.request(b"HEAD /fail/ready HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").status, 405);
    assert_eq!(
        s.request(b"PUT /panic HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").status,
        405
    );
    for (action, n) in
        [("fail_ready", 2.0), ("recover_ready", 1.0), ("fail_work", 2.0), ("recover_work", 1.0), ("panic", 0.0)]
    {
        assert_eq!(s.metric(&format!("sremini_audit_events_total{{action=\"{action}\"}}")), n, "{action}");
    }
    let audits = |s: &Server| s.lines.lock().unwrap().iter().filter(|l| l.contains("\"msg\":\"audit\"")).count();
    assert_eq!(audits(&s), drills.len(), "one record per drill request, none for anything else");
    for i in 0..drills.len() {
        let n = s
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(&format!("\"request_id\":\"audit-{i}\"")) && l.contains("\"msg\":\"audit\""))
            .count();
        assert_eq!(n, 1, "request audit-{i} has {n} audit records");
    }

    // /panic is recorded before the process ends.
    let mut c = s.connect();
    c.send(b"POST /panic HTTP/1.1\r\nHost: t\r\nX-Request-Id: audit-panic\r\n\r\n").unwrap();
    assert_eq!(s.wait_exit(Duration::from_secs(2)).code(), Some(101));
    let line = s.wait_log("\"request_id\":\"audit-panic\"", Duration::from_secs(1));
    assert!(
        line.contains(
            "\"msg\":\"audit\",\"action\":\"panic\",\"target\":\"process\",\"from\":\"running\",\"to\":\"exiting\""
        ),
        "{line}"
    );
    assert_eq!(audits(&s), drills.len() + 1);
}
