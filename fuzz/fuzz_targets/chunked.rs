//! Chunked decoder: never panics, `consumed <= len`, and any split of the input gives the
//! same outcome as feeding it at once (the server feeds whatever each read returned).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sre_mini::http::chunked::{ChunkedDecoder, ChunkedError, ChunkedLimits, Feed};

const SMALL: ChunkedLimits =
    ChunkedLimits { max_body: 64, max_chunk_ext: 16, max_trailer_bytes: 48, max_trailer_fields: 3 };

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Done { consumed: usize, body: u64 },
    Incomplete { body: u64 },
    Failed(ChunkedError),
}

fn run<'a>(limits: ChunkedLimits, pieces: impl Iterator<Item = &'a [u8]>) -> Outcome {
    let mut d = ChunkedDecoder::new(limits);
    let mut total = 0usize;
    for piece in pieces {
        match d.feed(piece) {
            Err(e) => {
                // Errors stick.
                assert_eq!(d.feed(b"0\r\n\r\n"), Err(e));
                return Outcome::Failed(e);
            }
            Ok(Feed { consumed, done }) => {
                assert!(consumed <= piece.len());
                total += consumed;
                if done {
                    assert_eq!(d.feed(b"x"), Ok(Feed { consumed: 0, done: true }));
                    return Outcome::Done { consumed: total, body: d.body_len() };
                }
                assert_eq!(consumed, piece.len());
            }
        }
    }
    Outcome::Incomplete { body: d.body_len() }
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the limits and the split pattern; the rest is the stream.
    let Some((&ctl, input)) = data.split_first() else { return };
    let limits = if ctl & 1 == 0 { ChunkedLimits::DEFAULT } else { SMALL };
    let whole = run(limits, std::iter::once(input));
    if let Outcome::Done { consumed, body } = whole {
        assert!(consumed <= input.len());
        assert!(body <= limits.max_body);
        assert!(body < consumed as u64);
    }
    assert_eq!(run(limits, input.chunks(1)), whole, "byte by byte");
    let step = usize::from(ctl >> 1) + 1;
    assert_eq!(run(limits, input.chunks(step)), whole, "chunks of {step}");
    // Uneven pieces: cut where the input has a byte equal to ctl.
    assert_eq!(run(limits, input.split_inclusive(|&b| b == ctl)), whole, "cut at {ctl:#x}");
    // With empty feeds in between.
    let with_empty = input.chunks(step).flat_map(|c| [c, &[][..]]);
    assert_eq!(run(limits, with_empty), whole, "with empty feeds");
});
