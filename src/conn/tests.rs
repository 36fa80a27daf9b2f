//! Table tests for the connection machine: event sequences in, answers and effects out, no sockets and no
//! application: requests are answered from a canned table. Every row also checks the invariants the fuzz target
//! checks: nothing after `Close`, and the in-flight count back at zero once the connection is closed or idle.

use std::time::{Duration, Instant};

use super::*;
use crate::config::Config;
use crate::labels::Route;

/// How the canned application ends a request it started as /work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WorkResult {
    Done,
    Panicked,
    Refused,
}

/// The canned application: /healthz 200, /readyz 503 (never ready here), /work later, anything else 404.
fn canned(req: &Request) -> Option<(Route, Response)> {
    match req.path.as_str() {
        "/healthz" => Some((Route::Healthz, Response::text(200, "ok\n"))),
        "/readyz" => Some((Route::Readyz, Response::text(503, "not ready\n"))),
        "/work" => None,
        _ => Some((Route::Unmatched, Response::text(404, "not found\n"))),
    }
}

/// One event for the machine, as a row step.
#[derive(Debug, Clone, Copy)]
enum Step {
    Send(&'static [u8]),
    Eof,
    Work(WorkResult),
    /// Advance the clock by this many milliseconds, then tick.
    Wait(u64),
    /// Stop taking output from the machine (the client does not read), or start again.
    Hold,
    Release,
    Drain,
    /// The server starts shutting down.
    ShutDown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Keep-alive: still reading requests.
    Open,
    /// Half-closed, reading out.
    Lingering,
    Closed,
    /// Closed with a request in flight, unanswered.
    Abandoned,
}

/// A socketless loop: carries out effects into plain fields and checks the invariants on every event.
struct Harness {
    settings: Settings,
    shutting_down: bool,
    /// Requests in flight, as the caller counts them from the effects.
    gauge: i64,
    /// The request the machine handed over for /work, until it is answered.
    working: Option<Box<Request>>,
    conn: Conn,
    now: Instant,
    hold: bool,
    written: Vec<u8>,
    statuses: Vec<u16>,
    records: Vec<Record>,
    limits: Vec<&'static str>,
    parse_errors: Vec<&'static str>,
    works: usize,
    lingered: bool,
    closed: Option<bool>,
}

impl Harness {
    fn new(vars: &[(&str, &str)]) -> Harness {
        let config = Config::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())).unwrap();
        let settings = Settings::new(&config);
        let now = Instant::now();
        Harness {
            settings,
            shutting_down: false,
            gauge: 0,
            working: None,
            conn: Conn::new(now),
            now,
            hold: false,
            written: Vec::new(),
            statuses: Vec::new(),
            records: Vec::new(),
            limits: Vec::new(),
            parse_errors: Vec::new(),
            works: 0,
            lingered: false,
            closed: None,
        }
    }

    fn env(&self) -> Env<'_> {
        Env { settings: &self.settings, date: "D", now: self.now, shutting_down: self.shutting_down }
    }

    fn event(&mut self, f: impl FnOnce(&mut Conn, &Env, &mut Vec<Effect>)) {
        let mut fx = Vec::new();
        let settings = self.settings.clone();
        let env = Env { settings: &settings, date: "D", now: self.now, shutting_down: self.shutting_down };
        f(&mut self.conn, &env, &mut fx);
        loop {
            let mut i = 0;
            while i < fx.len() {
                let e = std::mem::replace(&mut fx[i], Effect::Head);
                i += 1;
                assert!(self.closed.is_none(), "effect {e:?} after Close");
                match e {
                    Effect::Head => self.gauge += 1,
                    Effect::Request(mut req) => match canned(&req) {
                        Some((route, resp)) => {
                            req.route = Some(route);
                            self.conn.respond(&env, *req, resp, &mut fx);
                        }
                        None => {
                            self.works += 1;
                            self.working = Some(req);
                        }
                    },
                    Effect::Record(r) => {
                        self.gauge -= i64::from(r.req.in_flight);
                        self.statuses.push(r.status);
                        self.records.push(*r);
                    }
                    Effect::Limit(l) => self.limits.push(l.label()),
                    Effect::ParseError(p) => self.parse_errors.push(p),
                    Effect::Linger => self.lingered = true,
                    Effect::Close { abandoned } => {
                        self.gauge -= i64::from(abandoned);
                        self.closed = Some(abandoned);
                    }
                }
            }
            fx.clear();
            let n = self.conn.output().len();
            if self.hold || n == 0 {
                break;
            }
            self.written.extend_from_slice(self.conn.output());
            self.conn.written(&env, n, &mut fx);
        }
        assert!(self.gauge >= 0, "in-flight below zero");
        if self.conn.is_closed() {
            assert!(self.conn.output().is_empty(), "output left after Close");
        }
    }

    fn work_done(&mut self, result: WorkResult) {
        let Some(req) = self.working.take() else { return };
        let resp = match result {
            WorkResult::Done => Response::text(200, "work done\n"),
            WorkResult::Panicked => Response::text(500, "internal error\n"),
            WorkResult::Refused => Response::text(503, "/work is at capacity\n").with("Retry-After", "1"),
        };
        self.event(|c, env, fx| c.respond(env, *req, resp, fx));
    }

    fn run(&mut self, steps: &[Step]) {
        for step in steps {
            match *step {
                Step::Send(b) => self.event(|c, env, fx| c.received(env, b, fx)),
                Step::Eof => self.event(|c, env, fx| c.peer_closed(env, fx)),
                Step::Work(r) => self.work_done(r),
                Step::Wait(ms) => {
                    self.now += Duration::from_millis(ms);
                    self.event(|c, env, fx| c.tick(env, fx));
                }
                Step::Hold => self.hold = true,
                Step::Release => {
                    self.hold = false;
                    self.event(|_, _, _| {});
                }
                Step::Drain => self.event(|c, env, fx| c.drain(env, fx)),
                Step::ShutDown => self.shutting_down = true,
            }
        }
    }

    fn end(&self) -> End {
        match (self.conn.is_closed(), &self.conn.state) {
            (true, _) if self.closed == Some(true) => End::Abandoned,
            (true, _) => End::Closed,
            (false, State::Lingering { .. }) => End::Lingering,
            (false, _) => End::Open,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.written).into_owned()
    }
}

