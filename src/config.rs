//! Configuration: every tunable, its default, its accepted range, and how it is read from the environment.
//!
//! A bad value is a [`ConfigError`] that names the variable and what it accepts; `main` turns it into
//! exit code 2 with one stderr line. Nothing here panics.

use std::fmt;
use std::time::Duration;

/// One environment variable the binary reads: name, default, accepted values, and what it controls.
/// The table drives `--help`, the README and the manifest consistency check, so it is the single source.
pub struct VarSpec {
    pub name: &'static str,
    pub default: &'static str,
    pub accepts: &'static str,
    pub help: &'static str,
}

pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_WORK_DELAY_MS: u64 = 2_000;
pub const DEFAULT_SHUTDOWN_DELAY_MS: u64 = 5_000;
pub const DEFAULT_DRAIN_TIMEOUT_MS: u64 = 8_000;
pub const DEFAULT_WORK_MAX_CONCURRENT: usize = 512;
/// Two seconds of CPU: under the 500m limit, the last admitted request waits at most 4 s for its turn.
pub const DEFAULT_WORK_CPU_BACKLOG_MS: u64 = 2_000;
pub const DEFAULT_MAX_CONNECTIONS: usize = 4_096;
pub const DEFAULT_MAX_REQUESTS_PER_CONNECTION: u64 = 10_000;
/// RFC 9112 §3 asks for at least 8,000 octets; we take twice that before answering 414.
pub const DEFAULT_MAX_REQUEST_LINE_BYTES: usize = 16_384;
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32_768;
pub const DEFAULT_MAX_HEADER_FIELDS: usize = 100;
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1_048_576;
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_BODY_TIMEOUT_MS: u64 = 30_000;
/// Longer than Traefik's 90 s backend idle timeout, so the proxy, not us, closes idle connections.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 120_000;
pub const DEFAULT_WRITE_TIMEOUT_MS: u64 = 10_000;
/// std's `TcpListener::bind` uses 128; a burst of connects must not overflow the accept queue.
pub const DEFAULT_LISTEN_BACKLOG: u32 = 1_024;
pub const MAX_WORKERS: usize = 64;

