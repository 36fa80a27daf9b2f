//! Resilience drills, loopback only, each bounded in count and time and stopping by itself.
//! The drills share a lock so they never run at the same time as one another (their timings would interfere).
//! Figures are printed with eprintln!: `cargo test --release --test drills -- --nocapture` shows them.
//!
//! a. 500 idle keep-alive connections + 200 slowloris connections: fresh /healthz p99 < 100 ms, none fail;
//!    the slowloris heads are cut at the header deadline with 408, the idle connections survive.
//! b. 300 concurrent /work at the default 2 s delay: /healthz p99 < 100 ms; each /work 200 within 2.6 s or
//!    503 + Retry-After within 200 ms; no reset. Run with the default bulkhead (512) and with 200.
//! c. SIGTERM with 100 /work in flight while /healthz is polled: no accepted request fails; exit 0 within
//!    SHUTDOWN_DELAY_MS + DRAIN_TIMEOUT_MS.
//! d. 1,000,000 keep-alive requests after a 50,000-request warm-up: VmRSS grows < 1 MiB.
//! e. 10,000 connection attempts over the connection cap: each a clean 503 + Connection: close + EOF; the server
//!    keeps serving; sremini_limit_rejections_total{reason="connection_cap"} counts them.

mod common;

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use common::load::{self, QuietServer, ms, percentile, timed_get};
use common::{BIN, Reader, describe};

/// The binary under test: the one cargo built, unless SRE_MINI_BIN names another (to try a patched build).
fn bin() -> String {
    std::env::var("SRE_MINI_BIN").unwrap_or_else(|_| BIN.to_string())
}

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The 1/5/15-minute load averages: timings on a shared 2-core machine mean little without them.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

const T: Duration = Duration::from_secs(5);
const P99_LIMIT: Duration = Duration::from_millis(100);

fn spawn_small<F: FnOnce() -> R + Send + 'static, R: Send + 'static>(f: F) -> thread::JoinHandle<R> {
    thread::Builder::new().stack_size(256 * 1024).spawn(f).expect("spawn")
}

/// Fresh-connection /healthz probes every `every` until `stop` (or `max` samples): latencies and failures.
fn probe_healthz(addr: SocketAddr, every: Duration, max: usize, stop: Arc<AtomicBool>) -> (Vec<Duration>, Vec<String>) {
    let mut lat = Vec::new();
    let mut failures = Vec::new();
    let mut next = Instant::now();
    while lat.len() + failures.len() < max && !stop.load(Ordering::Relaxed) {
        match timed_get(addr, "/healthz", T) {
            Ok((r, d)) if r.status == 200 => lat.push(d),
            Ok((r, _)) => failures.push(format!("status {}", r.status)),
            Err(e) => failures.push(e),
        }
        next += every;
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    (lat, failures)
}

/// Distinct problems with their counts, most frequent first.
fn summarize(problems: &[String]) -> Vec<(usize, String)> {
    let mut counts = std::collections::BTreeMap::new();
    for p in problems {
        *counts.entry(p.clone()).or_insert(0usize) += 1;
    }
    let mut v: Vec<_> = counts.into_iter().map(|(p, n)| (n, p)).collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.0));
    v
}

// ---------------------------------------------------------------------------------------------------------------
// a. idle keep-alive + slowloris

struct Slow {
    stream: TcpStream,
    opened: Instant,
    sent: usize,
    received: Vec<u8>,
    /// When the complete 408 answer and EOF had arrived.
    finished: Option<Instant>,
    error: Option<String>,
}

const SLOW_HEAD: &[u8] =
    b"GET /healthz HTTP/1.1\r\nHost: slowloris\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// One trickler thread: a header byte every `gap` on each of its connections; reads whatever the server sends.
