//! Lowercase hex digits written without `core::fmt`, for ids that go out on every
//! request (lease tokens, request ids), where `format!("{:x}")` cost more than the
//! rest of building them.

/// `n` in lowercase hex, no leading zeros (`0` for zero), in `buf`.
pub fn lower_hex(n: u64, buf: &mut [u8; 16]) -> &str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let len = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, b) in buf[..len].iter_mut().enumerate() {
        *b = DIGITS[(n >> (4 * (len - 1 - i)) & 0xf) as usize];
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[..len]).unwrap_or("0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_formatter() {
        for n in [
            0,
            1,
            9,
            10,
            15,
            16,
            255,
            256,
            0xdead_beef,
            u64::MAX,
            1 << 60,
        ] {
            assert_eq!(lower_hex(n, &mut [0; 16]), format!("{n:x}"));
        }
    }
}
