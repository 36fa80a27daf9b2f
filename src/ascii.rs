//! Decimal and hex digits without `core::fmt`, for the per-request path (status lines, lengths, log lines),
//! where the formatting machinery cost more than parsing the request.

/// Appends `n` in decimal.
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends `n` in decimal, left-padded with zeros to `width` digits.
pub fn push_padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let digits = if n == 0 { 1 } else { n.ilog10() as usize + 1 };
    out.extend(std::iter::repeat_n(b'0', width.saturating_sub(digits)));
    push_u64(out, n);
}

/// Appends `n` as 16 lowercase hex digits.
pub fn push_hex16(out: &mut Vec<u8>, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(HEX[((n >> (shift * 4)) & 0xf) as usize]);
    }
}

/// Appends a duration in milliseconds with three decimals (`12.345`), from whole microseconds.
pub fn push_millis(out: &mut Vec<u8>, micros: u64) {
    push_u64(out, micros / 1000);
    out.push(b'.');
    push_padded(out, micros % 1000, 3);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl Fn(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn matches_core_fmt() {
        for n in [0u64, 7, 10, 99, 100, 12345, u32::MAX as u64, u64::MAX] {
            assert_eq!(s(|o| push_u64(o, n)), n.to_string());
            assert_eq!(s(|o| push_hex16(o, n)), format!("{n:016x}"));
            assert_eq!(s(|o| push_padded(o, n, 4)), format!("{n:04}"));
        }
        assert_eq!(s(|o| push_millis(o, 0)), "0.000");
        assert_eq!(s(|o| push_millis(o, 1_234_567)), "1234.567");
        assert_eq!(s(|o| push_millis(o, 5)), "0.005");
    }
}
