//! Routing and handlers: which path and method does what, as pure decisions over [`App`] state.
//!
//! Handlers never block. The one slow endpoint, /work, is returned as [`Action::Work`] for the server to run
//! in the bulkhead; /panic is returned as [`Action::Panic`] for the server to carry out.

use crate::App;
use crate::http::response::{Response, TEXT};
pub use crate::labels::{Method, Route};
use crate::metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;
use crate::state::PPM;

impl Route {
    pub fn is_drill(self) -> bool {
        matches!(self, Route::FailReady | Route::RecoverReady | Route::FailWork | Route::RecoverWork | Route::Panic)
    }

    /// The `Allow` value; HEAD only where GET changes nothing.
    pub fn allow(self) -> &'static str {
        if self.is_drill() { "GET, POST" } else { "GET, HEAD" }
    }

    /// Whether the route serves this method (else 405).
    pub fn takes(self, method: Method) -> bool {
        if self.is_drill() {
            matches!(method, Method::Get | Method::Post)
        } else {
            matches!(method, Method::Get | Method::Head)
        }
    }
}

/// Exact match on the path as sent: no decoding, no trailing-slash folding, so one path is one route.
pub fn route(path: &str, drills: bool) -> Route {
    let r = Route::from_label(path).unwrap_or(Route::Unmatched);
    if r.is_drill() && !drills { Route::Unmatched } else { r }
}

/// What the server must do for one request.
#[derive(Debug, PartialEq)]
pub enum Action {
    Respond(Response),
    /// Run /work in the bulkhead: burn `cpu_ms` of CPU, sleep the configured delay, answer 200.
    Work {
        cpu_ms: u64,
    },
    /// The self-healing drill: log and terminate the process.
    Panic,
}

pub fn handle(app: &App, method: Method, route: Route, query: Option<&str>) -> Action {
    if route == Route::Unmatched {
        return Action::Respond(Response::text(404, "not found\n"));
    }
    if !route.takes(method) {
        let mut r = Response::text(405, "method not allowed\n");
        r.allow = Some(route.allow());
        return Action::Respond(r);
    }
    let state = &app.state;
    let respond = Action::Respond;
    match route {
        Route::Healthz => respond(Response::text(200, "ok\n")),
        Route::Readyz => {
            if state.is_ready() {
                respond(Response::text(200, "ready\n"))
            } else {
                respond(Response::text(503, "not ready\n"))
            }
        }
        Route::Metrics => {
            let mut body = String::new();
            app.metrics.render(&app.scrape(), &mut body);
            respond(Response::owned(200, METRICS_CONTENT_TYPE, body.into_bytes()))
        }
        Route::Work => match query_param(query, "cpu_ms") {
            Err(msg) => respond(Response::owned(400, TEXT, msg.into_bytes())),
            Ok(raw) => match raw.map(parse_cpu_ms).transpose() {
                Err(msg) => respond(Response::owned(400, TEXT, msg.into_bytes())),
                Ok(cpu_ms) => {
                    if state.next_work_fails() {
                        respond(Response::text(500, "injected failure (/fail/work drill)\n"))
                    } else {
                        Action::Work { cpu_ms: cpu_ms.unwrap_or(0) }
                    }
                }
            },
        },
        Route::FailReady => {
            state.fail_ready();
            respond(Response::text(200, "readiness failed: /readyz now answers 503\n"))
        }
        Route::RecoverReady => {
            if state.recover_ready() {
                respond(Response::text(200, "readiness recovered\n"))
            } else {
                respond(Response::text(409, "shutting down: readiness cannot recover\n"))
            }
        }
        Route::FailWork => match query_param(query, "ratio").and_then(|r| r.map(parse_ratio_ppm).transpose()) {
            Err(msg) => respond(Response::owned(400, TEXT, msg.into_bytes())),
            Ok(ppm) => {
                let ppm = ppm.unwrap_or(PPM);
                state.set_work_fail_ppm(ppm);
                respond(Response::owned(
                    200,
                    TEXT,
                    format!("/work error ratio set to {}\n", state.work_fail_ratio()).into_bytes(),
                ))
            }
        },
        Route::RecoverWork => {
            state.set_work_fail_ppm(0);
            respond(Response::text(200, "/work error ratio set to 0\n"))
        }
        Route::Panic => Action::Panic,
        Route::Unmatched => respond(Response::text(404, "not found\n")),
    }
}

/// The value of `key` in a query string. A repeated key is an error: which one would count is ambiguous.
fn query_param<'q>(query: Option<&'q str>, key: &str) -> Result<Option<&'q str>, String> {
    let mut found = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == key {
            if found.is_some() {
                return Err(format!("{key} given more than once\n"));
            }
            found = Some(v);
        }
    }
    Ok(found)
}

fn parse_cpu_ms(raw: &str) -> Result<u64, String> {
    let ok = !raw.is_empty() && raw.len() <= 4 && raw.bytes().all(|b| b.is_ascii_digit());
    match raw.parse::<u64>() {
        Ok(v) if ok && v <= 1000 => Ok(v),
        _ => Err("cpu_ms must be a whole number of milliseconds from 0 to 1000\n".to_string()),
    }
}

