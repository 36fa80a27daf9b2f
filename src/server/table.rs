//! The connection table: live connections indexed by the token the readiness set reports, each behind its own
//! mutex (uncontended: one-shot registration gives a connection to one worker at a time). Slots are allocated
//! in chunks on first use, so a fresh process holds almost nothing and memory follows the peak connection count.

use std::net::TcpStream;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use crate::conn::Conn;

/// Connection slots are allocated in chunks of this many, on first use.
const CHUNK: usize = 256;

/// A connection the loop holds: the socket, its machine, and the loop's own accounting.
pub(super) struct Live {
    pub(super) stream: TcpStream,
    pub(super) peer: String,
    pub(super) conn: Conn,
    /// Counted in `sremini_connections_open` (refused connections are not).
    pub(super) counted: bool,
    /// The earliest deadline already in some worker's heap for this connection.
    pub(super) timer: Option<Instant>,
    /// In the readiness set (a connection that starts /work at once has not asked for anything yet).
    pub(super) registered: bool,
}

#[derive(Default)]
pub(super) struct Slot {
    pub(super) generation: u32,
    pub(super) live: Option<Live>,
}

/// Slots indexed by the low 32 bits of a token; the high 32 bits are the slot's generation, so a report for a
/// connection that has since closed never reaches the one that took its slot.
/// `CHUNK` slots, allocated together when the first of them is needed.
type Chunk = Box<[Mutex<Slot>]>;

pub(super) struct Table {
    chunks: Box<[OnceLock<Chunk>]>,
    alloc: Mutex<(Vec<u32>, u32)>,
    capacity: u32,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a slot is caught by the handler guard; a poisoned lock still holds consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Table {
    pub(super) fn new(capacity: usize) -> Table {
        let capacity = capacity.min(u32::MAX as usize / 2) as u32;
        let chunks = (0..(capacity as usize).div_ceil(CHUNK)).map(|_| OnceLock::new()).collect();
        Table { chunks, alloc: Mutex::new((Vec::new(), 0)), capacity }
    }

    pub(super) fn slot(&self, index: u32) -> Option<&Mutex<Slot>> {
        let chunk = self.chunks.get(index as usize / CHUNK)?.get()?;
        chunk.get(index as usize % CHUNK)
    }

    /// Stores a new connection; its token, or None when the table is full.
    pub(super) fn insert(&self, live: Live) -> Option<u64> {
        let index = {
            let mut a = lock(&self.alloc);
            match a.0.pop() {
                Some(i) => i,
                None if a.1 < self.capacity => {
                    a.1 += 1;
                    a.1 - 1
                }
                None => return None,
            }
        };
        let chunk = self.chunks[index as usize / CHUNK]
            .get_or_init(|| (0..CHUNK).map(|_| Mutex::new(Slot::default())).collect());
        let mut slot = lock(&chunk[index as usize % CHUNK]);
        slot.generation = slot.generation.wrapping_add(1);
        slot.live = Some(live);
        Some(u64::from(slot.generation) << 32 | u64::from(index))
    }

    pub(super) fn release(&self, index: u32) {
        lock(&self.alloc).0.push(index);
    }

    pub(super) fn high_water(&self) -> u32 {
        lock(&self.alloc).1
    }
}
