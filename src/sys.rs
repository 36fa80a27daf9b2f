//! The only module with `unsafe`: small calls into libc that `std` does not offer.
//!
//! - `poll(2)`, so idle and slow connections wait in the kernel instead of occupying a worker thread;
//! - `listen(2)` again on the bound socket, to raise std's fixed backlog of 128;
//! - `getrlimit`/`setrlimit(RLIMIT_NOFILE)`, to lift the soft fd limit to the hard one, as Go does at start-up;
//! - `sysconf`, for the clock-tick rate and page size that /proc figures are expressed in;
//! - `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`, so /work burns the CPU time it was asked for, not wall time;
//! - `setpriority`, so /work threads yield the CPU to the threads that answer probes.
//!
//! libc is already in the tree through signal-hook. Every block carries its SAFETY argument.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, RawFd};

pub const POLLIN: i16 = libc::POLLIN;
pub const POLLOUT: i16 = libc::POLLOUT;
/// Conditions reported whether asked for or not; a connection with one of these is read to find out more.
pub const POLL_TROUBLE: i16 = libc::POLLERR | libc::POLLHUP | libc::POLLNVAL;

/// One entry of a `poll(2)` set. Same layout as `struct pollfd`.
pub type PollFd = libc::pollfd;

pub fn poll_entry(fd: RawFd, events: i16) -> PollFd {
    libc::pollfd { fd, events, revents: 0 }
}

/// Waits until an entry is ready or `timeout_ms` passes. EINTR counts as "nothing ready".
pub fn poll(fds: &mut [PollFd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: `fds` is a valid, exclusively borrowed slice of `pollfd` (the type libc declares for poll), and we
    // pass its exact length, so the kernel reads and writes only inside it. The fds themselves need not be valid:
    // poll reports a bad fd as POLLNVAL instead of touching memory.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(err);
    }
    Ok(n as usize)
}

/// Calls `listen(2)` again on an already listening socket: Linux then applies the new backlog.
pub fn set_listen_backlog(listener: &impl AsRawFd, backlog: u32) -> io::Result<()> {
    let backlog = backlog.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: `listen` takes an fd and an int and touches no memory of ours; the fd is borrowed from a live
    // listener for the duration of the call, so it cannot have been closed or reused.
    let rc = unsafe { libc::listen(listener.as_raw_fd(), backlog) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit and returns the resulting soft limit.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable `rlimit` on our stack, which is what getrlimit expects for this resource.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: `raised` is a valid `rlimit` that setrlimit only reads; raising soft up to hard needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(raised.rlim_cur);
        }
    }
    Ok(lim.rlim_cur)
}

/// `sysconf(_SC_CLK_TCK)`: the unit of the CPU times in /proc/self/stat (100 on every Linux we know).
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a constant from the C library and touches no memory of ours.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 { v as u64 } else { 100 }
}

/// `sysconf(_SC_PAGESIZE)`: the unit of the resident set in /proc/self/stat.
pub fn page_size() -> u64 {
    // SAFETY: as above; a constant lookup with no pointers.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 { v as u64 } else { 4096 }
}

/// CPU time consumed by the calling thread so far.
pub fn thread_cpu_time() -> std::time::Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable `timespec` on our stack, which is all clock_gettime writes; the clock id
    // is a constant the C library defines for this target.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Sets the calling thread's nice value. On Linux the nice value belongs to the thread, not the process, so
/// `setpriority(PRIO_PROCESS, 0, n)` changes only the caller; raising it needs no privilege.
#[cfg(target_os = "linux")]
pub fn set_this_thread_nice(nice: i32) -> io::Result<()> {
    // SAFETY: setpriority takes three integers and touches no memory of ours. `who` 0 is the calling thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Off Linux the nice value is per process, so lowering it would slow the event loops too: do nothing.
#[cfg(not(target_os = "linux"))]
pub fn set_this_thread_nice(_nice: i32) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn poll_reports_readable_and_times_out() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut fds = [poll_entry(b.as_raw_fd(), POLLIN)];
        assert_eq!(poll(&mut fds, 0).unwrap(), 0);
        a.write_all(b"x").unwrap();
        assert_eq!(poll(&mut fds, 1000).unwrap(), 1);
        assert!(fds[0].revents & POLLIN != 0);
    }

    #[test]
    fn thread_cpu_time_counts_this_threads_cpu_not_sleep() {
        let before = thread_cpu_time();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let slept = thread_cpu_time() - before;
        let start = std::time::Instant::now();
        let mut x = 1u64;
        while start.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(3));
        }
        let spun = thread_cpu_time() - before - slept;
        // Generous: sleeping costs almost nothing, spinning costs CPU (less than wall time on a busy machine).
        assert!(slept < std::time::Duration::from_millis(20), "sleep cost {slept:?}");
        assert!(spun > std::time::Duration::from_millis(1), "spin cost only {spun:?}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn nice_applies_to_the_calling_thread_only() {
        let nice_of = |tid: &str| -> i64 {
            let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
            // proc(5) field 19 is nice; fields after the last ')' start at field 3.
            stat[stat.rfind(')').unwrap() + 1..].split_ascii_whitespace().nth(16).unwrap().parse().unwrap()
        };
        let main_tid = std::fs::read_link("/proc/thread-self").unwrap();
        let main_tid = main_tid.file_name().unwrap().to_str().unwrap().to_string();
        let before = nice_of(&main_tid);
        let child = std::thread::spawn(move || {
            set_this_thread_nice(10).unwrap();
            let me = std::fs::read_link("/proc/thread-self").unwrap();
            nice_of(me.file_name().unwrap().to_str().unwrap())
        });
        assert_eq!(child.join().unwrap(), 10, "the calling thread takes the new value");
        assert_eq!(nice_of(&main_tid), before, "its siblings keep theirs");
    }

    #[test]
    fn constants_are_sane() {
        assert!(clock_ticks_per_second() >= 1);
        assert!(page_size().is_power_of_two());
        assert!(raise_fd_limit().unwrap() >= 64);
    }
}
