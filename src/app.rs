//! The application: what each request the connection machine hands over gets. Routes and method rules, the
//! handlers, the drill token, the audit trail, starting /work, the /metrics page, and the counters the machine's
//! effects feed (in flight included). It never sees bytes or sockets: a request in, a response out.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::bulkhead::{Bulkhead, IDLE_THREAD_RETIRE, Refused, WorkLimits, WorkOutcome};
use crate::cgroup::{self, CpuCgroup};
use crate::config::Config;
use crate::conn::{Effect, Record, Request};
use crate::http::response::{Response, TEXT};
use crate::labels::Route;
use crate::log::{self, JsonLine, LineBuffer};
use crate::metrics::{self, Metrics, Scrape};
use crate::process::ProcessInfo;
use crate::state::{AppState, PPM};

/// Exit status of the /panic drill: the code an uncaught Rust panic in `main` gives.
pub const PANIC_DRILL_EXIT_CODE: i32 = 101;

/// Everything the workers share: configuration, state, metrics, the /work bulkhead and the drill token.
pub struct App {
    pub config: Config,
    pub state: AppState,
    pub metrics: Metrics,
    process: ProcessInfo,
    /// The CPU cgroup the process runs in, when there is one: its quota sizes the CPU gate, its counters are
    /// exported.
    cpu_cgroup: Option<CpuCgroup>,
    pub bulkhead: Bulkhead,
    drill_token: Option<TokenFile>,
}

/// What the application does with a request.
enum Handled {
    Respond(Response),
    /// Burn this many milliseconds of CPU, sleep the configured delay, then answer.
    Work(u64),
}

/// Whether a drill request may run: the `DRILLS` switch and the drill token.
#[derive(Debug, PartialEq, Eq)]
enum Gate {
    /// Drills off, or a token file configured but missing or empty: the drill routes do not exist (404).
    Off,
    /// No token configured (a binary started by hand): drills are open, as the README's curl drills expect.
    Open,
    /// The fingerprint of the token presented, right or wrong.
    Granted(String),
    Denied(String),
}

/// The state a drill sets, decided before anything changes (the audit record must be queued first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    ReadyFailed(bool),
    WorkFailPpm(u64),
    Exit,
}

impl App {
    pub fn new(config: Config) -> App {
        let cpu_cgroup = CpuCgroup::discover();
        let limits = WorkLimits {
            max_concurrent: config.work_max_concurrent,
            cpu_slots: cgroup::usable_cpus(cpu_cgroup.as_ref().and_then(CpuCgroup::quota)),
            cpu_backlog: config.work_cpu_backlog,
            idle_retire: IDLE_THREAD_RETIRE,
        };
        App {
            metrics: Metrics::new(config.work_delay, &crate::http::parse_error_reasons()),
            bulkhead: Bulkhead::new(limits),
            state: AppState::default(),
            process: ProcessInfo::at_start(),
            cpu_cgroup,
            drill_token: (!config.drill_token_file.is_empty())
                .then(|| TokenFile { path: config.drill_token_file.into(), cached: Mutex::default() }),
            config,
        }
    }

