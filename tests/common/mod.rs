//! Test harness: start the built binary on a free port, speak raw TCP to it, and read what it answers.
//! Every wait here is bounded; a server that misbehaves fails the test instead of hanging it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
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

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT).expect("connect");
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        s
    }

    /// One request on a fresh connection; returns the first response.
    pub fn request(&self, raw: &[u8]) -> Response {
        let mut s = self.connect();
        s.write_all(raw).unwrap();
        read_response(&mut s, raw.starts_with(b"HEAD ")).expect("a response")
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

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The one response-head parser of the tests: `head` is everything up to and including the empty line.
    /// The body is left empty; [`Response::body_len`] says how much of it follows.
    pub fn parse_head(head: &[u8]) -> Result<Response, String> {
        let text = std::str::from_utf8(head).map_err(|_| "non-UTF-8 response head".to_string())?;
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let mut headers = Vec::new();
        for l in lines.filter(|l| !l.is_empty()) {
            let (k, v) = l.split_once(':').ok_or_else(|| format!("bad header line {l:?}"))?;
            headers.push((k.to_string(), v.trim().to_string()));
        }
        Ok(Response { status, headers, body: Vec::new() })
    }

    /// Body bytes that follow this head: none for an interim (1xx) response or an answer to HEAD, else
    /// Content-Length, which the server sends on every response.
    pub fn body_len(&self, head_only: bool) -> Result<usize, String> {
        if self.status < 200 || head_only {
            return Ok(0);
        }
        self.header("content-length")
            .ok_or("response without Content-Length")?
            .parse()
            .map_err(|_| "bad Content-Length in response".to_string())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn closes(&self) -> bool {
        self.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response (skipping 1xx interim responses). `head` means no body despite Content-Length.
pub fn read_response(s: &mut TcpStream, head: bool) -> Option<Response> {
    loop {
        let r = read_one(s, head)?;
        if r.status >= 200 {
            return Some(r);
        }
    }
}

/// Reads exactly one response, interim ones included, a byte at a time so that nothing after it is consumed.
/// A malformed response panics: the harness's server is the one under test.
pub fn read_one(s: &mut TcpStream, head: bool) -> Option<Response> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return None,
        }
        assert!(buf.len() < 64 * 1024, "response head too long");
    }
    let mut r = Response::parse_head(&buf).unwrap_or_else(|e| panic!("{e}"));
    r.body = vec![0; r.body_len(head).unwrap_or_else(|e| panic!("{e}"))];
    s.read_exact(&mut r.body).ok()?;
    Some(r)
}

/// True when the server has closed the connection (EOF or reset) within the timeout.
pub fn is_closed(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

/// A string field from one JSON log line (our own flat format; no escapes in the fields tests read).
pub fn json_field(line: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let start = line.find(&pat)? + pat.len();
    let end = line[start..].find('"')? + start;
    Some(line[start..end].to_string())
}
