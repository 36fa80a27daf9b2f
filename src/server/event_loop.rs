//! The I/O loop that carries out the connection machine's effects: `WORKERS` threads on one shared readiness set.
//!
//! Every fd is registered one-shot, so whichever worker is woken for a connection owns it until it re-arms it;
//! the connection's mutex is then uncontended, and any free worker serves any ready connection. The listener is
//! one one-shot entry too (in one shared set that is what keeps a new connection from waking every worker).
//! Finished `/work` runs come back through a queue and a socket pair in the same set. Deadlines sit in a binary
//! heap per worker, so a wake-up costs the connections that are ready or due, never a scan over all of them.
//! Each connection gets a bounded turn (bytes read, bytes written), then goes to the back of the line.
//! Nothing here decides anything about HTTP (that is `crate::conn`) or about answers (that is `crate::app`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::table::{Live, Table, lock};
use crate::app::App;
use crate::bulkhead::WorkOutcome;
use crate::conn::{Conn, Effect, Env, MAX_LINGER_DISCARD, Request, Settings};
use crate::http::response::DateCache;
use crate::log::{self, LineBuffer};
use crate::state::Phase;
use crate::sys::{self, Poller, Readiness};

/// Bytes asked for per `read` call.
const READ_CHUNK: usize = 16 * 1024;
/// The most a connection may read, and write, in one turn before the others get theirs.
const READ_PER_TURN: usize = 64 * 1024;
const WRITE_PER_TURN: usize = 64 * 1024;
/// After a failed accept (no descriptors or buffers left), the first pause; it doubles up to the second, as
/// Go's `Server.Serve` does, and resets with the next accept that works.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Failed accepts are logged at most once per this, with the count since the last line: while descriptors stay
/// exhausted, the log gets a line now and then, not a flood.
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(5);
/// Refused connections (over the cap) lingered on at most; past this they are closed at once.
const MAX_REFUSED_LINGERING: usize = 256;
const ACCEPTS_PER_TURN: usize = 64;
/// At drain, how many turns' worth of queued connections to accept before the listener closes.
const FINAL_ACCEPT_SWEEPS: usize = 16;
/// From shutdown on, the longest wait, so grace periods end on time and workers notice the drain.
const DRAIN_POLL_WAIT: Duration = Duration::from_millis(50);
/// Longest wait when no deadline is nearer; bounds how stale a missed wake-up could make us.
const MAX_POLL_WAIT: Duration = Duration::from_secs(1);
/// Deadline entries a worker's heap may hold before it drops the ones that no longer matter (see
/// `Local::compact_timers`); past this floor it compacts once entries outnumber twice the live connections.
const TIMER_COMPACT_FLOOR: usize = 4096;
const LISTENER: u64 = u64::MAX;
const NOTIFY: u64 = u64::MAX - 1;

/// Finished /work runs, queued by the pool's threads, and the socket pair that wakes a worker for them.
pub(super) struct Completions {
    pub(super) queue: Mutex<Vec<(u64, Box<Request>, WorkOutcome)>>,
    pub(super) notify_tx: UnixStream,
}

impl Completions {
    /// Wakes one worker: for a finished /work, a phase change, or a worker leaving.
    pub(super) fn notify(&self) {
        // A full socket buffer already guarantees a pending wake-up, so WouldBlock is success.
        let _ = (&self.notify_tx).write(&[1]);
    }
}

/// What every worker shares.
pub(super) struct Shared {
    pub(super) app: Arc<App>,
    pub(super) settings: Settings,
    pub(super) poller: Poller,
    pub(super) listener: Mutex<Option<TcpListener>>,
    pub(super) table: Table,
    pub(super) done: Arc<Completions>,
    pub(super) notify_rx: UnixStream,
    /// Connections in the table.
    pub(super) live: AtomicUsize,
    pub(super) refused_lingering: AtomicUsize,
    /// Accepting pauses after a failed accept: the pause now, until when, and when one was last logged.
    accept_pause: Mutex<AcceptPause>,
}

#[derive(Default)]
struct AcceptPause {
    backoff: Duration,
    until: Option<Instant>,
    logged: Option<Instant>,
    unlogged: u64,
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
            accept_pause: Mutex::default(),
        })
    }

    fn env<'a>(&'a self, date: &'a str, now: Instant) -> Env<'a> {
        Env { settings: &self.settings, date, now, shutting_down: self.app.state.shutting_down() }
    }
}

