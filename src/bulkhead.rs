//! The /work bulkhead: admission, the thread pool /work runs on, and the CPU gate its CPU phase passes.
//!
//! - **Admission.** At most `WORK_MAX_CONCURRENT` /work requests at once, and at most `WORK_CPU_BACKLOG_MS` of
//!   CPU time admitted and not yet burned. Past either, the caller answers 503 at once: a request the pod cannot
//!   start within its latency budget is better refused, so the client retries another replica.
//! - **Threads.** A pool that starts a thread only when every live one is busy, reuses it, and retires it after
//!   [`IDLE_THREAD_RETIRE`] without work. Admission caps queued plus running jobs at the slot count, so the pool
//!   never holds more threads than slots.
//! - **CPU.** The CPU phase is handed to [`CpuBurners`]: as many threads as there are usable CPUs (the cgroup
//!   quota rounded up), each burning its own CPU time (not wall time) for one request at a time, in arrival
//!   order. The /work thread waits meanwhile, so the wait is part of the request's duration. Burners run at a
//!   lower priority ([`BURNER_NICE`]), so under a CFS quota the event loops that answer probes and /metrics are
//!   scheduled first. Only burners are niced: they share no lock with the loops, so a descheduled low-priority
//!   thread can never hold a lock a loop is waiting for (the pool threads, which do share one, stay at 0).

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::Thread;
use std::time::Duration;

use crate::{log, sys};

/// /work threads only sleep and spin; a small stack keeps 500 of them cheap.
const WORK_THREAD_STACK: usize = 128 * 1024;
/// A pool thread with no job for this long exits; the next burst starts threads again.
pub const IDLE_THREAD_RETIRE: Duration = Duration::from_secs(30);
/// Nice value of the CPU burners: well below the event loops (0), so a full CFS quota is spent on /work only
/// after the loops have had what they need.
pub const BURNER_NICE: i32 = 10;

/// How a /work request ended: the one outcome type, from admission to the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkOutcome {
    Done,
    /// The work panicked; the caller answers 500.
    Panicked,
    /// Not admitted; the caller answers 503 at once.
    Refused(Refused),
}

/// Why a /work request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every slot is taken (`WORK_MAX_CONCURRENT`).
    Full,
    /// The CPU time already admitted would exceed `WORK_CPU_BACKLOG_MS`.
    CpuBacklog,
}

/// The bulkhead's sizes, fixed at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkLimits {
    pub max_concurrent: usize,
    /// Threads allowed to burn CPU at once.
    pub cpu_slots: usize,
    pub cpu_backlog: Duration,
    pub idle_retire: Duration,
}

/// The bulkhead and its pool, as a scrape shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkStats {
    pub active: usize,
    pub max_concurrent: usize,
    pub cpu_slots: usize,
    pub threads: usize,
    pub threads_started: u64,
    pub cpu_backlog: Duration,
}

type DoneFn = Box<dyn FnOnce(WorkOutcome) + Send>;

struct Job {
    id: u64,
    cpu: Duration,
    delay: Duration,
    admitted: Admitted,
    done: DoneFn,
}

#[derive(Default)]
struct Pool {
    jobs: VecDeque<Job>,
    threads: usize,
    busy: usize,
}

struct Inner {
    limits: WorkLimits,
    active: AtomicUsize,
    cpu_backlog_nanos: AtomicU64,
    threads_started: AtomicU64,
    next_job: AtomicU64,
    pool: Mutex<Pool>,
    job_ready: Condvar,
    burners: CpuBurners,
}

pub struct Bulkhead {
    inner: Arc<Inner>,
}

/// Holds one admitted request's slot and CPU reservation; released when the job ends, however it ends.
struct Admitted {
    inner: Arc<Inner>,
    cpu_nanos: u64,
}