pub const VARS: &[VarSpec] = &[
    VarSpec { name: "PORT", default: "8080", accepts: "0..=65535", help: "TCP port on 0.0.0.0 (0 = any free port)" },
    VarSpec { name: "WORK_DELAY_MS", default: "2000", accepts: "0..=60000", help: "how long /work sleeps" },
    VarSpec {
        name: "SHUTDOWN_DELAY_MS",
        default: "5000",
        accepts: "0..=60000",
        help: "serving time after SIGTERM, unready, before the listener closes",
    },
    VarSpec {
        name: "DRAIN_TIMEOUT_MS",
        default: "8000",
        accepts: "0..=300000",
        help: "wait for in-flight requests after the listener closes",
    },
    VarSpec { name: "DRILLS", default: "on", accepts: "`on` or `off`", help: "serve /fail/*, /recover/* and /panic" },
    VarSpec {
        name: "WORKERS",
        default: "1",
        accepts: "1..=64",
        help: "event-loop threads that parse and answer requests",
    },
    VarSpec {
        name: "WORK_MAX_CONCURRENT",
        default: "512",
        accepts: "1..=4096",
        help: "/work bulkhead: concurrent /work requests before 503",
    },
    VarSpec {
        name: "WORK_CPU_BACKLOG_MS",
        default: "2000",
        accepts: "1000..=600000",
        help: "/work CPU time admitted and not yet burned before 503 (at least one cpu_ms=1000 request)",
    },
    VarSpec {
        name: "MAX_CONNECTIONS",
        default: "4096",
        accepts: "1..=1000000",
        help: "open connections before new ones get 503 and close",
    },
    VarSpec {
        name: "MAX_REQUESTS_PER_CONNECTION",
        default: "10000",
        accepts: "1..=100000000",
        help: "requests on one connection before it is closed",
    },
    VarSpec {
        name: "MAX_REQUEST_LINE_BYTES",
        default: "16384",
        accepts: "8000..=1048576",
        help: "request line longer than this gets 414",
    },
    VarSpec {
        name: "MAX_HEADER_BYTES",
        default: "32768",
        accepts: "1024..=1048576",
        help: "header section larger than this gets 431",
    },
    VarSpec {
        name: "MAX_HEADER_FIELDS",
        default: "100",
        accepts: "1..=10000",
        help: "more header fields than this gets 431",
    },
    VarSpec {
        name: "MAX_BODY_BYTES",
        default: "1048576",
        accepts: "0..=1073741824",
        help: "request body larger than this gets 413",
    },
    VarSpec {
        name: "HEADER_TIMEOUT_MS",
        default: "10000",
        accepts: "100..=30000",
        help: "a request head must arrive within this, else 408",
    },
    VarSpec {
        name: "BODY_TIMEOUT_MS",
        default: "30000",
        accepts: "100..=300000",
        help: "a request body must arrive within this, else 408",
    },
    VarSpec {
        name: "IDLE_TIMEOUT_MS",
        default: "120000",
        accepts: "1000..=3600000",
        help: "keep-alive connection idle time before we close it",
    },
    VarSpec {
        name: "WRITE_TIMEOUT_MS",
        default: "10000",
        accepts: "100..=300000",
        help: "a response must be taken by the client within this",
    },
    VarSpec {
        name: "LISTEN_BACKLOG",
        default: "1024",
        accepts: "1..=65535",
        help: "kernel accept queue length (capped by net.core.somaxconn)",
    },
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub port: u16,
    pub work_delay: Duration,
    pub shutdown_delay: Duration,
    pub drain_timeout: Duration,
    pub drills: bool,
    pub workers: usize,
    pub work_max_concurrent: usize,
    pub work_cpu_backlog: Duration,
    pub max_connections: usize,
    pub max_requests_per_connection: u64,
    pub max_request_line_bytes: usize,
    pub max_header_bytes: usize,
    pub max_header_fields: usize,
    pub max_body_bytes: u64,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub listen_backlog: u32,
}

/// A variable whose value is not accepted: rendered as one line naming the variable and what it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub name: &'static str,
    pub value: String,
    pub accepts: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.value.chars().take(64).flat_map(char::escape_debug).collect();
        write!(f, "invalid {}=\"{}\": accepts {}", self.name, shown, self.accepts)
    }
}

impl std::error::Error for ConfigError {}

