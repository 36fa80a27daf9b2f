//! `sre-mini probe URL`: a minimal HTTP/1.1 client for container health checks in images without curl.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(2);

/// Splits `http://host:port/path` into its parts. Only plain http: probes stay inside the pod.
pub fn parse_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (authority, 80),
    };
    let valid = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    (valid(host) && valid(path)).then(|| (host.to_string(), port, path.to_string()))
}

/// The status code from a response's first line.
pub fn status_of(response: &[u8]) -> Option<u16> {
    let line = response.split(|&b| b == b'\r').next()?;
    let mut parts = line.split(|&b| b == b' ');
    let version = parts.next()?;
    if !version.starts_with(b"HTTP/1.") {
        return None;
    }
    std::str::from_utf8(parts.next()?).ok()?.parse().ok()
}

fn fetch(url: &str) -> Result<u16, String> {
    let (host, port, path) = parse_url(url).ok_or("URL must look like http://HOST:PORT/PATH")?;
    let addr = (host.as_str(), port).to_socket_addrs().map_err(|e| e.to_string())?.next().ok_or("no address")?;
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: sre-mini-probe\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 512];
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => {
                got += n;
                if buf[..got].contains(&b'\n') {
                    break;
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    status_of(&buf[..got]).ok_or_else(|| "no HTTP status line in the answer".to_string())
}

pub fn run(url: Option<&str>) -> ExitCode {
    let Some(url) = url else {
        eprintln!("sre-mini probe: usage: sre-mini probe http://HOST:PORT/PATH");
        return ExitCode::from(2);
    };
    match fetch(url) {
        Ok(code) if (200..300).contains(&code) => ExitCode::SUCCESS,
        Ok(code) => {
            eprintln!("sre-mini probe: {url} answered {code}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("sre-mini probe: {url}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(parse_url("http://127.0.0.1:8080/healthz"), Some(("127.0.0.1".into(), 8080, "/healthz".into())));
        assert_eq!(parse_url("http://localhost"), Some(("localhost".into(), 80, "/".into())));
        assert_eq!(parse_url("https://x/"), None);
        assert_eq!(parse_url("http://:80/"), None);
        assert_eq!(parse_url("http://h:99999/"), None);
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_of(b"HTTP/1.0 503 Service Unavailable\r\n"), Some(503));
        assert_eq!(status_of(b"SSH-2.0\r\n"), None);
    }
}
