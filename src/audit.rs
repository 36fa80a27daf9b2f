//! The audit trail of state-changing requests: which drill changed what, from what to what, and who asked.
//!
//! Every request that reaches a drill handler (`/fail/*`, `/recover/*`, `/panic`) yields exactly one record: a
//! JSON line with `"msg":"audit"` written synchronously (like lifecycle events, never dropped under log pressure
//! as request lines may be), and one increment of `sremini_audit_events_total{action}`. [`record`] is pure: the
//! state before and after the handler and the request's context in, the line out. [`handle`] wraps the router and
//! returns the change; the connection machine emits it as an effect and the I/O shell [`emit`]s it with the peer.

use crate::App;
use crate::log::JsonLine;
use crate::router::{self, Method, Route};
use crate::state::{AppState, PPM};

/// The drill actions: their labels are one table in [`crate::labels`]; this maps routes to them.
pub use crate::labels::AuditAction as Action;

impl Action {
    pub fn of(route: Route) -> Option<Action> {
        match route {
            Route::FailReady => Some(Action::FailReady),
            Route::RecoverReady => Some(Action::RecoverReady),
            Route::FailWork => Some(Action::FailWork),
            Route::RecoverWork => Some(Action::RecoverWork),
            Route::Panic => Some(Action::Panic),
            _ => None,
        }
    }

    /// The piece of state the action is about, and its value in `snap`.
    fn target(self, snap: &Snapshot) -> (&'static str, String) {
        match self {
            Action::FailReady | Action::RecoverReady => {
                ("readiness_drill", if snap.ready_failed { "failed" } else { "off" }.into())
            }
            Action::FailWork | Action::RecoverWork => {
                ("work_error_ratio", (snap.work_error_ppm as f64 / PPM as f64).to_string())
            }
            Action::Panic => ("process", if snap.exiting { "exiting" } else { "running" }.into()),
        }
    }
}

/// The drill-controlled state, read before and after a handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub ready_failed: bool,
    /// The /fail/work ratio in parts per million, as the state keeps it.
    pub work_error_ppm: u64,
    pub exiting: bool,
}

impl Snapshot {
    pub fn of(state: &AppState) -> Snapshot {
        Snapshot {
            ready_failed: state.ready_failed(),
            work_error_ppm: (state.work_fail_ratio() * PPM as f64).round() as u64,
            exiting: false,
        }
    }
}

/// Who asked. `forwarded_for` is the X-Forwarded-For header as sent (empty when absent): it is what the proxy
/// claims, recorded beside the peer address the server saw, never instead of it.
pub struct Context<'a> {
    pub method: Method,
    pub remote: &'a str,
    pub forwarded_for: &'a [u8],
    pub request_id: &'a str,
    pub user_agent: &'a [u8],
}

/// The audit line for one drill request. `status` is the answer (0 for /panic, which is not answered).
pub fn record(action: Action, before: &Snapshot, after: &Snapshot, status: u16, ctx: &Context<'_>) -> JsonLine {
    let (target, from) = action.target(before);
    let (_, to) = action.target(after);
    let mut line = JsonLine::new("info", "audit");
    line.str("action", action.label())
        .str("target", target)
        .str("from", &from)
        .str("to", &to)
        .str("changed", if from == to { "false" } else { "true" })
        .uint("status", u64::from(status))
        .str("method", ctx.method.label())
        .str("remote", ctx.remote);
    if !ctx.forwarded_for.is_empty() {
        line.bytes("forwarded_for", ctx.forwarded_for);
    }
    line.str("request_id", ctx.request_id).bytes("user_agent", ctx.user_agent);
    line
}

/// What a drill request changed, for the I/O shell to record with the peer address it knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub action: Action,
    pub before: Snapshot,
    pub after: Snapshot,
    /// The answer (0 for /panic, which is not answered).
    pub status: u16,
    pub method: Method,
    pub forwarded_for: Vec<u8>,
    pub request_id: String,
    pub user_agent: Vec<u8>,
}

/// [`router::handle`], plus the change when the route is a drill the method may call. Pure over `app`'s state:
/// the connection machine turns the change into an effect, and [`emit`] writes it.
pub fn handle(
    app: &App,
    method: Method,
    route: Route,
    query: Option<&str>,
) -> (router::Action, Option<(Action, Snapshot, Snapshot, u16)>) {
    let action = Action::of(route).filter(|_| route.takes(method));
    let before = Snapshot::of(&app.state);
    let out = router::handle(app, method, route, query);
    let change = action.map(|action| {
        let mut after = Snapshot::of(&app.state);
        let status = match &out {
            router::Action::Respond(r) => r.status,
            router::Action::Panic => {
                after.exiting = true;
                0
            }
            router::Action::Work { .. } => 200,
        };
        (action, before, after, status)
    });
    (out, change)
}

/// Counts the event and writes its record synchronously (never dropped, unlike batched request lines).
pub fn emit(app: &App, ev: &Event, remote: &str) {
    app.metrics.audit_event(ev.action);
    let ctx = Context {
        method: ev.method,
        remote,
        forwarded_for: &ev.forwarded_for,
        request_id: &ev.request_id,
        user_agent: &ev.user_agent,
    };
    crate::log::write_line(record(ev.action, &ev.before, &ev.after, ev.status, &ctx));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(xff: &'a [u8]) -> Context<'a> {
        Context {
            method: Method::Post,
            remote: "10.0.0.7:5123",
            forwarded_for: xff,
            request_id: "rid-1",
            user_agent: b"curl/8",
        }
    }

    #[test]
    fn a_record_says_what_changed_and_who_asked() {
        let before = Snapshot { ready_failed: false, work_error_ppm: 0, exiting: false };
        let after = Snapshot { work_error_ppm: 250_000, ..before };
        let s = record(Action::FailWork, &before, &after, 200, &ctx(b"203.0.113.9, 10.0.0.1")).finish();
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
        ] {
            assert!(s.contains(want), "{want} missing from {s}");
        }
    }

    #[test]
    fn no_change_is_recorded_as_such_and_absent_headers_are_omitted() {
        let snap = Snapshot { ready_failed: true, work_error_ppm: 0, exiting: false };
        let s = record(Action::FailReady, &snap, &snap, 200, &ctx(b"")).finish();
        assert!(s.contains("\"from\":\"failed\",\"to\":\"failed\",\"changed\":\"false\""), "{s}");
        assert!(!s.contains("forwarded_for"), "{s}");
        let gone = Snapshot { exiting: true, ..snap };
        let p = record(Action::Panic, &snap, &gone, 0, &ctx(b"")).finish();
        assert!(p.contains("\"target\":\"process\",\"from\":\"running\",\"to\":\"exiting\""), "{p}");
    }

    #[test]
    fn every_drill_route_has_one_action_and_nothing_else_has_one() {
        for route in Route::ALL {
            assert_eq!(Action::of(route).is_some(), route.is_drill(), "{route:?}");
        }
        let labels: Vec<_> = Action::ALL.iter().map(|a| a.label()).collect();
        let mut dedup = labels.clone();
        dedup.dedup();
        assert_eq!(labels.len(), dedup.len());
        assert_eq!(Action::ALL.len(), Route::ALL.iter().filter(|r| r.is_drill()).count());
    }
}