    /// How drills are reached, for the `starting` line.
    pub fn drill_access(&self) -> &'static str {
        match (self.config.drills, &self.drill_token) {
            (false, _) => "off",
            (true, None) => "open: no DRILL_TOKEN_FILE, anyone who reaches the port may call them",
            (true, Some(_)) => "bearer token from DRILL_TOKEN_FILE",
        }
    }

    /// Counts what the connection machine reports, and logs each answered request to `log`.
    pub fn observe(&self, effect: &Effect, peer: &str, log: &mut LineBuffer) {
        let m = &self.metrics;
        match effect {
            Effect::Head => _ = m.in_flight.fetch_add(1, Relaxed),
            Effect::Record(r) => self.record(r, peer, log),
            Effect::Limit(reason) => m.limit_rejected(*reason),
            Effect::ParseError(reason) => m.parse_error(reason),
            Effect::Close { abandoned: true } => _ = m.in_flight.fetch_sub(1, Relaxed),
            Effect::Request(_) | Effect::Linger | Effect::Close { .. } => {}
        }
    }

    fn record(&self, r: &Record, peer: &str, log: &mut LineBuffer) {
        let req = &r.req;
        // A fresh reading: the handler ran since the event's `now`.
        let elapsed = req.started.elapsed();
        let route = req.route.unwrap_or_else(|| self.route(&req.path));
        self.metrics.observe(req.method, route, r.status, elapsed);
        if req.in_flight {
            self.metrics.in_flight.fetch_sub(1, Relaxed);
        }
        let level = match r.status {
            500.. => "error",
            400.. => "warn",
            _ => "info",
        };
        let mut line = JsonLine::new(level, "request");
        line.str("method", &req.method_text)
            .str("route", route.label())
            .str("path", &req.path)
            .uint("status", u64::from(r.status))
            .millis("duration_ms", elapsed)
            .uint("bytes", r.bytes as u64)
            .str("remote", peer)
            .str("request_id", &req.request_id)
            .bytes("user_agent", &req.user_agent);
        log.push(line);
    }

    /// Answers a request now, or starts /work and answers through `later` when it ends (see
    /// [`App::work_answer`]). A panic in a handler is answered 500 and counted; the panic hook has logged it.
    pub fn answer(
        &self,
        mut req: Box<Request>,
        peer: &str,
        log: &mut LineBuffer,
        later: impl FnOnce(Box<Request>, WorkOutcome) + Send + 'static,
    ) -> Option<(Box<Request>, Response)> {
        let handled = catch_unwind(AssertUnwindSafe(|| self.handle(&mut req, peer, log)));
        let resp = match handled {
            Ok(Handled::Respond(resp)) => resp,
            Ok(Handled::Work(cpu_ms)) => {
                self.bulkhead.start(Duration::from_millis(cpu_ms), self.config.work_delay, move |o| later(req, o));
                return None;
            }
            Err(_) => {
                self.metrics.panics.fetch_add(1, Relaxed);
                Response::text(500, "internal error\n")
            }
        };
        Some((req, resp))
    }

    /// The answer to a /work request once the bulkhead is done with it.
    pub fn work_answer(&self, outcome: WorkOutcome) -> Response {
        match outcome {
            WorkOutcome::Done => Response::text(200, "work done\n"),
            WorkOutcome::Panicked => {
                self.metrics.panics.fetch_add(1, Relaxed);
                Response::text(500, "internal error\n")
            }
            WorkOutcome::Refused(why) => {
                self.metrics.work_refused(why);
                let body = match why {
                    Refused::Full => "/work is at capacity, retry shortly\n",
                    Refused::CpuBacklog => "/work CPU backlog is full, retry shortly\n",
                };
                Response::text(503, body).with("Retry-After", "1")
            }
        }
    }

    /// Exact match on the path as sent: no decoding, no trailing-slash folding, so one path is one route.
    fn route(&self, path: &str) -> Route {
        let route = Route::from_label(path).unwrap_or(Route::Unmatched);
        if route.action().is_some() && !self.config.drills { Route::Unmatched } else { route }
    }

    fn handle(&self, req: &mut Request, peer: &str, log: &mut LineBuffer) -> Handled {
        let mut route = self.route(&req.path);
        let gate = if route.action().is_some() { self.gate(&req.authorization) } else { Gate::Open };
        if gate == Gate::Off {
            route = Route::Unmatched;
        }
        req.route = Some(route);
        let respond = Handled::Respond;
        if route == Route::Unmatched {
            return respond(Response::text(404, "not found\n"));
        }
        if let Gate::Denied(fp) = &gate {
            self.metrics.drill_denied.fetch_add(1, Relaxed);
            let resp =
                Response::text(401, "a drill needs Authorization: Bearer <token>\n").with("WWW-Authenticate", "Bearer");
            self.audit(req, peer, &resp, None, Some(fp));
            return respond(resp);
        }
        if !route.takes(req.method) {
            return respond(Response::text(405, "method not allowed\n").with("Allow", route.allow()));
        }
        let state = &self.state;
        match route {
            Route::Healthz => respond(Response::text(200, "ok\n")),
            Route::Readyz if state.is_ready() => respond(Response::text(200, "ready\n")),
            Route::Readyz => respond(Response::text(503, "not ready\n")),
            Route::Metrics => {
                let mut body = String::new();
                self.metrics.render(&self.scrape(), &mut body);
                respond(Response::owned(200, metrics::CONTENT_TYPE, body.into_bytes()))
            }
            Route::Work => {
                match query_param(req.query.as_deref(), "cpu_ms").and_then(|v| v.map(parse_cpu_ms).transpose()) {
                    Err(msg) => respond(Response::owned(400, TEXT, msg.into_bytes())),
                    Ok(_) if state.next_work_fails() => {
                        respond(Response::text(500, "injected failure (/fail/work drill)\n"))
                    }
                    Ok(cpu_ms) => Handled::Work(cpu_ms.unwrap_or(0)),
                }
            }
            _ => {
                let (resp, change) = self.plan(route, req.query.as_deref());
                let fp = if let Gate::Granted(fp) = &gate { Some(fp.as_str()) } else { None };
                if !self.audit(req, peer, &resp, change, fp) {
                    return respond(Response::text(503, "audit trail unavailable: nothing changed\n"));
                }
                match change {
                    Some(Change::ReadyFailed(failed)) => state.set_ready_failed(failed),
                    Some(Change::WorkFailPpm(ppm)) => state.set_work_fail_ppm(ppm),
                    Some(Change::Exit) => {
                        log::event("error", "panic drill: terminating the process", |l| {
                            l.str("request_id", &req.request_id).str("remote", peer);
                        });
                        log.flush();
                        log::flush(Duration::from_millis(500));
                        std::process::exit(PANIC_DRILL_EXIT_CODE);
                    }
                    None => {}
                }
                respond(resp)
            }
        }
    }

    /// A drill's answer and the state it sets, decided before anything changes.
    fn plan(&self, route: Route, query: Option<&str>) -> (Response, Option<Change>) {
        let ok = |body| Response::text(200, body);
        match route {
            Route::FailReady => (ok("readiness failed: /readyz now answers 503\n"), Some(Change::ReadyFailed(true))),
            Route::RecoverReady if self.state.shutting_down() => {
                (Response::text(409, "shutting down: readiness cannot recover\n"), None)
            }
            Route::RecoverReady => (ok("readiness recovered\n"), Some(Change::ReadyFailed(false))),
            Route::FailWork => match query_param(query, "ratio").and_then(|r| r.map(parse_ratio_ppm).transpose()) {
                Err(msg) => (Response::owned(400, TEXT, msg.into_bytes()), None),
                Ok(ppm) => {
                    let ppm = ppm.unwrap_or(PPM);
                    let body = format!("/work error ratio set to {}\n", ppm as f64 / PPM as f64);
                    (Response::owned(200, TEXT, body.into_bytes()), Some(Change::WorkFailPpm(ppm)))
                }
            },
            Route::RecoverWork => (ok("/work error ratio set to 0\n"), Some(Change::WorkFailPpm(0))),
            _ => (ok("exiting\n"), Some(Change::Exit)),
        }
    }

    /// Queues the audit record of one drill request. False when it cannot be queued: the caller then changes
    /// nothing.
    fn audit(&self, req: &Request, peer: &str, resp: &Response, change: Option<Change>, token: Option<&str>) -> bool {
        let queued = log::record(self.audit_line(req, peer, resp.status, change, token));
        self.metrics.audit(req.route.unwrap_or(Route::Unmatched), queued);
        queued
    }

    /// The audit record: which drill, what it changes from what to what, who asked, with which token.
    fn audit_line(
        &self,
        req: &Request,
        peer: &str,
        status: u16,
        change: Option<Change>,
        token: Option<&str>,
    ) -> JsonLine {
        let state = &self.state;
        let ready = |failed: bool| if failed { "failed" } else { "off" }.to_string();
        let ratio = |ppm: u64| (ppm as f64 / PPM as f64).to_string();
        let route = req.route.unwrap_or(Route::Unmatched);
        let (target, from, to) = match (route, change) {
            (Route::FailReady | Route::RecoverReady, c) => {
                let now = state.ready_failed();
                let to = if let Some(Change::ReadyFailed(f)) = c { f } else { now };
                ("readiness_drill", ready(now), ready(to))
            }
            (Route::FailWork | Route::RecoverWork, c) => {
                let now = state.work_fail_ppm();
                let to = if let Some(Change::WorkFailPpm(p)) = c { p } else { now };
                ("work_error_ratio", ratio(now), ratio(to))
            }
            (_, c) => ("process", "running".into(), if c.is_some() { "exiting" } else { "running" }.into()),
        };
        let status = if change == Some(Change::Exit) { 0 } else { status };
        let mut line = JsonLine::new("info", "audit");
        line.str("action", route.action().unwrap_or_default())
            .str("target", target)
            .str("from", &from)
            .str("to", &to)
            .str("changed", if from == to { "false" } else { "true" })
            .uint("status", u64::from(status))
            .str("method", req.method.label())
            .str("remote", peer);
        // What the proxy claims, recorded beside the peer address the server saw, never instead of it.
        if !req.forwarded_for.is_empty() {
            line.bytes("forwarded_for", &req.forwarded_for);
        }
        line.str("request_id", &req.request_id).bytes("user_agent", &req.user_agent);
        if let Some(fp) = token {
            line.str("token_fingerprint", fp);
        }
        line
    }

    fn gate(&self, authorization: &[u8]) -> Gate {
        let Some(file) = &self.drill_token else { return Gate::Open };
        let token = file.current();
        if token.is_empty() {
            return Gate::Off;
        }
        let presented = match authorization.iter().position(|&b| b == b' ') {
            Some(at) if authorization[..at].eq_ignore_ascii_case(b"bearer") => authorization[at + 1..].trim_ascii(),
            _ => b"",
        };
        let fp = fingerprint(presented);
        if same_bytes(presented, &token) { Gate::Granted(fp) } else { Gate::Denied(fp) }
    }

    /// Everything a `/metrics` answer shows besides the request counters, read now.
    pub fn scrape(&self) -> Scrape {
        Scrape {
            ready: self.state.is_ready(),
            shutting_down: self.state.shutting_down(),
            work_error_ratio: self.state.work_fail_ppm() as f64 / PPM as f64,
            log: log::stats(),
            process: self.process.read(),
            start_time_seconds: self.process.start_time_seconds,
            work: self.bulkhead.stats(),
            cpu_cfs: self.cpu_cgroup.as_ref().and_then(CpuCgroup::stat),
        }
    }
}

