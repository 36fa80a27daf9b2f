//! Reference server for `scripts/bench.sh`: the same observable behaviour as sre-mini on the benchmarked
//! paths, built the conventional way (axum + hyper on tokio's multi-thread runtime).
//!
//! - `GET|HEAD /healthz` -> 200 `ok\n`; `GET|HEAD /readyz` -> 200 `ready\n` (ready as soon as it listens);
//! - `GET|HEAD /work` -> sleeps `WORK_DELAY_MS` (default 2000) with `tokio::time::sleep`, then 200 `work done\n`;
//! - listens on `127.0.0.1:$PORT` (default 8080; 0 picks a free port, printed in the "ready" line);
//! - every response carries `X-Request-Id` (16 hex digits), `Cache-Control: no-store` and
//!   `X-Content-Type-Options: nosniff`, as sre-mini's do;
//! - logs one JSON line per request on stdout with sre-mini's fields (ts, level, msg, method, route, path,
//!   status, duration_ms, bytes, remote, request_id, user_agent). By default each line is one `write` on the
//!   locked stdout, the faster of the two ways here (a `write` to /dev/null is cheaper than waking a thread
//!   per line, above all on one pinned core); `LOG_WRITER=thread` hands lines to a writer thread through a
//!   bounded queue instead (dropped when full, like sre-mini and the usual `tracing-appender` non-blocking
//!   setup).
//!
//! `WORKERS` (optional) sets the runtime's worker threads (tokio's default is one per core);
//! `LISTEN_BACKLOG` (default 1024, as sre-mini's) the listen backlog.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::HttpBody as _;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;

static NEXT_REQUEST_ID: AtomicU64 = AtomicU64::new(0);
static LOG_QUEUE: OnceLock<SyncSender<String>> = OnceLock::new();

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

/// Starts the stdout writer thread: it takes lines from a bounded queue and writes whatever is waiting
/// before each flush, so a busy server makes few write calls.
fn start_log_writer() {
    let (tx, rx) = mpsc::sync_channel::<String>(1024);
    std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || {
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
            while let Ok(line) = rx.recv() {
                let _ = out.write_all(line.as_bytes());
                while let Ok(more) = rx.try_recv() {
                    let _ = out.write_all(more.as_bytes());
                }
                let _ = out.flush();
            }
        })
        .expect("log writer thread");
    let _ = LOG_QUEUE.set(tx);
}

/// Queues one line; never blocks (a full queue drops the line, as sre-mini does). Without the writer
/// thread (`LOG_WRITER=direct`), writes the line on the locked stdout: one `write` per line.
fn log_line(line: String) {
    match LOG_QUEUE.get() {
        Some(tx) => {
            let _ = tx.try_send(line);
        }
        None => {
            let _ = std::io::stdout().lock().write_all(line.as_bytes());
        }
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn route_label(path: &str) -> &'static str {
    match path {
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/work" => "/work",
        _ => "unmatched",
    }
}

async fn access_log(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(&v.as_bytes()[..v.len().min(1024)]).into_owned())
        .unwrap_or_default();
    let id = format!("{:016x}", splitmix64(NEXT_REQUEST_ID.fetch_add(1, Ordering::Relaxed)));
    let mut resp = next.run(req).await;
    let headers = resp.headers_mut();
    headers.insert("x-request-id", HeaderValue::from_str(&id).expect("hex id"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let bytes = resp.body().size_hint().exact().unwrap_or(0);
    let status = resp.status().as_u16();
    let level = match status {
        500.. => "error",
        400.. => "warn",
        _ => "info",
    };
    let micros = start.elapsed().as_micros();
    let mut line = String::with_capacity(256);
    line.push_str("{\"ts\":\"");
    line.push_str(&timestamp());
    line.push_str("\",\"level\":\"");
    line.push_str(level);
    line.push_str("\",\"msg\":\"request\",\"method\":");
    push_json_str(&mut line, method.as_str());
    line.push_str(",\"route\":\"");
    line.push_str(route_label(&path));
    line.push_str("\",\"path\":");
    push_json_str(&mut line, &path);
    line.push_str(&format!(
        ",\"status\":{status},\"duration_ms\":{}.{:03},\"bytes\":{bytes},\"remote\":\"{remote}\",\"request_id\":\"{id}\",\"user_agent\":",
        micros / 1000,
        micros % 1000
    ));
    push_json_str(&mut line, &user_agent);
    line.push_str("}\n");
    log_line(line);
    resp
}

async fn ok() -> &'static str {
    "ok\n"
}

async fn ready() -> &'static str {
    "ready\n"
}

async fn work(State(delay): State<Duration>) -> &'static str {
    tokio::time::sleep(delay).await;
    "work done\n"
}

fn main() {
    let port = env_u64("PORT", 8080);
    let delay = Duration::from_millis(env_u64("WORK_DELAY_MS", 2000));
    let backlog = env_u64("LISTEN_BACKLOG", 1024) as u32;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Ok(n) = std::env::var("WORKERS") {
        builder.worker_threads(n.parse().unwrap_or_else(|_| {
            eprintln!("invalid WORKERS: {n:?}");
            std::process::exit(2)
        }));
    }
    match std::env::var("LOG_WRITER").as_deref() {
        Ok("direct") | Err(_) => {}
        Ok("thread") => start_log_writer(),
        Ok(other) => {
            eprintln!("invalid LOG_WRITER: {other:?} (thread or direct)");
            std::process::exit(2)
        }
    }
    let rt = builder.build().expect("tokio runtime");
    rt.block_on(async move {
        let app = Router::new()
            .route("/healthz", get(ok))
            .route("/readyz", get(ready))
            .route("/work", get(work))
            .with_state(delay)
            .layer(middleware::from_fn(access_log));
        // The listen backlog is sre-mini's LISTEN_BACKLOG default (1024), not tokio's 128 (std's value), which
        // overflows under the 300-connection /work burst and costs the dropped SYNs a 1 s retransmit.
        let listener = tokio::net::TcpSocket::new_v4()
            .and_then(|s| {
                s.set_reuseaddr(true)?;
                s.bind(SocketAddr::from(([127, 0, 0, 1], port as u16)))?;
                s.listen(backlog)
            })
            .unwrap_or_else(|e| {
                eprintln!("listen 127.0.0.1:{port}: {e}");
                std::process::exit(1)
            });
        let addr = listener.local_addr().expect("local addr");
        log_line(format!(
            "{{\"ts\":\"{}\",\"level\":\"info\",\"msg\":\"ready\",\"addr\":\"{addr}\"}}\n",
            timestamp()
        ));
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .expect("serve");
    });
}
