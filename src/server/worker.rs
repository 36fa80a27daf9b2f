//! One worker: a `poll(2)` loop over the listener and the connections it owns, with each connection a small
//! state machine (idle → head → body → answered or working → idle, or lingering → closed).
//!
//! Everything here is non-blocking. Deadlines (header, body, idle, write) are checked every turn, so no
//! client can hold a connection slot past its limit, and none can hold the thread at all.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use super::Waker;
use super::bulkhead::WorkOutcome;
use crate::App;
use crate::http::chunked::{ChunkedDecoder, ChunkedLimits};
use crate::http::parser::{self, Framing, Limits, Parsed, Version};
use crate::http::response::{self, DateCache, Persistence, Response};
use crate::log::{self, JsonLine, LineBuffer};
use crate::metrics::LimitReason;
use crate::request_id;
use crate::router::{self, Action, Method, Route};
use crate::state::Phase;
use crate::sys::{self, POLL_TROUBLE, POLLIN, POLLOUT, PollFd};

/// Bytes read per `read` call; also the most a connection may read in one turn before others get theirs.
const READ_CHUNK: usize = 16 * 1024;
const READ_PER_TURN: usize = 64 * 1024;
/// Unanswered input kept per connection; beyond it we stop reading until answers drain. Raised at start-up
/// to hold one maximal request head when the configured limits exceed it.
const MAX_PIPELINED_INPUT: usize = 64 * 1024;
/// Queued output per connection before we stop answering pipelined requests until the client reads. Small, so a
/// client that pipelines and never reads holds at most this plus one answer (drill: 92 KiB against 251 KiB at 256 KiB).
const OUTPUT_HIGH_WATER: usize = 16 * 1024;
/// Buffers above this are given back to the allocator once empty, so memory follows load down again.
const KEEP_BUFFER_CAPACITY: usize = 16 * 1024;
/// After an error we half-close and read what the client still sends, so our answer is not lost to a reset.
const LINGER: Duration = Duration::from_secs(2);
const MAX_LINGER_DISCARD: usize = 256 * 1024;
/// Refused connections (over the cap) each worker lingers on at most; past this they are closed at once.
const MAX_REFUSED_LINGERING: usize = 256;
const ACCEPTS_PER_TURN: usize = 64;
/// At drain, how many turns' worth of queued connections to accept before the listener closes.
const FINAL_ACCEPT_SWEEPS: usize = 16;
/// At drain, how long a connection that has sent nothing yet may take to start its first request.
const FRESH_DRAIN_GRACE: Duration = Duration::from_secs(2);
/// While draining, the longest sleep in `poll`, so grace periods end on time.
const DRAIN_POLL_WAIT: Duration = Duration::from_millis(50);
/// Longest sleep in `poll` when no deadline is nearer; bounds how stale a missed wake-up could make us.
const MAX_POLL_WAIT: Duration = Duration::from_secs(1);
/// Exit status of the /panic drill: the code an uncaught Rust panic in `main` gives.
pub const PANIC_DRILL_EXIT_CODE: i32 = 101;

/// A finished /work run, sent back to the worker that owns the connection.
struct WorkDone {
    slot: usize,
    generation: u64,
    outcome: WorkOutcome,
}

/// The parts of a request that outlive its bytes in the input buffer.
struct Pending {
    started: Instant,
    method: Method,
    method_text: String,
    route: Route,
    path: String,
    query: Option<String>,
    request_id: String,
    user_agent: Vec<u8>,
    keep_alive: bool,
    http10: bool,
    /// False for requests rejected before a head was parsed: they were never counted in flight.
    in_flight: bool,
}

impl Pending {
    /// A rejection before a usable head exists: what little we know comes from the raw bytes.
    fn rejected(started: Instant, raw: &[u8]) -> Pending {
        let method_text = raw.split(|&b| b == b' ').next().filter(|m| m.len() <= 16).unwrap_or(b"");
        let method_text = String::from_utf8_lossy(method_text).into_owned();
        Pending {
            started,
            method: Method::from_token(&method_text),
            method_text,
            route: Route::Unmatched,
            path: String::new(),
            query: None,
            request_id: request_id::generate(),
            user_agent: Vec::new(),
            keep_alive: false,
            http10: false,
            in_flight: false,
        }
    }
}

enum BodyProgress {
    Length(u64),
    Chunked(ChunkedDecoder),
}

