//! Network I/O: the listening socket, the worker event loops, and the /work bulkhead.
//!
//! Each worker thread owns a set of connections and waits on them with `poll(2)` (see [`crate::sys`]).
//! Requests are parsed and answered synchronously on the worker; only /work leaves it, for the bulkhead.
//! So an idle keep-alive connection or a slowloris client costs a poll entry and a small buffer, never a
//! thread, and probes are answered at once whatever /work is doing.

pub mod bulkhead;
mod worker;

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{App, sys};

/// Wakes one worker out of `poll`: a byte on a socket pair it watches.
pub(crate) struct Waker(UnixStream);

impl Waker {
    pub(crate) fn wake(&self) {
        // A full socket buffer already guarantees a pending wake-up, so WouldBlock is success.
        let _ = (&self.0).write(&[1]);
    }
}

/// The running server: its address and its worker threads.
pub struct Server {
    pub addr: SocketAddr,
    workers: Vec<JoinHandle<()>>,
    wakers: Vec<Arc<Waker>>,
}

impl Server {
    /// Binds 0.0.0.0:PORT with the configured backlog and starts the workers.
    pub fn start(app: Arc<App>) -> io::Result<Server> {
        let listener = TcpListener::bind(("0.0.0.0", app.config.port))?;
        sys::set_listen_backlog(&listener, app.config.listen_backlog)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let listener = Arc::new(listener);
        let mut workers = Vec::new();
        let mut wakers = Vec::new();
        for id in 0..app.config.workers {
            let (wake_rx, wake_tx) = UnixStream::pair()?;
            wake_rx.set_nonblocking(true)?;
            wake_tx.set_nonblocking(true)?;
            let waker = Arc::new(Waker(wake_tx));
            let w = worker::Worker::new(Arc::clone(&app), Arc::clone(&listener), wake_rx, Arc::clone(&waker));
            workers.push(std::thread::Builder::new().name(format!("worker-{id}")).spawn(move || w.run())?);
            wakers.push(waker);
        }
        // Only the workers hold the listener now: when the last one lets go, the socket closes.
        drop(listener);
        Ok(Server { addr, workers, wakers })
    }

    /// Tells every worker to look at the shared state again (after a phase change).
    pub fn wake_all(&self) {
        for w in &self.wakers {
            w.wake();
        }
    }

    /// Waits until every worker has finished, or until `deadline`. True when all finished.
    pub fn wait_until(&self, deadline: Instant) -> bool {
        loop {
            if self.workers.iter().all(|h| h.is_finished()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
