//! /metrics against the built binary: exact counting of every kind of response (early rejections included),
//! bounded label sets under hostile input, the text exposition format 0.0.4, and plausible process metrics.
//!
//! Every server here runs on PORT=0 on loopback; every wait is bounded.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Reader, Response, Server};

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const METHODS: [&str; 10] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER"];
const ROUTES: [&str; 10] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/work",
    "/fail/ready",
    "/recover/ready",
    "/fail/work",
    "/recover/work",
    "/panic",
    "unmatched",
];
const LIMIT_REASONS: [&str; 9] = [
    "connection_cap",
    "request_line_too_long",
    "header_too_large",
    "too_many_fields",
    "body_too_large",
    "header_timeout",
    "body_timeout",
    "write_timeout",
    "work_cpu_backlog",
];
/// The contract's families and their types (docs/metrics.md lists their meaning).
const FAMILIES: [(&str, &str); 36] = [
    ("http_requests_total", "counter"),
    ("http_request_duration_seconds", "histogram"),
    ("http_requests_in_flight", "gauge"),
    ("sremini_ready", "gauge"),
    ("sremini_shutting_down", "gauge"),
    ("sremini_work_error_ratio", "gauge"),
    ("sremini_work_rejections_total", "counter"),
    ("sremini_limit_rejections_total", "counter"),
    ("sremini_connections_open", "gauge"),
    ("sremini_connections_accepted_total", "counter"),
    ("sremini_parse_errors_total", "counter"),
    ("sremini_panics_total", "counter"),
    ("sremini_log_lines_dropped_total", "counter"),
    ("sremini_log_write_errors_total", "counter"),
    ("sremini_audit_events_total", "counter"),
    ("sremini_audit_refused_total", "counter"),
    ("sremini_drill_unauthorized_total", "counter"),
    ("sremini_accept_errors_total", "counter"),
    ("sremini_build_info", "gauge"),
    ("process_cpu_seconds_total", "counter"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_virtual_memory_bytes", "gauge"),
    ("process_open_fds", "gauge"),
    ("process_max_fds", "gauge"),
    ("process_start_time_seconds", "gauge"),
    ("process_threads", "gauge"),
    ("sremini_work_active", "gauge"),
    ("sremini_work_max_concurrent", "gauge"),
    ("sremini_work_cpu_slots", "gauge"),
    ("sremini_work_cpu_backlog_seconds", "gauge"),
    ("sremini_work_threads", "gauge"),
    ("sremini_work_threads_started_total", "counter"),
    ("sremini_drain_abandoned_total", "counter"),
    ("sremini_cpu_cfs_periods_total", "counter"),
    ("sremini_cpu_cfs_throttled_periods_total", "counter"),
    ("sremini_cpu_cfs_throttled_seconds_total", "counter"),
];

// ---------------------------------------------------------------------------------------------------------------
// A strict reader of the text exposition format 0.0.4: it panics on anything Prometheus would reject or that the
// metrics contract in docs/metrics.md forbids (missing HELP/TYPE, split families, unescaped label values, blank lines, no final newline).

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
    raw_value: String,
}

impl Sample {
    fn label(&self, k: &str) -> Option<&str> {
        self.labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
struct Family {
    name: String,
    kind: String,
    samples: Vec<Sample>,
}

#[derive(Debug)]
struct Exposition {
    families: Vec<Family>,
    /// Series text (name and labels exactly as sent) -> value.
    series: BTreeMap<String, f64>,
}

impl Exposition {
    fn family(&self, name: &str) -> &Family {
        self.families.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("family {name} missing"))
    }

    fn value(&self, series: &str) -> f64 {
        *self.series.get(series).unwrap_or(&0.0)
    }

    fn get(&self, series: &str) -> f64 {
        *self.series.get(series).unwrap_or_else(|| panic!("series {series} missing"))
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && !s.starts_with("__")
}

/// Splits one sample line into (name, labels, value text), unescaping label values.
fn parse_sample_line(line: &str) -> (String, Vec<(String, String)>, String) {
    let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value on {line:?}"));
    let name = &line[..name_end];
    assert!(is_metric_name(name), "bad metric name in {line:?}");
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let consumed = loop {
            // label name
            let start = chars.peek().map(|&(i, _)| i).unwrap_or_else(|| panic!("unterminated labels in {line:?}"));
            if after[start..].starts_with('}') {
                break start + 1;
            }
            let eq = after[start..].find('=').unwrap_or_else(|| panic!("label without = in {line:?}")) + start;
            let lname = &after[start..eq];
            assert!(is_label_name(lname), "bad label name {lname:?} in {line:?}");
            assert!(after[eq + 1..].starts_with('"'), "label value not quoted in {line:?}");
            while chars.peek().is_some_and(|&(i, _)| i <= eq + 1) {
                chars.next();
            }
            let mut value = String::new();
            loop {
                let (_, c) = chars.next().unwrap_or_else(|| panic!("unterminated label value in {line:?}"));
                match c {
                    '"' => break,
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => panic!("bad escape \\{other:?} in {line:?}"),
                    },
                    '\n' => panic!("raw newline in label value"),
                    c => value.push(c),
                }
            }
            assert!(!labels.iter().any(|(n, _): &(String, String)| n == lname), "label {lname} twice in {line:?}");
            labels.push((lname.to_string(), value));
            match chars.next() {
                Some((_, ',')) => continue,
                Some((i, '}')) => break i + 1,
                other => panic!("expected , or }} after a label in {line:?}, got {other:?}"),
            }
        };
        rest = &after[consumed..];
    }
    let value = rest.strip_prefix(' ').unwrap_or_else(|| panic!("no single space before the value in {line:?}"));
    assert!(!value.contains(' '), "timestamps or extra fields are not expected: {line:?}");
    (name.to_string(), labels, value.to_string())
}

