//! X-Request-Id: echo a well-formed inbound id, otherwise mint a unique one.

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

pub const MAX_LEN: usize = 128;

/// At most 128 characters of `[A-Za-z0-9._-]`: safe to echo in a header and a log line unchanged.
pub fn is_valid(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_LEN && id.iter().all(|&b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

static COUNTER: AtomicU64 = AtomicU64::new(0);
static SEED: OnceLock<u64> = OnceLock::new();

/// 16 hex digits. splitmix64 is a bijection, so ids never repeat within a process; the per-process random
/// seed (from std's hasher keys) keeps replicas from minting the same sequence.
pub fn generate() -> String {
    let seed = *SEED.get_or_init(|| std::collections::hash_map::RandomState::new().build_hasher().finish());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = Vec::with_capacity(16);
    crate::ascii::push_hex16(&mut id, splitmix64(seed.wrapping_add(n)));
    String::from_utf8_lossy(&id).into_owned()
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(is_valid(b"abc-123_X.y"));
        assert!(is_valid(&[b'a'; 128]));
        assert!(!is_valid(&[b'a'; 129]));
        assert!(!is_valid(b""));
        for bad in [&b"a b"[..], b"a\"b", b"a\r\nX-Evil: 1", b"\xff", b"a/b"] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| generate()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|i| i.len() == 16 && is_valid(i.as_bytes())));
    }
}
