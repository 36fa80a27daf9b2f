//! The I/O loop that carries out the connection machine's effects: `WORKERS` threads on one shared readiness set.
//!
//! Every fd is registered one-shot, so whichever worker is woken for a connection owns it until it re-arms it;
//! the connection's mutex is then uncontended, and any free worker serves any ready connection. The listener is
//! one one-shot entry too (in one shared set that is what keeps a new connection from waking every worker).
//! Finished `/work` runs come back through a queue and a socket pair in the same set. Deadlines sit in a binary
//! heap per worker, so a wake-up costs the connections that are ready or due, never a scan over all of them.
//! Nothing here decides anything about HTTP: that is `crate::conn`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::bulkhead::{Refused, WorkOutcome};
use crate::App;
use crate::conn::{Conn, Effect, Env, MAX_LINGER_DISCARD, Record, Settings, WorkResult};
use crate::http::response::DateCache;
use crate::log::{self, JsonLine, LineBuffer};
use crate::state::Phase;
use crate::sys::{self, Poller, Readiness};

/// Bytes read per `read` call; also the most a connection may read in one turn before others get theirs.
const READ_CHUNK: usize = 16 * 1024;
const READ_PER_TURN: usize = 64 * 1024;
/// Refused connections (over the cap) lingered on at most; past this they are closed at once.
const MAX_REFUSED_LINGERING: usize = 256;
const ACCEPTS_PER_TURN: usize = 64;
/// At drain, how many turns' worth of queued connections to accept before the listener closes.
const FINAL_ACCEPT_SWEEPS: usize = 16;
/// From shutdown on, the longest wait, so grace periods end on time and workers notice the drain.
const DRAIN_POLL_WAIT: Duration = Duration::from_millis(50);
/// Longest wait when no deadline is nearer; bounds how stale a missed wake-up could make us.
const MAX_POLL_WAIT: Duration = Duration::from_secs(1);
/// Exit status of the /panic drill: the code an uncaught Rust panic in `main` gives.
pub const PANIC_DRILL_EXIT_CODE: i32 = 101;

const LISTENER: u64 = u64::MAX;
const NOTIFY: u64 = u64::MAX - 1;
/// Connection slots are allocated in chunks of this many, on first use.
const CHUNK: usize = 256;

/// A connection the loop holds: the socket, its machine, and the loop's own accounting.
struct Live {
    stream: TcpStream,
    peer: String,
    conn: Conn,
    /// Counted in `sremini_connections_open` (refused connections are not).
    counted: bool,
    /// The earliest deadline already in some worker's heap for this connection.
    timer: Option<Instant>,
    /// In the readiness set (a connection that starts /work at once has not asked for anything yet).
    registered: bool,
}

#[derive(Default)]
struct Slot {
    generation: u32,
    live: Option<Live>,
}

/// Slots indexed by token; chunks are allocated on first use, so a fresh process holds almost nothing.
/// `CHUNK` slots, allocated together when the first of them is needed.
type Chunk = Box<[Mutex<Slot>]>;

