//! Test harness: start the built binary on a free port, speak raw TCP to it through the one test client
//! ([`client`]), and read its log. Every wait here is bounded; a server that misbehaves fails the test instead of
//! hanging it. [`load`] holds what the drills and the corpus add: a quiet server, percentiles, /proc readings.
//! Each test binary uses part of this, so unused items are expected.
#![allow(dead_code)]

pub mod client;
pub mod load;

// Not every test binary uses every name.
#[allow(unused_imports)]
pub use client::{Reader, Response, describe, split_response};

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sre-mini");

/// A command that runs the binary under test: the one cargo built, unless `SRE_MINI_BIN` names another (a
/// patched build, or the arm64 build), run through `SRE_MINI_RUNNER` when set (an absolute path to an emulator
/// such as qemu-aarch64-static). qemu-user runs the guest in its own process and forwards signals to it, so the
/// child's pid and exit status are the binary's.
pub fn command() -> Command {
    let bin = std::env::var("SRE_MINI_BIN").unwrap_or_else(|_| BIN.to_string());
    match std::env::var("SRE_MINI_RUNNER") {
        Ok(runner) if !runner.is_empty() => {
            let mut cmd = Command::new(runner);
            cmd.arg(bin);
            cmd
        }
        _ => Command::new(bin),
    }
}
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every stdout line so far (the JSON log).
    pub lines: Arc<Mutex<Vec<String>>>,
    line_rx: Receiver<String>,
}

impl Server {
    /// Starts the server with `env` (PORT=0 unless given) and waits for its "ready" line.
    pub fn start(env: &[(&str, &str)]) -> Server {
        let mut cmd = command();
        cmd.env_clear().env("PORT", "0").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn sre-mini");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("no ready line within 10 s");
            });
            if line.contains("\"msg\":\"ready\"") {
                let addr = json_field(&line, "addr").expect("addr in ready line");
                break addr.rsplit(':').next().unwrap().parse::<u16>().unwrap();
            }
        };
        Server { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), lines, line_rx: rx }
    }

    pub fn connect(&self) -> Reader {
        Reader::connect(self.addr, IO_TIMEOUT).expect("connect")
    }

    /// One request on a fresh connection; returns the first final response.
    pub fn request(&self, raw: &[u8]) -> Response {
        let mut c = self.connect();
        c.send(raw).unwrap();
        c.final_response(raw.starts_with(b"HEAD ")).unwrap_or_else(|e| panic!("a response: {e}"))
    }

    pub fn get(&self, path: &str) -> Response {
        self.request(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([&format!("-{sig}"), &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
    }

    /// Waits for exit, at most `limit`; kills and fails the test past it.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("server did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for a log line containing `needle`, at most `limit`.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            if Instant::now() > deadline {
                panic!("no log line with {needle:?} within {limit:?}");
            }
            let _ = self.line_rx.recv_timeout(Duration::from_millis(20));
        }
    }

    pub fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(e) = self.child.stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }

    /// The value of one sample line of /metrics (exact series text before the value), or 0.
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.get("/metrics").body_text();
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .map(|v| v.parse().unwrap())
            .unwrap_or(0.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Result of running the binary to completion (config errors, --help).
pub fn run_to_exit(env: &[(&str, &str)], args: &[&str]) -> (ExitStatus, String, String) {
    let out = command().env_clear().envs(env.iter().copied()).args(args).output().unwrap();
    (out.status, String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A string field from one JSON log line (our own flat format; no escapes in the fields tests read).
pub fn json_field(line: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let start = line.find(&pat)? + pat.len();
    let end = line[start..].find('"')? + start;
    Some(line[start..end].to_string())
}
