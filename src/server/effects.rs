//! Carrying out the connection machine's effects: counters, the request log line, starting /work, the /panic
//! drill, half-close. The machine decided each of them; nothing here looks at HTTP.

use std::io::{ErrorKind, Read};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::bulkhead::Refused;
use super::event_loop::{Local, PANIC_DRILL_EXIT_CODE, Shared};
use super::table::{Live, lock};
use crate::audit;
use crate::conn::{Effect, Env, MAX_LINGER_DISCARD, Record, WorkResult};
use crate::log::{self, JsonLine};

impl Local {
    /// Carries out the queued effects, in order.
    pub(super) fn apply(&mut self, sh: &Shared, live: &mut Live, token: u64, env: &Env) {
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
                Effect::Audit(ev) => audit::emit(&sh.app, &ev, &live.peer),
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
}

/// Reads and drops what has already arrived on a non-blocking socket (bounded), so closing it sends FIN, not RST.
pub(super) fn discard_received(stream: &mut TcpStream, scratch: &mut [u8]) {
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
