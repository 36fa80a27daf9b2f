//! Drills for serving that never waits on the outside world, and for the drill token. Loopback only, each bounded
//! in count and time; every process they start is killed by its pid and every cgroup removed, failures included.
//! Figures are printed with eprintln!: `cargo test --release --test core_drills -- --nocapture` shows them.
//! `SRE_MINI_BIN` runs them against another build (to show them failing on an older one).
//!
//! f. Stalled stdout: stdout is a pipe nobody reads. After the pipe and the log queue fill, every endpoint
//!    answers within 1 s; request lines are dropped and counted; once even the reserve for audit records is
//!    full, a drill answers 503 and changes nothing.
//! g. fd exhaustion: `ulimit -n 64` and 120 connections. While accept fails: under 25% of a core and under one
//!    log line a second; the failures are counted; serving resumes once the connections close.
//! h. Drill token: 404 while the token file is missing, 401 without or with a wrong token, 200 and one audit
//!    record with the right one, a rotated token taken without a restart (the `..data` symlink swap Kubernetes
//!    does), 401 and 200 answered in about the same time.
//! i. Fair shares under a 500m CFS quota (cgroup v1, needs root: fails when it cannot create the cgroup): while
//!    hostile clients pipeline /metrics as fast as they read, pipeline without reading, drip 1-byte chunks and
//!    vanish mid-request, a fresh-connection /healthz probe every 250 ms never misses its 1 s timeout.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use common::load::{ms, percentile, timed_get};
use common::{BIN, Reader};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn bin() -> String {
    std::env::var("SRE_MINI_BIN").unwrap_or_else(|_| BIN.to_string())
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What becomes of the server's stdout once it is ready.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stdout {
    /// Read and counted, line by line.
    Drained,
    /// Left unread: the pipe fills.
    Stalled,
}

/// A server started for one drill; killed by its pid when dropped.
struct Drilled {
    child: Child,
    addr: SocketAddr,
    /// Lines read from stdout so far (when drained), and the lines themselves.
    lines: Arc<Mutex<Vec<String>>>,
    _stalled: Option<BufReader<ChildStdout>>,
}

impl Drilled {
    /// `ulimit`: run under `ulimit -n` of this (soft and hard), through the shell.
    fn start(env: &[(&str, &str)], stdout: Stdout, ulimit: Option<u32>) -> Drilled {
        let mut cmd = match ulimit {
            Some(n) => {
                let mut c = Command::new("bash");
                c.args(["-c", &format!("ulimit -n {n} && exec \"$0\""), &bin()]);
                c
            }
            None => Command::new(bin()),
        };
        cmd.env_clear().env("PORT", "0").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn sre-mini");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut line = String::new();
        let mut before = Vec::new();
        let ready = loop {
            line.clear();
            if out.read_line(&mut line).unwrap_or(0) == 0 || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no ready line");
            }
            before.push(line.trim_end().to_string());
            if line.contains("\"msg\":\"ready\"") {
                break line.clone();
            }
        };
        let port: u16 = ready
            .split("\"addr\":\"")
            .nth(1)
            .unwrap()
            .split(['"'])
            .next()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let lines = Arc::new(Mutex::new(before));
        let stalled = match stdout {
            Stdout::Stalled => Some(out),
            Stdout::Drained => {
                let lines = Arc::clone(&lines);
                thread::spawn(move || {
                    for l in out.lines() {
                        let Ok(l) = l else { return };
                        lines.lock().unwrap().push(l);
                    }
                });
                None
            }
        };
        Drilled { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), lines, _stalled: stalled }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn line_count(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// One series of /metrics, or an error text.
    fn metric(&self, series: &str) -> Result<f64, String> {
        let (r, _) = timed_get(self.addr, "/metrics", Duration::from_secs(5))?;
        let text = String::from_utf8_lossy(&r.body).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{series} not in /metrics"))
    }

    /// `method target` with extra header lines, on a fresh connection: status and time, or the error.
    fn ask(&self, method: &str, target: &str, headers: &str, timeout: Duration) -> Result<(u16, Duration), String> {
        let t = Instant::now();
        let mut r = Reader::connect(self.addr, timeout).map_err(|e| format!("connect: {e}"))?;
        let raw = format!("{method} {target} HTTP/1.1\r\nHost: drill\r\n{headers}Connection: close\r\n\r\n");
        r.send(raw.as_bytes()).map_err(|e| format!("write: {e}"))?;
        let resp = r.final_response(method == "HEAD")?;
        Ok((resp.status, t.elapsed()))
    }
}

