//! The /work bulkhead: at most N /work requests run at once, each on its own short-lived thread, so a
//! saturated /work never takes capacity from probes or metrics. Over the limit, the caller answers 503 at once.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// /work threads only sleep and spin; a small stack keeps 500 of them cheap.
const WORK_THREAD_STACK: usize = 128 * 1024;

/// How a /work run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkOutcome {
    Done,
    /// The work panicked; the caller answers 500.
    Panicked,
}

pub struct Bulkhead {
    max: usize,
    active: Arc<AtomicUsize>,
}

/// Releases a slot when the work thread ends, however it ends.
struct Permit(Arc<AtomicUsize>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Bulkhead {
    pub fn new(max: usize) -> Bulkhead {
        Bulkhead { max, active: Arc::new(AtomicUsize::new(0)) }
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Starts one /work run, or returns false at once when the bulkhead is full (or no thread can be made).
    /// `done` runs on the work thread after the slot is released, so a caller woken by it can admit more.
    pub fn try_start(&self, cpu: Duration, delay: Duration, done: impl FnOnce(WorkOutcome) + Send + 'static) -> bool {
        if self.active.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.active.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        let permit = Permit(Arc::clone(&self.active));
        let spawned = std::thread::Builder::new().name("work".into()).stack_size(WORK_THREAD_STACK).spawn(move || {
            let outcome = match catch_unwind(AssertUnwindSafe(|| run_work(cpu, delay))) {
                Ok(()) => WorkOutcome::Done,
                Err(_) => WorkOutcome::Panicked,
            };
            drop(permit);
            done(outcome);
        });
        // On spawn failure the closure, and with it the permit, has already been dropped.
        spawned.is_ok()
    }
}

/// Burns `cpu` of wall time on this core (so the HPA drill sees real CPU), then sleeps `delay`.
fn run_work(cpu: Duration, delay: Duration) {
    let start = Instant::now();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while start.elapsed() < cpu {
        for _ in 0..1000 {
            x = std::hint::black_box(x.rotate_left(5) ^ x.wrapping_mul(0x5851_F42D_4C95_7F2D));
        }
    }
    std::thread::sleep(delay);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn admits_up_to_the_limit_then_refuses_and_frees_slots() {
        let b = Bulkhead::new(3);
        let (tx, rx) = mpsc::channel();
        for _ in 0..3 {
            let tx = tx.clone();
            assert!(b.try_start(Duration::ZERO, Duration::from_millis(200), move |o| tx.send(o).unwrap()));
        }
        assert!(!b.try_start(Duration::ZERO, Duration::ZERO, |_| {}), "fourth must be refused");
        for _ in 0..3 {
            assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), WorkOutcome::Done);
        }
        // Slots are released before `done` runs.
        assert_eq!(b.active(), 0);
        assert!(b.try_start(Duration::from_millis(5), Duration::ZERO, move |o| tx.send(o).unwrap()));
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), WorkOutcome::Done);
    }
}