struct Table {
    chunks: Box<[OnceLock<Chunk>]>,
    alloc: Mutex<(Vec<u32>, u32)>,
    capacity: u32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a slot is caught by the handler guard; a poisoned lock still holds consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Table {
    fn new(capacity: usize) -> Table {
        let capacity = capacity.min(u32::MAX as usize / 2) as u32;
        let chunks = (0..(capacity as usize).div_ceil(CHUNK)).map(|_| OnceLock::new()).collect();
        Table { chunks, alloc: Mutex::new((Vec::new(), 0)), capacity }
    }

    fn slot(&self, index: u32) -> Option<&Mutex<Slot>> {
        let chunk = self.chunks.get(index as usize / CHUNK)?.get()?;
        chunk.get(index as usize % CHUNK)
    }

    /// Stores a new connection; its token, or None when the table is full.
    fn insert(&self, live: Live) -> Option<u64> {
        let index = {
            let mut a = lock(&self.alloc);
            match a.0.pop() {
                Some(i) => i,
                None if a.1 < self.capacity => {
                    a.1 += 1;
                    a.1 - 1
                }
                None => return None,
            }
        };
        let chunk = self.chunks[index as usize / CHUNK]
            .get_or_init(|| (0..CHUNK).map(|_| Mutex::new(Slot::default())).collect());
        let mut slot = lock(&chunk[index as usize % CHUNK]);
        slot.generation = slot.generation.wrapping_add(1);
        slot.live = Some(live);
        Some(u64::from(slot.generation) << 32 | u64::from(index))
    }

    fn release(&self, index: u32) {
        lock(&self.alloc).0.push(index);
    }

    fn high_water(&self) -> u32 {
        lock(&self.alloc).1
    }
}

/// Finished /work runs, queued by the pool's threads, and the socket pair that wakes a worker for them.
struct Completions {
    queue: Mutex<Vec<(u64, WorkOutcome)>>,
    notify_tx: UnixStream,
}

impl Completions {
    fn notify(&self) {
        // A full socket buffer already guarantees a pending wake-up, so WouldBlock is success.
        let _ = (&self.notify_tx).write(&[1]);
    }
}

/// What every worker shares.
pub(super) struct Shared {
    app: Arc<App>,
    settings: Settings,
    poller: Poller,
    listener: Mutex<Option<TcpListener>>,
    table: Table,
    done: Arc<Completions>,
    notify_rx: UnixStream,
    /// Connections in the table.
    live: AtomicUsize,
    refused_lingering: AtomicUsize,
}

impl Shared {
    pub(super) fn new(app: Arc<App>, listener: TcpListener) -> std::io::Result<Shared> {
        let (notify_rx, notify_tx) = UnixStream::pair()?;
        notify_rx.set_nonblocking(true)?;
        notify_tx.set_nonblocking(true)?;
        let poller = Poller::new()?;
        poller.arm(listener.as_raw_fd(), LISTENER, true, false, true)?;
        poller.arm(notify_rx.as_raw_fd(), NOTIFY, true, false, true)?;
        let capacity = app.config.max_connections + MAX_REFUSED_LINGERING + 16;
        Ok(Shared {
            settings: Settings::new(&app.config),
            app,
            poller,
            listener: Mutex::new(Some(listener)),
            table: Table::new(capacity),
            done: Arc::new(Completions { queue: Mutex::new(Vec::new()), notify_tx }),
            notify_rx,
            live: AtomicUsize::new(0),
            refused_lingering: AtomicUsize::new(0),
        })
    }

    /// Wakes one worker: for a finished /work, a phase change, or a worker leaving.
    pub(super) fn notify(&self) {
        self.done.notify();
    }
}

pub(super) struct Worker {
    sh: Arc<Shared>,
    local: Local,
    date: DateCache,
    ready: Vec<Readiness>,
}

/// A worker's own things: its deadline heap, log batch, effect queue and read buffer.
struct Local {
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    log: LineBuffer,
    fx: Vec<Effect>,
    scratch: Box<[u8]>,
}

impl Worker {
    pub(super) fn new(sh: Arc<Shared>) -> Worker {
        let local = Local {
            timers: BinaryHeap::new(),
            log: LineBuffer::default(),
            fx: Vec::new(),
            scratch: vec![0u8; READ_CHUNK].into_boxed_slice(),
        };
        Worker { sh, local, date: DateCache::default(), ready: Vec::new() }
    }

