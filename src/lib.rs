//! sre-mini: an HTTP/1.1 reference workload for Kubernetes, on `std` and a few libc calls.
//!
//! `main_entry` reads the configuration, starts the logger, the server and the signal watch, and hands over
//! to the shutdown sequence. See ARCHITECTURE.md for the map of modules and threads.

pub mod app;
pub mod ascii;
pub mod bulkhead;
pub mod cgroup;
pub mod clock;
pub mod config;
pub mod conn;
pub mod http;
pub mod labels;
pub mod log;
pub mod metrics;
pub mod probe;
pub mod process;
pub mod request_id;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod sys;

use std::process::ExitCode;
use std::sync::Arc;

use app::App;
use config::Config;
use server::Server;
use state::Phase;

/// Exit code for configuration and usage errors.
const EXIT_USAGE: u8 = 2;

pub fn main_entry() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => serve(),
        Some("probe") => probe::run(args.get(1).map(String::as_str)),
        Some("--help" | "-h") => {
            print!("{}", config::help_text());
            ExitCode::SUCCESS
        }
        Some("--version" | "-V") => {
            println!("sre-mini {} ({})", env!("CARGO_PKG_VERSION"), env!("SRE_MINI_REVISION"));
            ExitCode::SUCCESS
        }
        Some(other) => {
            let shown: String = other.chars().take(64).flat_map(char::escape_debug).collect();
            eprintln!("sre-mini: unknown argument \"{shown}\": accepts probe URL, --help or --version");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn serve() -> ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sre-mini: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    install_panic_hook();
    log::start();
    let fd_limit =
        sys::raise_fd_limit().inspect_err(|e| log::failure("warn", "cannot read or raise the open-file limit", e)).ok();
    let app = Arc::new(App::new(config));
    log::event("info", "starting", |l| {
        l.str("version", env!("CARGO_PKG_VERSION")).str("revision", env!("SRE_MINI_REVISION"));
        if let Some(limit) = fd_limit {
            l.uint("fd_limit", limit);
        }
        l.str("drills", app.drill_access()).raw("config", &app.config.to_json());
    });
    let config = &app.config;
    if let Some(limit) = fd_limit
        && (config.max_connections as u64).saturating_add(64) > limit
    {
        log::event("warn", "MAX_CONNECTIONS is above the open-file limit; accept will fail before the cap", |l| {
            l.num("max_connections", config.max_connections).num("fd_limit", limit);
        });
    }
    let signals = match shutdown::register() {
        Ok(s) => s,
        Err(e) => {
            log::failure("error", "cannot register signal handlers", &e);
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::start(Arc::clone(&app)) {
        Ok(s) => s,
        Err(e) => {
            log::event("error", "cannot listen", |l| {
                l.num("port", app.config.port).str("error", &e.to_string());
            });
            log::flush(std::time::Duration::from_millis(200));
            return ExitCode::FAILURE;
        }
    };
    app.state.advance(Phase::Serving);
    log::event("info", "ready", |l| {
        l.str("addr", &server.addr.to_string()).num("work_cpu_slots", app.bulkhead.limits().cpu_slots);
    });
    shutdown::wait_and_drain(app, server, signals)
}

/// Panics become one JSON error line on stdout instead of free text on stderr; the worker that caught it
/// answers 500 and counts it.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        log::event("error", "panic", |l| {
            l.str("thread", &thread).str("location", &location).str("message", &message);
        });
    }));
}