enum State {
    /// Waiting for the first byte of a request. `fresh`: no request yet on this connection.
    Idle {
        since: Instant,
        fresh: bool,
    },
    Head {
        started: Instant,
    },
    Body {
        started: Instant,
        req: Box<Pending>,
        body: BodyProgress,
    },
    /// /work is running in the bulkhead; input waits.
    Working {
        req: Box<Pending>,
    },
    /// Half-closed after an error or a refusal: discard input until EOF or the deadline, then close.
    Lingering {
        until: Instant,
        discarded: usize,
    },
}

struct Conn {
    stream: TcpStream,
    peer: String,
    generation: u64,
    input: Vec<u8>,
    input_pos: usize,
    output: Vec<u8>,
    output_pos: usize,
    output_since: Option<Instant>,
    state: State,
    served: u64,
    /// No more requests will be answered; close (or linger) once the output is flushed.
    closing: bool,
    /// Half-close and read out the client's leftovers before closing, so it sees our answer.
    linger_on_close: bool,
    peer_done_sending: bool,
    /// Length of the partial head when it was last parsed (see `Ctx::head_may_have_changed`).
    head_parsed_len: usize,
    /// Counted in `sremini_connections_open` (refused connections are not).
    counted: bool,
    dead: bool,
}

impl Conn {
    fn new(stream: TcpStream, peer: String, generation: u64, now: Instant, counted: bool) -> Conn {
        Conn {
            stream,
            peer,
            generation,
            input: Vec::new(),
            input_pos: 0,
            output: Vec::new(),
            output_pos: 0,
            output_since: None,
            state: State::Idle { since: now, fresh: true },
            served: 0,
            closing: false,
            linger_on_close: false,
            peer_done_sending: false,
            head_parsed_len: 0,
            counted,
            dead: false,
        }
    }

    fn pending_output(&self) -> bool {
        self.output_pos < self.output.len()
    }

    fn unread_input(&self) -> &[u8] {
        &self.input[self.input_pos..]
    }
}

/// Per-worker context that is not a connection: shared app, log buffer, date cache, limits.
struct Ctx {
    app: Arc<App>,
    log: LineBuffer,
    date: DateCache,
    limits: Limits,
    chunked_limits: ChunkedLimits,
    done_tx: Sender<WorkDone>,
    waker: Arc<Waker>,
    max_input: usize,
}

pub(super) struct Worker {
    ctx: Ctx,
    listener: Option<Arc<TcpListener>>,
    wake_rx: UnixStream,
    done_rx: Receiver<WorkDone>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    next_generation: u64,
    refused_lingering: usize,
    scratch: Box<[u8]>,
    pollfds: Vec<PollFd>,
    poll_slots: Vec<usize>,
}

impl Worker {
    pub(super) fn new(app: Arc<App>, listener: Arc<TcpListener>, wake_rx: UnixStream, waker: Arc<Waker>) -> Worker {
        let (done_tx, done_rx) = mpsc::channel();
        let c = &app.config;
        let limits = Limits {
            max_request_line: c.max_request_line_bytes,
            max_header_bytes: c.max_header_bytes,
            max_header_fields: c.max_header_fields,
        };
        let chunked_limits = ChunkedLimits {
            max_body: c.max_body_bytes,
            max_trailer_bytes: c.max_header_bytes,
            max_trailer_fields: c.max_header_fields,
            ..ChunkedLimits::DEFAULT
        };
        let max_input = MAX_PIPELINED_INPUT.max(c.max_request_line_bytes + c.max_header_bytes + 8);
        Worker {
            ctx: Ctx {
                app,
                log: LineBuffer::default(),
                date: DateCache::default(),
                limits,
                chunked_limits,
                done_tx,
                waker,
                max_input,
            },
            listener: Some(listener),
            wake_rx,
            done_rx,
            conns: Vec::new(),
            free: Vec::new(),
            next_generation: 0,
            refused_lingering: 0,
            scratch: vec![0u8; READ_CHUNK].into_boxed_slice(),
            pollfds: Vec::new(),
            poll_slots: Vec::new(),
        }
    }

