//! Prometheus metrics: lock-free recording on the request path, and the text exposition format 0.0.4.
//!
//! Every label set is drawn from the fixed tables in [`crate::labels`] (method, route template, status code,
//! reason), so no input can add a series. Counters are plain atomic arrays indexed by those enums; rendering
//! walks them once. Everything else a scrape shows arrives as a [`Scrape`] the caller gathers, so this module
//! reads no other module's state.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::bulkhead::{Refused, WorkStats};
use crate::cgroup::CpuStat;
pub use crate::labels::LimitReason;
use crate::labels::{Method, Route, STATUSES, code_index};
use crate::process::ProcessStats;

/// The exact Content-Type Prometheus 3 expects for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Fixed histogram boundaries in seconds; they bracket the SLO thresholds (0.1 … 2.5). One more, just above
/// the configured /work delay, is added at start-up so /work latency is resolved where it actually lands.
pub const BASE_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const MAX_BUCKETS: usize = BASE_BUCKETS.len() + 1;

#[derive(Default)]
struct Histogram {
    /// Non-cumulative counts; the last slot is the +Inf overflow. Cumulated at render time.
    buckets: [AtomicU64; MAX_BUCKETS + 1],
    sum_nanos: AtomicU64,
}

pub struct Metrics {
    requests: Vec<AtomicU64>,
    durations: Vec<Histogram>,
    bounds: Vec<f64>,
    bounds_nanos: Vec<u64>,
    pub in_flight: AtomicI64,
    pub work_rejections: AtomicU64,
    limit_rejections: [AtomicU64; LimitReason::ALL.len()],
    parse_reasons: Vec<&'static str>,
    parse_errors: Vec<AtomicU64>,
    pub connections_open: AtomicI64,
    pub connections_accepted: AtomicU64,
    pub panics: AtomicU64,
    /// Audit records queued, by drill route; and drill requests refused because their record could not be.
    audit_events: [AtomicU64; Route::ALL.len()],
    audit_refused: AtomicU64,
    pub drill_denied: AtomicU64,
    pub accept_errors: AtomicU64,
    pub drain_abandoned: AtomicU64,
    build_labels: String,
    last_render_len: AtomicUsize,
}

const METHODS: usize = Method::ALL.len();
const ROUTES: usize = Route::ALL.len();

fn histogram_index(method: Method, route: Route) -> usize {
    method as usize * ROUTES + route as usize
}

fn counter_index(method: Method, route: Route, code_index: usize) -> usize {
    histogram_index(method, route) * STATUSES.len() + code_index
}

/// What a scrape shows besides the counters kept here, read by the caller at scrape time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scrape {
    pub ready: bool,
    pub shutting_down: bool,
    /// The `/fail/work` drill ratio.
    pub work_error_ratio: f64,
    pub log: crate::log::Stats,
    /// `None` when /proc could not be read: those `process_*` families are left out rather than faked.
    pub process: Option<ProcessStats>,
    pub start_time_seconds: Option<f64>,
    pub work: WorkStats,
    /// The process's CPU cgroup counters; `None` off Linux, outside a CPU cgroup, or unreadable: left out.
    pub cpu_cfs: Option<CpuStat>,
}

