//! Configuration: every tunable, its default, its accepted range, and how it is read from the environment.
//!
//! A bad value is a [`ConfigError`] that names the variable and what it accepts; `main` turns it into
//! exit code 2 with one stderr line. Nothing here panics.

use std::fmt;
use std::time::Duration;

/// One environment variable the binary reads: name, default, accepted values, and what it controls.
/// Generated from the table below, which drives parsing, `--help`, the README table test and the manifest
/// consistency check, so it is the single source.
pub struct VarSpec {
    pub name: &'static str,
    pub default: &'static str,
    pub accepts: &'static str,
    pub help: &'static str,
}

/// Defines the configuration from rows `field: Type = "NAME", kind default [in min..=max], "help";` where kind
/// is `int` (a plain decimal in the range), `ms` (milliseconds in the range, as a `Duration`), `switch`
/// (`on` or `off`) or `path` (a file path, empty for none). It generates [`Config`], [`Config::DEFAULT`], [`VARS`], the parser and the JSON form.
/// Write numbers without `_`: the row's own text is what `--help` and the README show.
macro_rules! config_table {
    ( $(
        $(#[$doc:meta])*
        $field:ident : $ty:ty = $name:literal, $kind:ident $default:tt $(in $min:literal ..= $max:literal)?, $help:literal;
    )+ ) => {
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Config {
            $( $(#[$doc])* pub $field: $ty, )+
        }

        pub const VARS: &[VarSpec] = &[
            $( VarSpec {
                name: $name,
                default: config_table!(@default_text $kind $default),
                accepts: config_table!(@accepts $kind $($min, $max)?),
                help: $help,
            }, )+
        ];

        impl Config {
            /// Every variable at its default: what an empty environment gives.
            pub const DEFAULT: Config = Config { $( $field: config_table!(@default $kind $ty, $default), )+ };

            /// Reads through `lookup`, so tests need not touch the process environment.
            pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
                Ok(Config {
                    $( $field: match lookup($name) {
                        None => Config::DEFAULT.$field,
                        Some(raw) => config_table!(@parse $kind $ty, &raw $(, $min, $max)?)
                            .ok_or_else(|| ConfigError {
                                name: $name,
                                value: raw,
                                accepts: config_table!(@accepts $kind $($min, $max)?),
                            })?,
                    }, )+
                })
            }

            /// The effective configuration as a JSON object, for the `starting` log line: each variable under its
            /// lower-case name, durations in milliseconds.
            pub fn to_json(&self) -> String {
                let fields = [$( format!("\"{}\":{}", $name.to_ascii_lowercase(), JsonValue::json(&self.$field)) ),+];
                format!("{{{}}}", fields.join(","))
            }
        }
    };
    (@default_text path $default:tt) => { "none" };
    (@default_text $kind:ident $default:tt) => { stringify!($default) };
    (@accepts switch) => { "`on` or `off`" };
    (@accepts path) => { "a file path" };
    (@accepts $kind:ident $min:literal, $max:literal) => { concat!(stringify!($min), "..=", stringify!($max)) };
    (@default switch $ty:ty, on) => { true };
    (@default switch $ty:ty, off) => { false };
    (@default int $ty:ty, $default:literal) => { $default };
    (@default ms $ty:ty, $default:literal) => { Duration::from_millis($default) };
    (@default path $ty:ty, $default:tt) => { "" };
    // Read once at start-up and kept for the life of the process; `Config::DEFAULT` needs a type without Drop.
    (@parse path $ty:ty, $raw:expr) => { Some(&*$raw.clone().leak()) };
    (@parse switch $ty:ty, $raw:expr) => {
        match $raw.as_str() {
            "on" => Some(true),
            "off" => Some(false),
            _ => None,
        }
    };
    (@parse int $ty:ty, $raw:expr, $min:literal, $max:literal) => {
        parse_decimal($raw).filter(|n| ($min..=$max).contains(n)).and_then(|n| <$ty>::try_from(n).ok())
    };
    (@parse ms $ty:ty, $raw:expr, $min:literal, $max:literal) => {
        parse_decimal($raw).filter(|n| ($min..=$max).contains(n)).map(Duration::from_millis)
    };
}

config_table! {
    port: u16 = "PORT", int 8080 in 0..=65535, "TCP port on 0.0.0.0 (0 = any free port)";
    work_delay: Duration = "WORK_DELAY_MS", ms 2000 in 0..=60000, "how long /work sleeps";
    shutdown_delay: Duration = "SHUTDOWN_DELAY_MS", ms 5000 in 0..=60000,
        "serving time after SIGTERM, unready, before the listener closes";
    drain_timeout: Duration = "DRAIN_TIMEOUT_MS", ms 8000 in 0..=300000,
        "wait for in-flight requests after the listener closes";
    drills: bool = "DRILLS", switch on, "serve /fail/*, /recover/* and /panic";
    /// Kubernetes mounts the drill Secret here; unset, a binary started by hand keeps open drills.
    drill_token_file: &'static str = "DRILL_TOKEN_FILE", path none,
        "drills need Authorization: Bearer <this file's content>; a missing or empty file turns them off";
    /// One event-loop thread: it only parses, routes and writes (all slow work runs in the bulkhead). The
    /// threads share one readiness set, so any of them serves any ready connection; but more threads than the CPU
    /// the pod gets only add queueing (docs/performance.md measures it), so the default stays 1. Scale out with
    /// replicas; raise WORKERS on dedicated cores.
    workers: usize = "WORKERS", int 1 in 1..=64, "event-loop threads that parse and answer requests";
    work_max_concurrent: usize = "WORK_MAX_CONCURRENT", int 512 in 1..=4096,
        "/work bulkhead: concurrent /work requests before 503";
    /// Two seconds of CPU: under the 500m limit, the last admitted request waits at most 4 s for its turn.
    work_cpu_backlog: Duration = "WORK_CPU_BACKLOG_MS", ms 2000 in 1000..=600000,
        "/work CPU time admitted and not yet burned before 503 (at least one cpu_ms=1000 request)";
    max_connections: usize = "MAX_CONNECTIONS", int 4096 in 1..=1000000,
        "open connections before new ones get 503 and close";
    max_requests_per_connection: u64 = "MAX_REQUESTS_PER_CONNECTION", int 10000 in 1..=100000000,
        "requests on one connection before it is closed";
    /// RFC 9112 §3 asks for at least 8,000 octets; we take twice that before answering 414.
    max_request_line_bytes: usize = "MAX_REQUEST_LINE_BYTES", int 16384 in 8000..=1048576,
        "request line longer than this gets 414";
    max_header_bytes: usize = "MAX_HEADER_BYTES", int 32768 in 1024..=1048576,
        "header section larger than this gets 431";
    max_header_fields: usize = "MAX_HEADER_FIELDS", int 100 in 1..=10000, "more header fields than this gets 431";
    max_body_bytes: u64 = "MAX_BODY_BYTES", int 1048576 in 0..=1073741824, "request body larger than this gets 413";
    header_timeout: Duration = "HEADER_TIMEOUT_MS", ms 10000 in 100..=30000,
        "a request head must arrive within this, else 408";
    body_timeout: Duration = "BODY_TIMEOUT_MS", ms 30000 in 100..=300000,
        "a request body must arrive within this, else 408";
    /// Longer than Traefik's 90 s backend idle timeout, so the proxy, not us, closes idle connections.
    idle_timeout: Duration = "IDLE_TIMEOUT_MS", ms 120000 in 1000..=3600000,
        "keep-alive connection idle time before we close it";
    write_timeout: Duration = "WRITE_TIMEOUT_MS", ms 10000 in 100..=300000,
        "a response must be taken by the client within this";
    /// std's `TcpListener::bind` uses 128; a burst of connects must not overflow the accept queue.
    listen_backlog: u32 = "LISTEN_BACKLOG", int 1024 in 1..=65535,
        "kernel accept queue length (capped by net.core.somaxconn)";
}

/// How one configuration value appears in the `starting` log line.
trait JsonValue {
    fn json(&self) -> String;
}

impl JsonValue for &str {
    fn json(&self) -> String {
        let mut out = vec![b'"'];
        crate::log::escape_into(&mut out, self.as_bytes());
        out.push(b'"');
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl JsonValue for Duration {
    fn json(&self) -> String {
        self.as_millis().to_string()
    }
}

macro_rules! json_display {
    ($($ty:ty),+) => { $( impl JsonValue for $ty { fn json(&self) -> String { self.to_string() } } )+ };
}
json_display!(u16, u32, u64, usize, bool);

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

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
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
        ": an HTTP/1.1 reference workload\n\n",
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
        assert_eq!(c, Config::DEFAULT);
    }

    #[test]
    fn every_variable_rejects_just_outside_its_range() {
        for v in VARS {
            let Some((min, max)) = v.accepts.split_once("..=") else {
                let path = v.accepts == "a file path";
                assert_eq!(with(&[(v.name, "maybe")]).is_err(), !path, "{}", v.name);
                continue;
            };
            let (min, max): (u64, u64) = (min.parse().unwrap(), max.parse().unwrap());
            for ok in [min, max] {
                assert!(with(&[(v.name, &ok.to_string())]).is_ok(), "{} {ok}", v.name);
            }
            let mut bad = vec![(max + 1).to_string()];
            if min > 0 {
                bad.push((min - 1).to_string());
            }
            for b in bad {
                let err = with(&[(v.name, &b)]).unwrap_err();
                assert_eq!((err.name, err.accepts), (v.name, v.accepts), "{b}");
            }
        }
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
