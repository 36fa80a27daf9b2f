//! What goes into and out of the connection machine: its settings, the environment of one event, the effects it
//! returns, the record of an answered request, and the request as the machine keeps it between events.

use std::sync::atomic::AtomicI64;
use std::time::{Duration, Instant};

use crate::App;
use crate::audit;
use crate::config::Config;
use crate::http::chunked::ChunkedLimits;
use crate::http::parser::{self, Limits, Version};
use crate::labels::{LimitReason, Method, Route};
use crate::log;
use crate::request_id;
use crate::router;

/// Unanswered input kept per connection; beyond it we stop reading until answers drain. Raised at start-up
/// to hold one maximal request head when the configured limits exceed it.
const MAX_PIPELINED_INPUT: usize = 64 * 1024;

/// The limits and timeouts a connection runs under, taken once from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub limits: Limits,
    pub chunked: ChunkedLimits,
    pub max_input: usize,
    pub max_body: u64,
    pub max_requests: u64,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub work_delay: Duration,
    pub drills: bool,
}

impl Settings {
    pub fn new(c: &Config) -> Settings {
        Settings {
            limits: Limits {
                max_request_line: c.max_request_line_bytes,
                max_header_bytes: c.max_header_bytes,
                max_header_fields: c.max_header_fields,
            },
            chunked: ChunkedLimits {
                max_body: c.max_body_bytes,
                max_trailer_bytes: c.max_header_bytes,
                max_trailer_fields: c.max_header_fields,
                ..ChunkedLimits::DEFAULT
            },
            max_input: MAX_PIPELINED_INPUT.max(c.max_request_line_bytes + c.max_header_bytes + 8),
            max_body: c.max_body_bytes,
            max_requests: c.max_requests_per_connection,
            header_timeout: c.header_timeout,
            body_timeout: c.body_timeout,
            idle_timeout: c.idle_timeout,
            write_timeout: c.write_timeout,
            work_delay: c.work_delay,
            drills: c.drills,
        }
    }
}

/// What every event needs besides the connection: the shared app (handlers read its state; persistence reads
/// the shutdown phase), the settings, the `Date` value, the clock, and the requests-in-flight gauge.
pub struct Env<'a> {
    pub app: &'a App,
    /// Raised when a head is accepted and lowered when its answer is queued or its connection dies. Kept here
    /// rather than as an effect because a handler (the metrics page) must already see its own request in flight.
    pub in_flight: &'a AtomicI64,
    pub settings: &'a Settings,
    pub date: &'a str,
    pub now: Instant,
}

/// How a `/work` run the loop started for this connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkResult {
    Done,
    Panicked,
    /// The bulkhead was full: answered 503 with `Retry-After` at once.
    Refused,
}

/// Everything metrics and the request log need about one answered request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub started: Instant,
    pub method: Method,
    pub method_text: String,
    pub route: Route,
    pub path: String,
    pub status: u16,
    /// Body bytes written (none for HEAD).
    pub bytes: usize,
    pub request_id: String,
    pub user_agent: Vec<u8>,
    /// This request was counted in flight (requests refused before a head was parsed are not).
    pub in_flight: bool,
    /// Its handler (or its /work run) panicked; answered 500.
    pub panicked: bool,
}

/// What the loop must do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// An answer was queued in the output.
    Record(Box<Record>),
    Limit(LimitReason),
    /// A malformed request (the parser's or the chunked decoder's metric reason).
    ParseError(&'static str),
    /// Run `/work` for this connection; report back with [`Conn::work_done`].
    StartWork {
        cpu: Duration,
        delay: Duration,
    },
    /// A drill changed (or tried to change) state: write its audit record, with the peer address.
    Audit(Box<audit::Event>),
    /// The `/panic` drill: log and terminate the process.
    PanicDrill {
        request_id: String,
    },
    /// Half-close our side (FIN after the answer) and keep reading, discarding.
    Linger,
    /// Close the socket. `abandoned`: a request in flight went with it, unanswered.
    Close {
        abandoned: bool,
    },
}

/// Which socket readiness the connection waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Interest {
    pub read: bool,
    pub write: bool,
}

/// The parts of a request that outlive its bytes in the input buffer.
#[derive(Debug)]
pub(super) struct Request {
    pub(super) started: Instant,
    pub(super) method: Method,
    pub(super) method_text: String,
    pub(super) route: Route,
    pub(super) path: String,
    pub(super) query: Option<String>,
    pub(super) request_id: String,
    pub(super) user_agent: Vec<u8>,
    pub(super) forwarded_for: Vec<u8>,
    pub(super) keep_alive: bool,
    pub(super) http10: bool,
    /// False for requests rejected before a head was parsed: they were never in flight.
    pub(super) in_flight: bool,
}

impl Request {
    /// A rejection before a usable head exists: what little we know comes from the raw bytes.
    pub(super) fn rejected(started: Instant, raw: &[u8]) -> Request {
        let method_text = raw.split(|&b| b == b' ').next().filter(|m| m.len() <= 16).unwrap_or(b"");
        let method_text = String::from_utf8_lossy(method_text).into_owned();
        Request {
            started,
            method: Method::from_token(&method_text),
            method_text,
            route: Route::Unmatched,
            path: String::new(),
            query: None,
            request_id: request_id::generate(),
            user_agent: Vec::new(),
            forwarded_for: Vec::new(),
            keep_alive: false,
            http10: false,
            in_flight: false,
        }
    }

    pub(super) fn from_head(head: &parser::RequestHead<'_>, started: Instant, drills: bool) -> Request {
        let request_id = match head.field("x-request-id") {
            Some(v) if request_id::is_valid(v) => String::from_utf8_lossy(v).into_owned(),
            _ => request_id::generate(),
        };
        Request {
            started,
            method: Method::from_token(head.method),
            // The parser admits only ASCII in methods and targets, so byte cuts are character cuts.
            method_text: head.method.get(..head.method.len().min(32)).unwrap_or_default().to_string(),
            route: router::route(head.path, drills),
            path: head.path.get(..head.path.len().min(log::MAX_FIELD_BYTES)).unwrap_or_default().to_string(),
            query: head.query.map(str::to_owned),
            request_id,
            user_agent: head
                .field("user-agent")
                .map(|v| v[..v.len().min(log::MAX_FIELD_BYTES)].to_vec())
                .unwrap_or_default(),
            forwarded_for: head
                .field("x-forwarded-for")
                .map(|v| v[..v.len().min(log::MAX_FIELD_BYTES)].to_vec())
                .unwrap_or_default(),
            keep_alive: head.keep_alive,
            http10: head.version == Version::Http10,
            in_flight: true,
        }
    }
}
