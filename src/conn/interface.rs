//! What goes into and out of the connection machine: its settings, the environment of one event, the effects it
//! returns, the record of an answered request, and the request as the machine keeps it between events.

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::http::chunked::ChunkedLimits;
use crate::http::parser::{self, Limits, Version};
use crate::labels::{LimitReason, Method, Route};
use crate::log::{MAX_FIELD_BYTES, cut};
use crate::request_id;

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
        }
    }
}

/// What every event needs besides the connection: the settings, the `Date` value, the clock, and whether the
/// server is shutting down (every answer then closes its connection).
pub struct Env<'a> {
    pub settings: &'a Settings,
    pub date: &'a str,
    pub now: Instant,
    pub shutting_down: bool,
}

/// Everything metrics and the request log need about one answered request: the request and what it got. Its
/// `route` is None for answers the machine gave itself (rejections): the caller knows the route of `path`.
#[derive(Debug)]
pub struct Record {
    pub req: Request,
    pub status: u16,
    /// Body bytes written (none for HEAD).
    pub bytes: usize,
}

/// What the caller must do, in the order given.
#[derive(Debug)]
pub enum Effect {
    /// A request head was accepted: the request is in flight until its `Record` or an abandoning `Close`.
    Head,
    /// A complete request (its body read): the caller answers it with [`super::Conn::respond`], now or later.
    /// Nothing more is read or answered on this connection until then.
    Request(Box<Request>),
    /// An answer was queued in the output.
    Record(Box<Record>),
    Limit(LimitReason),
    /// A malformed request (the parser's or the chunked decoder's metric reason).
    ParseError(&'static str),
    /// Half-close our side (FIN after the answer) and keep reading, discarding.
    Linger,
    /// Close the socket. `abandoned`: a request handed to the caller went with it, unanswered.
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

/// A request as the machine hands it to the caller, and takes it back with the answer.
#[derive(Debug)]
pub struct Request {
    pub started: Instant,
    pub method: Method,
    pub method_text: String,
    /// Set by the caller when it answers: the `route` label of the record.
    pub route: Option<Route>,
    pub path: String,
    pub query: Option<String>,
    pub request_id: String,
    pub user_agent: Vec<u8>,
    pub forwarded_for: Vec<u8>,
    pub authorization: Vec<u8>,
    pub(super) keep_alive: bool,
    pub(super) http10: bool,
    /// Counted in flight ([`Effect::Head`]); false for requests rejected before a head was parsed.
    pub in_flight: bool,
}

impl Request {
    /// A rejection before a usable head exists: what little we know comes from the raw bytes.
    pub(super) fn rejected(started: Instant, raw: &[u8]) -> Request {
        let method_text = cut(raw.split(|&b| b == b' ').next().unwrap_or_default(), MAX_METHOD_BYTES);
        let method_text = String::from_utf8_lossy(method_text).into_owned();
        Request {
            started,
            method: Method::from_token(&method_text),
            method_text,
            route: None,
            path: String::new(),
            query: None,
            request_id: request_id::generate(),
            user_agent: Vec::new(),
            forwarded_for: Vec::new(),
            authorization: Vec::new(),
            keep_alive: false,
            http10: false,
            in_flight: false,
        }
    }

    pub(super) fn from_head(head: &parser::RequestHead<'_>, started: Instant) -> Request {
        let request_id = match head.field("x-request-id") {
            Some(v) if request_id::is_valid(v) => String::from_utf8_lossy(v).into_owned(),
            _ => request_id::generate(),
        };
        let field = |name| cut(head.field(name).unwrap_or_default(), MAX_FIELD_BYTES).to_vec();
        // The parser admits only ASCII in methods and targets, so byte cuts are character cuts.
        let text = |s: &str, max| String::from_utf8_lossy(cut(s.as_bytes(), max)).into_owned();
        Request {
            started,
            method: Method::from_token(head.method),
            method_text: text(head.method, MAX_METHOD_BYTES),
            route: None,
            path: text(head.path, MAX_FIELD_BYTES),
            query: head.query.map(str::to_owned),
            request_id,
            user_agent: field("user-agent"),
            forwarded_for: field("x-forwarded-for"),
            authorization: field("authorization"),
            keep_alive: head.keep_alive,
            http10: head.version == Version::Http10,
            in_flight: true,
        }
    }
}

/// A method longer than this is logged cut; no method we serve comes close.
const MAX_METHOD_BYTES: usize = 32;
