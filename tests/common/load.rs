//! Helpers for tests/corpus.rs and tests/drills.rs (declared from them with `#[path]`; tests/common/mod.rs is the
//! lead's). A buffered response reader that reports problems as `Err` instead of panicking, so a case or a drill
//! can collect every failure; a server launcher that discards the request log (as deployed, stdout to /dev/null);
//! percentiles; /proc readings. Every wait is bounded.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The harness's parsed response, read here from a buffered stream.
pub use crate::common::Response as Resp;

pub fn describe(e: &io::Error) -> String {
    match e.kind() {
        ErrorKind::ConnectionReset => "connection reset".into(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut => "timed out".into(),
        ErrorKind::UnexpectedEof => "EOF before a complete response".into(),
        _ => e.to_string(),
    }
}

/// A connection with an input buffer: responses are parsed from it without a syscall per byte.
pub struct Reader {
    pub stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
}

impl Reader {
    pub fn new(stream: TcpStream) -> Reader {
        Reader { stream, buf: Vec::with_capacity(16 * 1024), pos: 0 }
    }

    /// Connects with a timeout and sets read/write timeouts.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Reader> {
        let s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        let _ = s.set_nodelay(true);
        Ok(Reader::new(s))
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads more bytes into the buffer; `UnexpectedEof` on EOF.
    fn fill(&mut self) -> io::Result<()> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + 16 * 1024, 0);
        let r = self.stream.read(&mut self.buf[len..]);
        match r {
            Ok(0) => {
                self.buf.truncate(len);
                Err(ErrorKind::UnexpectedEof.into())
            }
            Ok(n) => {
                self.buf.truncate(len + n);
                Ok(())
            }
            Err(e) => {
                self.buf.truncate(len);
                Err(e)
            }
        }
    }

    /// Bytes received but not yet parsed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads exactly one response, interim (1xx) ones included. `head_only`: a HEAD answer (no body).
    pub fn response(&mut self, head_only: bool) -> Result<Resp, String> {
        let head_end = loop {
            if let Some(i) = find(&self.buf[self.pos..], b"\r\n\r\n") {
                break self.pos + i + 4;
            }
            if self.buf.len() - self.pos > 64 * 1024 {
                return Err("response head over 64 KiB".into());
            }
            self.fill().map_err(|e| describe(&e))?;
        };
        let mut r = Resp::parse_head(&self.buf[self.pos..head_end])?;
        let len = r.body_len(head_only)?;
        self.pos = head_end;
        while self.buf.len() - self.pos < len {
            self.fill().map_err(|e| format!("{} (in the body)", describe(&e)))?;
        }
        r.body = self.buf[self.pos..self.pos + len].to_vec();
        self.pos += len;
        Ok(r)
    }

    /// The next final response (1xx skipped).
    pub fn final_response(&mut self, head_only: bool) -> Result<Resp, String> {
        loop {
            let r = self.response(head_only)?;
            if r.status >= 200 {
                return Ok(r);
            }
        }
    }

    /// Ok when the peer closes cleanly (EOF, no reset) within `within` and sent nothing more.
    pub fn expect_eof(&mut self, within: Duration) -> Result<(), String> {
        if !self.buffered().is_empty() {
            return Err(format!("{} unexpected bytes after the last response", self.buffered().len()));
        }
        self.stream.set_read_timeout(Some(within)).map_err(|e| e.to_string())?;
        let mut b = [0u8; 512];
        match self.stream.read(&mut b) {
            Ok(0) => Ok(()),
            Ok(n) => Err(format!("{n} unexpected bytes instead of EOF: {:?}", String::from_utf8_lossy(&b[..n]))),
            Err(e) => Err(format!("no clean EOF: {}", describe(&e))),
        }
    }

    /// Fast path for load: reads `n` responses, checking each status and skipping bodies. Returns how many of
    /// them carried `Connection: close`. It reads the raw head instead of [`Resp::parse_head`] because a drill
    /// pushes a million responses through it and must not become the load generator's bottleneck.
    pub fn count_responses(&mut self, n: usize, want_status: u16) -> Result<usize, String> {
        let mut closes = 0;
        for _ in 0..n {
            let head_end = loop {
                if let Some(i) = find(&self.buf[self.pos..], b"\r\n\r\n") {
                    break self.pos + i + 4;
                }
                self.fill().map_err(|e| describe(&e))?;
            };
            let head = &self.buf[self.pos..head_end];
            let status = head.get(9..12).and_then(|c| std::str::from_utf8(c).ok()).and_then(|c| c.parse().ok());
            if status != Some(want_status) {
                return Err(format!(
                    "status {:?}, wanted {want_status}",
                    String::from_utf8_lossy(&head[..head.len().min(40)])
                ));
            }
            let len = header_value(head, b"content-length")
                .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok())
                .ok_or("response without Content-Length")?;
            if header_value(head, b"connection").is_some_and(|v| v.eq_ignore_ascii_case(b"close")) {
                closes += 1;
            }
            self.pos = head_end;
            while self.buf.len() - self.pos < len {
                self.fill().map_err(|e| describe(&e))?;
            }
            self.pos += len;
        }
        Ok(closes)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The value of a header in a raw response head (case-insensitive name), without surrounding spaces.
