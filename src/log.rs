//! Structured JSON logging on stdout, written by one thread that no other thread ever waits for.
//!
//! Every line goes through one queue, bounded in bytes, to the writer thread; no other thread touches stdout.
//! Request lines are batched per worker ([`LineBuffer`]) and dropped when the queue is full. Audit and lifecycle
//! lines may also use a reserve beyond that bound; an audit record that does not fit is refused ([`record`]
//! says so), and its drill changes nothing. A stalled stdout (a log shipper that stopped reading) therefore costs
//! dropped lines, counted in `sremini_log_lines_dropped_total`, and never a blocked worker.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use crate::{ascii, clock};

/// Every field value is cut to this many bytes before escaping (a character cut in half becomes U+FFFD).
pub const MAX_FIELD_BYTES: usize = 1024;
/// Bytes that may wait for stdout; past this, request lines are dropped and counted.
pub const MAX_QUEUED_BYTES: usize = 8 << 20;
/// Further bytes that audit and lifecycle lines may queue once request lines are being dropped.
pub const RESERVE_BYTES: usize = 1 << 20;
/// Request lines wait in a worker's buffer at most this long (or until it holds [`BATCH_BYTES`]), so a busy
/// worker hands the writer one batch per few hundred requests instead of waking it for every turn.
pub const BATCH_DELAY: Duration = Duration::from_millis(20);
pub const BATCH_BYTES: usize = 32 * 1024;

struct Batch {
    bytes: Vec<u8>,
    lines: u64,
}

static QUEUE: OnceLock<Sender<Batch>> = OnceLock::new();
/// Bytes handed to the writer and not yet written: the queue's bound, and what `flush` waits on.
static QUEUED_BYTES: AtomicUsize = AtomicUsize::new(0);
static DROPPED_LINES: AtomicU64 = AtomicU64::new(0);
static WRITE_ERRORS: AtomicU64 = AtomicU64::new(0);

/// The writer's counters, for the metrics page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub dropped_lines: u64,
    pub write_errors: u64,
}

pub fn stats() -> Stats {
    Stats { dropped_lines: DROPPED_LINES.load(Ordering::Relaxed), write_errors: WRITE_ERRORS.load(Ordering::Relaxed) }
}

/// Starts the writer thread. Without it (unit tests), lines go straight to stdout.
pub fn start() {
    QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Batch>();
        if let Err(e) = std::thread::Builder::new().name("log-writer".into()).spawn(move || write_loop(rx)) {
            eprintln!("sre-mini: cannot start the log writer thread: {e}");
        }
        tx
    });
}

fn write_loop(rx: Receiver<Batch>) {
    let mut out = std::io::stdout().lock();
    while let Ok(batch) = rx.recv() {
        // Take whatever else is already waiting, so a busy server makes few write calls.
        let mut batches = vec![batch];
        batches.extend(rx.try_iter());
        for b in batches {
            if out.write_all(&b.bytes).and_then(|()| out.flush()).is_err() {
                WRITE_ERRORS.fetch_add(1, Ordering::Relaxed);
                DROPPED_LINES.fetch_add(b.lines, Ordering::Relaxed);
            }
            QUEUED_BYTES.fetch_sub(b.bytes.len(), Ordering::Release);
        }
    }
}

/// Hands a batch to the writer if it fits under `limit` queued bytes; else drops and counts it.
fn submit(batch: Batch, limit: usize) -> bool {
    let Some(queue) = QUEUE.get() else {
        return std::io::stdout().lock().write_all(&batch.bytes).is_ok();
    };
    let (len, lines) = (batch.bytes.len(), batch.lines);
    let queued = QUEUED_BYTES.fetch_add(len, Ordering::AcqRel) + len <= limit && queue.send(batch).is_ok();
    if !queued {
        QUEUED_BYTES.fetch_sub(len, Ordering::AcqRel);
        DROPPED_LINES.fetch_add(lines, Ordering::Relaxed);
    }
    queued
}