fn parse_go_float(v: &str) -> f64 {
    match v {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => {
            assert!(
                v.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)),
                "value {v:?} is not a plain decimal"
            );
            v.parse().unwrap_or_else(|_| panic!("value {v:?} does not parse"))
        }
    }
}

fn parse_exposition(text: &str) -> Exposition {
    assert!(text.ends_with('\n'), "exposition must end with a newline");
    let mut families: Vec<Family> = Vec::new();
    let mut series = BTreeMap::new();
    let mut pending_help: Option<String> = None;
    for line in text.lines() {
        assert!(!line.is_empty(), "blank line in exposition");
        assert!(!line.contains('\r'), "CR in exposition");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or_else(|| panic!("HELP without text: {line:?}"));
            assert!(is_metric_name(name));
            assert!(!help.trim().is_empty(), "empty HELP for {name}");
            // Only \\ and \n escapes are legal in HELP.
            let mut it = help.chars();
            while let Some(c) = it.next() {
                if c == '\\' {
                    assert!(matches!(it.next(), Some('\\' | 'n')), "bad escape in HELP {line:?}");
                }
            }
            assert!(pending_help.is_none(), "HELP without TYPE before {line:?}");
            assert!(!families.iter().any(|f| f.name == name), "family {name} appears twice (not contiguous)");
            pending_help = Some(name.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert_eq!(pending_help.take().as_deref(), Some(name), "TYPE {name} not right after its HELP");
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "type {kind}");
            families.push(Family { name: name.to_string(), kind: kind.to_string(), samples: Vec::new() });
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line:?}");
        assert!(pending_help.is_none(), "sample before TYPE: {line:?}");
        let (name, labels, raw_value) = parse_sample_line(line);
        let fam = families.last_mut().unwrap_or_else(|| panic!("sample before any family: {line:?}"));
        let belongs = if fam.kind == "histogram" {
            ["_bucket", "_sum", "_count"].iter().any(|s| name.strip_suffix(s) == Some(fam.name.as_str()))
        } else {
            name == fam.name
        };
        assert!(belongs, "{line:?} is outside its family {} (families must be contiguous)", fam.name);
        let key = line[..line.len() - raw_value.len() - 1].to_string();
        let value = parse_go_float(&raw_value);
        assert!(series.insert(key, value).is_none(), "duplicate series {line:?}");
        fam.samples.push(Sample { name, labels, value, raw_value });
    }
    assert!(pending_help.is_none(), "trailing HELP without TYPE");
    for f in &families {
        assert!(!f.samples.is_empty(), "family {} has no samples", f.name);
        if f.kind == "counter" {
            assert!(f.name.ends_with("_total"), "counter {} must end in _total", f.name);
            for s in &f.samples {
                assert!(s.value >= 0.0 && s.value.is_finite(), "counter {} = {}", s.name, s.raw_value);
            }
        }
    }
    Exposition { families, series }
}