fn arm_listener(sh: &Shared, listener: &TcpListener) {
    if let Err(e) = sh.poller.arm(listener.as_raw_fd(), LISTENER, true, false, false) {
        log::failure("error", "cannot re-arm the listener", &e);
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

pub(super) struct Worker {
    sh: Arc<Shared>,
    local: Local,
    date: DateCache,
    ready: Vec<Readiness>,
}

/// A worker's own things: its deadline heap, log batch, effect queue and read buffer.
pub(super) struct Local {
    pub(super) timers: BinaryHeap<Reverse<(Instant, u64)>>,
    /// When this worker last swept the table for idle connections at drain (a sweep visits every slot, so at
    /// most one per `DRAIN_POLL_WAIT`, however many events arrive).
    pub(super) swept: Option<Instant>,
    pub(super) log: LineBuffer,
    pub(super) fx: Vec<Effect>,
    pub(super) scratch: Box<[u8]>,
}

impl Worker {
    pub(super) fn new(sh: Arc<Shared>) -> Worker {
        let local = Local {
            timers: BinaryHeap::new(),
            swept: None,
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
                    sh.done.notify();
                    return;
                }
            }
            self.local.log.flush_if_due(now);
            let longest = if phase >= Phase::ShuttingDown { DRAIN_POLL_WAIT } else { MAX_POLL_WAIT };
            // Wake for the first of: the next deadline, the log batch falling due, the end of an accept pause.
            let next_timer = self.local.timers.peek().map(|Reverse((d, _))| *d);
            let wakes = [next_timer, self.local.log.due(), lock(&sh.accept_pause).until];
            let until = wakes.into_iter().flatten().fold(now + longest, Instant::min);
            self.ready.clear();
            if let Err(e) = sh.poller.wait(&mut self.ready, until.saturating_duration_since(now)) {
                log::failure("error", "readiness wait failed", &e);
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            let now = Instant::now();
            let date = self.date.get();
            for r in &self.ready {
                match r.token {
                    LISTENER => self.local.accept_ready(sh, date, now),
                    NOTIFY => self.local.collect_finished_work(sh, date, now),
                    token => {
                        self.local.with_conn(sh, date, now, token, |l, live, env| l.serve(sh, live, token, *r, env))
                    }
                }
            }
            self.local.resume_accepting(sh, Instant::now());
            self.local.expire(sh, date, Instant::now());
            if self.local.timers.len() > TIMER_COMPACT_FLOOR.max(2 * sh.live.load(Ordering::Relaxed)) {
                self.local.compact_timers(sh);
            }
        }
    }
}

impl Local {
    /// Accepts up to a turn's worth of connections, then re-arms the listener, unless accepting is paused.
    fn accept_ready(&mut self, sh: &Shared, date: &str, now: Instant) {
        let guard = lock(&sh.listener);
        let Some(listener) = guard.as_ref() else { return };
        if self.accept_batch(sh, listener, date, now).is_ok() {
            arm_listener(sh, listener);
        }
    }

    /// Ends a pause in accepting once it is over: whichever worker sees it first re-arms the listener.
    fn resume_accepting(&mut self, sh: &Shared, now: Instant) {
        let mut pause = lock(&sh.accept_pause);
        if pause.until.is_some_and(|t| now >= t) {
            pause.until = None;
            drop(pause);
            if let Some(listener) = lock(&sh.listener).as_ref() {
                arm_listener(sh, listener);
            }
        }
    }

    /// Ok(true) when more connections may be waiting; Err after a failed accept, with accepting paused.
    fn accept_batch(&mut self, sh: &Shared, listener: &TcpListener, date: &str, now: Instant) -> Result<bool, ()> {
        for _ in 0..ACCEPTS_PER_TURN {
            match sys::accept(listener) {
                Ok((stream, peer)) => {
                    lock(&sh.accept_pause).backoff = Duration::ZERO;
                    self.admit(sh, stream, peer, date, now);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted || e.kind() == ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: the listener stays readable, so accepting again at once
                    // would spin. Pause; the connection waits in the kernel's queue until descriptors free up.
                    sh.app.metrics.accept_errors.fetch_add(1, Ordering::Relaxed);
                    let mut p = lock(&sh.accept_pause);
                    p.backoff = (p.backoff * 2).clamp(ACCEPT_BACKOFF_FIRST, ACCEPT_BACKOFF_MAX);
                    p.until = Some(now + p.backoff);
                    p.unlogged += 1;
                    if p.logged.is_none_or(|t| now >= t + ACCEPT_ERROR_LOG_EVERY) {
                        let (failed, pause) = (std::mem::take(&mut p.unlogged), p.backoff);
                        p.logged = Some(now);
                        log::event("error", "accept failed: pausing", |l| {
                            l.str("error", &e.to_string()).uint("failures", failed).millis("pause_ms", pause);
                        });
                    }
                    return Err(());
                }
            }
        }
        Ok(true)
    }

    fn admit(&mut self, sh: &Shared, stream: TcpStream, peer: SocketAddr, date: &str, now: Instant) {
        let m = &sh.app.metrics;
        m.connections_accepted.fetch_add(1, Ordering::Relaxed);
        let max = sh.app.config.max_connections as i64;
        let counted = m.connections_open.fetch_add(1, Ordering::AcqRel) < max;
        if !counted {
            m.connections_open.fetch_sub(1, Ordering::AcqRel);
        }
        let env = sh.env(date, now);
        let linger = !counted && sh.refused_lingering.fetch_add(1, Ordering::AcqRel) < MAX_REFUSED_LINGERING;
        let conn = if counted { Conn::new(now) } else { Conn::refused(&env, linger, &mut self.fx) };
        let mut live = Live { stream, peer: peer.to_string(), conn, counted, timer: None, registered: false };
        if !counted && !linger {
            sh.refused_lingering.fetch_sub(1, Ordering::AcqRel);
            // We cannot afford to linger. Still close cleanly: FIN after the answer, and read away what
            // already arrived, since closing on unread input sends a reset that can destroy the 503.
            self.apply(sh, &mut live, 0, &env);
            if live.stream.write(live.conn.output()).ok() == Some(live.conn.output().len()) {
                let _ = live.stream.shutdown(Shutdown::Write);
                discard_received(&mut live.stream, &mut self.scratch);
            }
            return;
        }
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
        let env = sh.env(date, now);
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
            live.conn.abort(&mut self.fx);
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
                        live.conn.abort(&mut self.fx);
                        break;
                    }
                }
                self.apply(sh, live, token, env);
            }
        }
        let interest = live.conn.interest(s);
        if r.trouble && !interest.read && !interest.write {
            // Error or hang-up on a connection we were not reading: nothing left to say to it.
            live.conn.abort(&mut self.fx);
        }
        self.flush(sh, live, token, env);
    }

    /// Carries out the queued effects, in order: the application counts them and answers requests.
    fn apply(&mut self, sh: &Shared, live: &mut Live, token: u64, env: &Env) {
        let mut i = 0;
        while i < self.fx.len() {
            sh.app.observe(&self.fx[i], &live.peer, &mut self.log);
            match std::mem::replace(&mut self.fx[i], Effect::Head) {
                Effect::Request(req) => {
                    let done = Arc::clone(&sh.done);
                    let later = move |req, outcome| {
                        lock(&done.queue).push((token, req, outcome));
                        done.notify();
                    };
                    if let Some((req, resp)) = sh.app.answer(req, &live.peer, &mut self.log, later) {
                        live.conn.respond(env, *req, resp, &mut self.fx);
                    }
                }
                Effect::Linger => _ = live.stream.shutdown(Shutdown::Write),
                // The socket closes when the slot lets go of it.
                _ => {}
            }
            i += 1;
        }
        self.fx.clear();
    }

    /// Writes what the machine queued, as far as the socket takes it and the turn allows, applying the effects
    /// each write releases.
    fn flush(&mut self, sh: &Shared, live: &mut Live, token: u64, env: &Env) {
        self.apply(sh, live, token, env);
        let mut total = 0;
        while !live.conn.output().is_empty() && total < WRITE_PER_TURN {
            match (&live.stream).write(live.conn.output()) {
                Ok(0) => live.conn.abort(&mut self.fx),
                Ok(n) => {
                    total += n;
                    live.conn.written(env, n, &mut self.fx);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => live.conn.abort(&mut self.fx),
            }
            self.apply(sh, live, token, env);
        }
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
        for (token, req, outcome) in done {
            let resp = sh.app.work_answer(outcome);
            self.with_conn(sh, date, now, token, |l, live, env| {
                live.conn.respond(env, *req, resp, &mut l.fx);
                l.flush(sh, live, token, env);
            });
        }
        if let Err(e) = sh.poller.arm(sh.notify_rx.as_raw_fd(), NOTIFY, true, false, false) {
            log::failure("error", "cannot re-arm the wake-up socket", &e);
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

    /// Drops the heap entries that can no longer matter: those of closed connections, and those a connection's
    /// earlier deadline has superseded (`Live::timer` names the one entry that counts). Entries are only ever
    /// removed when due, so without this a stream of short connections would keep one entry per connection opened
    /// within the longest timeout: memory would follow the connection rate, not the live count.
    fn compact_timers(&mut self, sh: &Shared) {
        let mut kept: Vec<_> = std::mem::take(&mut self.timers)
            .into_vec()
            .into_iter()
            .filter(|&Reverse((d, token))| {
                sh.table.slot(token as u32).is_some_and(|slot| {
                    let slot = lock(slot);
                    u64::from(slot.generation) == token >> 32 && slot.live.as_ref().is_some_and(|l| l.timer == Some(d))
                })
            })
            .collect();
        // The filter reuses the old allocation; give back what the burst of connections made it grow to.
        kept.shrink_to_fit();
        self.timers = BinaryHeap::from(kept);
    }

    /// At drain: accept what the kernel has queued, close the listener, and close idle connections.
    fn drain(&mut self, sh: &Shared, date: &str, now: Instant) {
        {
            let mut guard = lock(&sh.listener);
            if let Some(listener) = guard.as_ref() {
                // Those clients completed their handshake and would otherwise be reset.
                for _ in 0..FINAL_ACCEPT_SWEEPS {
                    if self.accept_batch(sh, listener, date, now) != Ok(true) {
                        break;
                    }
                }
                sh.poller.forget(LISTENER);
                *guard = None;
            }
        }
        if self.swept.is_some_and(|t| now < t + DRAIN_POLL_WAIT) {
            return;
        }
        self.swept = Some(now);
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