/// Request lines collected by one worker, handed to the writer in batches.
#[derive(Default)]
pub struct LineBuffer {
    bytes: Vec<u8>,
    lines: u64,
    first_at: Option<Instant>,
}

impl LineBuffer {
    pub fn push(&mut self, mut line: JsonLine) {
        line.buf.extend_from_slice(b"}\n");
        self.bytes.extend_from_slice(&line.buf);
        self.lines += 1;
        self.first_at.get_or_insert_with(Instant::now);
    }

    /// When the buffered lines must be handed over, if any are buffered.
    pub fn due(&self) -> Option<Instant> {
        self.first_at.map(|t| t + BATCH_DELAY)
    }

    /// Hands the lines over if they have waited long enough or the batch is full.
    pub fn flush_if_due(&mut self, now: Instant) {
        if self.bytes.len() >= BATCH_BYTES || self.due().is_some_and(|d| now >= d) {
            self.flush();
        }
    }

    /// Hands the lines to the writer; never blocks. Keeps a modest buffer for the next turn.
    pub fn flush(&mut self) {
        if !self.bytes.is_empty() {
            let bytes = std::mem::replace(&mut self.bytes, Vec::with_capacity(BATCH_BYTES));
            self.first_at = None;
            submit(Batch { bytes, lines: std::mem::take(&mut self.lines) }, MAX_QUEUED_BYTES);
        }
    }
}

/// Queues one lifecycle line (dropped and counted only if even the reserve is full).
pub fn event(level: &str, msg: &str, fields: impl FnOnce(&mut JsonLine)) {
    let mut line = JsonLine::new(level, msg);
    fields(&mut line);
    record(line);
}

/// Queues one lifecycle line for a call that failed, with its error.
pub fn failure(level: &str, msg: &str, error: &dyn std::fmt::Display) {
    event(level, msg, |l| _ = l.str("error", &error.to_string()));
}

/// Queues one line that must not be lost silently (an audit record). False when it could not be queued.
pub fn record(mut line: JsonLine) -> bool {
    line.buf.extend_from_slice(b"}\n");
    submit(Batch { bytes: line.buf, lines: 1 }, MAX_QUEUED_BYTES + RESERVE_BYTES)
}

/// Waits (at most `limit`) until the writer has written everything queued so far. Used before exit.
pub fn flush(limit: Duration) {
    let deadline = Instant::now() + limit;
    while QUEUED_BYTES.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// At most `max` bytes of `v`.
pub fn cut(v: &[u8], max: usize) -> &[u8] {
    &v[..v.len().min(max)]
}

/// A JSON object under construction. Keys are our own literals; values are escaped and truncated.
pub struct JsonLine {
    buf: Vec<u8>,
}

thread_local! {
    /// `2026-11-26T10:53:57` for the current second: formatting a date per log line is not free.
    static SECOND_PREFIX: std::cell::RefCell<(i64, Vec<u8>)> = const { std::cell::RefCell::new((i64::MIN, Vec::new())) };
}

fn push_timestamp(out: &mut Vec<u8>) {
    let (secs, millis) = clock::unix_now();
    SECOND_PREFIX.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != secs {
            let full = clock::rfc3339_millis(secs, 0);
            cache.1.clear();
            cache.1.extend_from_slice(&full.as_bytes()[..full.len() - 5]);
            cache.0 = secs;
        }
        out.extend_from_slice(&cache.1);
    });
    out.push(b'.');
    ascii::push_padded(out, u64::from(millis), 3);
    out.push(b'Z');
}