impl Metrics {
    /// `parse_reasons` is the fixed `reason` set of `sremini_parse_errors_total`, every one shown from the start.
    pub fn new(work_delay: Duration, parse_reasons: &[&'static str]) -> Metrics {
        let mut bounds = BASE_BUCKETS.to_vec();
        // "Just above" the delay: 5% or 50 ms over it, whichever is more, rounded to a millisecond.
        let delay = work_delay.as_secs_f64();
        let above = ((delay + (delay * 0.05).max(0.05)) * 1000.0).round() / 1000.0;
        if !bounds.iter().any(|b| (b - above).abs() < 1e-9) {
            bounds.push(above);
            bounds.sort_by(f64::total_cmp);
        }
        let bounds_nanos = bounds.iter().map(|b| (b * 1e9).round() as u64).collect();
        let mut parse_reasons = parse_reasons.to_vec();
        parse_reasons.sort_unstable();
        parse_reasons.dedup();
        let build_labels = format!(
            "version=\"{}\",revision=\"{}\",rustc=\"{}\"",
            escape_label(env!("CARGO_PKG_VERSION")),
            escape_label(env!("SRE_MINI_REVISION")),
            escape_label(env!("SRE_MINI_RUSTC"))
        );
        Metrics {
            requests: (0..METHODS * ROUTES * STATUSES.len()).map(|_| AtomicU64::new(0)).collect(),
            durations: (0..METHODS * ROUTES).map(|_| Histogram::default()).collect(),
            bounds,
            bounds_nanos,
            in_flight: AtomicI64::new(0),
            work_rejections: AtomicU64::new(0),
            drain_abandoned: AtomicU64::new(0),
            limit_rejections: std::array::from_fn(|_| AtomicU64::new(0)),
            parse_errors: parse_reasons.iter().map(|_| AtomicU64::new(0)).collect(),
            parse_reasons,
            connections_open: AtomicI64::new(0),
            connections_accepted: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            audit_events: std::array::from_fn(|_| AtomicU64::new(0)),
            audit_refused: AtomicU64::new(0),
            drill_denied: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            build_labels,
            last_render_len: AtomicUsize::new(0),
        }
    }

    /// Counts one response and its duration. Called for every response, early rejections included.
    pub fn observe(&self, method: Method, route: Route, status: u16, elapsed: Duration) {
        let Some(code_index) = code_index(status) else {
            return crate::log::event("error", "status outside the code label set: not counted", |l| {
                l.uint("status", u64::from(status));
            });
        };
        self.requests[counter_index(method, route, code_index)].fetch_add(1, Ordering::Relaxed);
        let h = &self.durations[histogram_index(method, route)];
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let slot = self.bounds_nanos.iter().position(|&b| nanos <= b).unwrap_or(self.bounds_nanos.len());
        h.buckets[slot].fetch_add(1, Ordering::Relaxed);
        h.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// A full bulkhead has its own counter; a full CPU backlog is a limit.
    pub fn work_refused(&self, why: Refused) {
        match why {
            Refused::Full => self.work_rejections.fetch_add(1, Ordering::Relaxed),
            Refused::CpuBacklog => {
                self.limit_rejections[LimitReason::WorkCpuBacklog as usize].fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    /// One drill request's audit record: queued, or not (and the drill then changed nothing).
    pub fn audit(&self, route: Route, queued: bool) {
        let counter = if queued { &self.audit_events[route as usize] } else { &self.audit_refused };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn limit_rejected(&self, reason: LimitReason) {
        self.limit_rejections[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn parse_error(&self, reason: &str) {
        match self.parse_reasons.iter().position(|r| *r == reason) {
            Some(i) => _ = self.parse_errors[i].fetch_add(1, Ordering::Relaxed),
            None => crate::log::event("error", "parse error reason outside the label set: not counted", |l| {
                l.str("reason", reason);
            }),
        }
    }

    /// Renders every family in the text exposition format 0.0.4.
    pub fn render(&self, scrape: &Scrape, out: &mut String) {
        // Size the buffer from the last scrape instead of growing it step by step: a populated one is large.
        out.reserve(self.last_render_len.load(Ordering::Relaxed).max(16 * 1024));
        family(out, "http_requests_total", C, "HTTP responses sent, by method, route template and status code.");
        for method in Method::ALL {
            for route in Route::ALL {
                for (c, (code, _)) in STATUSES.iter().enumerate() {
                    let v = self.requests[counter_index(method, route, c)].load(Ordering::Relaxed);
                    // The series the SLO rules read exist from the first scrape, at 0.
                    let slo_series = route == Route::Work
                        && matches!(method, Method::Get | Method::Head)
                        && matches!(code, 200 | 500 | 503);
                    if v > 0 || slo_series {
                        let (m, r) = (method.label(), route.label());
                        let _ =
                            writeln!(out, "http_requests_total{{method=\"{m}\",route=\"{r}\",code=\"{code}\"}} {v}");
                    }
                }
            }
        }
        let help = "Time from the first byte of a request to its response being queued, by method and route template.";
        family(out, "http_request_duration_seconds", "histogram", help);
        for method in Method::ALL {
            for route in Route::ALL {
                let h = &self.durations[histogram_index(method, route)];
                let counts: Vec<u64> =
                    h.buckets[..=self.bounds.len()].iter().map(|b| b.load(Ordering::Relaxed)).collect();
                let total: u64 = counts.iter().sum();
                if total == 0 && !(route == Route::Work && method == Method::Get) {
                    continue;
                }
                let labels = format!("method=\"{}\",route=\"{}\"", method.label(), route.label());
                let mut cumulative = 0;
                for (bound, count) in self.bounds.iter().zip(&counts) {
                    cumulative += count;
                    let le = format_le(*bound);
                    let _ = writeln!(out, "http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}");
                }
                // Derived from the same snapshot, so +Inf always equals _count.
                let sum = format_value(h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9);
                let _ = writeln!(out, "http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {total}");
                let _ = writeln!(out, "http_request_duration_seconds_sum{{{labels}}} {sum}");
                let _ = writeln!(out, "http_request_duration_seconds_count{{{labels}}} {total}");
            }
        }
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        let b = |v: bool| if v { 1.0 } else { 0.0 };
        let in_flight = self.in_flight.load(Ordering::Relaxed) as f64;
        one(out, "http_requests_in_flight", G, "Requests received and not yet answered.", in_flight);
        one(out, "sremini_ready", G, "1 when /readyz answers 200.", b(scrape.ready));
        one(out, "sremini_shutting_down", G, "1 from the first SIGTERM or SIGINT on.", b(scrape.shutting_down));
        let help = "Fraction of /work requests the /fail/work drill turns into 500.";
        one(out, "sremini_work_error_ratio", G, help, scrape.work_error_ratio);
        let help = "/work requests refused with 503 because the bulkhead was full.";
        one(out, "sremini_work_rejections_total", C, help, n(&self.work_rejections));
        let help = "Connections or requests refused by a configured limit, by reason.";
        let samples = LimitReason::ALL.iter().map(|r| ("reason", r.label(), n(&self.limit_rejections[*r as usize])));
        labelled(out, "sremini_limit_rejections_total", help, samples);
        let open = self.connections_open.load(Ordering::Relaxed) as f64;
        one(out, "sremini_connections_open", G, "Client connections currently open.", open);
        let help = "Client connections accepted, refused ones included.";
        one(out, "sremini_connections_accepted_total", C, help, n(&self.connections_accepted));
        let samples = self.parse_reasons.iter().zip(&self.parse_errors).map(|(r, v)| ("reason", *r, n(v)));
        labelled(out, "sremini_parse_errors_total", "Requests rejected as malformed, by reason.", samples);
        one(out, "sremini_panics_total", C, "Handler panics caught and answered with 500.", n(&self.panics));
        let help = "Log lines dropped because stdout could not keep up or a write to it failed.";
        one(out, "sremini_log_lines_dropped_total", C, help, scrape.log.dropped_lines as f64);
        let errors = scrape.log.write_errors as f64;
        one(out, "sremini_log_write_errors_total", C, "Writes to stdout that failed.", errors);
        let help = "Audit records of state-changing (drill) requests, by action.";
        let samples =
            Route::ALL.iter().filter_map(|r| Some(("action", r.action()?, n(&self.audit_events[*r as usize]))));
        labelled(out, "sremini_audit_events_total", help, samples);
        let help = "Drill requests answered 503 and not carried out because their audit record could not be queued.";
        one(out, "sremini_audit_refused_total", C, help, n(&self.audit_refused));
        let help = "Drill requests answered 401: no bearer token, or not the one in DRILL_TOKEN_FILE.";
        one(out, "sremini_drill_unauthorized_total", C, help, n(&self.drill_denied));
        let help = "Failed accepts (out of descriptors or buffers), each followed by a pause before accepting again.";
        one(out, "sremini_accept_errors_total", C, help, n(&self.accept_errors));
        family(out, "sremini_build_info", G, "Build metadata; the value is always 1.");
        let _ = writeln!(out, "sremini_build_info{{{}}} 1", self.build_labels);
        if let Some(p) = scrape.process {
            one(out, "process_cpu_seconds_total", C, "Total user and system CPU time spent in seconds.", p.cpu_seconds);
            let rss = p.resident_bytes as f64;
            one(out, "process_resident_memory_bytes", G, "Resident memory size in bytes.", rss);
            one(out, "process_virtual_memory_bytes", G, "Virtual memory size in bytes.", p.virtual_bytes as f64);
            if let Some(fds) = p.open_fds {
                one(out, "process_open_fds", G, "Number of open file descriptors.", fds as f64);
            }
            if let Some(max) = p.max_fds {
                one(out, "process_max_fds", G, "Maximum number of open file descriptors.", max as f64);
            }
            one(out, "process_threads", G, "Number of OS threads in the process.", p.threads as f64);
        }
        if let Some(start) = scrape.start_time_seconds {
            one(out, "process_start_time_seconds", G, "Start time of the process since unix epoch in seconds.", start);
        }
        let w = &scrape.work;
        one(out, "sremini_work_active", G, "/work requests admitted and not yet answered.", w.active as f64);
        let help = "/work bulkhead size (WORK_MAX_CONCURRENT).";
        one(out, "sremini_work_max_concurrent", G, help, w.max_concurrent as f64);
        let help = "/work requests that may burn CPU at once: usable CPUs, cgroup quota rounded up.";
        one(out, "sremini_work_cpu_slots", G, help, w.cpu_slots as f64);
        let help = "CPU time admitted to /work and not yet burned.";
        one(out, "sremini_work_cpu_backlog_seconds", G, help, w.cpu_backlog.as_secs_f64());
        one(out, "sremini_work_threads", G, "/work pool threads alive.", w.threads as f64);
        let help = "/work pool threads started; flat while bursts reuse them.";
        one(out, "sremini_work_threads_started_total", C, help, w.threads_started as f64);
        let help = "Requests still unanswered when the drain timeout ran out.";
        one(out, "sremini_drain_abandoned_total", C, help, n(&self.drain_abandoned));
        if let Some(cpu) = scrape.cpu_cfs {
            let help = "CFS enforcement periods of the process's CPU cgroup (0 without a CPU limit).";
            one(out, "sremini_cpu_cfs_periods_total", C, help, cpu.periods as f64);
            let help = "CFS periods in which the process's CPU cgroup was throttled.";
            one(out, "sremini_cpu_cfs_throttled_periods_total", C, help, cpu.throttled_periods as f64);
            let help = "Time the process's CPU cgroup spent throttled.";
            one(out, "sremini_cpu_cfs_throttled_seconds_total", C, help, cpu.throttled.as_secs_f64());
        }
        self.last_render_len.store(out.len() + out.len() / 8, Ordering::Relaxed);
    }
}

const C: &str = "counter";
const G: &str = "gauge";

/// A family of one sample without labels.
fn one(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {}", format_value(value));
}

/// A counter family with one label, one sample per value.
fn labelled<'a>(out: &mut String, name: &str, help: &str, samples: impl Iterator<Item = (&'a str, &'a str, f64)>) {
    family(out, name, C, help);
    for (label, value, v) in samples {
        let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {}", format_value(v));
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// HELP text escaping: backslash and line feed (exposition format, "Comments, help text, and type information").
pub fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Label value escaping: backslash, double quote and line feed.
pub fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Sample values as Go's ParseFloat reads them: `+Inf`, `-Inf`, `NaN`, else the shortest round-trip decimal.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".to_string() } else { "-Inf".to_string() }
    } else {
        format!("{v}")
    }
}

/// `le` values always carry a decimal point (`1.0`, not `1`), matching Prometheus 3's normalised form.
pub fn format_le(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 { format!("{v:.1}") } else { format_value(v) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(escape_help("a\\b\nc\"d"), "a\\\\b\\nc\"d");
        assert_eq!(escape_label("a\\b\nc\"d"), "a\\\\b\\nc\\\"d");
    }

    #[test]
    fn number_formatting() {
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(1e-9), "0.000000001");
        assert_eq!(format_le(1.0), "1.0");
        assert_eq!(format_le(10.0), "10.0");
        assert_eq!(format_le(0.005), "0.005");
        assert_eq!(format_le(2.1), "2.1");
    }

    #[test]
    fn bucket_just_above_the_work_delay() {
        assert!(Metrics::new(Duration::from_millis(2000), REASONS).bounds.contains(&2.1));
        assert!(Metrics::new(Duration::from_millis(50), REASONS).bounds.contains(&0.1));
        let b = Metrics::new(Duration::from_millis(300), REASONS).bounds;
        assert!(b.contains(&0.35) && b.windows(2).all(|w| w[0] < w[1]));
        for slo in [0.1, 0.25, 0.5, 1.0, 2.5] {
            assert!(b.contains(&slo));
        }
    }

    const REASONS: &[&str] = &["missing_host", "bad_target", "missing_host"];

    fn render(m: &Metrics) -> String {
        let process = ProcessStats {
            cpu_seconds: 0.25,
            resident_bytes: 1 << 20,
            virtual_bytes: 1 << 24,
            threads: 3,
            open_fds: Some(9),
            max_fds: Some(1024),
        };
        let scrape = Scrape {
            ready: true,
            shutting_down: false,
            work_error_ratio: 0.5,
            log: crate::log::Stats { dropped_lines: 7, write_errors: 0 },
            process: Some(process),
            start_time_seconds: Some(1.7e9),
            work: WorkStats::default(),
            cpu_cfs: None,
        };
        let mut s = String::new();
        m.render(&scrape, &mut s);
        s
    }

    #[test]
    fn histogram_is_cumulative_and_inf_equals_count() {
        let m = Metrics::new(Duration::from_millis(2000), REASONS);
        for ms in [1, 7, 7, 300, 2050, 2050, 2050, 60_000] {
            m.observe(Method::Get, Route::Work, 200, Duration::from_millis(ms));
        }
        let text = render(&m);
        let line = |le: &str| -> u64 {
            let prefix = format!("http_request_duration_seconds_bucket{{method=\"GET\",route=\"/work\",le=\"{le}\"}} ");
            text.lines().find_map(|l| l.strip_prefix(prefix.as_str())).unwrap().parse().unwrap()
        };
        assert_eq!(line("0.005"), 1);
        assert_eq!(line("0.01"), 3);
        assert_eq!(line("0.5"), 4);
        assert_eq!(line("2.1"), 7);
        assert_eq!(line("10.0"), 7);
        assert_eq!(line("+Inf"), 8);
        assert!(text.contains("http_request_duration_seconds_count{method=\"GET\",route=\"/work\"} 8\n"));
        assert!(text.contains("http_request_duration_seconds_sum{method=\"GET\",route=\"/work\"} 66.465\n"));
    }

    #[test]
    fn families_are_contiguous_with_help_and_type() {
        let m = Metrics::new(Duration::from_millis(2000), REASONS);
        m.observe(Method::Other, Route::Unmatched, 404, Duration::from_millis(1));
        m.observe(Method::Get, Route::Healthz, 200, Duration::from_millis(1));
        m.parse_error("bad_target");
        m.parse_error("not_a_reason");
        let text = render(&m);
        assert!(text.ends_with('\n'));
        let mut seen: Vec<String> = Vec::new();
        let mut current = String::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(!seen.contains(&name), "family {name} appears twice");
                seen.push(name.clone());
                current = name;
                continue;
            }
            if l.starts_with("# TYPE ") {
                assert!(l.starts_with(&format!("# TYPE {current} ")));
                continue;
            }
            let name = l.split(['{', ' ']).next().unwrap();
            let base = ["_bucket", "_sum", "_count"].iter().fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
            assert!(name == current || base == current, "{l} outside its family {current}");
        }
        assert!(
            text.contains("http_requests_total{method=\"GET\",route=\"/work\",code=\"500\"} 0\n"),
            "SLO series pre-initialised"
        );
        assert!(text.contains("http_requests_total{method=\"OTHER\",route=\"unmatched\",code=\"404\"} 1\n"));
        assert!(text.contains("sremini_build_info{version=\""));
        let parse_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("sremini_parse_errors_total{")).collect();
        assert_eq!(
            parse_lines,
            [
                "sremini_parse_errors_total{reason=\"bad_target\"} 1",
                "sremini_parse_errors_total{reason=\"missing_host\"} 0"
            ]
        );
        for line in [
            "sremini_ready 1",
            "sremini_work_error_ratio 0.5",
            "sremini_log_lines_dropped_total 7",
            "process_threads 3",
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line}");
        }
    }

    #[test]
    fn counting_is_exact() {
        let m = Metrics::new(Duration::from_millis(2000), REASONS);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        m.observe(Method::Get, Route::Healthz, 200, Duration::from_micros(50));
                    }
                });
            }
        });
        let i = counter_index(Method::Get, Route::Healthz, code_index(200).unwrap());
        assert_eq!(m.requests[i].load(Ordering::Relaxed), 40_000);
    }
}