/// The file `DRILL_TOKEN_FILE` names, read again whenever what it resolves to changes. Kubernetes updates a
/// mounted Secret by swapping a `..data` symlink, so the path then resolves to a new file: a different inode.
struct TokenFile {
    path: std::path::PathBuf,
    cached: Mutex<(Option<FileKey>, Vec<u8>)>,
}

/// Device, inode, modification time (seconds, nanoseconds) and length: a change in any means a new token.
type FileKey = (u64, u64, i64, i64, u64);

impl TokenFile {
    /// The token now: empty when the file is missing, unreadable or blank (drills then answer 404).
    fn current(&self) -> Vec<u8> {
        use std::os::unix::fs::MetadataExt;
        let key = std::fs::metadata(&self.path).ok().map(|m| (m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.len()));
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if key.is_none() || cached.0 != key {
            let token = std::fs::read(&self.path).map(|t| t.trim_ascii().to_vec()).unwrap_or_default();
            *cached = (key, token);
        }
        cached.1.clone()
    }
}

/// Compares in time that depends on the length of `presented` only, never on where it first differs.
fn same_bytes(presented: &[u8], token: &[u8]) -> bool {
    let mut diff = u8::from(presented.len() != token.len() || token.is_empty());
    for (i, b) in presented.iter().enumerate() {
        diff |= b ^ token[i % token.len().max(1)];
    }
    std::hint::black_box(diff) == 0
}