fn trickle(mut conns: Vec<Slow>, gap: Duration, until: Instant) -> Vec<Slow> {
    let mut next_byte = Instant::now();
    while Instant::now() < until && conns.iter().any(|c| c.finished.is_none() && c.error.is_none()) {
        let write_now = Instant::now() >= next_byte;
        if write_now {
            next_byte += gap;
        }
        for c in conns.iter_mut().filter(|c| c.finished.is_none() && c.error.is_none()) {
            let mut buf = [0u8; 1024];
            loop {
                match std::io::Read::read(&mut c.stream, &mut buf) {
                    Ok(0) => {
                        c.finished = Some(Instant::now());
                        break;
                    }
                    Ok(n) => c.received.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => {
                        c.error = Some(format!("read: {}", describe(&e)));
                        break;
                    }
                }
            }
            // Keep trickling until the server has answered: a slowloris client does not stop by itself.
            if write_now && c.finished.is_none() && c.error.is_none() && c.received.is_empty() {
                let b = SLOW_HEAD[c.sent % SLOW_HEAD.len()];
                match std::io::Write::write(&mut c.stream, &[b]) {
                    Ok(1) => c.sent += 1,
                    Ok(_) => {}
                    Err(e) => c.error = Some(format!("write of byte {}: {}", c.sent, describe(&e))),
                }
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    conns
}

#[test]
fn drill_a_idle_keepalive_and_slowloris() {
    let _one = one_at_a_time();
    const IDLE: usize = 500;
    const SLOW: usize = 200;
    const HEADER_TIMEOUT: Duration = Duration::from_millis(6000);
    let server = QuietServer::start(&bin(), &[("HEADER_TIMEOUT_MS", "6000")]);
    let addr = server.addr;

    let mut idle = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        let mut c = Reader::connect(addr, T).unwrap_or_else(|e| panic!("idle connection {i}: {e}"));
        c.send(b"GET /healthz HTTP/1.1\r\nHost: idle\r\n\r\n").unwrap();
        let r = c.final_response(false).unwrap_or_else(|e| panic!("idle connection {i}: {e}"));
        assert!(r.status == 200 && !r.closes(), "idle connection {i}: {} close={}", r.status, r.closes());
        idle.push(c);
    }

    // Slowloris: two trickler threads, 100 connections each, one header byte every 2 s from the first byte on.
    let mut groups: Vec<Vec<Slow>> = vec![Vec::new(), Vec::new()];
    for i in 0..SLOW {
        let stream = TcpStream::connect_timeout(&addr, T).unwrap_or_else(|e| panic!("slowloris {i}: {e}"));
        stream.set_nonblocking(true).unwrap();
        groups[i % 2].push(Slow {
            stream,
            opened: Instant::now(),
            sent: 0,
            received: Vec::new(),
            finished: None,
            error: None,
        });
    }
    let started = Instant::now();
    let until = started + HEADER_TIMEOUT + Duration::from_secs(6);
    let tricklers: Vec<_> =
        groups.into_iter().map(|g| spawn_small(move || trickle(g, Duration::from_secs(2), until))).collect();

    // Meanwhile: 50 fresh /healthz, one every 60 ms, starting once the trickle is on.
    thread::sleep(Duration::from_millis(300));
    let open_during = server.metric("sremini_connections_open").unwrap_or(-1.0);
    let (lat, failures) = probe_healthz(addr, Duration::from_millis(60), 50, Arc::new(AtomicBool::new(false)));
    let probes_done = started.elapsed();

    let slow: Vec<Slow> = tricklers.into_iter().flat_map(|t| t.join().unwrap()).collect();

    // The idle connections are all still there and usable.
    let mut idle_failures = Vec::new();
    for c in idle.iter_mut() {
        c.send(b"GET /healthz HTTP/1.1\r\nHost: idle\r\n\r\n").unwrap_or_else(|e| idle_failures.push(e.to_string()));
    }
    for (i, c) in idle.iter_mut().enumerate() {
        match c.final_response(false) {
            Ok(r) if r.status == 200 => {}
            other => idle_failures.push(format!("idle {i}: {:?}", other.map(|r| r.status))),
        }
    }
    drop(idle);
    let header_timeouts = server.metric("sremini_limit_rejections_total{reason=\"header_timeout\"}").unwrap();

    // Every slowloris head is cut at the deadline with 408 + Connection: close, then EOF.
    let mut slow_problems = Vec::new();
    let mut cut_after = Vec::new();
    for (i, c) in slow.iter().enumerate() {
        let text = String::from_utf8_lossy(&c.received);
        let ok = text.starts_with("HTTP/1.1 408 ") && text.contains("\r\nConnection: close\r\n");
        match (&c.error, c.finished) {
            (None, Some(at)) if ok => cut_after.push(at - c.opened),
            _ => slow_problems.push(format!(
                "slowloris {i}: sent {} bytes, got {:?}, error {:?}",
                c.sent,
                &text[..text.len().min(40)],
                c.error
            )),
        }
    }
    let p99 = percentile(&lat, 99.0);
    let bytes_sent: usize = slow.iter().map(|c| c.sent).sum();
    eprintln!(
        "drill a (load {}): {IDLE} idle keep-alive + {SLOW} slowloris open (sremini_connections_open {open_during}); 50 fresh /healthz: \
         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} failed (probes done at {:.1} s)",
        load_average(),
        ms(percentile(&lat, 50.0)),
        ms(p99),
        ms(percentile(&lat, 100.0)),
        failures.len(),
        probes_done.as_secs_f64()
    );
    eprintln!(
        "drill a: slowloris: {} of {SLOW} cut with 408 + close after {:.2}..{:.2} s (HEADER_TIMEOUT_MS 6000), {bytes_sent} bytes \
         trickled in all; header_timeout rejections {header_timeouts}; idle connections still answering: {}/{IDLE}",
        cut_after.len(),
        cut_after.iter().min().map_or(0.0, |d| d.as_secs_f64()),
        cut_after.iter().max().map_or(0.0, |d| d.as_secs_f64()),
        IDLE - idle_failures.len()
    );
    assert!(failures.is_empty(), "/healthz failures during the drill: {failures:?}");
    assert_eq!(lat.len(), 50);
    assert!(p99 < P99_LIMIT, "/healthz p99 {p99:?} with idle and slowloris connections open");
    assert!(
        idle_failures.is_empty(),
        "idle keep-alive connections lost: {:?}",
        &idle_failures[..idle_failures.len().min(5)]
    );
    assert!(
        slow_problems.is_empty(),
        "{} slowloris problems, e.g. {:?}",
        slow_problems.len(),
        &slow_problems[..slow_problems.len().min(5)]
    );
    for d in &cut_after {
        assert!(
            *d >= HEADER_TIMEOUT - Duration::from_millis(100) && *d <= HEADER_TIMEOUT + Duration::from_millis(2500),
            "a slowloris head was cut after {d:?}, not at the {HEADER_TIMEOUT:?} deadline"
        );
    }
    assert!(header_timeouts >= SLOW as f64, "header_timeout counted {header_timeouts}");
    assert!(
        open_during >= (IDLE + SLOW) as f64,
        "sremini_connections_open {open_during} while the drill held {}",
        IDLE + SLOW
    );
}

// ---------------------------------------------------------------------------------------------------------------
// b. /work burst

struct WorkResult {
    status: u16,
    took: Duration,
    retry_after: bool,
    closes: bool,
    error: Option<String>,
}

/// Sends one request on each pre-opened connection at the same moment; returns each outcome, timed from the write.
fn burst(conns: Vec<Reader>, request: &'static [u8]) -> Vec<WorkResult> {
    let gate = Arc::new(Barrier::new(conns.len()));
    let handles: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            let gate = Arc::clone(&gate);
            spawn_small(move || {
                gate.wait();
                let t = Instant::now();
                if let Err(e) = c.send(request) {
                    return WorkResult {
                        status: 0,
                        took: t.elapsed(),
                        retry_after: false,
                        closes: false,
                        error: Some(format!("write: {}", describe(&e))),
                    };
                }
                match c.final_response(request.starts_with(b"HEAD")) {
                    Ok(r) => WorkResult {
                        status: r.status,
                        took: t.elapsed(),
                        retry_after: r.header("retry-after").is_some(),
                        closes: r.closes(),
                        error: None,
                    },
                    Err(e) => {
                        WorkResult { status: 0, took: t.elapsed(), retry_after: false, closes: false, error: Some(e) }
                    }
                }
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn work_burst(capacity: Option<usize>) {
    const N: usize = 300;
    let label = capacity.map_or("default (512)".to_string(), |c| c.to_string());
    let cap_env = capacity.map(|c| c.to_string());
    let mut env = vec![];
    if let Some(c) = &cap_env {
        env.push(("WORK_MAX_CONCURRENT", c.as_str()));
    }
    let server = QuietServer::start(&bin(), &env);
    let conns: Vec<Reader> =
        (0..N).map(|i| Reader::connect(server.addr, T).unwrap_or_else(|e| panic!("connection {i}: {e}"))).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let (addr, stop) = (server.addr, Arc::clone(&stop));
        spawn_small(move || probe_healthz(addr, Duration::from_millis(25), 1000, stop))
    };
    let t = Instant::now();
    let results = burst(conns, b"GET /work HTTP/1.1\r\nHost: burst\r\n\r\n");
    let burst_took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (lat, probe_failures) = prober.join().unwrap();
    let rejections = server.metric("sremini_work_rejections_total").unwrap();

    let ok: Vec<_> = results.iter().filter(|r| r.status == 200).collect();
    let shed: Vec<_> = results.iter().filter(|r| r.status == 503).collect();
    let errors: Vec<_> = results.iter().filter_map(|r| r.error.as_deref()).collect();
    let p99 = percentile(&lat, 99.0);
    let max = |v: &[&WorkResult]| v.iter().map(|r| r.took).max().unwrap_or_default();
    eprintln!(
        "drill b (load {}) [WORK_MAX_CONCURRENT {label}]: {N} concurrent /work: {} x 200 (slowest {:.0} ms), {} x 503 (slowest {:.1} ms, \
         all with Retry-After: {}), {} errors; burst over in {:.2} s; /healthz during it: {} probes, p50 {:.2} ms, \
         p99 {:.2} ms, max {:.2} ms, {} failed; sremini_work_rejections_total {rejections}",
        load_average(),
        ok.len(),
        ms(max(&ok)),
        shed.len(),
        ms(max(&shed)),
        shed.iter().all(|r| r.retry_after),
        errors.len(),
        burst_took.as_secs_f64(),
        lat.len(),
        ms(percentile(&lat, 50.0)),
        ms(p99),
        ms(percentile(&lat, 100.0)),
        probe_failures.len(),
    );
    assert!(
        errors.is_empty(),
        "/work requests without a response (reset, EOF, timeout): {:?}",
        &errors[..errors.len().min(5)]
    );
    for r in &results {
        match r.status {
            200 => assert!(r.took <= Duration::from_millis(2600), "/work 200 after {:?}", r.took),
            503 => {
                assert!(r.retry_after, "503 without Retry-After");
                assert!(r.took <= Duration::from_millis(200), "/work 503 after {:?}", r.took);
            }
            s => panic!("/work answered {s}"),
        }
    }
    let admitted = capacity.unwrap_or(512).min(N);
    assert_eq!(ok.len(), admitted, "200s: the bulkhead admits {admitted}");
    assert_eq!(shed.len(), N - admitted);
    assert_eq!(rejections as usize, N - admitted);
    assert!(probe_failures.is_empty(), "/healthz failures during the burst: {probe_failures:?}");
    assert!(lat.len() >= 50, "only {} /healthz probes during the burst", lat.len());
    assert!(p99 < P99_LIMIT, "/healthz p99 {p99:?} during the /work burst");
}

#[test]
fn drill_b_work_burst_default_bulkhead() {
    let _one = one_at_a_time();
    work_burst(None);
}

#[test]
fn drill_b_work_burst_bulkhead_200() {
    let _one = one_at_a_time();
    work_burst(Some(200));
}

// ---------------------------------------------------------------------------------------------------------------
// c. SIGTERM under load

#[derive(Debug)]
#[allow(dead_code)] // the fields are read through Debug in failure messages
enum Probe {
    /// Complete 200; whether it said Connection: close.
    Ok { at: Duration, closes: bool },
    /// The connection was refused: the listener is closed.
    Refused { at: Duration },
    /// Connected, but no complete response: a failure.
    Failed { at: Duration, why: String },
}

#[test]
fn drill_c_sigterm_with_work_in_flight() {
    let _one = one_at_a_time();
    const N: usize = 100;
    const SHUTDOWN_DELAY: Duration = Duration::from_millis(1000);
    const DRAIN_TIMEOUT: Duration = Duration::from_millis(4000);
    const SLACK: Duration = Duration::from_millis(500);
    let mut server = QuietServer::start(
        &bin(),
        &[("WORK_DELAY_MS", "1500"), ("SHUTDOWN_DELAY_MS", "1000"), ("DRAIN_TIMEOUT_MS", "4000")],
    );
    let addr = server.addr;
    let conns: Vec<Reader> =
        (0..N).map(|i| Reader::connect(addr, T).unwrap_or_else(|e| panic!("connection {i}: {e}"))).collect();

    // Steady /healthz polling on fresh connections, every 20 ms, until the process is gone.
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let stop = Arc::clone(&stop);
        spawn_small(move || {
            let mut out = Vec::new();
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) && out.len() < 2000 {
                let at = t0.elapsed();
                let p = match Reader::connect(addr, T) {
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => Probe::Refused { at },
                    Err(e) => Probe::Failed { at, why: format!("connect: {}", describe(&e)) },
                    Ok(mut c) => match c.send(b"GET /healthz HTTP/1.1\r\nHost: poll\r\n\r\n") {
                        Err(e) => Probe::Failed { at, why: format!("write: {}", describe(&e)) },
                        Ok(()) => match c.final_response(false) {
                            Ok(r) if r.status == 200 => Probe::Ok { at, closes: r.closes() },
                            Ok(r) => Probe::Failed { at, why: format!("status {}", r.status) },
                            Err(e) => Probe::Failed { at, why: e },
                        },
                    },
                };
                out.push(p);
                next += Duration::from_millis(20);
                thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            out
        })
    };

    let work = spawn_small(move || burst(conns, b"GET /work HTTP/1.1\r\nHost: drain\r\n\r\n"));
    // Let the 100 requests reach the bulkhead, then SIGTERM.
    thread::sleep(Duration::from_millis(300));
    let sig_at = t0.elapsed();
    server.signal("TERM");
    let signalled = Instant::now();
    // Readiness goes false "at once": the signal thread has to wake first, so poll for it (bounded).
    let unready_at = loop {
        match timed_get(addr, "/readyz", T) {
            Ok((r, _)) if r.status == 503 => break Some(t0.elapsed()),
            Ok(_) if signalled.elapsed() < Duration::from_millis(500) => thread::sleep(Duration::from_millis(1)),
            _ => break None,
        }
    };
    let status = server.wait_exit(SHUTDOWN_DELAY + DRAIN_TIMEOUT + Duration::from_secs(3));
    let exit_after = signalled.elapsed();
    thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let probes = poller.join().unwrap();
    let results = work.join().unwrap();

    let ok = results.iter().filter(|r| r.status == 200).count();
    let work_closing = results.iter().filter(|r| r.status == 200 && r.closes).count();
    let work_errors: Vec<_> = results.iter().filter(|r| r.status != 200).map(|r| (r.status, r.error.clone())).collect();
    let failed: Vec<_> = probes.iter().filter(|p| matches!(p, Probe::Failed { .. })).collect();
    let refused: Vec<Duration> =
        probes.iter().filter_map(|p| if let Probe::Refused { at } = p { Some(*at) } else { None }).collect();
    let ok_probes: Vec<_> = probes
        .iter()
        .filter_map(|p| if let Probe::Ok { at, closes } = p { Some((*at, *closes)) } else { None })
        .collect();
    let first_refusal = refused.iter().min().map(|a| a.saturating_sub(sig_at));
    let last_ok = ok_probes.iter().map(|(a, _)| *a).max().map(|a| a.saturating_sub(sig_at));
    let open_after_sig_without_close =
        ok_probes.iter().filter(|(a, c)| unready_at.is_some_and(|u| *a > u) && !c).count();
    let unready_after = unready_at.map(|u| u.saturating_sub(sig_at));
    eprintln!(
        "drill c (load {}): SIGTERM with {N} /work in flight: {ok}/{N} completed with 200 ({work_closing} with Connection: close); exit {:?} {:.0} ms after SIGTERM \
         (limit {} ms); /readyz 503 {:.1} ms after SIGTERM; /healthz polls: {} answered (last {:.0} ms after \
         SIGTERM), {} refused (first {:.0} ms after SIGTERM), {} failed",
        load_average(),
        status.map(|s| s.code()),
        ms(exit_after),
        (SHUTDOWN_DELAY + DRAIN_TIMEOUT).as_millis(),
        unready_after.map_or(f64::NAN, ms),
        ok_probes.len(),
        last_ok.map_or(f64::NAN, ms),
        refused.len(),
        first_refusal.map_or(f64::NAN, ms),
        failed.len()
    );
    assert!(failed.is_empty(), "accepted /healthz polls that failed: {failed:?}");
    assert!(work_errors.is_empty(), "/work in flight that did not complete with 200: {work_errors:?}");
    let status = status.expect("the server did not exit");
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    assert!(exit_after <= SHUTDOWN_DELAY + DRAIN_TIMEOUT + SLACK, "exit {exit_after:?} after SIGTERM");
    assert!(
        unready_after.is_some_and(|d| d <= Duration::from_millis(100)),
        "/readyz still 200 {unready_after:?} after SIGTERM"
    );
    assert!(
        first_refusal.is_none_or(|d| d >= SHUTDOWN_DELAY - Duration::from_millis(50)),
        "connections refused {first_refusal:?} after SIGTERM, before SHUTDOWN_DELAY_MS"
    );
    assert!(
        last_ok.is_some_and(|d| d >= SHUTDOWN_DELAY - Duration::from_millis(100)),
        "/healthz stopped answering {last_ok:?} after SIGTERM"
    );
    assert_eq!(open_after_sig_without_close, 0, "/healthz answers after SIGTERM without Connection: close");
    assert_eq!(work_closing, N, "/work answers after SIGTERM without Connection: close");
}

/// c, second part: connections opened during SHUTDOWN_DELAY_MS (the server still accepts and serves then) whose
/// first request arrives just after the delay, when the listener has closed and draining has begun. They were
/// accepted, so their requests must be answered (Go's Shutdown likewise gives not-yet-read connections 5 s).
#[test]
fn drill_c_connection_opened_during_delay_is_served() {
    let _one = one_at_a_time();
    const N: usize = 20;
    let mut server = QuietServer::start(&bin(), &[("SHUTDOWN_DELAY_MS", "500"), ("DRAIN_TIMEOUT_MS", "3000")]);
    let addr = server.addr;
    server.signal("TERM");
    // The server's own clock: readiness goes false at the signal.
    let deadline = Instant::now() + T;
    let unready_at = loop {
        if let Ok((r, _)) = timed_get(addr, "/readyz", T)
            && r.status == 503
        {
            break Instant::now();
        }
        assert!(Instant::now() < deadline, "/readyz never went 503 after SIGTERM");
        thread::sleep(Duration::from_millis(2));
    };
    // Connect well inside the delay, send the first request well after it.
    thread::sleep((unready_at + Duration::from_millis(350)).saturating_duration_since(Instant::now()));
    let mut conns: Vec<Reader> =
        (0..N).map(|i| Reader::connect(addr, T).unwrap_or_else(|e| panic!("connection {i}: {e}"))).collect();
    let connected_at = unready_at.elapsed();
    thread::sleep((unready_at + Duration::from_millis(700)).saturating_duration_since(Instant::now()));
    let sent_at = unready_at.elapsed();
    let mut outcomes = Vec::new();
    for c in conns.iter_mut() {
        let o = c
            .send(b"GET /healthz HTTP/1.1\r\nHost: late\r\n\r\n")
            .map_err(|e| format!("write: {}", describe(&e)))
            .and_then(|()| c.final_response(false));
        outcomes.push(match o {
            Ok(r) if r.status == 200 && r.closes() => Ok(()),
            Ok(r) => Err(format!("status {} close={}", r.status, r.closes())),
            Err(e) => Err(e),
        });
    }
    let status = server.wait_exit(Duration::from_secs(6));
    let failed: Vec<String> = outcomes.iter().filter_map(|o| o.clone().err()).collect();
    eprintln!(
        "drill c (load {}): {N} connections opened {:.0} ms after SIGTERM (SHUTDOWN_DELAY_MS 500), first request sent \
         {:.0} ms after SIGTERM: {} answered 200 + Connection: close, {} failed {:?}; exit {:?}",
        load_average(),
        ms(connected_at),
        ms(sent_at),
        N - failed.len(),
        failed.len(),
        summarize(&failed),
        status.map(|s| s.code())
    );
    assert!(
        connected_at < Duration::from_millis(450) && sent_at > Duration::from_millis(600),
        "the drill's own timing slipped (connected {connected_at:?}, sent {sent_at:?}); rerun on a quieter machine"
    );
    assert!(
        failed.is_empty(),
        "connections accepted during the shutdown delay lost their first request: {:?}",
        summarize(&failed)
    );
    assert_eq!(status.and_then(|s| s.code()), Some(0));
}

// ---------------------------------------------------------------------------------------------------------------
// d. memory under a million requests

/// `total` GET /healthz on keep-alive connections, `depth` pipelined per write; a new connection whenever the
/// server closes one at its per-connection cap (`per_conn`), which it must announce on exactly that response.
fn hammer(addr: SocketAddr, total: usize, depth: usize, per_conn: usize) -> Result<usize, String> {
    let one = b"GET /healthz HTTP/1.1\r\nHost: memory\r\n\r\n";
    let batch: Vec<u8> = one.repeat(depth);
    let mut done = 0;
    let mut connections = 0;
    while done < total {
        let mut c = Reader::connect(addr, T).map_err(|e| format!("connect: {e}"))?;
        connections += 1;
        let mut on_conn = 0;
        while on_conn < per_conn && done < total {
            let n = depth.min(per_conn - on_conn).min(total - done);
            c.send(&batch[..n * one.len()]).map_err(|e| format!("write: {}", describe(&e)))?;
            let closes = c.count_responses(n, 200)?;
            on_conn += n;
            done += n;
            let at_cap = on_conn == per_conn;
            if closes != usize::from(at_cap) {
                return Err(format!(
                    "{closes} Connection: close in a batch ending at request {on_conn} of the connection"
                ));
            }
        }
        if on_conn == per_conn {
            c.expect_eof(T).map_err(|e| format!("at the per-connection cap: {e}"))?;
        }
    }
    Ok(connections)
}

fn hammer_parallel(addr: SocketAddr, total: usize, threads: usize) -> Result<usize, String> {
    let handles: Vec<_> =
        (0..threads).map(|_| thread::spawn(move || hammer(addr, total / threads, 16, 10_000))).collect();
    let mut conns = 0;
    for h in handles {
        conns += h.join().unwrap()?;
    }
    Ok(conns)
}

#[test]
fn drill_d_rss_flat_over_a_million_requests() {
    let _one = one_at_a_time();
    const WARM: usize = 50_000;
    const TOTAL: usize = 1_000_000;
    const THREADS: usize = 4;
    let server = QuietServer::start(&bin(), &[]);
    let pid = server.pid();
    let rss = || {
        thread::sleep(Duration::from_millis(300));
        load::proc_status(pid, "VmRSS").expect("VmRSS")
    };
    let rss_start = rss();
    hammer_parallel(server.addr, WARM, THREADS).unwrap_or_else(|e| panic!("warm-up: {e}"));
    let rss_warm = rss();
    let t = Instant::now();
    let conns = hammer_parallel(server.addr, TOTAL, THREADS).unwrap_or_else(|e| panic!("load: {e}"));
    let took = t.elapsed();
    let rss_end = rss();
    let hwm = load::proc_status(pid, "VmHWM").unwrap_or(0);
    let threads = load::proc_status(pid, "Threads").unwrap_or(0);
    let served = server.metric("http_requests_total{method=\"GET\",route=\"/healthz\",code=\"200\"}").unwrap();
    let dropped = server.metric("sremini_log_lines_dropped_total").unwrap();
    let growth = rss_end as i64 - rss_warm as i64;
    eprintln!(
        "drill d (load {}): VmRSS {rss_start} KiB fresh, {rss_warm} KiB after {WARM} warm-up requests, {rss_end} KiB after {TOTAL} more \
         (growth {growth} KiB; VmHWM {hwm} KiB; {threads} threads); {TOTAL} requests on {conns} connections \
         ({THREADS} threads, 16 pipelined, 10000 per connection) in {:.1} s = {:.0} req/s; server counted {served}, log lines dropped {dropped}",
        load_average(),
        took.as_secs_f64(),
        TOTAL as f64 / took.as_secs_f64()
    );
    assert!(growth < 1024, "VmRSS grew {growth} KiB over {TOTAL} requests");
    assert!(served >= (WARM + TOTAL) as f64);

    // Then short connections, more than arrive within one idle timeout: each leaves deadline bookkeeping behind
    // it, which must be dropped when it closes rather than when the deadline would have fallen due.
    const SHORT: usize = 60_000;
    let t = Instant::now();
    let handles: Vec<_> =
        (0..THREADS).map(|_| thread::spawn(move || short_connections(server.addr, SHORT / THREADS))).collect();
    for h in handles {
        h.join().unwrap().unwrap_or_else(|e| panic!("short connections: {e}"));
    }
    let took = t.elapsed();
    let rss_short = rss();
    let growth = rss_short as i64 - rss_end as i64;
    eprintln!(
        "drill d: VmRSS {rss_short} KiB after {SHORT} two-request connections in {:.1} s (growth {growth} KiB)",
        took.as_secs_f64()
    );
    assert!(growth < 768, "VmRSS grew {growth} KiB over {SHORT} short connections");
}

/// `n` connections one after another, each with two requests: one answered and kept (so the connection waits
/// under its idle deadline, whenever the server first read it), then one with `Connection: close`.
fn short_connections(addr: SocketAddr, n: usize) -> Result<(), String> {
    for _ in 0..n {
        let mut c = Reader::connect(addr, T).map_err(|e| format!("connect: {e}"))?;
        for (request, closes) in [
            (&b"GET /healthz HTTP/1.1\r\nHost: memory\r\n\r\n"[..], false),
            (&b"GET /healthz HTTP/1.1\r\nHost: memory\r\nConnection: close\r\n\r\n"[..], true),
        ] {
            c.send(request).map_err(|e| format!("write: {}", describe(&e)))?;
            let r = c.final_response(false)?;
            if r.status != 200 || r.closes() != closes {
                return Err(format!("status {} close={}", r.status, r.closes()));
            }
        }
        c.expect_eof(T)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// e. connection cap

const OVER_CAP_REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: over-cap\r\n\r\n";

/// A clean refusal: 503 with Connection: close and Retry-After, then EOF (no reset, no hang).
fn refused_cleanly(c: &mut Reader) -> Result<(), String> {
    c.send(OVER_CAP_REQUEST).map_err(|e| format!("write: {}", describe(&e)))?;
    refused_cleanly_after_send(c)
}

fn refused_cleanly_after_send(c: &mut Reader) -> Result<(), String> {
    let r = c.final_response(false)?;
    if r.status != 503 || !r.closes() || r.header("retry-after").is_none() {
        return Err(format!("status {} close={} retry-after={:?}", r.status, r.closes(), r.header("retry-after")));
    }
    c.expect_eof(T)
}

#[test]
fn drill_e_connection_cap_refusals() {
    let _one = one_at_a_time();
    const CAP: usize = 50;
    const ATTEMPTS: usize = 10_000;
    const SEQUENTIAL: usize = 8_000;
    const WAVE: usize = 1_000;
    const THREADS: usize = 4;
    let server = QuietServer::start(&bin(), &[("MAX_CONNECTIONS", "50")]);
    let addr = server.addr;
    let before = server.metric("sremini_limit_rejections_total{reason=\"connection_cap\"}").unwrap();

    let mut held = Vec::new();
    for i in 0..CAP {
        let mut c = Reader::connect(addr, T).unwrap();
        c.send(b"GET /healthz HTTP/1.1\r\nHost: held\r\n\r\n").unwrap();
        let r = c.final_response(false).unwrap_or_else(|e| panic!("held connection {i}: {e}"));
        assert!(r.status == 200 && !r.closes(), "held connection {i}: {}", r.status);
        held.push(c);
    }
    // The server notices closed connections on its next turn; give the /metrics one time to be released.
    thread::sleep(Duration::from_millis(100));

    // Phase 1: attempts one after another from a few threads (each connect, request, 503, EOF, close).
    let t = Instant::now();
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            spawn_small(move || {
                let mut lat = Vec::new();
                let mut problems = Vec::new();
                for _ in 0..SEQUENTIAL / THREADS {
                    let t = Instant::now();
                    let outcome = Reader::connect(addr, T)
                        .map_err(|e| format!("connect: {}", describe(&e)))
                        .and_then(|mut c| refused_cleanly(&mut c));
                    match outcome {
                        Ok(()) => lat.push(t.elapsed()),
                        Err(e) => problems.push(e),
                    }
                }
                (lat, problems)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut problems = Vec::new();
    for h in handles {
        let (l, p) = h.join().unwrap();
        lat.extend(l);
        problems.extend(p);
    }
    let sequential_took = t.elapsed();

    // Phase 2: a flood: waves of WAVE connections opened at once, each sending its request before any is read.
    let t = Instant::now();
    let mut wave_ok = 0;
    let mut wave_problems = Vec::new();
    for _ in 0..(ATTEMPTS - SEQUENTIAL) / WAVE {
        let mut wave = Vec::with_capacity(WAVE);
        for _ in 0..WAVE {
            match Reader::connect(addr, T) {
                Ok(mut c) => match c.send(OVER_CAP_REQUEST) {
                    Ok(()) => wave.push(c),
                    Err(e) => wave_problems.push(format!("write: {}", describe(&e))),
                },
                Err(e) => wave_problems.push(format!("connect: {}", describe(&e))),
            }
        }
        for mut c in wave {
            match refused_cleanly_after_send(&mut c) {
                Ok(()) => wave_ok += 1,
                Err(e) => wave_problems.push(e),
            }
        }
    }
    let took = sequential_took + t.elapsed();

    // The held connections are still served while the cap is hit.
    let mut held_ok = 0;
    for c in held.iter_mut() {
        c.send(b"GET /healthz HTTP/1.1\r\nHost: held\r\n\r\n").unwrap();
        if c.final_response(false).is_ok_and(|r| r.status == 200) {
            held_ok += 1;
        }
    }
    drop(held);
    // Once the held connections are gone, fresh ones are served again (refusals while the server notices count too).
    let mut extra_refusals = 0;
    let recovered = loop {
        match timed_get(addr, "/healthz", T) {
            Ok((r, d)) if r.status == 200 => break Some(d),
            Ok((r, _)) if r.status == 503 && t.elapsed() < Duration::from_secs(120) => extra_refusals += 1,
            _ => break None,
        }
        thread::sleep(Duration::from_millis(10));
    };
    let counted = server.metric("sremini_limit_rejections_total{reason=\"connection_cap\"}").unwrap() - before;
    eprintln!(
        "drill e (load {}): MAX_CONNECTIONS {CAP} held; {ATTEMPTS} attempts over the cap in {:.2} s. {SEQUENTIAL} one at a time \
         ({THREADS} threads, {:.2} s): {} clean 503 + Connection: close + EOF (p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms), \
         {} problems. {} in waves of {WAVE} simultaneous: {wave_ok} clean, {} problems {:?}. Held connections still \
         served: {held_ok}/{CAP}; after release /healthz {:?} ({extra_refusals} refusals while the server caught up); \
         connection_cap rejections counted {counted}",
        load_average(),
        took.as_secs_f64(),
        sequential_took.as_secs_f64(),
        lat.len(),
        ms(percentile(&lat, 50.0)),
        ms(percentile(&lat, 99.0)),
        ms(percentile(&lat, 100.0)),
        problems.len(),
        ATTEMPTS - SEQUENTIAL,
        wave_problems.len(),
        summarize(&wave_problems),
        recovered.map(ms),
    );
    assert!(problems.is_empty(), "{} unclean refusals, e.g. {:?}", problems.len(), &problems[..problems.len().min(5)]);
    assert_eq!(lat.len(), SEQUENTIAL);
    assert!(
        wave_problems.is_empty(),
        "{} unclean refusals in the flood waves: {:?}",
        wave_problems.len(),
        summarize(&wave_problems)
    );
    assert_eq!(wave_ok, ATTEMPTS - SEQUENTIAL);
    assert_eq!(held_ok, CAP, "held connections stopped being served");
    assert!(recovered.is_some(), "/healthz not served after the held connections were released");
    assert_eq!(counted as usize, ATTEMPTS + extra_refusals, "connection_cap rejections");
}