    pub(super) fn run(mut self) {
        loop {
            let now = Instant::now();
            let phase = self.ctx.app.state.phase();
            if phase >= Phase::Draining {
                if self.listener.is_some() {
                    // Take what the kernel has already queued before letting go: those clients completed their
                    // handshake and would otherwise be reset. The socket closes when the last worker lets go.
                    for _ in 0..FINAL_ACCEPT_SWEEPS {
                        if !self.accept_ready(now) {
                            break;
                        }
                    }
                    self.listener = None;
                }
                self.close_idle_connections(now);
                if self.conns.iter().all(Option::is_none) {
                    self.ctx.log.flush();
                    return;
                }
            }
            self.ctx.log.flush_if_due(now);
            let timeout = self.build_poll_set(now);
            if let Err(e) = sys::poll(&mut self.pollfds, timeout) {
                log::event("error", "poll failed", |l| {
                    l.str("error", &e.to_string());
                });
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            let now = Instant::now();
            self.drain_wakeups();
            self.collect_finished_work(now);
            for i in 0..self.pollfds.len() {
                let revents = self.pollfds[i].revents;
                if revents == 0 {
                    continue;
                }
                match self.poll_slots[i] {
                    WAKE_SLOT => {}
                    LISTENER_SLOT => {
                        self.accept_ready(now);
                    }
                    slot => self.service(slot, revents, now),
                }
            }
            self.enforce_deadlines(Instant::now());
        }
    }

    fn build_poll_set(&mut self, now: Instant) -> i32 {
        self.pollfds.clear();
        self.poll_slots.clear();
        self.pollfds.push(sys::poll_entry(self.wake_rx.as_raw_fd(), POLLIN));
        self.poll_slots.push(WAKE_SLOT);
        if let Some(l) = &self.listener {
            self.pollfds.push(sys::poll_entry(l.as_raw_fd(), POLLIN));
            self.poll_slots.push(LISTENER_SLOT);
        }
        let longest = if self.listener.is_none() { DRAIN_POLL_WAIT } else { MAX_POLL_WAIT };
        let mut nearest = self.ctx.log.due().map_or(now + longest, |d| d.min(now + longest));
        for (slot, c) in self.conns.iter().enumerate() {
            let Some(c) = c else { continue };
            let mut events = 0;
            if wants_input(c, self.ctx.max_input) {
                events |= POLLIN;
            }
            if c.pending_output() {
                events |= POLLOUT;
            }
            if let Some(d) = deadline(c, &self.ctx.app) {
                nearest = nearest.min(d);
            }
            if events != 0 {
                self.pollfds.push(sys::poll_entry(c.stream.as_raw_fd(), events));
                self.poll_slots.push(slot);
            }
        }
        let wait = nearest.saturating_duration_since(now);
        // Round up so we do not spin on a deadline a fraction of a millisecond away.
        (wait.as_micros().div_ceil(1000)).min(i32::MAX as u128) as i32
    }

    fn drain_wakeups(&mut self) {
        let mut buf = [0u8; 64];
        while let Ok(n) = (&self.wake_rx).read(&mut buf) {
            if n < buf.len() {
                break;
            }
        }
    }

    fn collect_finished_work(&mut self, now: Instant) {
        while let Ok(done) = self.done_rx.try_recv() {
            let Some(Some(conn)) = self.conns.get_mut(done.slot) else { continue };
            if conn.generation != done.generation {
                continue;
            }
            let State::Working { .. } = conn.state else { continue };
            let State::Working { req } = std::mem::replace(&mut conn.state, State::Idle { since: now, fresh: false })
            else {
                continue;
            };
            let resp = match done.outcome {
                WorkOutcome::Done => Response::text(200, "work done\n"),
                WorkOutcome::Panicked => {
                    self.ctx.app.metrics.panics.fetch_add(1, Ordering::Relaxed);
                    Response::text(500, "internal error\n")
                }
            };
            self.ctx.finish(conn, *req, resp, now);
            self.advance(done.slot, now);
        }
    }

    /// Accepts up to a turn's worth of connections. True when more may be waiting.
    fn accept_ready(&mut self, now: Instant) -> bool {
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(listener) = &self.listener else { return false };
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer, now),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted || e.kind() == ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // EMFILE and friends: back off this turn rather than spin on a listener we cannot serve.
                    log::event("error", "accept failed", |l| {
                        l.str("error", &e.to_string());
                    });
                    return false;
                }
            }
        }
        true
    }

    fn admit(&mut self, stream: TcpStream, peer: SocketAddr, now: Instant) {
        let m = &self.ctx.app.metrics;
        m.connections_accepted.fetch_add(1, Ordering::Relaxed);
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let max = self.ctx.app.config.max_connections as i64;
        let counted = m.connections_open.fetch_add(1, Ordering::AcqRel) < max;
        if !counted {
            m.connections_open.fetch_sub(1, Ordering::AcqRel);
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let mut conn = Conn::new(stream, peer.to_string(), generation, now, counted);
        if !counted {
            m.limit_rejected(LimitReason::ConnectionCap);
            let req = Pending::rejected(now, b"");
            self.ctx.finish(&mut conn, req, Response::text(503, "connection limit reached\n").retry_after(1), now);
            conn.linger_on_close = self.refused_lingering < MAX_REFUSED_LINGERING;
            let _ = write_out(&mut conn);
            if !conn.linger_on_close || conn.pending_output() {
                // We cannot afford to linger (or it will not take our answer). Still close cleanly: FIN after the
                // answer, and read away what already arrived, since closing on unread input sends a reset that
                // can destroy the 503 on its way.
                if !conn.pending_output() {
                    let _ = conn.stream.shutdown(Shutdown::Write);
                    discard_received(&mut conn.stream, &mut self.scratch);
                }
                return;
            }
            self.refused_lingering += 1;
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        self.conns[slot] = Some(conn);
        if counted {
            // The request often arrives with the handshake: read now rather than one poll turn later.
            self.service(slot, POLLIN, now);
        } else {
            self.flush_or_close(slot, now);
        }
    }

    fn service(&mut self, slot: usize, revents: i16, now: Instant) {
        let Some(Some(conn)) = self.conns.get_mut(slot) else { return };
        if revents & (POLLIN | POLL_TROUBLE) != 0 && wants_input(conn, self.ctx.max_input) {
            read_available(conn, &mut self.scratch);
        }
        if revents & POLLOUT != 0 && write_out(conn).is_err() {
            conn.dead = true;
        }
        if revents & POLL_TROUBLE != 0 && !wants_input(conn, self.ctx.max_input) && !conn.pending_output() {
            // Error or hang-up on a connection we were not reading: nothing left to say to it.
            conn.dead = true;
        }
        self.advance(slot, now);
    }

    /// Answers what the input holds, writes, and repeats while writing frees room for more answers:
    /// pipelined requests paused at the output high-water mark get no new POLLIN once their bytes are all read,
    /// so the resumption has to happen here.
    fn advance(&mut self, slot: usize, now: Instant) {
        loop {
            let Some(Some(conn)) = self.conns.get_mut(slot) else { return };
            if conn.dead {
                break;
            }
            let before = (conn.input_pos, conn.input.len(), conn.output.len());
            self.ctx.process(conn, slot, now);
            if conn.pending_output() && write_out(conn).is_err() {
                conn.dead = true;
                break;
            }
            let progressed = (conn.input_pos, conn.input.len(), conn.output.len()) != before;
            let more = !conn.pending_output() && !conn.unread_input().is_empty() && !conn.closing;
            if !(progressed && more) {
                break;
            }
        }
        self.flush_or_close(slot, now);
    }

    /// Writes what is queued, then closes or lingers a connection that is finished.
    fn flush_or_close(&mut self, slot: usize, now: Instant) {
        let Some(Some(conn)) = self.conns.get_mut(slot) else { return };
        if !conn.dead && conn.pending_output() && write_out(conn).is_err() {
            conn.dead = true;
        }
        let idle_eof = conn.peer_done_sending
            && matches!(conn.state, State::Idle { .. } | State::Head { .. })
            && conn.unread_input().is_empty()
            && !conn.pending_output();
        let finished = conn.closing && !conn.pending_output() && !matches!(conn.state, State::Lingering { .. });
        // Unread input (an error, or requests pipelined after a close) would make our close a reset that can
        // destroy the answer in flight, so read it out first.
        let linger = conn.linger_on_close || !conn.unread_input().is_empty();
        if finished && linger && !conn.peer_done_sending && !conn.dead {
            let _ = conn.stream.shutdown(Shutdown::Write);
            conn.state = State::Lingering { until: now + LINGER, discarded: 0 };
            return;
        }
        let linger_over = matches!(conn.state, State::Lingering { .. }) && conn.peer_done_sending;
        if conn.dead || idle_eof || finished || linger_over {
            self.remove(slot);
        }
    }

    fn remove(&mut self, slot: usize) {
        if let Some(conn) = self.conns[slot].take() {
            if conn.counted {
                self.ctx.app.metrics.connections_open.fetch_sub(1, Ordering::AcqRel);
            } else {
                self.refused_lingering = self.refused_lingering.saturating_sub(1);
            }
            if let State::Working { .. } = conn.state {
                // The client went away mid-/work; the bulkhead thread finishes and its answer is discarded.
                self.ctx.app.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
            if let State::Body { req, .. } = &conn.state
                && req.in_flight
            {
                self.ctx.app.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
            self.free.push(slot);
        }
        // Trim the slab tail so a burst of connections does not leave a long scan behind.
        while matches!(self.conns.last(), Some(None)) {
            self.conns.pop();
            let len = self.conns.len();
            self.free.retain(|&s| s < len);
        }
    }

    fn enforce_deadlines(&mut self, now: Instant) {
        for slot in 0..self.conns.len() {
            let Some(conn) = self.conns[slot].as_mut() else { continue };
            let Some(d) = deadline(conn, &self.ctx.app) else { continue };
            if now < d {
                continue;
            }
            let metrics = &self.ctx.app.metrics;
            if conn.pending_output() {
                metrics.limit_rejected(LimitReason::WriteTimeout);
                conn.dead = true;
            } else {
                match &conn.state {
                    State::Idle { fresh, .. } => {
                        if *fresh {
                            metrics.limit_rejected(LimitReason::HeaderTimeout);
                        }
                        conn.dead = true;
                    }
                    State::Head { started } => {
                        metrics.limit_rejected(LimitReason::HeaderTimeout);
                        let req = Pending::rejected(*started, conn.unread_input());
                        self.ctx.reject(conn, req, Response::text(408, "request head not received in time\n"), now);
                    }
                    State::Body { .. } => {
                        metrics.limit_rejected(LimitReason::BodyTimeout);
                        let State::Body { req, .. } =
                            std::mem::replace(&mut conn.state, State::Idle { since: now, fresh: false })
                        else {
                            continue;
                        };
                        self.ctx.reject(conn, *req, Response::text(408, "request body not received in time\n"), now);
                    }
                    State::Working { .. } => {}
                    State::Lingering { .. } => conn.dead = true,
                }
            }
            self.flush_or_close(slot, now);
        }
    }

    /// On drain: idle keep-alive connections close now, as with Go's Shutdown; busy ones finish first.
    /// A connection accepted but not yet spoken on gets [`FRESH_DRAIN_GRACE`] from its accept: it was
    /// accepted during the shutdown delay, so its first request is owed an answer.
    fn close_idle_connections(&mut self, now: Instant) {
        for slot in 0..self.conns.len() {
            let close = match &self.conns[slot] {
                Some(c) => {
                    let quiet = c.unread_input().is_empty() && !c.pending_output();
                    match c.state {
                        State::Idle { fresh: false, .. } => quiet,
                        State::Idle { fresh: true, since } => quiet && now >= since + FRESH_DRAIN_GRACE,
                        State::Lingering { .. } => true,
                        _ => false,
                    }
                }
                None => false,
            };
            if close {
                self.remove(slot);
            }
        }
    }
}

/// Runs a handler so that an accidental panic becomes an error value for a 500, not a dead worker.
/// The panic hook has already logged the message and location by the time this returns.
fn guarded<T>(handler: impl FnOnce() -> T) -> std::thread::Result<T> {
    catch_unwind(AssertUnwindSafe(handler))
}

const WAKE_SLOT: usize = usize::MAX;
const LISTENER_SLOT: usize = usize::MAX - 1;

fn wants_input(c: &Conn, max_input: usize) -> bool {
    if c.peer_done_sending || c.dead {
        return false;
    }
    match c.state {
        State::Lingering { .. } => true,
        State::Working { .. } => false,
        _ => !c.closing && c.input.len() - c.input_pos < max_input,
    }
}

/// When this connection's current limit runs out, if it has one now.
fn deadline(c: &Conn, app: &App) -> Option<Instant> {
    let cfg = &app.config;
    if let Some(since) = c.output_since
        && c.pending_output()
    {
        return Some(since + cfg.write_timeout);
    }
    match &c.state {
        State::Idle { since, fresh: true } => Some(*since + cfg.header_timeout),
        State::Idle { since, fresh: false } => Some(*since + cfg.idle_timeout),
        State::Head { started } => Some(*started + cfg.header_timeout),
        State::Body { started, .. } => Some(*started + cfg.body_timeout),
        State::Working { .. } => None,
        State::Lingering { until, .. } => Some(*until),
    }
}

fn read_available(conn: &mut Conn, scratch: &mut [u8]) {
    let mut total = 0;
    while total < READ_PER_TURN {
        match conn.stream.read(scratch) {
            Ok(0) => {
                conn.peer_done_sending = true;
                return;
            }
            Ok(n) => {
                total += n;
                if let State::Lingering { discarded, .. } = &mut conn.state {
                    *discarded += n;
                    if *discarded > MAX_LINGER_DISCARD {
                        conn.dead = true;
                        return;
                    }
                    continue;
                }
                conn.input.extend_from_slice(&scratch[..n]);
                if n < scratch.len() {
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                conn.dead = true;
                return;
            }
        }
    }
}

/// Reads and drops what has already arrived on a non-blocking socket (bounded), so closing it sends FIN, not RST.
fn discard_received(stream: &mut TcpStream, scratch: &mut [u8]) {
    let mut total = 0;
    while total < MAX_LINGER_DISCARD {
        match stream.read(scratch) {
            Ok(0) => return,
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn write_out(conn: &mut Conn) -> io::Result<()> {
    while conn.pending_output() {
        match conn.stream.write(&conn.output[conn.output_pos..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => conn.output_pos += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    conn.output.clear();
    conn.output_pos = 0;
    conn.output_since = None;
    if conn.output.capacity() > KEEP_BUFFER_CAPACITY {
        conn.output = Vec::new();
    }
    Ok(())
}

impl Ctx {
    /// Parses and answers every complete request in the input buffer, in order, until one must wait.
    fn process(&mut self, conn: &mut Conn, slot: usize, now: Instant) {
        loop {
            if conn.closing || conn.dead || conn.output.len() - conn.output_pos > OUTPUT_HIGH_WATER {
                break;
            }
            match &mut conn.state {
                State::Working { .. } => break,
                State::Lingering { .. } => {
                    conn.input.clear();
                    conn.input_pos = 0;
                    break;
                }
                State::Body { body, .. } => {
                    let avail = &conn.input[conn.input_pos..];
                    let outcome = match body {
                        BodyProgress::Length(remaining) => {
                            let take = (*remaining).min(avail.len() as u64);
                            *remaining -= take;
                            Ok((take as usize, *remaining == 0))
                        }
                        BodyProgress::Chunked(decoder) => decoder
                            .feed(avail)
                            .map(|f| (f.consumed, f.done))
                            .map_err(|e| (e.status(), e.reason(), e.to_string())),
                    };
                    match outcome {
                        Ok((consumed, done)) => {
                            conn.input_pos += consumed;
                            if !done {
                                if conn.peer_done_sending {
                                    // The client stopped sending mid-body: there is no request to answer.
                                    conn.dead = true;
                                }
                                break;
                            }
                            let State::Body { req, .. } =
                                std::mem::replace(&mut conn.state, State::Idle { since: now, fresh: false })
                            else {
                                break;
                            };
                            self.dispatch(conn, slot, *req, now);
                        }
                        Err((status, reason, message)) => {
                            let State::Body { req, .. } =
                                std::mem::replace(&mut conn.state, State::Idle { since: now, fresh: false })
                            else {
                                break;
                            };
                            let m = &self.app.metrics;
                            if status == 413 {
                                m.limit_rejected(LimitReason::BodyTooLarge);
                            } else {
                                m.parse_error(reason);
                            }
                            let resp = Response::owned(status, response::TEXT, format!("{message}\n").into_bytes());
                            self.reject(conn, *req, resp, now);
                        }
                    }
                }
                State::Idle { .. } | State::Head { .. } => {
                    if conn.input_pos == conn.input.len() {
                        break;
                    }
                    let started = match conn.state {
                        State::Head { started } => started,
                        _ => now,
                    };
                    let unread = &conn.input[conn.input_pos..];
                    if matches!(conn.state, State::Head { .. })
                        && !self.head_may_have_changed(unread, conn.head_parsed_len)
                    {
                        break;
                    }
                    match parser::parse_head(unread, &self.limits) {
                        Ok(Parsed::Partial) => {
                            conn.head_parsed_len = unread.len();
                            conn.state = State::Head { started };
                            break;
                        }
                        Err(e) => {
                            let m = &self.app.metrics;
                            if let Some(limit) = e.limit_reason() {
                                m.limit_rejected(limit);
                            }
                            m.parse_error(e.reason());
                            let req = Pending::rejected(started, conn.unread_input());
                            let resp = Response::owned(e.status(), response::TEXT, format!("{e}\n").into_bytes());
                            self.reject(conn, req, resp, now);
                            break;
                        }
                        Ok(Parsed::Complete { head, head_len }) => {
                            conn.head_parsed_len = 0;
                            let req = self.pending_from(&head, started);
                            let framing = head.framing;
                            let expect_continue = head.expect_continue;
                            conn.input_pos += head_len;
                            self.app.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
                            match framing {
                                Framing::None | Framing::ContentLength(0) => self.dispatch(conn, slot, req, now),
                                Framing::ContentLength(n) if n > self.app.config.max_body_bytes => {
                                    self.app.metrics.limit_rejected(LimitReason::BodyTooLarge);
                                    self.reject(conn, req, Response::text(413, "request body too large\n"), now);
                                }
                                Framing::ContentLength(n) => {
                                    self.send_continue(conn, expect_continue);
                                    conn.state =
                                        State::Body { started, req: Box::new(req), body: BodyProgress::Length(n) };
                                }
                                Framing::Chunked => {
                                    self.send_continue(conn, expect_continue);
                                    let decoder = ChunkedDecoder::new(self.chunked_limits);
                                    conn.state = State::Body {
                                        started,
                                        req: Box::new(req),
                                        body: BodyProgress::Chunked(decoder),
                                    };
                                }
                            }
                        }
                    }
                }
            }
        }
        if conn.input_pos == conn.input.len() {
            conn.input.clear();
            conn.input_pos = 0;
            if conn.input.capacity() > KEEP_BUFFER_CAPACITY {
                conn.input = Vec::new();
            }
        } else if conn.input_pos > KEEP_BUFFER_CAPACITY {
            conn.input.drain(..conn.input_pos);
            conn.input_pos = 0;
        }
    }

    /// Whether a partial head needs parsing again after more bytes arrived. Parsing from the start each time
    /// would make a head dripped byte by byte cost quadratic CPU, so we parse again only when a line was
    /// completed, when the request line passes its limit (414), or when the buffer is full (431).
    fn head_may_have_changed(&self, unread: &[u8], parsed_len: usize) -> bool {
        let new = unread.get(parsed_len..).unwrap_or_default();
        let line_limit = self.limits.max_request_line + 2;
        new.contains(&b'\n')
            || (parsed_len <= line_limit && unread.len() > line_limit)
            || unread.len() >= self.max_input
    }

    /// 100 Continue only when the client is waiting for it (RFC 9110 §10.1.1): no body bytes here yet.
    fn send_continue(&self, conn: &mut Conn, expect_continue: bool) {
        if expect_continue && conn.unread_input().is_empty() {
            if conn.output_since.is_none() {
                conn.output_since = Some(Instant::now());
            }
            conn.output.extend_from_slice(response::CONTINUE);
        }
    }

    fn pending_from(&self, head: &parser::RequestHead<'_>, started: Instant) -> Pending {
        let request_id = match head.field("x-request-id") {
            Some(v) if request_id::is_valid(v) => String::from_utf8_lossy(v).into_owned(),
            _ => request_id::generate(),
        };
        Pending {
            started,
            method: Method::from_token(head.method),
            // The parser admits only ASCII in methods and targets, so byte cuts are character cuts.
            method_text: head.method.get(..head.method.len().min(32)).unwrap_or_default().to_string(),
            route: router::route(head.path, self.app.config.drills),
            path: head.path.get(..head.path.len().min(log::MAX_FIELD_BYTES)).unwrap_or_default().to_string(),
            query: head.query.map(str::to_owned),
            request_id,
            user_agent: head
                .field("user-agent")
                .map(|v| v[..v.len().min(log::MAX_FIELD_BYTES)].to_vec())
                .unwrap_or_default(),
            keep_alive: head.keep_alive,
            http10: head.version == Version::Http10,
            in_flight: true,
        }
    }

    fn dispatch(&mut self, conn: &mut Conn, slot: usize, req: Pending, now: Instant) {
        conn.served += 1;
        let app = Arc::clone(&self.app);
        match guarded(|| router::handle(&app, req.method, req.route, req.query.as_deref())) {
            Ok(Action::Respond(resp)) => self.finish(conn, req, resp, now),
            Ok(Action::Work { cpu_ms }) => {
                let done_tx = self.done_tx.clone();
                let waker = Arc::clone(&self.waker);
                let generation = conn.generation;
                let started =
                    app.bulkhead.try_start(Duration::from_millis(cpu_ms), app.config.work_delay, move |outcome| {
                        let _ = done_tx.send(WorkDone { slot, generation, outcome });
                        waker.wake();
                    });
                if let Err(refused) = started {
                    app.metrics.work_refused(refused);
                    self.finish(
                        conn,
                        req,
                        Response::text(503, "/work is at capacity, retry shortly\n").retry_after(1),
                        now,
                    );
                } else {
                    conn.state = State::Working { req: Box::new(req) };
                }
            }
            Ok(Action::Panic) => {
                log::event("error", "panic drill: terminating the process", |l| {
                    l.str("request_id", &req.request_id).str("remote", &conn.peer);
                });
                self.log.flush();
                log::flush(Duration::from_millis(500));
                std::process::exit(PANIC_DRILL_EXIT_CODE);
            }
            Err(_) => {
                // The panic hook has logged the message and location.
                app.metrics.panics.fetch_add(1, Ordering::Relaxed);
                self.finish(conn, req, Response::text(500, "internal error\n"), now);
            }
        }
    }

    /// An error answer that ends the connection, after reading out what the client still sends.
    fn reject(&mut self, conn: &mut Conn, req: Pending, resp: Response, now: Instant) {
        conn.closing = true;
        conn.linger_on_close = true;
        self.finish(conn, req, resp, now);
    }

    /// Queues the answer, counts it, logs it, and decides whether the connection goes on.
    fn finish(&mut self, conn: &mut Conn, req: Pending, resp: Response, now: Instant) {
        let app = &self.app;
        let keep = !conn.closing
            && req.keep_alive
            && !app.state.shutting_down()
            && conn.served < app.config.max_requests_per_connection
            && !conn.peer_done_sending;
        let persistence = match (keep, req.http10) {
            (false, _) => Persistence::Close,
            (true, true) => Persistence::KeepAliveHttp10,
            (true, false) => Persistence::KeepAlive,
        };
        if conn.output_since.is_none() {
            conn.output_since = Some(now);
        }
        let head_only = req.method == Method::Head;
        let bytes = response::encode(&mut conn.output, &resp, head_only, &req.request_id, persistence, self.date.get());
        // A fresh reading: `now` is when this turn began, and the handler ran since.
        let elapsed = req.started.elapsed();
        app.metrics.observe(req.method, req.route, resp.status, elapsed);
        if req.in_flight {
            app.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        if persistence == Persistence::Close {
            conn.closing = true;
        }
        if !matches!(conn.state, State::Working { .. }) {
            conn.state = State::Idle { since: now, fresh: false };
        }
        let level = match resp.status {
            500.. => "error",
            400.. => "warn",
            _ => "info",
        };
        let mut line = JsonLine::new(level, "request");
        line.str("method", &req.method_text)
            .str("route", req.route.label())
            .str("path", &req.path)
            .uint("status", u64::from(resp.status))
            .millis("duration_ms", elapsed)
            .uint("bytes", bytes as u64)
            .str("remote", &conn.peer)
            .str("request_id", &req.request_id)
            .bytes("user_agent", &req.user_agent);
        line.close();
        self.log.push(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_handler_is_contained() {
        let outcome = guarded(|| -> u16 { panic!("handler bug") });
        assert!(outcome.is_err());
        // The thread that ran it is still here and still works.
        assert_eq!(guarded(|| 200u16).ok(), Some(200));
    }

    #[test]
    fn deadlines_follow_the_connection_state() {
        let app = App::new(crate::config::Config::from_lookup(|_| None).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let now = Instant::now();
        let mut c = Conn::new(stream, String::new(), 0, now, true);
        assert_eq!(deadline(&c, &app), Some(now + app.config.header_timeout));
        c.state = State::Idle { since: now, fresh: false };
        assert_eq!(deadline(&c, &app), Some(now + app.config.idle_timeout));
        c.state = State::Head { started: now };
        assert_eq!(deadline(&c, &app), Some(now + app.config.header_timeout));
        c.output.extend_from_slice(b"x");
        c.output_since = Some(now);
        assert_eq!(
            deadline(&c, &app),
            Some(now + app.config.write_timeout),
            "unflushed output: the write deadline rules"
        );
    }
}
