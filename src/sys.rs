//! The only module with `unsafe`: small calls into libc that `std` does not offer.
//!
//! - the readiness set: `epoll(7)` on Linux (one set shared by every worker, each entry one-shot), and a
//!   `poll(2)` emulation of the same interface elsewhere, so idle and slow connections wait in the kernel
//!   instead of occupying a worker thread;
//! - `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)` on Linux, so an accepted socket needs no further set-up calls, and
//!   `TCP_NODELAY` on the listener, which Linux copies to every accepted socket (tested below);
//! - `listen(2)` again on the bound socket, to raise std's fixed backlog of 128;
//! - `getrlimit`/`setrlimit(RLIMIT_NOFILE)`, to lift the soft fd limit to the hard one, as Go does at start-up;
//! - `sysconf`, for the clock-tick rate and page size that /proc figures are expressed in;
//! - `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`, so /work burns the CPU time it was asked for, not wall time;
//! - `setpriority`, so /work threads yield the CPU to the threads that answer probes.
//!
//! libc is already in the tree through signal-hook. Every block carries its SAFETY argument.
#![allow(unsafe_code)]

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

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

/// What the readiness set reported for one registered fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub token: u64,
    pub readable: bool,
    pub writable: bool,
    /// Error or hang-up: reported whether asked for or not.
    pub trouble: bool,
}

/// Milliseconds for a kernel wait, rounded up so a deadline a fraction of a millisecond away does not spin.
fn timeout_ms(timeout: Duration) -> i32 {
    timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
}

/// One readiness set shared by every worker thread. Each registration is one-shot: after it fires, the fd is
/// reported to nobody else until the worker that took it calls [`Poller::arm`] again, so a connection is only
/// ever in one worker's hands and needs no lock of its own against the kernel.
#[cfg(target_os = "linux")]
pub struct Poller {
    epoll: std::os::fd::OwnedFd,
}

#[cfg(target_os = "linux")]
impl Poller {
    pub fn new() -> io::Result<Poller> {
        use std::os::fd::FromRawFd;
        // SAFETY: epoll_create1 takes a flag and touches no memory of ours.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by epoll_create1, is open, and nothing else owns it.
        Ok(Poller { epoll: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) } })
    }

    /// Registers (`first`) or re-arms `fd` for one report of the readiness asked for.
    pub fn arm(&self, fd: RawFd, token: u64, read: bool, write: bool, first: bool) -> io::Result<()> {
        let mut events = libc::EPOLLONESHOT as u32;
        if read {
            events |= libc::EPOLLIN as u32;
        }
        if write {
            events |= libc::EPOLLOUT as u32;
        }
        let mut ev = libc::epoll_event { events, u64: token };
        let op = if first { libc::EPOLL_CTL_ADD } else { libc::EPOLL_CTL_MOD };
        // SAFETY: `ev` is a valid epoll_event on our stack that epoll_ctl only reads during the call; the epoll
        // fd is owned by `self`; a stale or closed `fd` makes the call fail with EBADF/ENOENT, not touch memory.
        let rc = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut ev) };
        if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }

    /// Closing an fd removes it from the set; nothing to do.
    pub fn forget(&self, _token: u64) {}

    /// Waits until something is ready or `timeout` passes, and appends what is ready to `out`.
    pub fn wait(&self, out: &mut Vec<Readiness>, timeout: Duration) -> io::Result<()> {
        const BATCH: usize = 128;
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; BATCH];
        // SAFETY: `evs` is a writable array of BATCH epoll_events on our stack and we pass exactly BATCH, so the
        // kernel writes only inside it; the epoll fd is owned by `self`.
        let n =
            unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), evs.as_mut_ptr(), BATCH as i32, timeout_ms(timeout)) };
        if n < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(err) };
        }
        for ev in &evs[..n as usize] {
            let (events, token) = (ev.events, ev.u64);
            out.push(Readiness {
                token,
                readable: events & libc::EPOLLIN as u32 != 0,
                writable: events & libc::EPOLLOUT as u32 != 0,
                trouble: events & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0,
            });
        }
        Ok(())
    }
}

/// The same interface over `poll(2)`, off Linux: the armed set is rebuilt for every wait. A registration made
/// while another thread already waits is seen at that thread's next wait, so waits are capped at 50 ms.
#[cfg(not(target_os = "linux"))]
pub struct Poller {
    armed: std::sync::Mutex<std::collections::HashMap<u64, PollFd>>,
}

#[cfg(not(target_os = "linux"))]
impl Poller {
    pub fn new() -> io::Result<Poller> {
        Ok(Poller { armed: std::sync::Mutex::new(std::collections::HashMap::new()) })
    }

    pub fn arm(&self, fd: RawFd, token: u64, read: bool, write: bool, _first: bool) -> io::Result<()> {
        let mut events = 0;
        if read {
            events |= POLLIN;
        }
        if write {
            events |= POLLOUT;
        }
        self.armed.lock().unwrap_or_else(|e| e.into_inner()).insert(token, poll_entry(fd, events));
        Ok(())
    }