/// A decimal from 0 to 1 (`0`, `1`, `0.5`, `.25`, `1.0`), to parts per million. No signs, exponents, NaN or inf.
fn parse_ratio_ppm(raw: &str) -> Result<u64, String> {
    let err = || "ratio must be a decimal number from 0 to 1\n".to_string();
    let plain = !raw.is_empty()
        && raw.len() <= 12
        && raw.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && raw.bytes().filter(|&b| b == b'.').count() <= 1
        && raw != ".";
    if !plain {
        return Err(err());
    }
    match raw.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok((v * PPM as f64).round() as u64),
        _ => Err(err()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::state::Phase;

    fn app(drills: bool) -> App {
        let mut config = Config::from_lookup(|_| None).unwrap();
        config.drills = drills;
        let app = App::new(config);
        app.state.advance(Phase::Serving);
        app
    }

    fn status(a: &Action) -> u16 {
        match a {
            Action::Respond(r) => r.status,
            Action::Work { .. } => 0,
            Action::Panic => 1,
        }
    }

    #[test]
    fn every_endpoint_row() {
        let a = app(true);
        let cases: &[(&str, &str, Option<&str>, u16)] = &[
            ("GET", "/healthz", None, 200),
            ("HEAD", "/healthz", None, 200),
            ("POST", "/healthz", None, 405),
            ("GET", "/readyz", None, 200),
            ("GET", "/metrics", None, 200),
            ("HEAD", "/metrics", None, 200),
            ("GET", "/work", None, 0),
            ("HEAD", "/work", Some("cpu_ms=10"), 0),
            ("GET", "/work", Some("cpu_ms=1001"), 400),
            ("GET", "/work", Some("cpu_ms=-1"), 400),
            ("GET", "/work", Some("cpu_ms=abc"), 400),
            ("GET", "/work", Some("cpu_ms=1&cpu_ms=2"), 400),
            ("POST", "/work", None, 405),
            ("GET", "/fail/ready", None, 200),
            ("HEAD", "/fail/ready", None, 405),
            ("POST", "/recover/ready", None, 200),
            ("GET", "/fail/work", Some("ratio=1.5"), 400),
            ("GET", "/fail/work", Some("ratio=nan"), 400),
            ("GET", "/fail/work", Some("ratio=1e-1"), 400),
            ("GET", "/fail/work", Some("ratio=-0"), 400),
            ("POST", "/fail/work", Some("ratio=0.25"), 200),
            ("GET", "/recover/work", None, 200),
            ("DELETE", "/recover/work", None, 405),
            ("GET", "/panic", None, 1),
            ("HEAD", "/panic", None, 405),
            ("GET", "/nope", None, 404),
            ("GET", "/healthz/", None, 404),
            ("FOO", "/nope", None, 404),
            ("get", "/healthz", None, 405),
        ];
        for &(m, p, q, want) in cases {
            let got = handle(&a, Method::from_token(m), route(p, true), q);
            assert_eq!(status(&got), want, "{m} {p} {q:?}");
        }
    }

    #[test]
    fn method_not_allowed_lists_allow() {
        let a = app(true);
        match handle(&a, Method::Post, Route::Healthz, None) {
            Action::Respond(r) => assert_eq!(r.allow, Some("GET, HEAD")),
            other => panic!("{other:?}"),
        }
        match handle(&a, Method::Head, Route::Panic, None) {
            Action::Respond(r) => assert_eq!(r.allow, Some("GET, POST")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn drills_off_hides_drill_routes() {
        for p in ["/fail/ready", "/recover/ready", "/fail/work", "/recover/work", "/panic"] {
            assert_eq!(route(p, false), Route::Unmatched, "{p}");
            assert_ne!(route(p, true), Route::Unmatched, "{p}");
        }
        assert_eq!(route("/healthz", false), Route::Healthz);
    }

    #[test]
    fn readiness_and_fault_drills_change_state() {
        let a = app(true);
        handle(&a, Method::Get, Route::FailReady, None);
        assert_eq!(status(&handle(&a, Method::Get, Route::Readyz, None)), 503);
        handle(&a, Method::Post, Route::RecoverReady, None);
        assert_eq!(status(&handle(&a, Method::Get, Route::Readyz, None)), 200);
        handle(&a, Method::Get, Route::FailWork, None);
        assert_eq!(status(&handle(&a, Method::Get, Route::Work, None)), 500);
        handle(&a, Method::Get, Route::RecoverWork, None);
        assert_eq!(status(&handle(&a, Method::Get, Route::Work, None)), 0);
        a.state.advance(Phase::ShuttingDown);
        assert_eq!(status(&handle(&a, Method::Get, Route::RecoverReady, None)), 409);
        assert_eq!(status(&handle(&a, Method::Get, Route::Healthz, None)), 200, "liveness holds while draining");
    }

    #[test]
    fn ratio_parsing() {
        assert_eq!(parse_ratio_ppm("0.5"), Ok(500_000));
        assert_eq!(parse_ratio_ppm(".25"), Ok(250_000));
        assert_eq!(parse_ratio_ppm("1"), Ok(PPM));
        assert_eq!(parse_ratio_ppm("0"), Ok(0));
        for bad in ["", ".", "1.01", "2", "0.5.1", "inf", "+0.5", " 0.5", "0,5"] {
            assert!(parse_ratio_ppm(bad).is_err(), "{bad:?}");
        }
    }
}