/// A short fingerprint (32 bits of FNV-1a) that tells tokens apart in the audit trail and says nothing useful
/// about a random token.
fn fingerprint(token: &[u8]) -> String {
    let hash = token.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{:08x}", hash >> 32)
}

/// The value of `key` in a query string. A repeated key is an error: which one would count is ambiguous.
fn query_param<'q>(query: Option<&'q str>, key: &str) -> Result<Option<&'q str>, String> {
    let mut found = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == key {
            if found.is_some() {
                return Err(format!("{key} given more than once\n"));
            }
            found = Some(v);
        }
    }
    Ok(found)
}

fn parse_cpu_ms(raw: &str) -> Result<u64, String> {
    match raw.parse::<u64>() {
        Ok(v) if raw.len() <= 4 && raw.bytes().all(|b| b.is_ascii_digit()) && v <= 1000 => Ok(v),
        _ => Err("cpu_ms must be a whole number of milliseconds from 0 to 1000\n".to_string()),
    }
}

/// A decimal from 0 to 1 (`0`, `1`, `0.5`, `.25`, `1.0`), to parts per million. No signs, exponents, NaN or inf.
fn parse_ratio_ppm(raw: &str) -> Result<u64, String> {
    let plain = raw.len() <= 12 && raw.bytes().all(|b| b.is_ascii_digit() || b == b'.') && raw != ".";
    match raw.parse::<f64>() {
        Ok(v) if plain && (0.0..=1.0).contains(&v) => Ok((v * PPM as f64).round() as u64),
        _ => Err("ratio must be a decimal number from 0 to 1\n".to_string()),
    }
}

#[cfg(test)]
mod tests;