impl JsonLine {
    pub fn new(level: &str, msg: &str) -> JsonLine {
        let mut line = JsonLine { buf: Vec::with_capacity(320) };
        line.buf.extend_from_slice(b"{\"ts\":\"");
        push_timestamp(&mut line.buf);
        line.buf.push(b'"');
        line.str("level", level);
        line.str("msg", msg);
        line
    }

    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.bytes(key, value.as_bytes())
    }

    /// Raw bytes from the wire: invalid UTF-8 becomes U+FFFD, controls and quotes are escaped.
    pub fn bytes(&mut self, key: &str, value: &[u8]) -> &mut Self {
        self.key(key);
        self.buf.push(b'"');
        escape_into(&mut self.buf, value);
        self.buf.push(b'"');
        self
    }

    pub fn num(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        use std::io::Write as _;
        self.key(key);
        let _ = write!(self.buf, "{value}");
        self
    }

    pub fn uint(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        ascii::push_u64(&mut self.buf, value);
        self
    }

    /// A duration as milliseconds with three decimals.
    pub fn millis(&mut self, key: &str, elapsed: std::time::Duration) -> &mut Self {
        self.key(key);
        ascii::push_millis(&mut self.buf, u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
        self
    }

    /// A value that is already a JSON document we produced (the config object).
    pub fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.key(key);
        self.buf.extend_from_slice(json.as_bytes());
        self
    }

    fn key(&mut self, key: &str) {
        self.buf.extend_from_slice(b",\"");
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    #[cfg(test)]
    pub fn finish(mut self) -> String {
        self.buf.push(b'}');
        String::from_utf8_lossy(&self.buf).into_owned()
    }
}

/// Escapes for a JSON string, after cutting the input to [`MAX_FIELD_BYTES`].
pub fn escape_into(out: &mut Vec<u8>, value: &[u8]) {
    let value = cut(value, MAX_FIELD_BYTES);
    // Most values are plain printable ASCII: copy that prefix in one go.
    let clean = value.iter().position(|&b| b < 0x20 || b == b'"' || b == b'\\' || b >= 0x7f).unwrap_or(value.len());
    out.extend_from_slice(&value[..clean]);
    for chunk in value[clean..].utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    out.extend_from_slice(b"\\u00");
                    out.push(b"0123456789abcdef"[(c as usize >> 4) & 0xf]);
                    out.push(b"0123456789abcdef"[c as usize & 0xf]);
                }
                c => out.extend_from_slice(c.encode_utf8(&mut [0u8; 4]).as_bytes()),
            }
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(v: &[u8]) -> String {
        let mut s = Vec::new();
        escape_into(&mut s, v);
        String::from_utf8(s).unwrap()
    }

    #[test]
    fn escapes_quotes_controls_and_bad_utf8() {
        assert_eq!(escaped(b"a\"b\\c"), "a\\\"b\\\\c");
        assert_eq!(escaped(b"\r\n\t\x00\x1b\x7f"), "\\r\\n\\t\\u0000\\u001b\\u007f");
        assert_eq!(escaped(b"ok\xff\xfe!"), "ok\u{fffd}\u{fffd}!");
        assert_eq!(escaped("é".as_bytes()), "é");
    }

    #[test]
    fn truncates_every_value_to_the_field_cap() {
        let long = vec![b'x'; 5000];
        assert_eq!(escaped(&long).len(), MAX_FIELD_BYTES);
        // A multi-byte character cut in half becomes one replacement character, never a panic.
        let mut cut = vec![b'a'; MAX_FIELD_BYTES - 1];
        cut.extend_from_slice("é".as_bytes());
        assert!(escaped(&cut).ends_with('\u{fffd}'));
    }

    #[test]
    fn a_line_is_one_json_object() {
        let mut l = JsonLine::new("info", "request");
        l.str("path", "/x\"y\n").num("status", 200);
        let s = l.finish();
        assert!(s.starts_with("{\"ts\":\"") && s.ends_with('}'));
        assert!(s.contains("\"path\":\"/x\\\"y\\n\""));
        assert!(s.contains("\"status\":200"));
        assert!(!s.contains('\n'));
    }
}
