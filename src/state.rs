//! Shared run-time state that handlers read and drills change: readiness, the shutdown phase, and the
//! /work fault ratio. All atomics: probes must never wait on a lock.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

/// One million: the /work fault ratio is kept in parts per million so it fits an atomic integer.
pub const PPM: u64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    Starting = 0,
    Serving = 1,
    /// SIGTERM seen: unready, still accepting, every response closes its connection.
    ShuttingDown = 2,
    /// The listener is closed; in-flight requests finish, idle connections close.
    Draining = 3,
}

#[derive(Debug, Default)]
pub struct AppState {
    phase: AtomicU8,
    /// Set by /fail/ready, cleared by /recover/ready.
    ready_failed: AtomicBool,
    work_fail_ppm: AtomicU64,
    work_seq: AtomicU64,
}

impl AppState {
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Serving,
            2 => Phase::ShuttingDown,
            _ => Phase::Draining,
        }
    }

    /// Phases only move forward.
    pub fn advance(&self, to: Phase) {
        self.phase.fetch_max(to as u8, Ordering::AcqRel);
    }

    pub fn shutting_down(&self) -> bool {
        self.phase() >= Phase::ShuttingDown
    }

    pub fn is_ready(&self) -> bool {
        self.phase() == Phase::Serving && !self.ready_failed.load(Ordering::Acquire)
    }

    /// Whether the /fail/ready drill is on (the audit trail reads it; readiness also depends on the phase).
    pub fn ready_failed(&self) -> bool {
        self.ready_failed.load(Ordering::Acquire)
    }

    /// Readiness cannot come back once shutdown has begun, whatever this says: see [`AppState::is_ready`].
    pub fn set_ready_failed(&self, failed: bool) {
        self.ready_failed.store(failed, Ordering::Release);
    }

    pub fn set_work_fail_ppm(&self, ppm: u64) {
        self.work_fail_ppm.store(ppm.min(PPM), Ordering::Release);
    }

    pub fn work_fail_ppm(&self) -> u64 {
        self.work_fail_ppm.load(Ordering::Acquire)
    }

    /// Deterministic error injection: of any run of n consecutive /work requests, floor or ceil of n·ratio fail,
    /// so drills and tests see exactly the configured fraction rather than a random walk.
    pub fn next_work_fails(&self) -> bool {
        let ppm = self.work_fail_ppm.load(Ordering::Acquire);
        if ppm == 0 {
            return false;
        }
        let n = self.work_seq.fetch_add(1, Ordering::AcqRel);
        let before = (n as u128 * ppm as u128) / PPM as u128;
        let after = ((n + 1) as u128 * ppm as u128) / PPM as u128;
        after > before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_phase_and_drills() {
        let s = AppState::default();
        assert!(!s.is_ready(), "not ready before start-up completes");
        s.advance(Phase::Serving);
        assert!(s.is_ready());
        s.set_ready_failed(true);
        assert!(!s.is_ready());
        s.set_ready_failed(false);
        assert!(s.is_ready());
        s.advance(Phase::ShuttingDown);
        assert!(!s.is_ready());
        s.set_ready_failed(false);
        assert!(!s.is_ready(), "no recovery while shutting down");
        s.advance(Phase::Serving);
        assert_eq!(s.phase(), Phase::ShuttingDown, "phases never go back");
    }

    #[test]
    fn fault_ratio_is_exact() {
        let s = AppState::default();
        for (ppm, n, expected) in
            [(500_000, 1000, 500), (PPM, 10, 10), (0, 10, 0), (100_000, 1000, 100), (333_333, 3000, 999)]
        {
            s.set_work_fail_ppm(ppm);
            let fails = (0..n).filter(|_| s.next_work_fails()).count();
            assert!((fails as i64 - expected as i64).abs() <= 1, "ppm {ppm}: {fails} of {n}");
        }
    }
}
