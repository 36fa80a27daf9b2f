//! The only module with `unsafe`: four small calls into libc that `std` does not offer.
//!
//! - `poll(2)`, so idle and slow connections wait in the kernel instead of occupying a worker thread;
//! - `listen(2)` again on the bound socket, to raise std's fixed backlog of 128;
//! - `getrlimit`/`setrlimit(RLIMIT_NOFILE)`, to lift the soft fd limit to the hard one, as Go does at start-up;
//! - `sysconf`, for the clock-tick rate and page size that /proc figures are expressed in.
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
    fn constants_are_sane() {
        assert!(clock_ticks_per_second() >= 1);
        assert!(page_size().is_power_of_two());
        assert!(raise_fd_limit().unwrap() >= 64);
    }
}
