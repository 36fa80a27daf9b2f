//! Reference server for `scripts/bench.sh`: the same observable behaviour as sre-mini on the benchmarked
//! paths, built the conventional way (axum + hyper on tokio's multi-thread runtime).
//!
//! - `GET|HEAD /healthz` -> 200 `ok\n`; `GET|HEAD /readyz` -> 200 `ok\n` (ready as soon as it listens);
//! - `GET|HEAD /work` -> sleeps `WORK_DELAY_MS` (default 2000) with `tokio::time::sleep`, then 200 `ok\n`;
//! - listens on `127.0.0.1:$PORT` (default 8080; 0 picks a free port, printed in the "ready" line);
//! - logs one JSON line per request on stdout (timestamp, method, path, status, duration, request id),
//!   as sre-mini does; every response carries `X-Request-Id`.
//!
//! `WORKERS` (optional) sets the runtime's worker threads; tokio's default is one per core.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;

static NEXT_REQUEST_ID: AtomicU64 = AtomicU64::new(1);

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("invalid {name}: {v:?}");
            std::process::exit(2)
        }),
        Err(_) => default,
    }
}

/// RFC 3339 UTC timestamp with milliseconds, e.g. `2026-11-26T11:00:00.123Z` (std only).
fn timestamp() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        now.subsec_millis()
    )
}

fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One log line, written with a single `write_all` on the locked stdout (a `LineWriter`: one write per line).
fn log_line(line: &str) {
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
}

async fn access_log(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let id = NEXT_REQUEST_ID.fetch_add(1, Ordering::Relaxed);
    let mut resp = next.run(req).await;
    resp.headers_mut().insert("x-request-id", HeaderValue::from(id));
    let micros = start.elapsed().as_micros();
    let mut line = String::with_capacity(160);
    line.push_str("{\"ts\":\"");
    line.push_str(&timestamp());
    line.push_str("\",\"level\":\"info\",\"msg\":\"request\",\"method\":");
    push_json_str(&mut line, method.as_str());
    line.push_str(",\"path\":");
    push_json_str(&mut line, &path);
    line.push_str(&format!(
        ",\"status\":{},\"duration_ms\":{}.{:03},\"request_id\":{id}}}\n",
        resp.status().as_u16(),
        micros / 1000,
        micros % 1000
    ));
    log_line(&line);
    resp
}

async fn ok() -> &'static str {
    "ok\n"
}

async fn work(State(delay): State<Duration>) -> &'static str {
    tokio::time::sleep(delay).await;
    "ok\n"
}

fn main() {
    let port = env_u64("PORT", 8080);
    let delay = Duration::from_millis(env_u64("WORK_DELAY_MS", 2000));
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Ok(n) = std::env::var("WORKERS") {
        builder.worker_threads(n.parse().unwrap_or_else(|_| {
            eprintln!("invalid WORKERS: {n:?}");
            std::process::exit(2)
        }));
    }
    let rt = builder.build().expect("tokio runtime");
    rt.block_on(async move {
        let app = Router::new()
            .route("/healthz", get(ok))
            .route("/readyz", get(ok))
            .route("/work", get(work))
            .with_state(delay)
            .layer(middleware::from_fn(access_log));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port as u16))
            .await
            .unwrap_or_else(|e| {
                eprintln!("bind 127.0.0.1:{port}: {e}");
                std::process::exit(1)
            });
        let addr = listener.local_addr().expect("local addr");
        log_line(&format!(
            "{{\"ts\":\"{}\",\"level\":\"info\",\"msg\":\"ready\",\"addr\":\"{addr}\"}}\n",
            timestamp()
        ));
        axum::serve(listener, app).await.expect("serve");
    });
}