fn header_value<'a>(head: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    head.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        if !line[..colon].eq_ignore_ascii_case(name) {
            return None;
        }
        let v = &line[colon + 1..];
        let v = v.strip_suffix(b"\r").unwrap_or(v);
        Some(v.trim_ascii())
    })
}

/// One request on a fresh connection, timed from connect to the complete response.
pub fn timed_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(Resp, Duration), String> {
    let t = Instant::now();
    let mut r = Reader::connect(addr, timeout).map_err(|e| format!("connect: {}", describe(&e)))?;
    r.send(format!("GET {path} HTTP/1.1\r\nHost: drill\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| format!("write: {}", describe(&e)))?;
    let resp = r.final_response(false)?;
    Ok((resp, t.elapsed()))
}

/// Nearest-rank percentile (p in 0..=100) of the samples; zero for none.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut v = samples.to_vec();
    v.sort();
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A field of /proc/<pid>/status in KiB (VmRSS, VmHWM, Threads...).
pub fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The built binary, started with `env` on a free loopback-reachable port; its request log is read and
/// discarded (as deployed with stdout to /dev/null), so a long drill does not pile the log up in memory.
pub struct QuietServer {
    pub child: Child,
    pub addr: SocketAddr,
}

impl QuietServer {
    pub fn start(bin: &str, env: &[(&str, &str)]) -> QuietServer {
        let mut cmd = Command::new(bin);
        cmd.env_clear().env("PORT", "0").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn sre-mini");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if line.contains("\"msg\":\"ready\"") {
                    let _ = tx.send(line.clone());
                    break;
                }
            }
            let _ = io::copy(&mut r, &mut io::sink());
        });
        let line = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("no ready line within 10 s");
            }
        };
        let pat = "\"addr\":\"";
        let start = line.find(pat).expect("addr in ready line") + pat.len();
        let addr = &line[start..start + line[start..].find('"').unwrap()];
        let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
        QuietServer { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([&format!("-{sig}"), &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
    }

    /// Exit status if it exits within `limit`; None (and the process killed) otherwise.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// One sample of /metrics (the exact series text before the value), read on a fresh connection.
    pub fn metric(&self, series: &str) -> Result<f64, String> {
        let (r, _) = timed_get(self.addr, "/metrics", Duration::from_secs(5))?;
        if r.status != 200 {
            return Err(format!("/metrics answered {}", r.status));
        }
        let text = String::from_utf8_lossy(&r.body).into_owned();
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0))
    }
}

impl Drop for QuietServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