    pub(super) fn run(mut self) {
        let sh = &*self.sh;
        loop {
            let now = Instant::now();
            let phase = sh.app.state.phase();
            if phase >= Phase::Draining {
                self.local.drain(sh, self.date.get(), now);
                if sh.live.load(Ordering::Acquire) == 0 && lock(&sh.listener).is_none() {
                    self.local.log.flush();
                    // Pass the news on: another worker may be asleep.
                    sh.notify();
                    return;
                }
            }
            self.local.log.flush_if_due(now);
            let longest = if phase >= Phase::ShuttingDown { DRAIN_POLL_WAIT } else { MAX_POLL_WAIT };
            let mut until = now + longest;
            if let Some(Reverse((d, _))) = self.local.timers.peek() {
                until = until.min(*d);
            }
            if let Some(d) = self.local.log.due() {
                until = until.min(d);
            }
            self.ready.clear();
            if let Err(e) = sh.poller.wait(&mut self.ready, until.saturating_duration_since(now)) {
                log::event("error", "readiness wait failed", |l| {
                    l.str("error", &e.to_string());
                });
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            let now = Instant::now();
            let date = self.date.get();
            for r in &self.ready {
                match r.token {
                    LISTENER => self.local.accept_ready(sh, date, now),
                    NOTIFY => self.local.collect_finished_work(sh, date, now),
                    token => self.local.on_ready(sh, date, now, token, *r),
                }
            }
            self.local.expire(sh, date, Instant::now());
        }
    }
}

impl Local {
    /// Accepts up to a turn's worth of connections, then re-arms the listener.
    fn accept_ready(&mut self, sh: &Shared, date: &str, now: Instant) {
        let guard = lock(&sh.listener);
        let Some(listener) = guard.as_ref() else { return };
        self.accept_batch(sh, listener, date, now);
        if let Err(e) = sh.poller.arm(listener.as_raw_fd(), LISTENER, true, false, false) {
            log::event("error", "cannot re-arm the listener", |l| {
                l.str("error", &e.to_string());
            });
        }
    }