impl Drop for Drilled {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system) the process has used, from /proc/<pid>/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // proc(5) fields 14 and 15; after the ')' the first field is field 3.
    (tick(11) + tick(12)) / 100.0
}

/// Sends `n` pipelined GETs of `path` (with a 1 KiB User-Agent, so each makes a long log line) and reads the
/// answers; the number answered 200.
fn flood(addr: SocketAddr, path: &str, n: usize) -> usize {
    let Ok(mut r) = Reader::connect(addr, Duration::from_secs(10)) else { return 0 };
    let ua = "u".repeat(1000);
    let one = format!("GET {path} HTTP/1.1\r\nHost: drill\r\nUser-Agent: {ua}\r\n\r\n");
    let mut w = r.stream.try_clone().unwrap();
    let batch = one.repeat(n);
    let writer = thread::spawn(move || w.write_all(batch.as_bytes()).is_ok());
    let mut ok = 0;
    for _ in 0..n {
        match r.count_responses(1, 200) {
            Ok(_) => ok += 1,
            Err(_) => break,
        }
    }
    let _ = writer.join();
    ok
}

#[test]
fn drill_f_stalled_stdout_never_stops_serving() {
    let _g = one_at_a_time();
    let s = Drilled::start(&[("WORK_DELAY_MS", "50")], Stdout::Stalled, None);
    // About 1.2 KiB of log per request: 12,000 requests are more than the pipe, the queue and its reserve hold.
    let t = Instant::now();
    let answered: usize = (0..4)
        .map(|_| {
            thread::spawn({
                let a = s.addr;
                move || flood(a, "/healthz", 3000)
            })
        })
        .map(|h| h.join().unwrap())
        .sum();
    eprintln!("f: {answered} of 12000 flooded requests answered in {:.0} ms with stdout stalled", ms(t.elapsed()));
    let endpoints: &[(&str, &str)] = &[
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/work"),
        ("POST", "/fail/ready"),
        ("POST", "/recover/ready"),
        ("POST", "/fail/work?ratio=0"),
        ("POST", "/recover/work"),
        ("HEAD", "/healthz"),
        ("GET", "/nope"),
    ];
    let mut failures = Vec::new();
    let mut times = Vec::new();
    for (m, p) in endpoints {
        match s.ask(m, p, "", PROBE_TIMEOUT) {
            Ok((_, d)) if d <= PROBE_TIMEOUT => times.push(d),
            Ok((status, d)) => failures.push(format!("{m} {p}: {status} after {:.0} ms", ms(d))),
            Err(e) => failures.push(format!("{m} {p}: {e}")),
        }
    }
    eprintln!(
        "f: {} endpoints answered after the pipe filled, median {:.1} ms, max {:.1} ms; failures: {failures:?}",
        times.len(),
        ms(percentile(&times, 50.0)),
        ms(percentile(&times, 100.0))
    );
    assert_eq!(answered, 12000, "every flooded request answered");
    assert!(failures.is_empty(), "endpoints that missed 1 s with stdout stalled: {failures:?}");
    let dropped = s.metric("sremini_log_lines_dropped_total").unwrap_or(0.0);
    eprintln!("f: sremini_log_lines_dropped_total {dropped}");
    assert!(dropped > 0.0, "request lines past the queue are dropped and counted");

    // Audit records use a reserve past the request lines' bound; fill it, and a drill must refuse to act.
    let mut refused_at = None;
    for i in 0..20_000 {
        match s.ask("POST", "/fail/work?ratio=0", "User-Agent: fill\r\n", PROBE_TIMEOUT) {
            Ok((200, _)) => {}
            Ok((503, _)) => {
                refused_at = Some(i);
                break;
            }
            other => panic!("drill {i} with the reserve filling: {other:?}"),
        }
    }
    let refused_at = refused_at.expect("no 503 once the audit reserve was full");
    let fail = s.ask("POST", "/fail/ready", "", PROBE_TIMEOUT);
    let ready = s.ask("GET", "/readyz", "", PROBE_TIMEOUT);
    let refused = s.metric("sremini_audit_refused_total").unwrap_or(0.0);
    eprintln!(
        "f: audit reserve full after {refused_at} drills; /fail/ready then {fail:?}, /readyz {ready:?}, sremini_audit_refused_total {refused}"
    );
    assert_eq!(fail.map(|r| r.0), Ok(503), "a drill whose record cannot be queued is refused");
    assert_eq!(ready.map(|r| r.0), Ok(200), "and changes nothing");
    assert!(refused >= 2.0);
}

