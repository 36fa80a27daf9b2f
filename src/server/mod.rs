//! Network I/O: the listening socket and the worker threads.
//!
//! `WORKERS` threads wait on one shared readiness set (see [`event_loop`]) and carry out what each connection's
//! machine ([`crate::conn`]) decides. Requests are parsed and answered on whichever worker is woken; only /work
//! leaves it, for the bulkhead. So an idle keep-alive connection or a slowloris client costs a registration and a
//! small buffer, never a thread and never a scan, and probes are answered at once whatever /work is doing.

mod event_loop;
mod table;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::app::App;
use crate::sys;

/// The running server: its address and its worker threads.
pub struct Server {
    pub addr: SocketAddr,
    workers: Vec<JoinHandle<()>>,
    shared: Arc<event_loop::Shared>,
}

impl Server {
    /// Binds 0.0.0.0:PORT with the configured backlog and starts the workers.
    pub fn start(app: Arc<App>) -> io::Result<Server> {
        let listener = TcpListener::bind(("0.0.0.0", app.config.port))?;
        sys::set_listen_backlog(&listener, app.config.listen_backlog)?;
        // Accepted sockets inherit it on Linux (checked in `sys`); elsewhere `sys::accept` sets it on each.
        sys::set_listener_nodelay(&listener)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(event_loop::Shared::new(Arc::clone(&app), listener)?);
        let mut workers = Vec::new();
        for id in 0..app.config.workers {
            let w = event_loop::Worker::new(Arc::clone(&shared));
            workers.push(std::thread::Builder::new().name(format!("worker-{id}")).spawn(move || w.run())?);
        }
        Ok(Server { addr, workers, shared })
    }

    /// Wakes a worker to look at the shared state again (after a phase change); from shutdown on, every
    /// worker also looks at least every 50 ms.
    pub fn wake_all(&self) {
        self.shared.done.notify();
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
