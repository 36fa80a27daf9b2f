//! Structured JSON logging on stdout.
//!
//! Request lines are appended to a per-worker [`LineBuffer`] and handed to one writer thread per event-loop
//! turn, through a bounded queue: a slow stdout (a full pipe to the kubelet) costs dropped lines, counted in
//! `sremini_log_lines_dropped_total`, never a blocked worker. Lifecycle events are rare and written directly.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};

use crate::{ascii, clock};

/// Every field value is cut to this many bytes (at a character boundary) before escaping.
pub const MAX_FIELD_BYTES: usize = 1024;
/// Bytes that may wait in the queue to stdout; past this, request lines are dropped and counted.
pub const MAX_QUEUED_BYTES: usize = 8 << 20;

struct Batch {
    bytes: Vec<u8>,
    lines: u64,
}

static QUEUE: OnceLock<SyncSender<Batch>> = OnceLock::new();
/// Bytes handed to the writer and not yet written: bounds memory, and tells `flush` when it is done.
static QUEUED_BYTES: AtomicUsize = AtomicUsize::new(0);
pub static DROPPED_LINES: AtomicU64 = AtomicU64::new(0);

/// Starts the writer thread. Without it (unit tests), batches go straight to stdout.
pub fn start() {
    QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::sync_channel::<Batch>(1024);
        if let Err(e) = std::thread::Builder::new().name("log-writer".into()).spawn(move || write_loop(rx)) {
            eprintln!("sre-mini: cannot start the log writer thread: {e}");
        }
        tx
    });
}

fn write_loop(rx: Receiver<Batch>) {
    let stdout = std::io::stdout();
    while let Ok(batch) = rx.recv() {
        let mut out = stdout.lock();
        let mut written = batch.bytes.len();
        let _ = out.write_all(&batch.bytes);
        // Take whatever else is already waiting before flushing, so a busy server makes few syscalls.
        while let Ok(more) = rx.try_recv() {
            written += more.bytes.len();
            let _ = out.write_all(&more.bytes);
        }
        let _ = out.flush();
        QUEUED_BYTES.fetch_sub(written, Ordering::Release);
    }
}

/// Request lines wait in a worker's buffer at most this long (or until it holds [`BATCH_BYTES`]), so a busy
/// worker hands the writer one batch per few hundred requests instead of waking it for every turn.
pub const BATCH_DELAY: std::time::Duration = std::time::Duration::from_millis(20);
pub const BATCH_BYTES: usize = 32 * 1024;

/// Request lines collected by one worker, handed to the writer in batches.
#[derive(Default)]
pub struct LineBuffer {
    bytes: Vec<u8>,
    lines: u64,
    first_at: Option<std::time::Instant>,
}

impl LineBuffer {
    pub fn push(&mut self, line: &JsonLine) {
        self.bytes.extend_from_slice(&line.buf);
        self.bytes.push(b'\n');
        self.lines += 1;
        self.first_at.get_or_insert_with(std::time::Instant::now);
    }

    /// When the buffered lines must be handed over, if any are buffered.
    pub fn due(&self) -> Option<std::time::Instant> {
        self.first_at.map(|t| t + BATCH_DELAY)
    }

    /// Hands the lines over if they have waited long enough or the batch is full.
    pub fn flush_if_due(&mut self, now: std::time::Instant) {
        if self.bytes.len() >= BATCH_BYTES || self.due().is_some_and(|d| now >= d) {
            self.flush();
        }
    }

    /// Hands the lines to the writer; never blocks. Keeps a modest buffer for the next turn.
    pub fn flush(&mut self) {
        if self.bytes.is_empty() {
            return;
        }
        let bytes = std::mem::replace(&mut self.bytes, Vec::with_capacity(BATCH_BYTES));
        let lines = std::mem::take(&mut self.lines);
        self.first_at = None;
        submit(Batch { bytes, lines });
    }
}

fn submit(batch: Batch) {
    let Some(queue) = QUEUE.get() else {
        let _ = std::io::stdout().lock().write_all(&batch.bytes);
        return;
    };
    let len = batch.bytes.len();
    if QUEUED_BYTES.fetch_add(len, Ordering::AcqRel) + len > MAX_QUEUED_BYTES {
        QUEUED_BYTES.fetch_sub(len, Ordering::AcqRel);
        DROPPED_LINES.fetch_add(batch.lines, Ordering::Relaxed);
        return;
    }
    if let Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) = queue.try_send(batch) {
        QUEUED_BYTES.fetch_sub(len, Ordering::AcqRel);
        DROPPED_LINES.fetch_add(b.lines, Ordering::Relaxed);
    }
}

/// Writes one lifecycle line synchronously, after whatever request lines are queued.
pub fn event(level: &str, msg: &str, fields: impl FnOnce(&mut JsonLine)) {
    let mut line = JsonLine::new(level, msg);
    fields(&mut line);
    write_line(line);
}

/// Writes one finished line synchronously, like [`event`]: for records that must not be dropped (audit).
pub fn write_line(line: JsonLine) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.finish().as_bytes());
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Waits (at most `limit`) until the writer has written everything queued so far. Used before exit.
pub fn flush(limit: std::time::Duration) {
    let deadline = std::time::Instant::now() + limit;
    while QUEUED_BYTES.load(Ordering::Acquire) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let _ = std::io::stdout().lock().flush();
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

    pub fn finish(mut self) -> String {
        self.buf.push(b'}');
        // Only escaped text and ASCII went in, so this never replaces anything.
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// Closes the object in place, for [`LineBuffer::push`].
    pub fn close(&mut self) {
        self.buf.push(b'}');
    }
}

/// Escapes for a JSON string, after cutting the input to [`MAX_FIELD_BYTES`].
pub fn escape_into(out: &mut Vec<u8>, value: &[u8]) {
    let value = &value[..value.len().min(MAX_FIELD_BYTES)];
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
