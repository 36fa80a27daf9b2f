//! The application's answers, its drill gate and its audit records, driven with requests the connection machine
//! parsed (no sockets).

use std::time::Instant;

use super::*;
use crate::conn::{Conn, Env, Settings};
use crate::labels::Method;
use crate::state::Phase;

fn app(vars: &[(&str, &str)]) -> App {
    let config = Config::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())).unwrap();
    let app = App::new(config);
    app.state.advance(Phase::Serving);
    app
}

/// The request the machine hands over for `method target`, with `headers` (each ending in CRLF).
fn request(method: &str, target: &str, headers: &str) -> Box<Request> {
    let settings = Settings::new(&Config::DEFAULT);
    let env = Env { settings: &settings, date: "D", now: Instant::now(), shutting_down: false };
    let mut conn = Conn::new(env.now);
    let mut fx = Vec::new();
    conn.received(&env, format!("{method} {target} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes(), &mut fx);
    fx.into_iter().find_map(|e| if let Effect::Request(r) = e { Some(r) } else { None }).expect("a complete request")
}

/// The status `app` answers with (0: /work started).
fn status(app: &App, method: &str, target: &str, headers: &str) -> u16 {
    let mut req = request(method, target, headers);
    match app.handle(&mut req, "127.0.0.1:1", &mut LineBuffer::default()) {
        Handled::Respond(r) => r.status,
        Handled::Work(_) => 0,
    }
}

#[test]
fn every_endpoint_row() {
    let a = app(&[]);
    let cases: &[(&str, &str, u16)] = &[
        ("GET", "/healthz", 200),
        ("HEAD", "/healthz", 200),
        ("POST", "/healthz", 405),
        ("GET", "/readyz", 200),
        ("GET", "/metrics", 200),
        ("HEAD", "/metrics", 200),
        ("GET", "/work", 0),
        ("HEAD", "/work?cpu_ms=10", 0),
        ("GET", "/work?cpu_ms=1001", 400),
        ("GET", "/work?cpu_ms=-1", 400),
        ("GET", "/work?cpu_ms=abc", 400),
        ("GET", "/work?cpu_ms=1&cpu_ms=2", 400),
        ("POST", "/work", 405),
        ("GET", "/fail/ready", 200),
        ("HEAD", "/fail/ready", 405),
        ("POST", "/recover/ready", 200),
        ("GET", "/fail/work?ratio=1.5", 400),
        ("GET", "/fail/work?ratio=nan", 400),
        ("GET", "/fail/work?ratio=1e-1", 400),
        ("GET", "/fail/work?ratio=-0", 400),
        ("POST", "/fail/work?ratio=0.25", 200),
        ("GET", "/recover/work", 200),
        ("DELETE", "/recover/work", 405),
        ("HEAD", "/panic", 405),
        ("GET", "/nope", 404),
        ("GET", "/healthz/", 404),
        ("FOO", "/nope", 404),
        ("get", "/healthz", 405),
    ];
    for &(m, target, want) in cases {
        assert_eq!(status(&a, m, target, ""), want, "{m} {target}");
    }
}

#[test]
fn method_not_allowed_lists_allow() {
    let a = app(&[]);
    for (m, target, allow) in [("POST", "/healthz", "GET, HEAD"), ("HEAD", "/panic", "GET, POST")] {
        let mut req = request(m, target, "");
        match a.handle(&mut req, "p", &mut LineBuffer::default()) {
            Handled::Respond(r) => assert_eq!(r.header, Some(("Allow", allow))),
            Handled::Work(_) => panic!("{target}"),
        }
    }
    assert!(Route::Panic.takes(Method::Post) && !Route::Panic.takes(Method::Head));
    assert!(Route::Healthz.takes(Method::Head) && !Route::Healthz.takes(Method::Post));
}

#[test]
fn drills_off_hides_drill_routes() {
    let off = app(&[("DRILLS", "off")]);
    for r in Route::ALL.iter().filter(|r| r.action().is_some()) {
        assert_eq!(status(&off, "POST", r.label(), ""), 404, "{r:?}");
    }
    assert_eq!(status(&off, "GET", "/healthz", ""), 200);
}

#[test]
fn readiness_and_fault_drills_change_state() {
    let a = app(&[]);
    let s = |m, t| status(&a, m, t, "");
    s("GET", "/fail/ready");
    assert_eq!(s("GET", "/readyz"), 503);
    s("POST", "/recover/ready");
    assert_eq!(s("GET", "/readyz"), 200);
    s("GET", "/fail/work");
    assert_eq!(s("GET", "/work"), 500);
    s("GET", "/recover/work");
    assert_eq!(s("GET", "/work"), 0);
    a.state.advance(Phase::ShuttingDown);
    assert_eq!(s("GET", "/recover/ready"), 409);
    assert_eq!(s("GET", "/healthz"), 200, "liveness holds while draining");
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

fn finished(line: JsonLine) -> String {
    line.finish()
}

#[test]
fn an_audit_record_says_what_changed_who_asked_and_with_which_token() {
    let a = app(&[]);
    let mut req = request(
        "POST",
        "/fail/work?ratio=0.25",
        "X-Forwarded-For: 203.0.113.9, 10.0.0.1\r\nUser-Agent: curl/8\r\nX-Request-Id: rid-1\r\n",
    );
    req.route = Some(Route::FailWork);
    let change = Some(Change::WorkFailPpm(250_000));
    let s = finished(a.audit_line(&req, "10.0.0.7:5123", 200, change, Some("0badf00d")));
    for want in [
        "\"msg\":\"audit\"",
        "\"action\":\"fail_work\"",
        "\"target\":\"work_error_ratio\"",
        "\"from\":\"0\"",
        "\"to\":\"0.25\"",
        "\"changed\":\"true\"",
        "\"status\":200",
        "\"method\":\"POST\"",
        "\"remote\":\"10.0.0.7:5123\"",
        "\"forwarded_for\":\"203.0.113.9, 10.0.0.1\"",
        "\"request_id\":\"rid-1\"",
        "\"user_agent\":\"curl/8\"",
        "\"token_fingerprint\":\"0badf00d\"",
    ] {
        assert!(s.contains(want), "{want} missing from {s}");
    }
}

#[test]
fn no_change_is_recorded_as_such_and_absent_headers_are_omitted() {
    let a = app(&[]);
    a.state.set_ready_failed(true);
    let mut req = request("GET", "/fail/ready", "");
    req.route = Some(Route::FailReady);
    let s = finished(a.audit_line(&req, "p", 200, Some(Change::ReadyFailed(true)), None));
    assert!(s.contains("\"from\":\"failed\",\"to\":\"failed\",\"changed\":\"false\""), "{s}");
    assert!(!s.contains("forwarded_for") && !s.contains("token"), "{s}");
    req.route = Some(Route::Panic);
    let p = finished(a.audit_line(&req, "p", 200, Some(Change::Exit), None));
    assert!(p.contains("\"target\":\"process\",\"from\":\"running\",\"to\":\"exiting\""), "{p}");
    assert!(p.contains("\"status\":0"), "/panic is not answered: {p}");
}

/// A token file that a test can rewrite, swap as Kubernetes does (a `..data` symlink to a new directory), or remove.
struct Mount {
    dir: std::path::PathBuf,
    generation: u32,
}

impl Mount {
    fn new(name: &str) -> Mount {
        let dir = std::env::temp_dir().join(format!("sre-mini-token-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Mount { dir, generation: 0 }
    }

    fn path(&self) -> String {
        self.dir.join("token").to_string_lossy().into_owned()
    }

    /// What the kubelet does on an update: write a new timestamped directory, then swap `..data` onto it.
    fn publish(&mut self, token: &str) {
        self.generation += 1;
        let generation = self.dir.join(format!("..gen{}", self.generation));
        std::fs::create_dir(&generation).unwrap();
        std::fs::write(generation.join("token"), token).unwrap();
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&generation, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        let link = self.dir.join("token");
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("..data/token", &link).unwrap();
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn drills_need_the_token_once_a_token_file_is_configured() {
    let mut mount = Mount::new("gate");
    let path = mount.path();
    let a = app(&[("DRILL_TOKEN_FILE", &path)]);
    let bearer = |t: &str| format!("Authorization: Bearer {t}\r\n");
    assert_eq!(status(&a, "POST", "/fail/ready", &bearer("s3cret")), 404, "no file yet: drills off");
    mount.publish("s3cret\n");
    assert_eq!(status(&a, "POST", "/fail/ready", ""), 401, "no token");
    assert_eq!(status(&a, "POST", "/fail/ready", &bearer("s3cre")), 401, "a prefix");
    assert_eq!(status(&a, "POST", "/fail/ready", &bearer("s3cret!")), 401, "longer");
    assert_eq!(status(&a, "POST", "/fail/ready", "Authorization: Basic czNjcmV0\r\n"), 401, "another scheme");
    assert!(!a.state.ready_failed(), "a refused drill changes nothing");
    assert_eq!(status(&a, "POST", "/fail/ready", &bearer("s3cret")), 200, "trailing newline of the file ignored");
    assert!(a.state.ready_failed());
    assert_eq!(status(&a, "POST", "/recover/ready", "authorization: bearer s3cret\r\n"), 200, "scheme any case");
    assert_eq!(status(&a, "GET", "/healthz", ""), 200, "probes need no token");
    mount.publish("n3w");
    assert_eq!(status(&a, "POST", "/fail/ready", &bearer("s3cret")), 401, "rotated: the old token is refused");
    assert_eq!(status(&a, "POST", "/fail/ready", &bearer("n3w")), 200, "rotated without a restart");
    mount.publish("");
    assert_eq!(status(&a, "POST", "/fail/ready", &bearer("n3w")), 404, "an empty file turns drills off");
    assert_eq!(a.metrics.drill_denied.load(Relaxed), 5);
}

#[test]
fn an_open_binary_says_so_and_the_token_is_compared_whole() {
    assert!(app(&[]).drill_access().starts_with("open"));
    assert_eq!(app(&[("DRILLS", "off")]).drill_access(), "off");
    assert!(same_bytes(b"abc", b"abc"));
    for other in [&b""[..], b"ab", b"abd", b"abcd", b"xbc"] {
        assert!(!same_bytes(other, b"abc"), "{other:?}");
    }
    assert!(!same_bytes(b"", b""), "an empty token matches nothing");
    assert_eq!(fingerprint(b"s3cret").len(), 8);
    assert_ne!(fingerprint(b"s3cret"), fingerprint(b"s3cres"));
}