/// Checks every histogram: buckets per series cumulative, in increasing `le` order, `le` with a decimal point,
/// `+Inf` last and equal to `_count`, `_sum` present. Returns the `le` list of each series.
fn check_histograms(e: &Exposition) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for f in e.families.iter().filter(|f| f.kind == "histogram") {
        let mut groups: BTreeMap<String, Vec<&Sample>> = BTreeMap::new();
        for s in &f.samples {
            let key: Vec<String> =
                s.labels.iter().filter(|(k, _)| k != "le").map(|(k, v)| format!("{k}={v:?}")).collect();
            groups.entry(key.join(",")).or_default().push(s);
        }
        for (labels, samples) in groups {
            let buckets: Vec<&&Sample> = samples.iter().filter(|s| s.name.ends_with("_bucket")).collect();
            assert!(buckets.len() >= 2, "{} {{{labels}}} has too few buckets", f.name);
            let mut prev_le = f64::NEG_INFINITY;
            let mut prev_count = 0.0;
            let mut les = Vec::new();
            for b in &buckets {
                let le = b.label("le").unwrap_or_else(|| panic!("bucket without le: {b:?}"));
                assert!(le == "+Inf" || le.contains('.'), "le={le:?} has no decimal point");
                let v = parse_go_float(le);
                assert!(v > prev_le, "buckets out of order at le={le} for {labels}");
                assert!(b.value >= prev_count, "buckets not cumulative at le={le} for {labels}");
                assert_eq!(b.value.fract(), 0.0);
                prev_le = v;
                prev_count = b.value;
                les.push(le.to_string());
            }
            assert_eq!(les.last().map(String::as_str), Some("+Inf"), "last bucket must be +Inf for {labels}");
            let count = samples.iter().find(|s| s.name.ends_with("_count")).expect("_count").value;
            let sum = samples.iter().find(|s| s.name.ends_with("_sum")).expect("_sum").value;
            assert_eq!(prev_count, count, "+Inf bucket != _count for {labels}");
            assert!(sum >= 0.0 && sum.is_finite());
            assert_eq!(samples.len(), buckets.len() + 2, "extra samples in {labels}");
            out.insert(labels, les);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------------------
// Client helpers.

fn try_request(s: &Server, raw: &[u8]) -> Option<Response> {
    let mut c = Reader::connect(s.addr, common::IO_TIMEOUT).ok()?;
    c.send(raw).ok()?;
    c.final_response(raw.starts_with(b"HEAD ")).ok()
}

/// One scrape on a fresh connection (retried a few times: a server that refuses a connection at its cap, or
/// that has not yet noticed a client leave, answers 503).
fn scrape_text(s: &Server) -> String {
    for _ in 0..50 {
        if let Some(r) = try_request(s, b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n") {
            if r.status == 200 {
                assert_eq!(r.header("content-type"), Some(CONTENT_TYPE));
                return r.body_text();
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no 200 from /metrics after 50 tries");
}

fn scrape(s: &Server) -> Exposition {
    parse_exposition(&scrape_text(s))
}

fn req_series(method: &str, route: &str, code: u16) -> String {
    format!("http_requests_total{{method=\"{method}\",route=\"{route}\",code=\"{code}\"}}")
}

fn reason_series(family: &str, reason: &str) -> String {
    format!("{family}{{reason=\"{reason}\"}}")
}

/// Sends `raw` on `n` fresh connections, asserting `status` each time.
fn send_n(s: &Server, raw: &[u8], n: usize, status: u16) {
    for i in 0..n {
        let r =
            try_request(s, raw).unwrap_or_else(|| panic!("no response to {:?} (#{i})", String::from_utf8_lossy(raw)));
        assert_eq!(r.status, status, "{:?}: {}", String::from_utf8_lossy(&raw[..raw.len().min(80)]), r.body_text());
    }
}

/// Asserts that the listed series rose by exactly `n` between two scrapes.
fn assert_rose(before: &Exposition, after: &Exposition, series: &[&str], n: f64, what: &str) {
    for s in series {
        let d = after.value(s) - before.value(s);
        assert_eq!(d, n, "{what}: {s} rose by {d}, expected {n}");
    }
}

struct Case {
    what: &'static str,
    raw: Vec<u8>,
    status: u16,
    series: Vec<String>,
}

fn case(what: &'static str, raw: impl Into<Vec<u8>>, status: u16, series: &[String]) -> Case {
    Case { what, raw: raw.into(), status, series: series.to_vec() }
}

fn run_cases(s: &Server, cases: &[Case], n: usize) {
    for c in cases {
        let before = scrape(s);
        send_n(s, &c.raw, n, c.status);
        let after = scrape(s);
        let series: Vec<&str> = c.series.iter().map(String::as_str).collect();
        assert_rose(&before, &after, &series, n as f64, c.what);
        // The response count rises by exactly n in total for non-/metrics routes: nothing is counted twice.
        let total = |e: &Exposition| -> f64 {
            e.families[0]
                .samples
                .iter()
                .filter(|x| !(x.label("method") == Some("GET") && x.label("route") == Some("/metrics")))
                .map(|x| x.value)
                .sum()
        };
        assert_eq!(total(&after) - total(&before), n as f64, "{}: responses counted once each", c.what);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Tests.

#[test]
fn content_type_is_exact_and_head_has_gets_headers_and_no_body() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let mut exchange = |raw: &[u8]| {
        c.send(raw).unwrap();
        c.final_response(raw.starts_with(b"HEAD ")).expect("a response")
    };
    // Warm up so that every series a scrape adds (GET and HEAD /metrics, their histograms) exists.
    exchange(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    exchange(b"HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    let get = exchange(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(get.status, 200);
    assert_eq!(get.header("content-type"), Some(CONTENT_TYPE));
    assert_eq!(get.header("content-length").unwrap().parse::<usize>().unwrap(), get.body.len());
    let head = exchange(b"HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let names = |r: &Response| r.headers.iter().map(|(k, _)| k.to_ascii_lowercase()).collect::<Vec<_>>();
    assert_eq!(names(&head), names(&get), "HEAD must send GET's header fields");
    for (k, v) in &get.headers {
        if !["date", "x-request-id", "content-length"].contains(&k.to_ascii_lowercase().as_str()) {
            assert_eq!(head.header(k), Some(v.as_str()), "header {k}");
        }
    }
    // Content-Length on HEAD is the length GET would have sent (only a few digits moved since).
    let head_len: i64 = head.header("content-length").unwrap().parse().unwrap();
    assert!((head_len - get.body.len() as i64).abs() < 64, "HEAD Content-Length {head_len} vs {}", get.body.len());
    // No body bytes followed the HEAD answer: the next response on the connection starts cleanly.
    c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let next = c.final_response(false).unwrap();
    assert_eq!((next.status, next.body_text().as_str()), (200, "ok\n"));
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(rest.is_empty(), "bytes after the last response: {:?}", String::from_utf8_lossy(&rest));
    // HEAD /metrics is counted as HEAD.
    assert_eq!(scrape(&s).get(&req_series("HEAD", "/metrics", 200)), 2.0);
}

#[test]
fn slo_series_are_preinitialised_on_a_fresh_server() {
    let s = Server::start(&[]);
    let e = scrape(&s);
    for m in ["GET", "HEAD"] {
        for code in [200, 500, 503] {
            assert_eq!(e.get(&req_series(m, "/work", code)), 0.0, "{m} /work {code}");
        }
    }
    // Nothing but the pre-initialised series and the first scrape itself is not yet counted.
    let counted: Vec<&Sample> = e.family("http_requests_total").samples.iter().filter(|x| x.value > 0.0).collect();
    assert!(counted.is_empty(), "a fresh server counts nothing before its first answer: {counted:?}");
    // The /work latency histogram exists at 0 too, with the SLO boundaries and one just above the 2 s delay.
    let les = check_histograms(&e);
    let work = les.get("method=\"GET\",route=\"/work\"").expect("GET /work histogram pre-initialised");
    let want = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.1", "2.5", "5.0", "10.0", "+Inf"];
    assert_eq!(work, &want.map(String::from).to_vec());
    assert_eq!(e.get("http_request_duration_seconds_count{method=\"GET\",route=\"/work\"}"), 0.0);
    for r in LIMIT_REASONS {
        assert_eq!(e.get(&reason_series("sremini_limit_rejections_total", r)), 0.0);
    }
    assert_eq!(e.get("sremini_ready"), 1.0);
    assert_eq!(e.get("sremini_shutting_down"), 0.0);
    assert_eq!(e.get("sremini_work_error_ratio"), 0.0);
    assert_eq!(e.get("sremini_work_rejections_total"), 0.0);
    assert_eq!(e.get("sremini_panics_total"), 0.0);
    // Counted after the first answer.
    assert_eq!(scrape(&s).get(&req_series("GET", "/metrics", 200)), 1.0);
}

#[test]
fn families_names_types_and_labels_are_the_contracts() {
    let s = Server::start(&[]);
    s.get("/healthz");
    let e = scrape(&s);
    let got: Vec<(&str, &str)> = e.families.iter().map(|f| (f.name.as_str(), f.kind.as_str())).collect();
    let want: BTreeSet<(&str, &str)> = FAMILIES.into_iter().collect();
    assert_eq!(got.iter().copied().collect::<BTreeSet<_>>(), want, "family names and types");
    assert_eq!(got.len(), FAMILIES.len());
    let reasons: Vec<&str> =
        e.family("sremini_limit_rejections_total").samples.iter().map(|x| x.label("reason").unwrap()).collect();
    assert_eq!(reasons, LIMIT_REASONS.to_vec());
    for x in &e.family("sremini_parse_errors_total").samples {
        let r = x.label("reason").unwrap();
        assert!(
            !r.is_empty() && r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "reason {r:?}"
        );
    }
    let info = &e.family("sremini_build_info").samples;
    assert_eq!(info.len(), 1);
    let names: Vec<&str> = info[0].labels.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["version", "revision", "rustc"]);
    assert_eq!(info[0].label("version"), Some(env!("CARGO_PKG_VERSION")));
    assert!(info[0].label("rustc").unwrap().starts_with("rustc "), "{:?}", info[0].label("rustc"));
    assert!(!info[0].label("revision").unwrap().is_empty());
    assert_eq!(info[0].value, 1.0);
    for x in &e.family("http_requests_total").samples {
        let names: Vec<&str> = x.labels.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["method", "route", "code"]);
    }
    for x in &e.family("http_request_duration_seconds").samples {
        let names: Vec<&str> = x.labels.iter().map(|(k, _)| k.as_str()).collect();
        assert!(names == ["method", "route", "le"] || names == ["method", "route"], "{names:?}");
    }
}

#[test]
fn every_response_is_counted_exactly_once() {
    const N: usize = 7;
    let s = Server::start(&[("WORK_DELAY_MS", "0"), ("MAX_BODY_BYTES", "16"), ("MAX_HEADER_FIELDS", "8")]);
    let r = |m, route, code| req_series(m, route, code);
    let parse = |reason| reason_series("sremini_parse_errors_total", reason);
    let limit = |reason| reason_series("sremini_limit_rejections_total", reason);
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(17_000));
    let big_field = format!("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "b".repeat(40_000));
    let many_fields = format!("GET /healthz HTTP/1.1\r\nHost: t\r\n{}\r\n", "X-F: 1\r\n".repeat(10));
    let cases = vec![
        case("GET /healthz", "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", 200, &[r("GET", "/healthz", 200)]),
        case("HEAD /healthz", "HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n", 200, &[r("HEAD", "/healthz", 200)]),
        case("GET /readyz", "GET /readyz HTTP/1.0\r\n\r\n", 200, &[r("GET", "/readyz", 200)]),
        case("GET /work", "GET /work HTTP/1.1\r\nHost: t\r\n\r\n", 200, &[r("GET", "/work", 200)]),
        case("HEAD /work", "HEAD /work?cpu_ms=0 HTTP/1.1\r\nHost: t\r\n\r\n", 200, &[r("HEAD", "/work", 200)]),
        case("404", "GET /nope/x?y=1 HTTP/1.1\r\nHost: t\r\n\r\n", 404, &[r("GET", "unmatched", 404)]),
        case("404 PUT", "PUT /healthz/ HTTP/1.1\r\nHost: t\r\n\r\n", 404, &[r("PUT", "unmatched", 404)]),
        case("404 abs-form", "GET http://t/x HTTP/1.1\r\nHost: t\r\n\r\n", 404, &[r("GET", "unmatched", 404)]),
        case("405 POST", "POST /healthz HTTP/1.1\r\nHost: t\r\n\r\n", 405, &[r("POST", "/healthz", 405)]),
        case("405 DELETE", "DELETE /metrics HTTP/1.1\r\nHost: t\r\n\r\n", 405, &[r("DELETE", "/metrics", 405)]),
        case("405 OPTIONS", "OPTIONS /readyz HTTP/1.1\r\nHost: t\r\n\r\n", 405, &[r("OPTIONS", "/readyz", 405)]),
        case("405 PATCH", "PATCH /work HTTP/1.1\r\nHost: t\r\n\r\n", 405, &[r("PATCH", "/work", 405)]),
        case("405 TRACE", "TRACE /fail/work HTTP/1.1\r\nHost: t\r\n\r\n", 405, &[r("TRACE", "/fail/work", 405)]),
        case("405 unknown", "BREW /work HTTP/1.1\r\nHost: t\r\n\r\n", 405, &[r("OTHER", "/work", 405)]),
        case("405 lowercase", "get /healthz HTTP/1.1\r\nHost: t\r\n\r\n", 405, &[r("OTHER", "/healthz", 405)]),
        case("400 cpu_ms", "GET /work?cpu_ms=abc HTTP/1.1\r\nHost: t\r\n\r\n", 400, &[r("GET", "/work", 400)]),
        case("400 ratio", "POST /fail/work?ratio=2 HTTP/1.1\r\nHost: t\r\n\r\n", 400, &[r("POST", "/fail/work", 400)]),
        case(
            "400 missing Host",
            "GET /healthz HTTP/1.1\r\n\r\n",
            400,
            &[r("GET", "unmatched", 400), parse("missing_host")],
        ),
        case(
            "400 bad request line",
            "GET  /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
            400,
            &[r("GET", "unmatched", 400), parse("bad_request_line")],
        ),
        case(
            "400 CONNECT origin-form",
            "CONNECT /x HTTP/1.1\r\nHost: t\r\n\r\n",
            400,
            &[r("CONNECT", "unmatched", 400), parse("bad_target")],
        ),
        case(
            "400 bad chunk size",
            "POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
            &[r("POST", "/healthz", 400), parse("bad_chunk_size")],
        ),
        case(
            "413 Content-Length",
            "POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 17\r\n\r\n",
            413,
            &[r("POST", "/healthz", 413), limit("body_too_large")],
        ),
        case(
            "413 chunked",
            "POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n11\r\n",
            413,
            &[r("POST", "/healthz", 413), limit("body_too_large")],
        ),
        case(
            "414",
            long_target,
            414,
            &[r("GET", "unmatched", 414), limit("request_line_too_long"), parse("request_line_too_long")],
        ),
        case(
            "417",
            "GET /healthz HTTP/1.1\r\nHost: t\r\nExpect: tea\r\n\r\n",
            417,
            &[r("GET", "unmatched", 417), parse("unsupported_expectation")],
        ),
        case(
            "431 fields",
            many_fields,
            431,
            &[r("GET", "unmatched", 431), limit("too_many_fields"), parse("too_many_fields")],
        ),
        case(
            "431 bytes",
            big_field,
            431,
            &[r("GET", "unmatched", 431), limit("header_too_large"), parse("header_too_large")],
        ),
        case(
            "501",
            "POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
            &[r("POST", "unmatched", 501), parse("unknown_transfer_coding")],
        ),
        case(
            "505",
            "GET /healthz HTTP/2.0\r\nHost: t\r\n\r\n",
            505,
            &[r("GET", "unmatched", 505), parse("unsupported_version")],
        ),
    ];
    run_cases(&s, &cases, N);

    // 500 from the /fail/work drill, then back to 200.
    send_n(&s, b"POST /fail/work HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", 1, 200);
    assert_eq!(scrape(&s).get("sremini_work_error_ratio"), 1.0);
    run_cases(
        &s,
        &[
            case("500 GET", "GET /work HTTP/1.1\r\nHost: t\r\n\r\n", 500, &[r("GET", "/work", 500)]),
            case("500 HEAD", "HEAD /work HTTP/1.1\r\nHost: t\r\n\r\n", 500, &[r("HEAD", "/work", 500)]),
        ],
        N,
    );
    send_n(&s, b"GET /recover/work HTTP/1.1\r\nHost: t\r\n\r\n", 1, 200);
    assert_eq!(scrape(&s).get("sremini_work_error_ratio"), 0.0);
    send_n(&s, b"GET /fail/work?ratio=0.25 HTTP/1.1\r\nHost: t\r\n\r\n", 1, 200);
    assert_eq!(scrape(&s).get("sremini_work_error_ratio"), 0.25);
    send_n(&s, b"GET /recover/work HTTP/1.1\r\nHost: t\r\n\r\n", 1, 200);

    // Readiness drill: the gauge follows /readyz, and 503 from /readyz is counted.
    send_n(&s, b"GET /fail/ready HTTP/1.1\r\nHost: t\r\n\r\n", 1, 200);
    assert_eq!(scrape(&s).get("sremini_ready"), 0.0);
    run_cases(
        &s,
        &[case("503 readyz", "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n", 503, &[r("GET", "/readyz", 503)])],
        N,
    );
    send_n(&s, b"POST /recover/ready HTTP/1.1\r\nHost: t\r\n\r\n", 1, 200);
    assert_eq!(scrape(&s).get("sremini_ready"), 1.0);

    // Everything above left a well-formed exposition behind.
    let e = scrape(&s);
    check_histograms(&e);
    assert!(e.get("sremini_connections_accepted_total") > (N * cases.len()) as f64);
}

#[test]
fn cpu_backlog_rejections_are_a_limit_and_the_pool_reports_itself() {
    // One request owing 1 s of CPU fills a 1 s backlog; the next CPU request is refused, sleep-only /work is not.
    let s = Server::start(&[("WORK_CPU_BACKLOG_MS", "1000"), ("WORK_DELAY_MS", "200")]);
    let e = scrape(&s);
    assert_eq!(e.get("sremini_work_max_concurrent"), 512.0);
    assert!(e.get("sremini_work_cpu_slots") >= 1.0);
    assert_eq!(e.get("sremini_work_active"), 0.0);
    assert_eq!(e.get("sremini_work_threads_started_total"), 0.0, "no /work thread before the first /work");
    let mut hold = s.connect();
    hold.send(b"GET /work?cpu_ms=1000 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while scrape(&s).get("sremini_work_active") < 1.0 {
        assert!(Instant::now() < deadline, "the held /work request was never admitted");
        std::thread::sleep(Duration::from_millis(5));
    }
    let refused = try_request(&s, b"GET /work?cpu_ms=1 HTTP/1.1\r\nHost: t\r\n\r\n").expect("a 503");
    assert_eq!(refused.status, 503);
    assert!(refused.header("retry-after").is_some(), "a CPU-backlog 503 carries Retry-After");
    let plain = try_request(&s, b"GET /work HTTP/1.1\r\nHost: t\r\n\r\n").expect("sleep-only /work");
    assert_eq!(plain.status, 200, "sleep-only /work owes no CPU and is admitted");
    let e = scrape(&s);
    assert_eq!(e.get(&reason_series("sremini_limit_rejections_total", "work_cpu_backlog")), 1.0);
    assert_eq!(e.get("sremini_work_rejections_total"), 0.0, "the slots were never full");
    hold.stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    assert_eq!(hold.final_response(false).expect("held /work answers").status, 200);
    let e = scrape(&s);
    assert_eq!(e.get("sremini_work_active"), 0.0);
    assert_eq!(e.get("sremini_work_cpu_backlog_seconds"), 0.0);
    let started = e.get("sremini_work_threads_started_total");
    assert!((1.0..=2.0).contains(&started), "two /work requests, {started} threads started");
    assert!(e.get("sremini_work_threads") <= started);
    assert_eq!(e.get("sremini_drain_abandoned_total"), 0.0);
}

#[test]
fn bulkhead_rejections_are_counted_as_503() {
    const N: usize = 9;
    let s = Server::start(&[("WORK_MAX_CONCURRENT", "1"), ("WORK_DELAY_MS", "4000")]);
    let before = scrape(&s);
    // Occupy the only /work slot; do not read the answer.
    let mut hold = s.connect();
    hold.send(b"GET /work HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while scrape(&s).get("http_requests_in_flight") < 2.0 {
        assert!(Instant::now() < deadline, "the held /work request never went in flight");
        std::thread::sleep(Duration::from_millis(10));
    }
    let t = Instant::now();
    for i in 0..N {
        let raw: &[u8] = if i % 3 == 0 {
            b"HEAD /work HTTP/1.1\r\nHost: t\r\n\r\n"
        } else {
            b"GET /work HTTP/1.1\r\nHost: t\r\n\r\n"
        };
        let r = try_request(&s, raw).expect("a 503");
        assert_eq!(r.status, 503);
        assert!(r.header("retry-after").is_some(), "503 from the bulkhead carries Retry-After");
    }
    assert!(t.elapsed() < Duration::from_secs(3), "rejections must be immediate, took {:?}", t.elapsed());
    let after = scrape(&s);
    assert_rose(&before, &after, &[&req_series("GET", "/work", 503)], 6.0, "bulkhead GET");
    assert_rose(&before, &after, &[&req_series("HEAD", "/work", 503)], 3.0, "bulkhead HEAD");
    assert_rose(&before, &after, &["sremini_work_rejections_total"], N as f64, "bulkhead");
    assert_eq!(after.value(&req_series("GET", "/work", 200)), 0.0);
    // The held request completes and is counted as 200.
    hold.stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = hold.final_response(false).expect("held /work answers");
    assert_eq!(r.status, 200);
    let e = scrape(&s);
    assert_eq!(e.get(&req_series("GET", "/work", 200)), 1.0);
    // 4 s of sleep lands in the 5.0 bucket, not below 2.5.
    assert_eq!(e.get("http_request_duration_seconds_bucket{method=\"GET\",route=\"/work\",le=\"2.5\"}"), 6.0);
    assert_eq!(e.get("http_request_duration_seconds_bucket{method=\"GET\",route=\"/work\",le=\"+Inf\"}"), 7.0);
    let les = check_histograms(&e);
    assert!(les["method=\"GET\",route=\"/work\""].contains(&"4.2".to_string()), "bucket just above WORK_DELAY_MS");
}

#[test]
fn timeouts_and_the_connection_cap_are_counted() {
    const N: usize = 5;
    let s = Server::start(&[("HEADER_TIMEOUT_MS", "300"), ("BODY_TIMEOUT_MS", "300")]);
    let before = scrape(&s);
    // 408 for a head that never completes, N connections at once.
    let mut conns: Vec<Reader> = (0..N).map(|_| s.connect()).collect();
    for c in &mut conns {
        c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n").unwrap();
    }
    for c in &mut conns {
        assert_eq!(c.final_response(false).expect("408").status, 408);
    }
    // 408 for a body that never completes.
    let mut conns: Vec<Reader> = (0..N).map(|_| s.connect()).collect();
    for c in &mut conns {
        c.send(b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc").unwrap();
    }
    for c in &mut conns {
        assert_eq!(c.final_response(false).expect("408").status, 408);
    }
    let after = scrape(&s);
    assert_rose(
        &before,
        &after,
        &[&req_series("GET", "unmatched", 408), &reason_series("sremini_limit_rejections_total", "header_timeout")],
        N as f64,
        "header timeout",
    );
    assert_rose(
        &before,
        &after,
        &[&req_series("POST", "/healthz", 408), &reason_series("sremini_limit_rejections_total", "body_timeout")],
        N as f64,
        "body timeout",
    );
    drop(s);

    // The connection cap: one held connection, N refused ones answered 503 and counted.
    let s = Server::start(&[("MAX_CONNECTIONS", "1")]);
    let before = scrape(&s);
    // The held connection must be the admitted one: the scrape's closed connection may not be reaped yet.
    let deadline = Instant::now() + Duration::from_secs(10);
    let hold = loop {
        assert!(Instant::now() < deadline, "never got the one connection");
        let mut c = s.connect();
        c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        if c.final_response(false).is_ok_and(|r| r.status == 200 && !r.closes()) {
            break c;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut refused = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while refused < N {
        assert!(Instant::now() < deadline, "connection cap never refused");
        if let Some(r) = try_request(&s, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n") {
            assert_eq!(r.status, 503, "only one connection is allowed while one is held");
            assert!(r.header("retry-after").is_some());
            refused += 1;
        }
    }
    drop(hold);
    let after = scrape(&s);
    let rose = |k: &str| after.value(k) - before.value(k);
    let cap = rose(&reason_series("sremini_limit_rejections_total", "connection_cap"));
    // The scrape right after dropping the held connection may itself have been refused (and retried).
    assert!((N as f64..=N as f64 + 50.0).contains(&cap), "connection_cap rose by {cap}");
    assert_eq!(rose(&req_series("OTHER", "unmatched", 503)), cap, "every refused connection answered and counted");
    assert_eq!(after.get("sremini_connections_open"), 1.0, "only the scrape's own connection is open");
}

#[test]
fn shutdown_gauges_and_409_are_counted() {
    let s = Server::start(&[("SHUTDOWN_DELAY_MS", "3000")]);
    s.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(2);
    while scrape(&s).get("sremini_shutting_down") != 1.0 {
        assert!(Instant::now() < deadline, "sremini_shutting_down never became 1");
        std::thread::sleep(Duration::from_millis(10));
    }
    send_n(&s, b"POST /recover/ready HTTP/1.1\r\nHost: t\r\n\r\n", 3, 409);
    let e = scrape(&s);
    assert_eq!(e.get("sremini_ready"), 0.0);
    assert_eq!(e.get(&req_series("POST", "/recover/ready", 409)), 3.0);
}

/// A tiny deterministic PRNG (xorshift64*); the seed is printed so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick(&mut self, set: &[u8]) -> u8 {
        set[self.below(set.len())]
    }
}

const TCHAR: &[u8] = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const PCHAR: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@";

fn random_method(rng: &mut Rng) -> String {
    const KNOWN: [&str; 8] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"];
    if rng.below(3) == 0 {
        return KNOWN[rng.below(KNOWN.len())].to_string();
    }
    loop {
        let len = 1 + rng.below(16);
        let m: String = (0..len).map(|_| rng.pick(TCHAR) as char).collect();
        // CONNECT wants authority-form and would answer 400: a different, also fixed, series.
        if m != "CONNECT" {
            return m;
        }
    }
}

fn random_path(rng: &mut Rng) -> String {
    const PREFIXES: [&str; 8] = ["/", "/healthz/", "/work/", "/metrics/", "//", "/fail/", "/x/../", "/WORK"];
    let mut p = PREFIXES[rng.below(PREFIXES.len())].to_string();
    for _ in 0..1 + rng.below(40) {
        match rng.below(12) {
            0 => p.push('/'),
            1 => p.push_str(&format!("%{:02X}", rng.below(256))),
            _ => p.push(rng.pick(PCHAR) as char),
        }
    }
    if rng.below(4) == 0 {
        p.push('?');
        for _ in 0..rng.below(30) {
            p.push(rng.pick(b"abc=&/?:@-._~0123456789") as char);
        }
    }
    p
}

#[test]
fn ten_thousand_random_paths_and_methods_add_no_series() {
    const TOTAL: usize = 10_000;
    const BATCH: usize = 100;
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("random paths seed: {seed:#x}");
    let mut rng = Rng(seed);
    let s = Server::start(&[]);
    // Warm up: one unmatched request per method class, so the series they land in exist before counting.
    scrape(&s);
    for m in ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO"] {
        send_n(&s, format!("{m} /warm HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(), 1, 404);
    }
    let before_text = scrape_text(&s);
    let before = parse_exposition(&before_text);
    let known = [
        "/healthz",
        "/readyz",
        "/metrics",
        "/work",
        "/fail/ready",
        "/recover/ready",
        "/fail/work",
        "/recover/work",
        "/panic",
    ];
    let mut sent = 0;
    let t = Instant::now();
    while sent < TOTAL {
        let mut c = s.connect();
        let mut batch = Vec::new();
        let mut heads = Vec::new();
        for _ in 0..BATCH {
            let m = random_method(&mut rng);
            let mut p = random_path(&mut rng);
            if known.contains(&p.split('?').next().unwrap()) {
                p.push('x');
            }
            batch.extend_from_slice(format!("{m} {p} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
            heads.push(m == "HEAD");
        }
        c.send(&batch).unwrap();
        for &head in &heads {
            let r = c.response(head).unwrap_or_else(|e| panic!("an answer: {e}"));
            assert_eq!(r.status, 404, "random request answered {}", r.status);
            assert!(!r.closes(), "404 must keep the connection");
        }
        sent += BATCH;
        assert!(t.elapsed() < Duration::from_secs(120), "10,000 requests took too long");
    }
    let after_text = scrape_text(&s);
    let after = parse_exposition(&after_text);
    let keys = |e: &Exposition| e.series.keys().cloned().collect::<BTreeSet<_>>();
    let new: Vec<String> = keys(&after).difference(&keys(&before)).cloned().collect();
    assert!(new.is_empty(), "random input added series: {new:?}");
    let samples = |t: &str| t.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(samples(&after_text), samples(&before_text), "sample line count changed");
    // Every one of them was counted, as 404 on route "unmatched".
    let unmatched_404 = |e: &Exposition| -> f64 {
        e.family("http_requests_total")
            .samples
            .iter()
            .filter(|x| x.label("route") == Some("unmatched") && x.label("code") == Some("404"))
            .map(|x| x.value)
            .sum()
    };
    assert_eq!(unmatched_404(&after) - unmatched_404(&before), TOTAL as f64);
    // Labels stay in their fixed sets.
    for x in &after.family("http_requests_total").samples {
        assert!(METHODS.contains(&x.label("method").unwrap()), "{x:?}");
        assert!(ROUTES.contains(&x.label("route").unwrap()), "{x:?}");
        let code = x.label("code").unwrap();
        assert!(code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()), "{x:?}");
    }
    eprintln!("10,000 random requests in {:?}; {} sample lines before and after", t.elapsed(), samples(&after_text));
}

fn proc_status(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("{key} in /proc/{pid}/status"));
    line[key.len()..].split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn process_metrics_are_present_and_plausible() {
    let s = Server::start(&[("WORKERS", "3"), ("WORK_DELAY_MS", "0")]);
    let pid = s.child.id();
    let r = s.get("/work?cpu_ms=300");
    assert_eq!(r.status, 200);
    let text = scrape_text(&s);
    let e = parse_exposition(&text);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();

    // CPU: a float from clock ticks. The process has used well under a second, so a value truncated to whole
    // seconds would read 0 here; the figure must match /proc to the tick.
    let cpu = &e.family("process_cpu_seconds_total").samples[0];
    assert!(cpu.value > 0.0 && cpu.value < 30.0, "process_cpu_seconds_total = {}", cpu.raw_value);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..].split_whitespace().collect();
    let ticks = |n: usize| f[n - 3].parse::<f64>().unwrap();
    let hz = 100.0; // USER_HZ is 100 on every Linux ABI the service ships for
    let cpu_now = (ticks(14) + ticks(15)) / hz;
    assert!(cpu.value <= cpu_now + 0.011, "cpu {} ahead of /proc ({cpu_now})", cpu.value);
    assert!(cpu.value >= cpu_now - 0.5, "cpu {} far behind /proc ({cpu_now})", cpu.value);
    if cpu_now < 1.0 {
        assert!(cpu.raw_value.starts_with("0."), "a fraction of a second, not truncated: {}", cpu.raw_value);
    }

    // Start time: this process started moments ago, to the tick.
    let start = e.get("process_start_time_seconds");
    assert!(start > now - 60.0 && start <= now + 1.0, "start {start} vs now {now}");
    let btime: f64 = std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!((start - (btime + ticks(22) / hz)).abs() < 0.02, "start {start} vs /proc {}", btime + ticks(22) / hz);

    // Memory.
    let rss = e.get("process_resident_memory_bytes");
    let vm = e.get("process_virtual_memory_bytes");
    let vmrss = proc_status(pid, "VmRSS:") as f64 * 1024.0;
    assert!(rss > 0.0 && rss >= vmrss / 2.0 && rss <= vmrss * 2.0, "rss {rss} vs VmRSS {vmrss}");
    assert!(vm >= rss, "virtual {vm} < resident {rss}");

    // File descriptors: listener, poll wake pipes, the scrape's socket...; max from the soft limit.
    let fds = e.get("process_open_fds");
    let max = e.get("process_max_fds");
    let now_fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count() as f64;
    assert!(fds > 0.0 && (fds - now_fds).abs() <= 3.0, "open_fds {fds} vs /proc {now_fds}");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let soft: f64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(max, soft);
    assert!(max >= fds);

    // Threads: at least the main thread and 3 workers; equal to the kernel's count while idle.
    let threads = e.get("process_threads");
    assert!(threads >= 4.0, "threads {threads} < workers + main");
    let kthreads = proc_status(pid, "Threads:") as f64;
    assert!((threads - kthreads).abs() <= 1.0, "threads {threads} vs /proc {kthreads}");
    for (name, kind) in FAMILIES.iter().filter(|(n, _)| n.starts_with("process_")) {
        assert_eq!(&e.family(name).kind, kind);
    }
}

#[test]
fn durations_land_in_the_right_buckets() {
    let s = Server::start(&[("WORK_DELAY_MS", "300")]);
    for _ in 0..2 {
        assert_eq!(s.get("/work").status, 200);
    }
    let e = scrape(&s);
    let les = check_histograms(&e);
    let work = &les["method=\"GET\",route=\"/work\""];
    assert!(work.contains(&"0.35".to_string()), "one bucket just above the 300 ms delay: {work:?}");
    let b = |le: &str| {
        e.get(&format!("http_request_duration_seconds_bucket{{method=\"GET\",route=\"/work\",le=\"{le}\"}}"))
    };
    assert_eq!(b("0.25"), 0.0, "a 300 ms sleep cannot finish under 0.25 s");
    assert_eq!(b("+Inf"), 2.0);
    let sum = e.get("http_request_duration_seconds_sum{method=\"GET\",route=\"/work\"}");
    assert!((0.6..10.0).contains(&sum), "sum {sum}");
    // Fast answers are measured too (not 0, not negative).
    let ok = s.get("/healthz");
    assert_eq!(ok.status, 200);
    let e = scrape(&s);
    let hsum = e.get("http_request_duration_seconds_sum{method=\"GET\",route=\"/healthz\"}");
    assert!(hsum > 0.0 && hsum < 1.0, "GET /healthz took {hsum} s by the histogram");
    assert_eq!(e.get("http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",le=\"1.0\"}"), 1.0);
}

/// A /metrics answer is the largest this server sends, so pipelined scrapes are where the output high-water mark
/// is reached. Every pipelined request must still be answered promptly.
#[test]
fn pipelined_scrapes_beyond_the_output_high_water_are_all_answered() {
    let s = Server::start(&[]);
    for n in [20usize, 100, 1000] {
        let mut c = s.connect();
        c.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut w = c.stream.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let one = b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n";
            w.write_all(&one.repeat(n)).unwrap();
        });
        let t = Instant::now();
        for i in 0..n {
            let r = c
                .response(false)
                .unwrap_or_else(|e| panic!("{n} pipelined scrapes: no answer #{i} after {:?}: {e}", t.elapsed()));
            assert_eq!(r.status, 200);
        }
        writer.join().unwrap();
    }
}

/// Every series the label sets allow, populated (10 methods x 10 routes x every code, and all 100 histograms):
/// the exposition stays valid. It also prints the render time (a figure, never asserted):
/// `cargo test --release --test metrics every_series -- --nocapture`; docs/metrics.md records it.
#[test]
fn every_series_populated_still_renders_a_valid_exposition() {
    use sre_mini::app::App;
    use sre_mini::config::Config;
    use sre_mini::labels::{Method, Route, STATUSES};
    let app = App::new(Config::from_lookup(|_| None).unwrap());
    let m = &app.metrics;
    for method in Method::ALL {
        for route in Route::ALL {
            for (i, (code, _)) in STATUSES.iter().enumerate() {
                m.observe(method, route, *code, Duration::from_micros(37 * (i as u64 + 1) * 997));
            }
        }
    }
    let mut out = String::new();
    let mut times = Vec::new();
    for i in 0..120 {
        out.clear();
        let t = Instant::now();
        // The scrape's /proc reads are part of the cost, as in a real /metrics answer.
        m.render(&app.scrape(), &mut out);
        if i >= 20 {
            times.push(t.elapsed());
        }
    }
    times.sort();
    let e = parse_exposition(&out);
    check_histograms(&e);
    let samples = out.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(e.family("http_requests_total").samples.len(), 10 * 10 * STATUSES.len());
    println!(
        "render, every series populated: {samples} samples, {} bytes; median {:?}, p90 {:?}, min {:?} over {} renders",
        out.len(),
        times[times.len() / 2],
        times[times.len() * 9 / 10],
        times[0],
        times.len()
    );
}