fn spec(name: &str) -> &'static VarSpec {
    VARS.iter().find(|v| v.name == name).unwrap_or(&VARS[0])
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    /// Reads through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let int = |name: &'static str, default: u64, min: u64, max: u64| -> Result<u64, ConfigError> {
            match lookup(name) {
                None => Ok(default),
                Some(raw) => parse_decimal(&raw).filter(|n| (min..=max).contains(n)).ok_or_else(|| ConfigError {
                    name,
                    value: raw,
                    accepts: spec(name).accepts,
                }),
            }
        };
        let ms = |name, default, min, max| int(name, default, min, max).map(Duration::from_millis);
        let drills = match lookup("DRILLS").as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => {
                return Err(ConfigError { name: "DRILLS", value: other.to_string(), accepts: spec("DRILLS").accepts });
            }
        };
        // One event loop: it only parses, routes and writes (all slow work runs in the bulkhead), and one loop
        // served 128k /healthz rps here. A connection stays on its loop, so extra loops that share a CPU with
        // anything else add queueing: two loops on this 2-core machine, wrk beside them, gave 88k rps at p99
        // 3.6 ms against 128k at 0.5 ms for one. Scale out with replicas; raise WORKERS on dedicated cores.
        let default_workers = 1;
        Ok(Config {
            port: int("PORT", DEFAULT_PORT.into(), 0, 65_535)? as u16,
            work_delay: ms("WORK_DELAY_MS", DEFAULT_WORK_DELAY_MS, 0, 60_000)?,
            shutdown_delay: ms("SHUTDOWN_DELAY_MS", DEFAULT_SHUTDOWN_DELAY_MS, 0, 60_000)?,
            drain_timeout: ms("DRAIN_TIMEOUT_MS", DEFAULT_DRAIN_TIMEOUT_MS, 0, 300_000)?,
            drills,
            workers: int("WORKERS", default_workers, 1, MAX_WORKERS as u64)? as usize,
            work_max_concurrent: int("WORK_MAX_CONCURRENT", DEFAULT_WORK_MAX_CONCURRENT as u64, 1, 4_096)? as usize,
            work_cpu_backlog: ms("WORK_CPU_BACKLOG_MS", DEFAULT_WORK_CPU_BACKLOG_MS, 1_000, 600_000)?,
            max_connections: int("MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS as u64, 1, 1_000_000)? as usize,
            max_requests_per_connection: int(
                "MAX_REQUESTS_PER_CONNECTION",
                DEFAULT_MAX_REQUESTS_PER_CONNECTION,
                1,
                100_000_000,
            )?,
            max_request_line_bytes: int(
                "MAX_REQUEST_LINE_BYTES",
                DEFAULT_MAX_REQUEST_LINE_BYTES as u64,
                8_000,
                1 << 20,
            )? as usize,
            max_header_bytes: int("MAX_HEADER_BYTES", DEFAULT_MAX_HEADER_BYTES as u64, 1_024, 1 << 20)? as usize,
            max_header_fields: int("MAX_HEADER_FIELDS", DEFAULT_MAX_HEADER_FIELDS as u64, 1, 10_000)? as usize,
            max_body_bytes: int("MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, 0, 1 << 30)?,
            header_timeout: ms("HEADER_TIMEOUT_MS", DEFAULT_HEADER_TIMEOUT_MS, 100, 30_000)?,
            body_timeout: ms("BODY_TIMEOUT_MS", DEFAULT_BODY_TIMEOUT_MS, 100, 300_000)?,
            idle_timeout: ms("IDLE_TIMEOUT_MS", DEFAULT_IDLE_TIMEOUT_MS, 1_000, 3_600_000)?,
            write_timeout: ms("WRITE_TIMEOUT_MS", DEFAULT_WRITE_TIMEOUT_MS, 100, 300_000)?,
            listen_backlog: int("LISTEN_BACKLOG", DEFAULT_LISTEN_BACKLOG.into(), 1, 65_535)? as u32,
        })
    }

    /// The effective configuration as a JSON object, for the `starting` log line.
    pub fn to_json(&self) -> String {
        format!(
            concat!(
                "{{\"port\":{},\"work_delay_ms\":{},\"shutdown_delay_ms\":{},\"drain_timeout_ms\":{},\"drills\":{},",
                "\"workers\":{},\"work_max_concurrent\":{},\"work_cpu_backlog_ms\":{},\"max_connections\":{},\"max_requests_per_connection\":{},",
                "\"max_request_line_bytes\":{},\"max_header_bytes\":{},\"max_header_fields\":{},\"max_body_bytes\":{},",
                "\"header_timeout_ms\":{},\"body_timeout_ms\":{},\"idle_timeout_ms\":{},\"write_timeout_ms\":{},\"listen_backlog\":{}}}"
            ),
            self.port,
            self.work_delay.as_millis(),
            self.shutdown_delay.as_millis(),
            self.drain_timeout.as_millis(),
            self.drills,
            self.workers,
            self.work_max_concurrent,
            self.work_cpu_backlog.as_millis(),
            self.max_connections,
            self.max_requests_per_connection,
            self.max_request_line_bytes,
            self.max_header_bytes,
            self.max_header_fields,
            self.max_body_bytes,
            self.header_timeout.as_millis(),
            self.body_timeout.as_millis(),
            self.idle_timeout.as_millis(),
            self.write_timeout.as_millis(),
            self.listen_backlog,
        )
    }
}