#[test]
fn drill_g_fd_exhaustion_backs_off_and_recovers() {
    let _g = one_at_a_time();
    let s = Drilled::start(&[], Stdout::Drained, Some(64));
    let mut held = Vec::new();
    for _ in 0..120 {
        if let Ok(c) = TcpStream::connect_timeout(&s.addr, Duration::from_secs(2)) {
            held.push(c);
        }
    }
    thread::sleep(Duration::from_millis(1500));
    let window = Duration::from_secs(4);
    let (cpu0, lines0, t0) = (cpu_seconds(s.pid()), s.line_count(), Instant::now());
    thread::sleep(window);
    let (cpu1, lines1, took) = (cpu_seconds(s.pid()), s.line_count(), t0.elapsed().as_secs_f64());
    let cpu_share = (cpu1 - cpu0) / took;
    let lines_per_s = (lines1 - lines0) as f64 / took;
    eprintln!(
        "g: {} connections held, ulimit -n 64: {:.1}% of a core, {:.2} log lines/s over {took:.1} s",
        held.len(),
        cpu_share * 100.0,
        lines_per_s
    );
    drop(held);
    let t = Instant::now();
    let mut resumed = None;
    while t.elapsed() < Duration::from_secs(5) {
        if let Ok((200, _)) = s.ask("GET", "/healthz", "", PROBE_TIMEOUT) {
            resumed = Some(t.elapsed());
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let errors = s.metric("sremini_accept_errors_total");
    eprintln!("g: serving again {resumed:?} after the connections closed; sremini_accept_errors_total {errors:?}");
    assert!(cpu_share < 0.25, "CPU while out of descriptors: {:.1}% of a core", cpu_share * 100.0);
    assert!(lines_per_s < 1.0, "{lines_per_s:.1} log lines a second while out of descriptors");
    assert!(resumed.is_some(), "no /healthz within 5 s of descriptors freeing up");
    assert!(errors.is_ok_and(|n| n > 0.0), "failed accepts counted");
}

/// A Secret volume as the kubelet lays it out: `token` -> `..data/token`, `..data` -> a timestamped directory
/// that an update replaces by swapping the `..data` symlink.
struct SecretMount {
    dir: std::path::PathBuf,
    generation: u32,
}

impl SecretMount {
    fn new() -> SecretMount {
        let dir = std::env::temp_dir().join(format!("sre-mini-drill-secret-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        SecretMount { dir, generation: 0 }
    }

    fn publish(&mut self, token: &str) {
        self.generation += 1;
        let generation = self.dir.join(format!("..2026_12_07_{}", self.generation));
        std::fs::create_dir(&generation).unwrap();
        std::fs::write(generation.join("token"), token).unwrap();
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&generation, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        if std::fs::symlink_metadata(self.dir.join("token")).is_err() {
            std::os::unix::fs::symlink("..data/token", self.dir.join("token")).unwrap();
        }
    }
}

impl Drop for SecretMount {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn drill_h_drill_token() {
    let _g = one_at_a_time();
    let mut mount = SecretMount::new();
    let file = mount.dir.join("token").to_string_lossy().into_owned();
    let s = Drilled::start(&[("DRILL_TOKEN_FILE", &file)], Stdout::Drained, None);
    let bearer = |t: &str, id: &str| format!("Authorization: Bearer {t}\r\nX-Request-Id: {id}\r\n");
    let ask = |h: &str| s.ask("POST", "/fail/ready", h, Duration::from_secs(5)).map(|r| r.0);
    let no_file = ask(&bearer("t0k3n-one", "h-nofile"));
    mount.publish("t0k3n-one\n");
    let none = ask("X-Request-Id: h-none\r\n");
    let wrong = ask(&bearer("t0k3n-on", "h-wrong"));
    let ready_after_401 = s.ask("GET", "/readyz", "", Duration::from_secs(5)).map(|r| r.0);
    let good = ask(&bearer("t0k3n-one", "h-good"));
    let ready_after_200 = s.ask("GET", "/readyz", "", Duration::from_secs(5)).map(|r| r.0);
    mount.publish("t0k3n-two");
    let old = s.ask("POST", "/recover/ready", &bearer("t0k3n-one", "h-old"), Duration::from_secs(5)).map(|r| r.0);
    let rotated =
        s.ask("POST", "/recover/ready", &bearer("t0k3n-two", "h-rotated"), Duration::from_secs(5)).map(|r| r.0);
    eprintln!(
        "h: no file {no_file:?}; no token {none:?}; wrong {wrong:?} (readyz {ready_after_401:?}); right {good:?} (readyz {ready_after_200:?}); after rotation old {old:?}, new {rotated:?}"
    );
    // Same answer time: 401 and 200 medians over alternating requests (the token is long, so a compare that
    // stopped early would differ most).
    let (mut t401, mut t200) = (Vec::new(), Vec::new());
    for i in 0..60 {
        let (h, v) =
            if i % 2 == 0 { (bearer("t0k3n-twX", "h-t"), &mut t401) } else { (bearer("t0k3n-two", "h-t"), &mut t200) };
        if let Ok((_, d)) = s.ask("POST", "/fail/work?ratio=0", &h, Duration::from_secs(5)) {
            v.push(d);
        }
    }
    let (m401, m200) = (percentile(&t401, 50.0), percentile(&t200, 50.0));
    eprintln!("h: answer time median 401 {:.3} ms, 200 {:.3} ms", ms(m401), ms(m200));
    thread::sleep(Duration::from_millis(300));
    let lines = s.lines.lock().unwrap().clone();
    let audits = |id: &str| {
        lines
            .iter()
            .filter(|l| l.contains("\"msg\":\"audit\"") && l.contains(&format!("\"request_id\":\"{id}\"")))
            .cloned()
            .collect::<Vec<_>>()
    };
    let good_records = audits("h-good");
    let starting = lines.iter().find(|l| l.contains("\"msg\":\"starting\"")).cloned().unwrap_or_default();
    eprintln!("h: audit of the good request: {good_records:?}");
    assert_eq!(no_file, Ok(404), "a configured token file that is missing turns drills off");
    assert_eq!((none, wrong), (Ok(401), Ok(401)));
    assert_eq!(ready_after_401, Ok(200), "a 401 changes nothing");
    assert_eq!((good, ready_after_200), (Ok(200), Ok(503)));
    assert_eq!((old, rotated), (Ok(401), Ok(200)), "the rotated token is taken without a restart");
    assert_eq!(good_records.len(), 1, "one audit record for the drill");
    assert!(good_records[0].contains("\"token_fingerprint\":\"") && !good_records[0].contains("t0k3n"));
    assert_eq!(audits("h-wrong").len(), 1, "a 401 is audited");
    assert!(audits("h-wrong")[0].contains("\"status\":401"));
    assert!(s.metric("sremini_drill_unauthorized_total").is_ok_and(|n| n >= 3.0));
    assert!(!lines.iter().any(|l| l.contains("t0k3n")), "the token never reaches the log");
    assert!(starting.contains("\"drills\":\"bearer token"), "{starting}");
    assert!((ms(m401) - ms(m200)).abs() < 5.0, "401 and 200 answered in about the same time");
}

/// A cgroup v1 CPU group with a CFS quota; removed on drop (its processes killed first by whoever owns them).
struct CpuQuota {
    dir: std::path::PathBuf,
}

impl CpuQuota {
    fn new(name: &str, quota_us: u64, period_us: u64) -> CpuQuota {
        let root = std::path::Path::new("/sys/fs/cgroup/cpu");
        assert!(root.join("cpu.cfs_quota_us").exists(), "this drill needs the cgroup v1 cpu controller at {root:?}");
        let dir = root.join(name);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("cannot create {dir:?} (this drill needs root): {e}"));
        let q = CpuQuota { dir };
        q.write("cpu.cfs_period_us", &period_us.to_string());
        q.write("cpu.cfs_quota_us", &quota_us.to_string());
        q
    }

    fn write(&self, file: &str, value: &str) {
        std::fs::write(self.dir.join(file), value).unwrap_or_else(|e| panic!("write {file}: {e}"));
    }

    fn throttled(&self) -> String {
        std::fs::read_to_string(self.dir.join("cpu.stat")).unwrap_or_default().replace('\n', " ")
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!("could not remove {:?}", self.dir);
    }
}

/// Runs `f` in a loop on its own thread until `stop`.
fn hostile(stop: &Arc<AtomicBool>, f: impl Fn() + Send + 'static) -> thread::JoinHandle<()> {
    let stop = Arc::clone(stop);
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            f();
        }
    })
}

#[test]
fn drill_i_fair_shares_under_a_500m_quota() {
    let _g = one_at_a_time();
    let quota = CpuQuota::new(&format!("sre-mini-drill-{}", std::process::id()), 50_000, 100_000);
    let s = Drilled::start(&[], Stdout::Drained, None);
    quota.write("cgroup.procs", &s.pid().to_string());
    let addr = s.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    let shapes = std::env::var("DRILL_I_SHAPES").unwrap_or_else(|_| "mngc".into());
    let n = |c: char, k: usize| if shapes.contains(c) { k } else { 0 };
    // Pipelines /metrics and reads everything as fast as it comes: without a per-turn budget one connection
    // keeps the loop rendering for as long as it reads.
    for _ in 0..n('m', 8) {
        let served = Arc::clone(&served);
        threads.push(hostile(&stop, move || {
            let Ok(mut c) = TcpStream::connect(addr) else { return };
            let mut w = c.try_clone().unwrap();
            thread::spawn(move || {
                let one = b"GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n".repeat(64);
                while w.write_all(&one).is_ok() {}
            });
            let mut buf = vec![0u8; 256 * 1024];
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            while let Ok(n) = c.read(&mut buf) {
                if n == 0 {
                    break;
                }
                served.fetch_add(n as u64, Ordering::Relaxed);
            }
        }));
    }
    // Sends faster than it reads: pipelines /healthz and never reads.
    for _ in 0..n('n', 8) {
        threads.push(hostile(&stop, move || {
            let Ok(mut c) = TcpStream::connect(addr) else { return };
            let _ = c.set_write_timeout(Some(Duration::from_secs(2)));
            let one = b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n".repeat(256);
            while c.write_all(&one).is_ok() {}
        }));
    }
    // Gone peers: 64 KiB of pipelined /metrics requests, then the socket is closed without reading an answer;
    // a new one every 20 ms per client. (Connections opened faster than the quota can serve them queue in the
    // kernel's accept queue, ahead of the probe's: that is capacity, for rate limits and replicas, not fairness.)
    for _ in 0..n('g', 4) {
        threads.push(hostile(&stop, move || {
            if let Ok(mut c) = TcpStream::connect(addr) {
                let _ = c.write_all(&b"GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n".repeat(1800));
            }
            thread::sleep(Duration::from_millis(20));
        }));
    }
    // A 1 MiB chunked body in 1-byte chunks, streamed as fast as the server reads it.
    for _ in 0..n('c', 4) {
        threads.push(hostile(&stop, move || {
            let Ok(mut c) = TcpStream::connect(addr) else { return };
            let _ = c.set_write_timeout(Some(Duration::from_secs(2)));
            let _ = c.write_all(b"POST /healthz HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
            let chunks = b"1\r\nx\r\n".repeat(16 * 1024);
            for _ in 0..64 {
                if c.write_all(&chunks).is_err() {
                    return;
                }
            }
            let _ = c.write_all(b"0\r\n\r\n");
        }));
    }
    thread::sleep(Duration::from_secs(1));
    let (mut lat, mut misses) = (Vec::new(), Vec::new());
    let t = Instant::now();
    let mut next = Instant::now();
    while t.elapsed() < Duration::from_secs(12) {
        match s.ask("GET", "/healthz", "", PROBE_TIMEOUT) {
            Ok((200, d)) if d <= PROBE_TIMEOUT => lat.push(d),
            Ok((status, d)) => misses.push(format!("{status} after {:.0} ms", ms(d))),
            Err(e) => misses.push(e),
        }
        next += Duration::from_millis(250);
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let throttled = quota.throttled();
    let metrics_bytes = served.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    drop(s);
    for h in threads {
        let _ = h.join();
    }
    eprintln!(
        "i: 500m quota, 24 hostile connections: {} probes, {} missed 1 s; median {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} MB of /metrics read; cpu.stat: {throttled}; misses: {misses:?}",
        lat.len() + misses.len(),
        misses.len(),
        ms(percentile(&lat, 50.0)),
        ms(percentile(&lat, 99.0)),
        ms(percentile(&lat, 100.0)),
        metrics_bytes / 1_000_000
    );
    assert!(misses.is_empty(), "probes that missed their 1 s timeout: {misses:?}");
    assert!(lat.len() >= 40, "too few probes: {}", lat.len());
}
