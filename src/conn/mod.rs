//! The connection state machine: one HTTP/1.1 connection as a value that takes events and returns effects, in
//! the shape of h11's `Connection`: it never learns what a route is.
//!
//! Events in: bytes read, the peer's end of input, the caller's answer ([`Conn::respond`]), the clock (`tick`),
//! bytes written, a drain sweep. Effects out ([`Effect`]): a head accepted, a complete request to answer, a
//! record of an answer, a limit or parse rejection, half-close and linger, close; plus the bytes to write
//! ([`Conn::output`]), what the socket should wait for ([`Conn::interest`]) and when the next deadline falls
//! ([`Conn::next_deadline`]). Framing, persistence, pipelining order, every limit and timeout are decided here
//! and tested with tables, without sockets; the caller decides only what each request's answer is.
//!
//! One [`State`] enum holds everything that varies between requests; what a state needs lives in its variant.
//! Its types in and out are in `interface`; every transition stays in this file.

use std::time::{Duration, Instant};

use crate::http::chunked::ChunkedDecoder;
use crate::http::parser::{self, Framing, Parsed};
use crate::http::response::{self, Persistence, Response};
use crate::labels::{LimitReason, Method};

mod interface;

pub use interface::{Effect, Env, Interest, Record, Request, Settings};

/// Queued output per connection before we stop answering pipelined requests until the client reads. Small, so a
/// client that pipelines and never reads holds at most this plus one answer.
pub const OUTPUT_HIGH_WATER: usize = 16 * 1024;
/// Buffers above this are given back to the allocator once empty, so memory follows load down again.
const KEEP_BUFFER_CAPACITY: usize = 16 * 1024;
/// After an error we half-close and read what the client still sends, so our answer is not lost to a reset.
pub const LINGER: Duration = Duration::from_secs(2);
/// Most bytes read away while lingering before the connection is closed anyway.
pub const MAX_LINGER_DISCARD: usize = 256 * 1024;
/// At drain, how long a connection that has sent nothing yet may take to start its first request.
pub const FRESH_DRAIN_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug)]
enum BodyProgress {
    Length(u64),
    Chunked(ChunkedDecoder),
}

/// What happens once the last answer is flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterFlush {
    /// The peer has stopped sending: nothing to read out, close.
    Close,
    /// An error or a refusal: half-close and read out what the client still sends.
    Linger,
    /// `Connection: close`: linger only if requests were pipelined after it (closing on unread input sends a
    /// reset that can destroy the answer in flight).
    LingerIfUnread,
}

#[derive(Debug)]
enum State {
    /// Waiting for the first byte of a request. `fresh`: no request yet on this connection.
    Idle {
        since: Instant,
        fresh: bool,
    },
    /// Part of a head has arrived. `parsed_len`: how much of it the last parse saw (see `head_may_have_changed`).
    Head {
        started: Instant,
        parsed_len: usize,
    },
    Body {
        req: Box<Request>,
        body: BodyProgress,
    },
    /// The caller has the request and has not answered yet; later input waits. `peer_closed`: the client has
    /// stopped sending meanwhile.
    Waiting {
        peer_closed: bool,
    },
    /// The last answer is queued; no more requests are read.
    Closing {
        then: AfterFlush,
    },
    /// Half-closed: discard input until EOF, the byte budget or the deadline, then close.
    Lingering {
        until: Instant,
        discarded: usize,
    },
    Closed,
}

/// One connection. See the module documentation.
#[derive(Debug)]
pub struct Conn {
    state: State,
    input: Vec<u8>,
    input_pos: usize,
    output: Vec<u8>,
    output_pos: usize,
    /// When the oldest unwritten output was queued: the write deadline runs from here.
    output_since: Option<Instant>,
    served: u64,
}

impl Conn {
    pub fn new(now: Instant) -> Conn {
        Conn {
            state: State::Idle { since: now, fresh: true },
            input: Vec::new(),
            input_pos: 0,
            output: Vec::new(),
            output_pos: 0,
            output_since: None,
            served: 0,
        }
    }