/// Plain ASCII digits only: no sign, no spaces, no hex, no underscores. `u64::from_str` would take "+5".
fn parse_decimal(raw: &str) -> Option<u64> {
    if raw.is_empty() || raw.len() > 19 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

/// The `--help` text: usage plus every variable with its default and accepted values.
pub fn help_text() -> String {
    let mut out = String::from(concat!(
        "sre-mini ",
        env!("CARGO_PKG_VERSION"),
        ": a std-only HTTP/1.1 reference workload\n\n",
        "usage:\n  sre-mini                 serve on 0.0.0.0:$PORT\n",
        "  sre-mini probe URL       GET http://HOST:PORT/PATH; exit 0 on 2xx, 1 otherwise (2 s timeout)\n",
        "  sre-mini --help | --version\n\nenvironment:\n"
    ));
    for v in VARS {
        out.push_str(&format!(
            "  {:<28} default {:<32} accepts {:<24} {}\n",
            v.name,
            v.default,
            v.accepts.replace('`', ""),
            v.help
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_documented_table() {
        let c = with(&[]).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.work_delay, Duration::from_millis(2000));
        assert_eq!(c.shutdown_delay, Duration::from_millis(5000));
        assert_eq!(c.drain_timeout, Duration::from_millis(8000));
        assert!(c.drills);
        assert!(c.work_max_concurrent >= 256);
        assert!(c.idle_timeout > Duration::from_secs(90), "must outlive Traefik's 90 s idle timeout");
        assert!(c.header_timeout <= Duration::from_secs(30));
        assert!(c.listen_backlog >= 1024);
        assert!(c.max_request_line_bytes >= 8000, "RFC 9112 §3");
        for v in VARS {
            assert!(with(&[(v.name, v.default)]).is_ok(), "{} default {} must parse", v.name, v.default);
        }
        assert_eq!(c.workers, 1);
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        let cases = [
            ("PORT", "65536"),
            ("PORT", "-1"),
            ("PORT", "+80"),
            ("PORT", " 80"),
            ("PORT", ""),
            ("WORK_DELAY_MS", "60001"),
            ("WORK_DELAY_MS", "2s"),
            ("SHUTDOWN_DELAY_MS", "0x10"),
            ("DRAIN_TIMEOUT_MS", "300001"),
            ("DRILLS", "yes"),
            ("DRILLS", "ON"),
            ("WORKERS", "0"),
            ("WORK_MAX_CONCURRENT", "0"),
            ("WORK_CPU_BACKLOG_MS", "999"),
            ("HEADER_TIMEOUT_MS", "30001"),
            ("MAX_REQUEST_LINE_BYTES", "7999"),
            ("IDLE_TIMEOUT_MS", "99999999999999999999999"),
        ];
        for (name, value) in cases {
            let err = with(&[(name, value)]).unwrap_err();
            assert_eq!(err.name, name);
            let line = err.to_string();
            assert!(line.contains(name) && line.contains("accepts"), "{line}");
            assert!(!line.contains('\n'));
        }
    }

    #[test]
    fn accepted_edges() {
        let c =
            with(&[("PORT", "0"), ("WORK_DELAY_MS", "0"), ("DRILLS", "off"), ("DRAIN_TIMEOUT_MS", "300000")]).unwrap();
        assert_eq!(c.port, 0);
        assert_eq!(c.work_delay, Duration::ZERO);
        assert!(!c.drills);
        assert_eq!(c.drain_timeout, Duration::from_secs(300));
    }

    #[test]
    fn help_lists_every_variable() {
        let help = help_text();
        for v in VARS {
            assert!(help.contains(v.name), "{}", v.name);
        }
        assert!(to_json_is_object(&with(&[]).unwrap().to_json()));
    }

    fn to_json_is_object(s: &str) -> bool {
        s.starts_with('{') && s.ends_with('}') && s.contains("\"work_delay_ms\":2000")
    }
}
