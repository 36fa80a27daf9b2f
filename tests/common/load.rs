//! What the drills and the corpus add to the harness: a timed request on a fresh connection, a server launcher
//! that discards the request log (as deployed, stdout to /dev/null), percentiles and /proc readings. Errors come
//! back as `Err` text so a drill can collect every failure. Every wait is bounded.

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::client::{Reader, Response, describe};

/// One request on a fresh connection, timed from connect to the complete response.
pub fn timed_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(Response, Duration), String> {
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
