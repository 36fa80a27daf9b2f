//! Signals and the shutdown sequence: unready at once, keep serving for SHUTDOWN_DELAY_MS with
//! `Connection: close`, close the listener, drain in-flight requests for up to DRAIN_TIMEOUT_MS, exit.
//! A second signal exits at once.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::app::App;
use crate::log;
use crate::server::Server;
use crate::state::Phase;

/// Registered before the server starts, so a signal during start-up is not lost.
pub fn register() -> std::io::Result<Signals> {
    Signals::new([SIGTERM, SIGINT])
}

fn name(sig: i32) -> &'static str {
    match sig {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        _ => "signal",
    }
}

/// Blocks until the first signal, then runs the sequence. Returns the process exit code.
pub fn wait_and_drain(app: Arc<App>, server: Server, mut signals: Signals) -> ExitCode {
    let Some(sig) = signals.forever().next() else {
        return ExitCode::FAILURE;
    };
    // Unready first, then say so: whoever reads the log line must already see /readyz answer 503.
    app.state.advance(Phase::ShuttingDown);
    server.wake_all();
    let cfg = &app.config;
    log::event("info", "signal", |l| {
        l.str("signal", name(sig))
            .num("shutdown_delay_ms", cfg.shutdown_delay.as_millis())
            .num("drain_timeout_ms", cfg.drain_timeout.as_millis());
    });

    let second = std::thread::Builder::new().name("signals".into()).spawn(move || {
        if let Some(sig) = signals.forever().next() {
            log::event("warn", "second signal: exiting now", |l| {
                l.str("signal", name(sig));
            });
            log::flush(std::time::Duration::from_millis(100));
            std::process::exit(128 + sig);
        }
    });
    if second.is_err() {
        log::event("warn", "cannot watch for a second signal", |_| {});
    }

    std::thread::sleep(cfg.shutdown_delay);
    app.state.advance(Phase::Draining);
    server.wake_all();
    log::event("info", "draining", |l| {
        l.str("listener", "closing")
            .num("in_flight", app.metrics.in_flight.load(Ordering::Relaxed))
            .num("connections_open", app.metrics.connections_open.load(Ordering::Relaxed));
    });

    let drained = server.wait_until(Instant::now() + cfg.drain_timeout);
    let abandoned_requests = app.metrics.in_flight.load(Ordering::Relaxed).max(0);
    let abandoned_connections = app.metrics.connections_open.load(Ordering::Relaxed).max(0);
    // Connections that never sent a byte are not requests: only unanswered requests make the exit non-zero.
    let clean = abandoned_requests == 0;
    // Counted before the last log line, so a scrape racing the exit and the log both see the same figure.
    app.metrics.drain_abandoned.fetch_add(abandoned_requests as u64, Ordering::Relaxed);
    log::event(if clean { "info" } else { "error" }, "stopped", |l| {
        l.num("drained", drained)
            .num("abandoned_requests", abandoned_requests)
            .num("abandoned_connections", if drained { 0 } else { abandoned_connections });
    });
    log::flush(std::time::Duration::from_millis(500));
    if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