const GET: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
const WORK: &[u8] = b"GET /work HTTP/1.1\r\nHost: t\r\n\r\n";

struct Row {
    name: &'static str,
    vars: &'static [(&'static str, &'static str)],
    steps: &'static [Step],
    statuses: &'static [u16],
    /// Limit and parse-error labels, in order.
    rejects: &'static [&'static str],
    end: End,
    /// The last answer says `Connection: close`.
    closes: bool,
}

use Step::*;

const ROWS: &[Row] = &[
    Row {
        name: "pipelined requests answered in order",
        vars: &[],
        steps: &[Send(
            b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n\r\nHEAD /readyz HTTP/1.1\r\nHost: t\r\n\r\n",
        )],
        statuses: &[200, 404, 503],
        rejects: &[],
        end: End::Open,
        closes: false,
    },
    Row {
        name: "head split across reads, second request split mid-line",
        vars: &[],
        steps: &[Send(b"GET /healthz HT"), Send(b"TP/1.1\r\nHost: t\r\n\r\nGET /x HT"), Send(b"TP/1.1\r\nHost: t\r\n\r\n")],
        statuses: &[200, 404],
        rejects: &[],
        end: End::Open,
        closes: false,
    },
    Row {
        name: "content-length body read in pieces",
        vars: &[],
        steps: &[Send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello"), Send(b"world")],
        statuses: &[200],
        rejects: &[],
        end: End::Open,
        closes: false,
    },
    Row {
        name: "chunked body, then a pipelined request",
        vars: &[],
        steps: &[Send(
            b"GET /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
        )],
        statuses: &[200, 200],
        rejects: &[],
        end: End::Open,
        closes: false,
    },
    Row {
        name: "100-continue when the client waits for it",
        vars: &[],
        steps: &[
            Send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"),
            Send(b"ok"),
        ],
        statuses: &[200],
        rejects: &[],
        end: End::Open,
        closes: false,
    },
    Row {
        name: "malformed request line: 400, close, linger",
        vars: &[],
        steps: &[Send(b"GET  /healthz HTTP/1.1\r\nHost: t\r\n\r\n")],
        statuses: &[400],
        rejects: &["parse"],
        end: End::Lingering,
        closes: true,
    },
    Row {
        name: "request line too long: 414",
        vars: &[("MAX_REQUEST_LINE_BYTES", "8000")],
        steps: &[Send(&[b'A'; 8100])],
        statuses: &[414],
        rejects: &["request_line_too_long", "parse"],
        end: End::Lingering,
        closes: true,
    },
    Row {
        name: "too many fields: 431",
        vars: &[("MAX_HEADER_FIELDS", "2")],
        steps: &[Send(b"GET / HTTP/1.1\r\nHost: t\r\nA: 1\r\nB: 2\r\n\r\n")],
        statuses: &[431],
        rejects: &["too_many_fields", "parse"],
        end: End::Lingering,
        closes: true,
    },
    Row {
        name: "field section too large: 431",
        vars: &[("MAX_HEADER_BYTES", "1024")],
        steps: &[Send(b"GET / HTTP/1.1\r\nHost: t\r\nX: "), Send(&[b'x'; 1100]), Send(b"\r\n")],
        statuses: &[431],
        rejects: &["header_too_large", "parse"],
        end: End::Lingering,
        closes: true,
    },
    Row {
        name: "declared body over the limit: 413 before reading it",
        vars: &[("MAX_BODY_BYTES", "10")],
        steps: &[Send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n")],
        statuses: &[413],
        rejects: &["body_too_large"],
        end: End::Lingering,
        closes: true,
    },
    Row {
        name: "chunked body over the limit: 413",
        vars: &[("MAX_BODY_BYTES", "4")],
        steps: &[Send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")],
        statuses: &[413],
        rejects: &["body_too_large"],
        end: End::Lingering,
        closes: true,
    },
    Row {
        name: "bad chunk size: 400",
        vars: &[],
        steps: &[Send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")],
        statuses: &[400],
        rejects: &["parse"],
        end: End::Lingering,
        closes: true,
    },
    Row {
        name: "head not finished in time: 408, linger, then closed",
        vars: &[("HEADER_TIMEOUT_MS", "1000")],
        steps: &[Send(b"GET /healthz HTTP/1.1\r\n"), Wait(999), Wait(1), Wait(2000)],
        statuses: &[408],
        rejects: &["header_timeout"],
        end: End::Closed,
        closes: true,
    },
    Row {
        name: "fresh connection that never speaks: closed at the header timeout, counted",
        vars: &[("HEADER_TIMEOUT_MS", "1000")],
        steps: &[Wait(1000)],
        statuses: &[],
        rejects: &["header_timeout"],
        end: End::Closed,
        closes: false,
    },
    Row {
        name: "idle keep-alive connection: closed at the idle timeout, not counted",
        vars: &[("IDLE_TIMEOUT_MS", "1000"), ("HEADER_TIMEOUT_MS", "500")],
        steps: &[Send(GET), Wait(999), Wait(1)],
        statuses: &[200],
        rejects: &[],
        end: End::Closed,
        closes: false,
    },
    Row {
        name: "body not finished in time: 408",
        vars: &[("BODY_TIMEOUT_MS", "1000")],
        steps: &[Send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nab"), Wait(1000)],
        statuses: &[408],
        rejects: &["body_timeout"],
        end: End::Lingering,
        closes: true,
    },
    Row {
        name: "client that does not read: closed at the write timeout",
        vars: &[("WRITE_TIMEOUT_MS", "1000")],
        steps: &[Hold, Send(GET), Wait(1000)],
        statuses: &[200],
        rejects: &["write_timeout"],
        end: End::Closed,
        closes: false,
    },
    Row {
        name: "Connection: close answers, then closes without lingering",
        vars: &[],
        steps: &[Send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")],
        statuses: &[200],
        rejects: &[],
        end: End::Closed,
        closes: true,
    },
    Row {
        name: "Connection: close with requests pipelined after it: they are read out, not answered",
        vars: &[],
        steps: &[Send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n")],
        statuses: &[200],
        rejects: &[],
        end: End::Lingering,
        closes: true,
    },
    Row {
        name: "HTTP/1.0 closes by default",
        vars: &[],
        steps: &[Send(b"GET /healthz HTTP/1.0\r\n\r\n")],
        statuses: &[200],
        rejects: &[],
        end: End::Closed,
        closes: true,
    },
    Row {
        name: "HTTP/1.0 keep-alive is confirmed and kept",
        vars: &[],
        steps: &[Send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")],
        statuses: &[200],
        rejects: &[],
        end: End::Open,
        closes: false,
    },
    Row {
        name: "per-connection cap: the last allowed answer closes",
        vars: &[("MAX_REQUESTS_PER_CONNECTION", "2")],
        steps: &[Send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")],
        statuses: &[200, 200],
        rejects: &[],
        end: End::Lingering,
        closes: true,
    },
    Row {
        name: "shutting down: answers close the connection",
        vars: &[],
        steps: &[Send(GET), ShutDown, Send(GET)],
        statuses: &[200, 200],
        rejects: &[],
        end: End::Closed,
        closes: true,
    },
    Row {
        name: "drain closes an idle keep-alive connection",
        vars: &[],
        steps: &[Send(GET), Drain],
        statuses: &[200],
        rejects: &[],
        end: End::Closed,
        closes: false,
    },
    Row {
        name: "drain gives a fresh connection its grace, then closes it",
        vars: &[("HEADER_TIMEOUT_MS", "30000")],
        steps: &[Drain, Wait(1999), Drain, Wait(1), Drain],
        statuses: &[],
        rejects: &[],
        end: End::Closed,
        closes: false,
    },
    Row {
        name: "drain leaves a request in progress alone",
        vars: &[],
        steps: &[Send(b"GET /healthz HTTP/1.1\r\n"), Drain, Send(b"Host: t\r\n\r\n")],
        statuses: &[200],
        rejects: &[],
        end: End::Open,
        closes: false,
    },
    Row {
        name: "/work: later pipelined input waits, answers stay in order",
        vars: &[],
        steps: &[Send(WORK), Send(GET), Work(WorkResult::Done)],
        statuses: &[200, 200],
        rejects: &[],
        end: End::Open,
        closes: false,
    },
    Row {
        name: "/work refused by a full bulkhead: 503 at once",
        vars: &[],
        steps: &[Send(WORK), Work(WorkResult::Refused)],
        statuses: &[503],
        rejects: &[],
        end: End::Open,
        closes: false,
    },
    Row {
        name: "/work panicked: 500",
        vars: &[],
        steps: &[Send(WORK), Work(WorkResult::Panicked)],
        statuses: &[500],
        rejects: &[],
        end: End::Open,
        closes: false,
    },
    Row {
        name: "peer stops sending during /work: answered with close",
        vars: &[],
        steps: &[Send(WORK), Eof, Work(WorkResult::Done)],
        statuses: &[200],
        rejects: &[],
        end: End::Closed,
        closes: true,
    },
    Row {
        name: "peer stops sending mid-body: closed, nothing to answer",
        vars: &[],
        steps: &[Send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nab"), Eof],
        statuses: &[],
        rejects: &[],
        end: End::Abandoned,
        closes: false,
    },
    Row {
        name: "peer closes an idle connection",
        vars: &[],
        steps: &[Send(GET), Eof],
        statuses: &[200],
        rejects: &[],
        end: End::Closed,
        closes: false,
    },
    Row {
        name: "lingering ends when the peer closes",
        vars: &[],
        steps: &[Send(b"BAD\r\n\r\n"), Send(b"more junk"), Eof],
        statuses: &[400],
        rejects: &["parse"],
        end: End::Closed,
        closes: true,
    },
    Row {
        name: "lingering ends at its deadline",
        vars: &[],
        steps: &[Send(b"BAD\r\n\r\n"), Wait(2000)],
        statuses: &[400],
        rejects: &["parse"],
        end: End::Closed,
        closes: true,
    },
];

#[test]
fn every_row() {
    for row in ROWS {
        let mut h = Harness::new(row.vars);
        h.run(row.steps);
        let rejects: Vec<&str> = h.limits.iter().copied().chain(h.parse_errors.iter().map(|_| "parse")).collect();
        // Limits first, then parse errors.
        assert_eq!(h.statuses, row.statuses, "{}: statuses", row.name);
        assert_eq!(rejects, row.rejects, "{}: rejects", row.name);
        assert_eq!(h.end(), row.end, "{}: end state", row.name);
        let last = h.text().rsplit("HTTP/1.1 ").next().unwrap_or_default().to_string();
        assert_eq!(last.contains("Connection: close\r\n"), row.closes, "{}: last answer {last:?}", row.name);
        let closed = match row.end {
            End::Closed => Some(false),
            End::Abandoned => Some(true),
            End::Open | End::Lingering => None,
        };
        assert_eq!(h.closed, closed, "{}: Close effect", row.name);
        assert_eq!(h.gauge, 0, "{}: in flight back to zero", row.name);
        if row.end == End::Lingering {
            assert!(h.lingered, "{}: half-closed before lingering", row.name);
        }
    }
}

#[test]
fn continue_is_sent_only_when_no_body_bytes_came_with_the_head() {
    let mut h = Harness::new(&[]);
    h.run(&[Send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")]);
    assert!(h.text().starts_with("HTTP/1.1 100 Continue\r\n\r\n"), "{}", h.text());
    let mut h = Harness::new(&[]);
    h.run(&[Send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok")]);
    assert!(!h.text().contains("100 Continue"), "{}", h.text());
    assert_eq!(h.statuses, [200]);
}

#[test]
fn work_is_started_once_and_in_flight_until_answered() {
    let mut h = Harness::new(&[]);
    h.run(&[Send(WORK), Send(GET)]);
    assert_eq!((h.works, h.statuses.len()), (1, 0), "nothing answered while /work runs");
    assert_eq!(h.gauge, 1);
    assert_eq!(h.conn.interest(&h.settings), Interest { read: false, write: false });
    assert_eq!(h.conn.next_deadline(&h.settings), None, "no deadline while /work runs");
    h.run(&[Work(WorkResult::Done)]);
    assert_eq!(h.statuses, [200, 200]);
    assert_eq!(h.gauge, 0);
    assert!(h.records[1].req.in_flight);
}

#[test]
fn a_connection_closed_mid_request_abandons_it() {
    let mut h = Harness::new(&[("WRITE_TIMEOUT_MS", "1000")]);
    h.run(&[Send(WORK)]);
    h.event(|c, _, fx| c.abort(fx));
    assert_eq!(h.closed, Some(true), "the /work request went with the connection");
    assert_eq!(h.gauge, 0);
    h.run(&[Work(WorkResult::Done), Send(GET), Wait(5000)]);
    assert!(h.statuses.is_empty(), "a closed connection answers nothing");
}

#[test]
fn output_high_water_pauses_pipelined_answers_until_the_client_reads() {
    let many: &'static [u8] = GET.repeat(400).leak();
    let mut h = Harness::new(&[]);
    h.run(&[Hold, Send(many)]);
    let answered = h.statuses.len();
    assert!(answered > 0 && answered < 400, "{answered} answered with nobody reading");
    assert!(h.conn.output().len() <= OUTPUT_HIGH_WATER + 512);
    h.run(&[Release]);
    assert_eq!(h.statuses.len(), 400);
    assert_eq!(h.text().matches("HTTP/1.1 200 OK\r\n").count(), 400, "every answer written, none twice");
}

#[test]
fn input_beyond_the_pipelining_limit_is_not_read() {
    let mut h = Harness::new(&[]);
    h.run(&[Send(WORK)]);
    assert!(!h.conn.interest(&h.settings).read);
    let mut h = Harness::new(&[]);
    h.run(&[Hold]);
    let big: &'static [u8] = GET.repeat(3000).leak();
    h.run(&[Send(big)]);
    assert!(!h.conn.interest(&h.settings).read, "over the input limit: stop reading until answers drain");
}

#[test]
fn refused_connection_answers_503_then_lingers() {
    let mut h = Harness::new(&[]);
    let mut fx = Vec::new();
    h.conn = Conn::refused(&h.env(), true, &mut fx);
    assert!(matches!(fx[0], Effect::Limit(LimitReason::ConnectionCap)));
    assert!(matches!(&fx[1], Effect::Record(r) if r.status == 503 && !r.req.in_flight));
    h.run(&[Release]);
    assert!(h.text().contains("Retry-After: 1\r\n") && h.text().contains("Connection: close\r\n"));
    assert_eq!(h.end(), End::Lingering);
    let mut fx = Vec::new();
    let env = h.env();
    let mut c = Conn::refused(&env, false, &mut fx);
    let n = c.output().len();
    c.written(&env, n, &mut fx);
    assert!(c.is_closed(), "no lingering budget: closed once the answer is out");
}

#[test]
fn lingering_reads_out_at_most_its_budget() {
    let mut h = Harness::new(&[]);
    h.run(&[Send(b"BAD\r\n\r\n")]);
    let chunk: &'static [u8] = vec![b'x'; 64 * 1024].leak();
    for _ in 0..4 {
        h.run(&[Send(chunk)]);
    }
    assert_eq!(h.end(), End::Lingering, "exactly the budget is still read out");
    h.run(&[Send(b"x")]);
    assert_eq!(h.end(), End::Closed);
}

#[test]
fn deadlines_follow_the_connection_state() {
    let mut h = Harness::new(&[]);
    let c = &h.settings;
    let (header, idle, write) = (c.header_timeout, c.idle_timeout, c.write_timeout);
    let now = h.now;
    assert_eq!(h.conn.next_deadline(&h.settings), Some(now + header));
    h.run(&[Send(GET)]);
    assert_eq!(h.conn.next_deadline(&h.settings), Some(now + idle));
    h.run(&[Send(b"GET / HTTP/1.1\r\n")]);
    assert_eq!(h.conn.next_deadline(&h.settings), Some(now + header));
    h.run(&[Hold, Send(b"Host: t\r\n\r\n")]);
    assert_eq!(h.conn.next_deadline(&h.settings), Some(now + write), "unflushed output: the write deadline rules");
}