    /// Drops a registration before its fd is closed, so a reused fd number is not polled for the old token.
    pub fn forget(&self, token: u64) {
        self.armed.lock().unwrap_or_else(|e| e.into_inner()).remove(&token);
    }

    pub fn wait(&self, out: &mut Vec<Readiness>, timeout: Duration) -> io::Result<()> {
        let (tokens, mut fds): (Vec<u64>, Vec<PollFd>) =
            self.armed.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(t, f)| (*t, *f)).unzip();
        let n = poll(&mut fds, timeout_ms(timeout.min(Duration::from_millis(50))))?;
        if n == 0 {
            return Ok(());
        }
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        for (token, f) in tokens.into_iter().zip(fds) {
            if f.revents == 0 || armed.get(&token).map(|a| a.fd) != Some(f.fd) {
                continue;
            }
            armed.remove(&token);
            out.push(Readiness {
                token,
                readable: f.revents & POLLIN != 0,
                writable: f.revents & POLLOUT != 0,
                trouble: f.revents & POLL_TROUBLE != 0,
            });
        }
        Ok(())
    }
}

/// Accepts one connection, already non-blocking and close-on-exec, in one system call.
#[cfg(target_os = "linux")]
pub fn accept(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::FromRawFd;
    // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: `addr` and `len` are valid and writable, `len` holds the size of `addr`, so the kernel writes at
    // most that many bytes into it; the listener fd is borrowed from a live listener for the call.
    let fd = unsafe { libc::accept4(listener.as_raw_fd(), (&raw mut addr).cast::<libc::sockaddr>(), &mut len, flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new, open socket returned by accept4 that nothing else owns.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let peer = match i32::from(addr.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel reported AF_INET, so `addr` holds a sockaddr_in, which fits inside storage
            // and has no stricter alignment.
            let a = unsafe { &*(&raw const addr).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for AF_INET6 and sockaddr_in6.
            let a = unsafe { &*(&raw const addr).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            SocketAddr::V6(SocketAddrV6::new(ip, u16::from_be(a.sin6_port), a.sin6_flowinfo, a.sin6_scope_id))
        }
        _ => stream.peer_addr()?,
    };
    Ok((stream, peer))
}

/// Accepts one connection and makes it non-blocking (two calls: no `accept4` here).
#[cfg(not(target_os = "linux"))]
pub fn accept(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    let (stream, peer) = listener.accept()?;
    stream.set_nonblocking(true)?;
    stream.set_nodelay(true)?;
    Ok((stream, peer))
}

/// Sets `TCP_NODELAY` on the listener. On Linux accepted sockets inherit it, which saves a call per accept.
pub fn set_listener_nodelay(listener: &TcpListener) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `on` is a valid int that setsockopt only reads, and we pass its exact size; the fd is borrowed
    // from a live listener for the call.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&raw const on).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
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
pub fn thread_cpu_time() -> io::Result<Duration> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable `timespec` on our stack, which is all clock_gettime writes; the clock id
    // is a constant the C library defines for this target.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
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

    #[cfg(target_os = "linux")]
    #[test]
    fn accept4_gives_a_nonblocking_socket_that_inherits_nodelay_and_the_peer() {
        use std::io::Read;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        set_listener_nodelay(&listener).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut s, peer) = accept(&listener).unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        // The fact the accept path relies on: Linux copies TCP_NODELAY from the listener to the accepted socket.
        assert!(s.nodelay().unwrap(), "TCP_NODELAY not inherited from the listener");
        let err = s.read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "accepted socket must be non-blocking");
        // Without the listener option, the accepted socket has Nagle on: the option is what is inherited.
        let plain = TcpListener::bind("127.0.0.1:0").unwrap();
        let _c = TcpStream::connect(plain.local_addr().unwrap()).unwrap();
        let (s2, _) = accept(&plain).unwrap();
        assert!(!s2.nodelay().unwrap());
    }

    #[test]
    fn poller_reports_once_until_rearmed() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let p = Poller::new().unwrap();
        p.arm(b.as_raw_fd(), 7, true, false, true).unwrap();
        let mut out = Vec::new();
        p.wait(&mut out, Duration::ZERO).unwrap();
        assert!(out.is_empty());
        a.write_all(b"x").unwrap();
        p.wait(&mut out, Duration::from_secs(5)).unwrap();
        assert_eq!(out.len(), 1);
        assert!(out[0].token == 7 && out[0].readable);
        out.clear();
        // Still readable, but one-shot: nothing until re-armed.
        p.wait(&mut out, Duration::from_millis(20)).unwrap();
        assert!(out.is_empty());
        p.arm(b.as_raw_fd(), 7, true, false, false).unwrap();
        p.wait(&mut out, Duration::from_secs(5)).unwrap();
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn thread_cpu_time_counts_this_threads_cpu_not_sleep() {
        let now = || thread_cpu_time().unwrap();
        let before = now();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let slept = now() - before;
        let start = std::time::Instant::now();
        let mut x = 1u64;
        while start.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(3));
        }
        let spun = now() - before - slept;
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