    /// True when more connections may be waiting.
    fn accept_batch(&mut self, sh: &Shared, listener: &TcpListener, date: &str, now: Instant) -> bool {
        for _ in 0..ACCEPTS_PER_TURN {
            match sys::accept(listener) {
                Ok((stream, peer)) => self.admit(sh, stream, peer, date, now),
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

    fn admit(&mut self, sh: &Shared, stream: TcpStream, peer: SocketAddr, date: &str, now: Instant) {
        let m = &sh.app.metrics;
        m.connections_accepted.fetch_add(1, Ordering::Relaxed);
        let max = sh.app.config.max_connections as i64;
        let counted = m.connections_open.fetch_add(1, Ordering::AcqRel) < max;
        if !counted {
            m.connections_open.fetch_sub(1, Ordering::AcqRel);
        }
        let env = Env { app: &sh.app, in_flight: &sh.app.metrics.in_flight, settings: &sh.settings, date, now };
        let conn = if counted {
            Conn::new(now)
        } else {
            let linger = sh.refused_lingering.fetch_add(1, Ordering::AcqRel) < MAX_REFUSED_LINGERING;
            let conn = Conn::refused(&env, linger, &mut self.fx);
            if !linger {
                sh.refused_lingering.fetch_sub(1, Ordering::AcqRel);
                // We cannot afford to linger. Still close cleanly: FIN after the answer, and read away what
                // already arrived, since closing on unread input sends a reset that can destroy the 503.
                let mut live = Live { stream, peer: peer.to_string(), conn, counted, timer: None, registered: false };
                self.apply(sh, &mut live, 0, &env);
                if live.stream.write(live.conn.output()).ok() == Some(live.conn.output().len()) {
                    let _ = live.stream.shutdown(Shutdown::Write);
                    discard_received(&mut live.stream, &mut self.scratch);
                }
                return;
            }
            conn
        };
        let live = Live { stream, peer: peer.to_string(), conn, counted, timer: None, registered: false };
        let Some(token) = sh.table.insert(live) else {
            // Only when more connections linger than the table was sized for: close at once.
            if counted {
                m.connections_open.fetch_sub(1, Ordering::AcqRel);
            } else {
                sh.refused_lingering.fetch_sub(1, Ordering::AcqRel);
            }
            return;
        };
        sh.live.fetch_add(1, Ordering::AcqRel);
        // The request often arrives with the handshake: read now rather than one wait later.
        let ready = Readiness { token, readable: counted, writable: !counted, trouble: false };
        self.with_conn(sh, date, now, token, |l, live, env| l.serve(sh, live, token, ready, env));
    }

    fn on_ready(&mut self, sh: &Shared, date: &str, now: Instant, token: u64, r: Readiness) {
        self.with_conn(sh, date, now, token, |l, live, env| l.serve(sh, live, token, r, env));
    }

    /// Runs `f` on a live connection, then closes it or re-arms it and schedules its deadline.
    fn with_conn(
        &mut self,
        sh: &Shared,
        date: &str,
        now: Instant,
        token: u64,
        f: impl FnOnce(&mut Local, &mut Live, &Env),
    ) {
        let index = token as u32;
        let Some(slot) = sh.table.slot(index) else { return };
        let mut slot = lock(slot);
        if u64::from(slot.generation) != token >> 32 {
            return;
        }
        let Some(live) = slot.live.as_mut() else { return };
        let env = Env { app: &sh.app, in_flight: &sh.app.metrics.in_flight, settings: &sh.settings, date, now };
        f(self, live, &env);
        if !live.conn.is_closed() {
            let interest = live.conn.interest(&sh.settings);
            let wanted = interest.read || interest.write;
            let first = !live.registered;
            let armed =
                !wanted || sh.poller.arm(live.stream.as_raw_fd(), token, interest.read, interest.write, first).is_ok();
            live.registered |= wanted;
            if armed {
                if let Some(d) = live.conn.next_deadline(&sh.settings)
                    && live.timer.is_none_or(|t| d < t)
                {
                    live.timer = Some(d);
                    self.timers.push(Reverse((d, token)));
                }
                return;
            }
            live.conn.abort(&env, &mut self.fx);
            self.apply(sh, live, token, &env);
        }
        let live = slot.live.take().expect("checked above");
        sh.poller.forget(token);
        if live.counted {
            sh.app.metrics.connections_open.fetch_sub(1, Ordering::AcqRel);
        } else {
            sh.refused_lingering.fetch_sub(1, Ordering::AcqRel);
        }
        drop(slot);
        sh.table.release(index);
        sh.live.fetch_sub(1, Ordering::AcqRel);
    }

    /// Reads what the socket has (if the machine wants it), then writes what the machine queued.
    fn serve(&mut self, sh: &Shared, live: &mut Live, token: u64, r: Readiness, env: &Env) {
        let s = &sh.settings;
        let mut total = 0;
        if r.readable || r.trouble {
            while total < READ_PER_TURN && live.conn.interest(s).read {
                match (&live.stream).read(&mut self.scratch) {
                    Ok(0) => {
                        live.conn.peer_closed(env, &mut self.fx);
                        break;
                    }
                    Ok(n) => {
                        total += n;
                        live.conn.received(env, &self.scratch[..n], &mut self.fx);
                        if n < self.scratch.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        live.conn.abort(env, &mut self.fx);
                        break;
                    }
                }
                self.apply(sh, live, token, env);
            }
        }
        let interest = live.conn.interest(s);
        if r.trouble && !interest.read && !interest.write {
            // Error or hang-up on a connection we were not reading: nothing left to say to it.
            live.conn.abort(env, &mut self.fx);
        }
        self.flush(sh, live, token, env);
    }

    /// Writes what the machine queued, as far as the socket takes it, applying the effects each write releases.
    fn flush(&mut self, sh: &Shared, live: &mut Live, token: u64, env: &Env) {
        self.apply(sh, live, token, env);
        while !live.conn.output().is_empty() {
            match (&live.stream).write(live.conn.output()) {
                Ok(0) => live.conn.abort(env, &mut self.fx),
                Ok(n) => live.conn.written(env, n, &mut self.fx),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => live.conn.abort(env, &mut self.fx),
            }
            self.apply(sh, live, token, env);
        }
    }

    /// Carries out the queued effects, in order.
    fn apply(&mut self, sh: &Shared, live: &mut Live, token: u64, env: &Env) {
        let m = &sh.app.metrics;
        let mut i = 0;
        while i < self.fx.len() {
            match std::mem::replace(&mut self.fx[i], Effect::Close { abandoned: false }) {
                Effect::Record(r) => self.record(sh, live, &r),
                Effect::Limit(reason) => m.limit_rejected(reason),
                Effect::ParseError(reason) => m.parse_error(reason),
                Effect::StartWork { cpu, delay } => {
                    if let Err(why) = self.start_work(sh, token, cpu, delay) {
                        m.work_refused(why);
                        live.conn.work_done(env, WorkResult::Refused, &mut self.fx);
                    }
                }
                Effect::PanicDrill { request_id } => {
                    log::event("error", "panic drill: terminating the process", |l| {
                        l.str("request_id", &request_id).str("remote", &live.peer);
                    });
                    self.log.flush();
                    log::flush(Duration::from_millis(500));
                    std::process::exit(PANIC_DRILL_EXIT_CODE);
                }
                Effect::Linger => {
                    let _ = live.stream.shutdown(Shutdown::Write);
                }
                // The gauges were settled by the machine; the socket closes when the slot lets go of it.
                Effect::Close { .. } => {}
            }
            i += 1;
        }
        self.fx.clear();
    }

    fn start_work(&self, sh: &Shared, token: u64, cpu: Duration, delay: Duration) -> Result<(), Refused> {
        let done = Arc::clone(&sh.done);
        sh.app.bulkhead.try_start(cpu, delay, move |outcome| {
            lock(&done.queue).push((token, outcome));
            done.notify();
        })
    }

    /// Counts the answer and appends its log line to this worker's batch.
    fn record(&mut self, sh: &Shared, live: &Live, r: &Record) {
        let m = &sh.app.metrics;
        // A fresh reading: the handler ran since the event's `now`.
        let elapsed = r.started.elapsed();
        m.observe(r.method, r.route, r.status, elapsed);
        if r.panicked {
            m.panics.fetch_add(1, Ordering::Relaxed);
        }
        let level = match r.status {
            500.. => "error",
            400.. => "warn",
            _ => "info",
        };
        let mut line = JsonLine::new(level, "request");
        line.str("method", &r.method_text)
            .str("route", r.route.label())
            .str("path", &r.path)
            .uint("status", u64::from(r.status))
            .millis("duration_ms", elapsed)
            .uint("bytes", r.bytes as u64)
            .str("remote", &live.peer)
            .str("request_id", &r.request_id)
            .bytes("user_agent", &r.user_agent);
        line.close();
        self.log.push(&line);
    }

    /// Answers finished /work runs, in the order they finished.
    fn collect_finished_work(&mut self, sh: &Shared, date: &str, now: Instant) {
        let mut buf = [0u8; 64];
        while let Ok(n) = (&sh.notify_rx).read(&mut buf) {
            if n < buf.len() {
                break;
            }
        }
        let done = std::mem::take(&mut *lock(&sh.done.queue));
        for (token, outcome) in done {
            let result = match outcome {
                WorkOutcome::Done => WorkResult::Done,
                WorkOutcome::Panicked => WorkResult::Panicked,
            };
            self.with_conn(sh, date, now, token, |l, live, env| {
                live.conn.work_done(env, result, &mut l.fx);
                l.flush(sh, live, token, env);
            });
        }
        if let Err(e) = sh.poller.arm(sh.notify_rx.as_raw_fd(), NOTIFY, true, false, false) {
            log::event("error", "cannot re-arm the wake-up socket", |l| {
                l.str("error", &e.to_string());
            });
        }
    }

    /// Ends what is due in this worker's heap. Entries for connections that moved on are dropped or moved on.
    fn expire(&mut self, sh: &Shared, date: &str, now: Instant) {
        while let Some(&Reverse((d, token))) = self.timers.peek() {
            if d > now {
                break;
            }
            self.timers.pop();
            self.with_conn(sh, date, now, token, |l, live, env| {
                if live.timer == Some(d) {
                    live.timer = None;
                }
                live.conn.tick(env, &mut l.fx);
                l.flush(sh, live, token, env);
            });
        }
    }

    /// At drain: accept what the kernel has queued, close the listener, and close idle connections.
    fn drain(&mut self, sh: &Shared, date: &str, now: Instant) {
        {
            let mut guard = lock(&sh.listener);
            if let Some(listener) = guard.as_ref() {
                // Those clients completed their handshake and would otherwise be reset.
                for _ in 0..FINAL_ACCEPT_SWEEPS {
                    if !self.accept_batch(sh, listener, date, now) {
                        break;
                    }
                }
                sh.poller.forget(LISTENER);
                *guard = None;
            }
        }
        for index in 0..sh.table.high_water() {
            let Some(slot) = sh.table.slot(index) else { continue };
            let token = {
                let slot = lock(slot);
                if slot.live.is_none() {
                    continue;
                }
                u64::from(slot.generation) << 32 | u64::from(index)
            };
            self.with_conn(sh, date, now, token, |l, live, env| {
                live.conn.drain(env, &mut l.fx);
                l.flush(sh, live, token, env);
            });
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