impl Admitted {
    /// The CPU phase is over: its share of the backlog is no longer owed.
    fn cpu_burned(&mut self) {
        self.inner.cpu_backlog_nanos.fetch_sub(std::mem::take(&mut self.cpu_nanos), Ordering::AcqRel);
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.cpu_burned();
        self.inner.active.fetch_sub(1, Ordering::AcqRel);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Jobs run outside the lock and their panics are caught, so a poisoned lock still holds consistent state.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Bulkhead {
    pub fn new(limits: WorkLimits) -> Bulkhead {
        Bulkhead {
            inner: Arc::new(Inner {
                burners: CpuBurners::new(limits.cpu_slots),
                limits,
                active: AtomicUsize::new(0),
                cpu_backlog_nanos: AtomicU64::new(0),
                threads_started: AtomicU64::new(0),
                next_job: AtomicU64::new(0),
                pool: Mutex::new(Pool::default()),
                job_ready: Condvar::new(),
            }),
        }
    }

    pub fn limits(&self) -> WorkLimits {
        self.inner.limits
    }

    pub fn active(&self) -> usize {
        self.inner.active.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> WorkStats {
        WorkStats {
            active: self.active(),
            max_concurrent: self.inner.limits.max_concurrent,
            cpu_slots: self.inner.limits.cpu_slots,
            threads: lock(&self.inner.pool).threads,
            threads_started: self.inner.threads_started.load(Ordering::Relaxed),
            cpu_backlog: Duration::from_nanos(self.inner.cpu_backlog_nanos.load(Ordering::Acquire)),
        }
    }

    /// Runs one /work (burn `cpu` of CPU time, then sleep `delay`) or refuses it. `done` runs exactly once:
    /// at once with [`WorkOutcome::Refused`], or on the pool thread after the slot is released, so a caller
    /// woken by it can admit more.
    pub fn start(&self, cpu: Duration, delay: Duration, done: impl FnOnce(WorkOutcome) + Send + 'static) {
        if let Err(why) = self.admit(cpu, delay, Box::new(done)) {
            why.1(WorkOutcome::Refused(why.0));
        }
    }

    fn admit(&self, cpu: Duration, delay: Duration, done: DoneFn) -> Result<(), (Refused, DoneFn)> {
        let inner = &self.inner;
        if inner.active.fetch_add(1, Ordering::AcqRel) >= inner.limits.max_concurrent {
            inner.active.fetch_sub(1, Ordering::AcqRel);
            return Err((Refused::Full, done));
        }
        let cpu_nanos = cpu.as_nanos().min(u64::MAX as u128) as u64;
        let backlog_max = inner.limits.cpu_backlog.as_nanos().min(u64::MAX as u128) as u64;
        let reserved = inner.cpu_backlog_nanos.fetch_update(Ordering::AcqRel, Ordering::Acquire, |owed| {
            owed.checked_add(cpu_nanos).filter(|&total| cpu_nanos == 0 || total <= backlog_max)
        });
        if reserved.is_err() {
            inner.active.fetch_sub(1, Ordering::AcqRel);
            return Err((Refused::CpuBacklog, done));
        }
        let admitted = Admitted { inner: Arc::clone(inner), cpu_nanos };
        let id = inner.next_job.fetch_add(1, Ordering::Relaxed);
        let job = Job { id, cpu, delay, admitted, done };
        let mut pool = lock(&inner.pool);
        pool.jobs.push_back(job);
        // Every thread that is not busy takes a queued job before it waits, so a new thread is needed only
        // when the queue outnumbers them.
        if pool.jobs.len() <= pool.threads - pool.busy {
            inner.job_ready.notify_one();
            return Ok(());
        }
        pool.threads += 1;
        drop(pool);
        // Spawned outside the lock: a clone() takes tens of microseconds, and pool threads need the lock to finish.
        let spawned = std::thread::Builder::new().name("work".into()).stack_size(WORK_THREAD_STACK).spawn({
            let inner = Arc::clone(inner);
            move || pool_thread(&inner)
        });
        if spawned.is_ok() {
            inner.threads_started.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let mut pool = lock(&inner.pool);
        pool.threads -= 1;
        // With a thread alive, it comes back to the queue when its job ends. With none, nobody ever would: take
        // this job back (if no thread raced us to it) and refuse. Dropping it releases its slot.
        if pool.threads == 0
            && let Some(at) = pool.jobs.iter().position(|j| j.id == id)
        {
            let job = pool.jobs.remove(at).expect("found above");
            return Err((Refused::Full, job.done));
        }
        Ok(())
    }
}

fn pool_thread(inner: &Inner) {
    let mut pool = lock(&inner.pool);
    loop {
        if let Some(Job { cpu, delay, mut admitted, done, .. }) = pool.jobs.pop_front() {
            pool.busy += 1;
            drop(pool);
            let outcome = run(inner, cpu, delay, &mut admitted);
            // This thread counts as free again before the slot is: a request admitted into the freed slot then
            // finds it, and the pool never needs more threads than slots.
            pool = lock(&inner.pool);
            pool.busy -= 1;
            drop(admitted);
            drop(pool);
            done(outcome);
            pool = lock(&inner.pool);
            continue;
        }
        let (guard, wait) =
            inner.job_ready.wait_timeout(pool, inner.limits.idle_retire).unwrap_or_else(PoisonError::into_inner);
        pool = guard;
        if wait.timed_out() && pool.jobs.is_empty() {
            pool.threads -= 1;
            return;
        }
    }
}

fn run(inner: &Inner, cpu: Duration, delay: Duration, admitted: &mut Admitted) -> WorkOutcome {
    let work = || {
        if !cpu.is_zero() {
            inner.burners.burn(cpu);
        }
        admitted.cpu_burned();
        std::thread::sleep(delay);
    };
    catch_unwind(AssertUnwindSafe(work)).map_or(WorkOutcome::Panicked, |()| WorkOutcome::Done)
}

/// Burns `cpu` of this thread's own CPU time, however long that takes in wall time under contention. If the
/// thread's CPU clock cannot be read, says so and burns wall time instead: a burn must end.
fn burn_cpu(cpu: Duration) {
    let wall = std::time::Instant::now();
    let start = sys::thread_cpu_time()
        .inspect_err(|e| log::failure("error", "cannot read the thread CPU clock: burning wall time", e))
        .ok();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while start.zip(sys::thread_cpu_time().ok()).map_or(wall.elapsed(), |(s, t)| t.saturating_sub(s)) < cpu {
        for _ in 0..1000 {
            x = std::hint::black_box(x.rotate_left(5) ^ x.wrapping_mul(0x5851_F42D_4C95_7F2D));
        }
    }
}

/// A fixed set of low-priority threads, started on first use, that burn CPU for /work in arrival order. A caller
/// queues its request and parks until a burner has finished it; only that caller is woken.
pub struct CpuBurners {
    shared: Arc<BurnShared>,
}

struct BurnShared {
    slots: usize,
    queue: Mutex<BurnQueue>,
    work_ready: Condvar,
}

#[derive(Default)]
struct BurnQueue {
    requests: VecDeque<BurnRequest>,
    burners: usize,
    busy: usize,
}

struct BurnRequest {
    cpu: Duration,
    caller: Thread,
    finished: Arc<AtomicBool>,
}

impl CpuBurners {
    pub fn new(slots: usize) -> CpuBurners {
        CpuBurners {
            shared: Arc::new(BurnShared {
                slots: slots.max(1),
                queue: Mutex::new(BurnQueue::default()),
                work_ready: Condvar::new(),
            }),
        }
    }

    /// Burns `cpu` of CPU time on a burner thread and returns when it is done. Burns on the calling thread
    /// instead if no burner exists and none can be started.
    pub fn burn(&self, cpu: Duration) {
        let shared = &self.shared;
        let finished = Arc::new(AtomicBool::new(false));
        let mut q = lock(&shared.queue);
        q.requests.push_back(BurnRequest { cpu, caller: std::thread::current(), finished: Arc::clone(&finished) });
        let start_one = q.requests.len() > q.burners - q.busy && q.burners < shared.slots;
        if start_one {
            q.burners += 1;
        } else {
            shared.work_ready.notify_one();
        }
        drop(q);
        if start_one {
            let for_thread = Arc::clone(shared);
            let spawned = std::thread::Builder::new()
                .name("burn".into())
                .stack_size(WORK_THREAD_STACK)
                .spawn(move || burner_thread(&for_thread));
            if spawned.is_err() {
                let mut q = lock(&shared.queue);
                q.burners -= 1;
                if q.burners == 0 {
                    q.requests.retain(|r| !Arc::ptr_eq(&r.finished, &finished));
                    drop(q);
                    burn_cpu(cpu);
                    return;
                }
            }
        }
        // park may return spuriously; only the flag set by the burner means the request is done.
        while !finished.load(Ordering::Acquire) {
            std::thread::park();
        }
    }
}

fn burner_thread(shared: &BurnShared) {
    if let Err(e) = sys::set_this_thread_nice(BURNER_NICE) {
        // Not fatal (there are only as many burners as usable CPUs), but probes then compete with /work.
        log::failure("warn", "cannot lower a CPU burner's priority", &e);
    }
    let mut q = lock(&shared.queue);
    loop {
        if let Some(r) = q.requests.pop_front() {
            q.busy += 1;
            drop(q);
            burn_cpu(r.cpu);
            r.finished.store(true, Ordering::Release);
            r.caller.unpark();
            q = lock(&shared.queue);
            q.busy -= 1;
            continue;
        }
        q = shared.work_ready.wait(q).unwrap_or_else(PoisonError::into_inner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    const GENEROUS: Duration = Duration::from_secs(20);

    impl CpuBurners {
        /// Burner threads started so far: never more than the slots.
        fn burners(&self) -> usize {
            lock(&self.shared.queue).burners
        }
    }

    impl Bulkhead {
        fn try_start(
            &self,
            cpu: Duration,
            delay: Duration,
            done: impl FnOnce(WorkOutcome) + Send + 'static,
        ) -> Result<(), Refused> {
            self.admit(cpu, delay, Box::new(done)).map_err(|e| e.0)
        }
    }

    fn limits(max_concurrent: usize, cpu_backlog_ms: u64) -> WorkLimits {
        WorkLimits {
            max_concurrent,
            cpu_slots: 1,
            cpu_backlog: Duration::from_millis(cpu_backlog_ms),
            idle_retire: Duration::from_millis(200),
        }
    }

    #[test]
    fn admits_up_to_the_limit_then_refuses_and_frees_slots() {
        let b = Bulkhead::new(limits(3, 1000));
        let (tx, rx) = mpsc::channel();
        for _ in 0..3 {
            let tx = tx.clone();
            b.try_start(Duration::ZERO, Duration::from_millis(200), move |o| tx.send(o).unwrap()).unwrap();
        }
        assert_eq!(b.try_start(Duration::ZERO, Duration::ZERO, |_| {}), Err(Refused::Full), "fourth must be refused");
        for _ in 0..3 {
            assert_eq!(rx.recv_timeout(GENEROUS).unwrap(), WorkOutcome::Done);
        }
        // Slots are released before `done` runs.
        assert_eq!(b.active(), 0);
        b.try_start(Duration::from_millis(5), Duration::ZERO, move |o| tx.send(o).unwrap()).unwrap();
        assert_eq!(rx.recv_timeout(GENEROUS).unwrap(), WorkOutcome::Done);
    }

    #[test]
    fn threads_are_reused_across_bursts_and_never_exceed_the_slots() {
        let b = Bulkhead::new(WorkLimits { idle_retire: GENEROUS, ..limits(8, 1000) });
        let (tx, rx) = mpsc::channel();
        for burst in 0..3 {
            for _ in 0..8 {
                let tx = tx.clone();
                b.try_start(Duration::ZERO, Duration::from_millis(50), move |o| tx.send(o).unwrap()).unwrap();
            }
            for _ in 0..8 {
                assert_eq!(rx.recv_timeout(GENEROUS).unwrap(), WorkOutcome::Done);
            }
            let s = b.stats();
            assert!(s.threads <= 8 && s.threads_started <= 8, "burst {burst}: {s:?}");
        }
        assert!(b.stats().threads_started >= 1);
    }

    #[test]
    fn idle_threads_retire() {
        let b = Bulkhead::new(limits(4, 1000));
        let (tx, rx) = mpsc::channel();
        b.try_start(Duration::ZERO, Duration::ZERO, move |o| tx.send(o).unwrap()).unwrap();
        assert_eq!(rx.recv_timeout(GENEROUS).unwrap(), WorkOutcome::Done);
        let deadline = std::time::Instant::now() + GENEROUS;
        while b.stats().threads > 0 {
            assert!(std::time::Instant::now() < deadline, "idle thread never retired");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(b.stats().threads_started, 1);
    }

    #[test]
    fn cpu_backlog_is_a_separate_limit_and_is_released_after_the_cpu_phase() {
        let b = Bulkhead::new(limits(10, 100));
        let (tx, rx) = mpsc::channel();
        let t = tx.clone();
        b.try_start(Duration::from_millis(60), Duration::from_millis(300), move |o| t.send(o).unwrap()).unwrap();
        assert_eq!(b.try_start(Duration::from_millis(60), Duration::ZERO, |_| {}), Err(Refused::CpuBacklog));
        // Sleep-only /work owes no CPU, so a full CPU backlog never refuses it.
        let t = tx.clone();
        b.try_start(Duration::ZERO, Duration::ZERO, move |o| t.send(o).unwrap()).unwrap();
        assert_eq!(rx.recv_timeout(GENEROUS).unwrap(), WorkOutcome::Done);
        // Once the first has burned its CPU (and is only sleeping), its share is free again.
        let deadline = std::time::Instant::now() + GENEROUS;
        while b.stats().cpu_backlog > Duration::ZERO {
            assert!(std::time::Instant::now() < deadline, "backlog never released");
            std::thread::sleep(Duration::from_millis(5));
        }
        b.try_start(Duration::from_millis(60), Duration::ZERO, move |o| tx.send(o).unwrap()).unwrap();
        assert_eq!(rx.recv_timeout(GENEROUS).unwrap(), WorkOutcome::Done);
        assert_eq!(rx.recv_timeout(GENEROUS).unwrap(), WorkOutcome::Done);
    }

    #[test]
    fn cpu_phase_burns_thread_cpu_time() {
        let before = crate::process::ProcessInfo::at_start().read().unwrap().cpu_seconds;
        let b = Bulkhead::new(limits(4, 1000));
        let (tx, rx) = mpsc::channel();
        b.try_start(Duration::from_millis(200), Duration::ZERO, move |o| tx.send(o).unwrap()).unwrap();
        assert_eq!(rx.recv_timeout(GENEROUS).unwrap(), WorkOutcome::Done);
        let used = crate::process::ProcessInfo::at_start().read().unwrap().cpu_seconds - before;
        // The process clock ticks at 100 Hz; other tests run alongside, so only the lower bound is meaningful.
        assert!(used >= 0.18, "200 ms of CPU asked, process CPU rose by {used:.3} s");
    }

    #[test]
    fn burners_never_outnumber_their_slots_and_finish_every_request() {
        let burners = Arc::new(CpuBurners::new(2));
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let burners = Arc::clone(&burners);
                std::thread::spawn(move || burners.burn(Duration::from_millis(5)))
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(burners.burners() <= 2, "{} burners for 2 slots", burners.burners());
        assert!(burners.burners() >= 1);
    }
}