    /// A connection over `MAX_CONNECTIONS`: answered 503 at once; then, if `linger`, read out before closing.
    pub fn refused(env: &Env, linger: bool, fx: &mut Vec<Effect>) -> Conn {
        let mut c = Conn::new(env.now);
        fx.push(Effect::Limit(LimitReason::ConnectionCap));
        let req = Request::rejected(env.now, b"");
        c.finish(env, req, Response::text(503, "connection limit reached\n").with("Retry-After", "1"), true, fx);
        c.state = State::Closing { then: if linger { AfterFlush::Linger } else { AfterFlush::Close } };
        c
    }

    /// Bytes waiting to be written.
    pub fn output(&self) -> &[u8] {
        &self.output[self.output_pos..]
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// A request is in flight on this connection (its head accepted and not yet answered).
    pub fn in_flight(&self) -> bool {
        match &self.state {
            State::Body { req, .. } => req.in_flight,
            State::Waiting { .. } => true,
            _ => false,
        }
    }

    pub fn interest(&self, s: &Settings) -> Interest {
        let read = match self.state {
            State::Idle { .. } | State::Head { .. } | State::Body { .. } => self.unread().len() < s.max_input,
            State::Lingering { .. } => true,
            State::Waiting { .. } | State::Closing { .. } | State::Closed => false,
        };
        Interest { read, write: !self.output().is_empty() }
    }

    /// When this connection's current limit runs out, if it has one now.
    pub fn next_deadline(&self, s: &Settings) -> Option<Instant> {
        if let Some(since) = self.output_since
            && !self.output().is_empty()
        {
            return Some(since + s.write_timeout);
        }
        match &self.state {
            State::Idle { since, fresh: true } => Some(*since + s.header_timeout),
            State::Idle { since, fresh: false } => Some(*since + s.idle_timeout),
            State::Head { started, .. } => Some(*started + s.header_timeout),
            State::Body { req, .. } => Some(req.started + s.body_timeout),
            State::Waiting { .. } | State::Closing { .. } | State::Closed => None,
            State::Lingering { until, .. } => Some(*until),
        }
    }

    /// Bytes read from the socket.
    pub fn received(&mut self, env: &Env, data: &[u8], fx: &mut Vec<Effect>) {
        match &mut self.state {
            State::Closed => {}
            State::Lingering { discarded, .. } => {
                *discarded += data.len();
                if *discarded > MAX_LINGER_DISCARD {
                    self.close(fx);
                }
            }
            _ => {
                self.input.extend_from_slice(data);
                self.process(env, false, fx);
                self.settle(env, fx);
            }
        }
    }

    /// The peer will send nothing more (read returned 0).
    pub fn peer_closed(&mut self, env: &Env, fx: &mut Vec<Effect>) {
        match &mut self.state {
            State::Idle { .. } | State::Head { .. } => {
                // Anything complete but held back by the output high-water mark gets one last, closing answer.
                self.process(env, true, fx);
                match &mut self.state {
                    State::Idle { .. } | State::Head { .. } => self.state = State::Closing { then: AfterFlush::Close },
                    State::Body { .. } => return self.close(fx),
                    // Nobody is left to read out: a reject or a close is a plain close now.
                    State::Closing { then } => *then = AfterFlush::Close,
                    State::Waiting { .. } | State::Lingering { .. } | State::Closed => {}
                }
            }
            // The client stopped sending mid-body: there is no request to answer.
            State::Body { .. } | State::Lingering { .. } => return self.close(fx),
            State::Waiting { peer_closed } => *peer_closed = true,
            State::Closing { then } => *then = AfterFlush::Close,
            State::Closed => return,
        }
        self.settle(env, fx);
    }

    /// The socket took `n` bytes of [`Conn::output`]. Answers held back by the high-water mark resume here.
    pub fn written(&mut self, env: &Env, n: usize, fx: &mut Vec<Effect>) {
        self.output_pos = (self.output_pos + n).min(self.output.len());
        if self.output_pos < self.output.len() {
            return;
        }
        self.output.clear();
        self.output_pos = 0;
        self.output_since = None;
        if self.output.capacity() > KEEP_BUFFER_CAPACITY {
            self.output = Vec::new();
        }
        if !self.unread().is_empty() {
            self.process(env, false, fx);
        }
        self.settle(env, fx);
    }

    /// The caller's answer to the request of the last [`Effect::Request`], with `req.route` set. An answer
    /// for a connection that is not waiting for one (closed meanwhile) changes nothing.
    pub fn respond(&mut self, env: &Env, req: Request, resp: Response, fx: &mut Vec<Effect>) {
        let State::Waiting { peer_closed } = self.state else { return };
        self.finish(env, req, resp, peer_closed, fx);
        if peer_closed {
            self.state = State::Closing { then: AfterFlush::Close };
        } else {
            self.process(env, false, fx);
        }
        self.settle(env, fx);
    }

    /// The clock: ends whatever limit has run out.
    pub fn tick(&mut self, env: &Env, fx: &mut Vec<Effect>) {
        let Some(d) = self.next_deadline(env.settings) else { return };
        if env.now < d {
            return;
        }
        if !self.output().is_empty() {
            fx.push(Effect::Limit(LimitReason::WriteTimeout));
            return self.close(fx);
        }
        match &self.state {
            State::Idle { fresh, .. } => {
                if *fresh {
                    fx.push(Effect::Limit(LimitReason::HeaderTimeout));
                }
                self.close(fx);
            }
            State::Head { started, .. } => {
                fx.push(Effect::Limit(LimitReason::HeaderTimeout));
                let req = Request::rejected(*started, self.unread());
                self.reject(env, req, Response::text(408, "request head not received in time\n"), fx);
                self.settle(env, fx);
            }
            State::Body { .. } => {
                fx.push(Effect::Limit(LimitReason::BodyTimeout));
                if let State::Body { req, .. } = std::mem::replace(&mut self.state, State::Closed) {
                    self.reject(env, *req, Response::text(408, "request body not received in time\n"), fx);
                }
                self.settle(env, fx);
            }
            State::Lingering { .. } => self.close(fx),
            State::Waiting { .. } | State::Closing { .. } | State::Closed => {}
        }
    }

    /// At drain: idle keep-alive connections close now, as with Go's Shutdown; busy ones finish first.
    /// A connection that has sent nothing yet gets [`FRESH_DRAIN_GRACE`] from its accept: it was
    /// accepted during the shutdown delay, so its first request is owed an answer.
    pub fn drain(&mut self, env: &Env, fx: &mut Vec<Effect>) {
        let now = env.now;
        let quiet = self.unread().is_empty() && self.output().is_empty();
        let close = match self.state {
            State::Idle { fresh: false, .. } => quiet,
            State::Idle { fresh: true, since } => quiet && now >= since + FRESH_DRAIN_GRACE,
            State::Lingering { .. } => true,
            _ => false,
        };
        if close {
            self.close(fx);
        }
    }

    /// The socket failed: nothing more can be said.
    pub fn abort(&mut self, fx: &mut Vec<Effect>) {
        self.close(fx);
    }

    fn close(&mut self, fx: &mut Vec<Effect>) {
        if self.is_closed() {
            return;
        }
        // The client went away mid-request; a late answer is discarded by `respond`.
        let abandoned = self.in_flight();
        self.state = State::Closed;
        self.input = Vec::new();
        self.input_pos = 0;
        self.output = Vec::new();
        self.output_pos = 0;
        self.output_since = None;
        fx.push(Effect::Close { abandoned });
    }

    /// Once the last answer is flushed: close, or half-close and linger.
    fn settle(&mut self, env: &Env, fx: &mut Vec<Effect>) {
        let State::Closing { then } = self.state else { return };
        if !self.output().is_empty() {
            return;
        }
        let linger = match then {
            AfterFlush::Close => false,
            AfterFlush::Linger => true,
            AfterFlush::LingerIfUnread => !self.unread().is_empty(),
        };
        if linger {
            self.state = State::Lingering { until: env.now + LINGER, discarded: 0 };
            self.input = Vec::new();
            self.input_pos = 0;
            fx.push(Effect::Linger);
        } else {
            self.close(fx);
        }
    }

    fn unread(&self) -> &[u8] {
        &self.input[self.input_pos..]
    }

    /// Parses and answers every complete request in the input buffer, in order, until one must wait.
    /// `eof`: the peer has stopped sending, so the next answer is the last.
    fn process(&mut self, env: &Env, eof: bool, fx: &mut Vec<Effect>) {
        while self.output().len() <= OUTPUT_HIGH_WATER && self.step(env, eof, fx) {}
        if self.input_pos == self.input.len() {
            self.input.clear();
            self.input_pos = 0;
            if self.input.capacity() > KEEP_BUFFER_CAPACITY {
                self.input = Vec::new();
            }
        } else if self.input_pos > KEEP_BUFFER_CAPACITY {
            self.input.drain(..self.input_pos);
            self.input_pos = 0;
        }
    }

    /// One request's worth of progress. False when the connection must wait: for input, /work or the peer.
    fn step(&mut self, env: &Env, eof: bool, fx: &mut Vec<Effect>) -> bool {
        match std::mem::replace(&mut self.state, State::Closed) {
            State::Body { req, body } => self.step_body(env, req, body, eof, fx),
            State::Idle { since, fresh } if self.unread().is_empty() => {
                self.state = State::Idle { since, fresh };
                false
            }
            State::Idle { .. } => self.step_head(env, env.now, None, eof, fx),
            State::Head { started, parsed_len } => self.step_head(env, started, Some(parsed_len), eof, fx),
            other @ (State::Waiting { .. } | State::Closing { .. } | State::Lingering { .. } | State::Closed) => {
                self.state = other;
                false
            }
        }
    }

    fn step_body(
        &mut self,
        env: &Env,
        req: Box<Request>,
        mut body: BodyProgress,
        eof: bool,
        fx: &mut Vec<Effect>,
    ) -> bool {
        let avail = &self.input[self.input_pos..];
        let outcome = match &mut body {
            BodyProgress::Length(remaining) => {
                let take = (*remaining).min(avail.len() as u64);
                *remaining -= take;
                Ok((take as usize, *remaining == 0))
            }
            BodyProgress::Chunked(decoder) => decoder.feed(avail).map(|f| (f.consumed, f.done)),
        };
        match outcome {
            Ok((consumed, false)) => {
                self.input_pos += consumed;
                self.state = State::Body { req, body };
                false
            }
            Ok((consumed, true)) => {
                self.input_pos += consumed;
                self.state = State::Idle { since: env.now, fresh: false };
                self.dispatch(*req, eof, fx);
                true
            }
            Err(e) => {
                // A limit counts as one; anything but the body cap also as a malformed body.
                if let Some(limit) = e.limit_reason() {
                    fx.push(Effect::Limit(limit));
                }
                if !crate::http::counts_only_as_limit(e) {
                    fx.push(Effect::ParseError(e.reason()));
                }
                let resp = Response::owned(e.status(), response::TEXT, format!("{e}\n").into_bytes());
                self.reject(env, *req, resp, fx);
                true
            }
        }
    }

    /// `parsed_len`: for a head already partly here, how much of it the last parse saw.
    fn step_head(
        &mut self,
        env: &Env,
        started: Instant,
        parsed_len: Option<usize>,
        eof: bool,
        fx: &mut Vec<Effect>,
    ) -> bool {
        let s = env.settings;
        let unread = &self.input[self.input_pos..];
        if let Some(parsed_len) = parsed_len
            && !head_may_have_changed(s, unread, parsed_len)
        {
            self.state = State::Head { started, parsed_len };
            return false;
        }
        match parser::parse_head(unread, &s.limits) {
            Ok(Parsed::Partial) => {
                self.state = State::Head { started, parsed_len: unread.len() };
                false
            }
            Err(e) => {
                if let Some(limit) = e.limit_reason() {
                    fx.push(Effect::Limit(limit));
                }
                fx.push(Effect::ParseError(e.reason()));
                let req = Request::rejected(started, unread);
                let resp = Response::owned(e.status(), response::TEXT, format!("{e}\n").into_bytes());
                self.reject(env, req, resp, fx);
                true
            }
            Ok(Parsed::Complete { head, head_len }) => {
                let req = Request::from_head(&head, started);
                let (framing, expect_continue) = (head.framing, head.expect_continue);
                self.input_pos += head_len;
                fx.push(Effect::Head);
                match framing {
                    Framing::None | Framing::ContentLength(0) => {
                        self.state = State::Idle { since: env.now, fresh: false };
                        self.dispatch(req, eof, fx);
                    }
                    Framing::ContentLength(n) if n > s.max_body => {
                        fx.push(Effect::Limit(LimitReason::BodyTooLarge));
                        self.reject(env, req, Response::text(413, "request body too large\n"), fx);
                    }
                    Framing::ContentLength(n) => {
                        self.send_continue(env.now, expect_continue);
                        self.state = State::Body { req: Box::new(req), body: BodyProgress::Length(n) };
                    }
                    Framing::Chunked => {
                        self.send_continue(env.now, expect_continue);
                        let body = BodyProgress::Chunked(ChunkedDecoder::new(s.chunked));
                        self.state = State::Body { req: Box::new(req), body };
                    }
                }
                true
            }
        }
    }

    /// 100 Continue only when the client is waiting for it (RFC 9110 §10.1.1): no body bytes here yet.
    fn send_continue(&mut self, now: Instant, expect_continue: bool) {
        if expect_continue && self.unread().is_empty() {
            self.output_since.get_or_insert(now);
            self.output.extend_from_slice(response::CONTINUE);
        }
    }

    fn dispatch(&mut self, req: Request, eof: bool, fx: &mut Vec<Effect>) {
        self.served += 1;
        fx.push(Effect::Request(Box::new(req)));
        self.state = State::Waiting { peer_closed: eof };
    }

    /// An error answer that ends the connection, after reading out what the client still sends.
    fn reject(&mut self, env: &Env, req: Request, resp: Response, fx: &mut Vec<Effect>) {
        self.finish(env, req, resp, true, fx);
        self.state = State::Closing { then: AfterFlush::Linger };
    }

    /// Queues the answer, records it, and decides whether the connection goes on: the version's rules,
    /// `Connection`, the shutdown phase, the per-connection cap, and whether the peer still sends (`last`).
    fn finish(&mut self, env: &Env, req: Request, resp: Response, last: bool, fx: &mut Vec<Effect>) {
        let keep = !last && req.keep_alive && !env.shutting_down && self.served < env.settings.max_requests;
        let persistence = match (keep, req.http10) {
            (false, _) => Persistence::Close,
            (true, true) => Persistence::KeepAliveHttp10,
            (true, false) => Persistence::KeepAlive,
        };
        self.output_since.get_or_insert(env.now);
        let head_only = req.method == Method::Head;
        let bytes = response::encode(&mut self.output, &resp, head_only, &req.request_id, persistence, env.date);
        self.state = if keep {
            State::Idle { since: env.now, fresh: false }
        } else {
            State::Closing { then: AfterFlush::LingerIfUnread }
        };
        fx.push(Effect::Record(Box::new(Record { req, status: resp.status, bytes })));
    }
}

/// Whether a partial head needs parsing again after more bytes arrived. Parsing from the start each time
/// would make a head dripped byte by byte cost quadratic CPU, so we parse again only when a line was
/// completed, when the request line passes its limit (414), or when the buffer is full (431).
fn head_may_have_changed(s: &Settings, unread: &[u8], parsed_len: usize) -> bool {
    let new = unread.get(parsed_len..).unwrap_or_default();
    let line_limit = s.limits.max_request_line + 2;
    new.contains(&b'\n') || (parsed_len <= line_limit && unread.len() > line_limit) || unread.len() >= s.max_input
}

#[cfg(test)]
mod tests;
