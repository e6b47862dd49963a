//! Word-at-a-time byte search for the codecs: eight bytes per step instead of one, for the
//! scans that run over every byte of every message (header lines, header values, JSON
//! strings).
//!
//! Owns: the zero-byte and equal-byte masks and [`find_any`]. Must not touch: what a found
//! byte means (each codec decides).

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of each zero byte of `y` (little-endian). A flag can be false only above a
/// true one (a borrow runs upwards), so the lowest flag always marks the first zero byte.
pub(crate) fn zero_bytes(y: u64) -> u64 {
    y.wrapping_sub(ONES) & !y & HIGH
}

/// The high bit of each byte of `x` equal to `c`, exact at the lowest flag as [`zero_bytes`].
pub(crate) fn eq_bytes(x: u64, c: u8) -> u64 {
    zero_bytes(x ^ (ONES * u64::from(c)))
}

/// The high bit of each byte of `x` below `n` (`n` ≤ 128), exact at the lowest flag.
pub(crate) fn below(x: u64, n: u8) -> u64 {
    x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH
}

/// The index of the first byte at or after `i` that is one of `set`, or `b.len()` when none
/// is. The OR of the per-byte masks is exact at its lowest flag too: each mask's false
/// flags lie above a true flag of the same mask.
pub(crate) fn find_any<const N: usize>(b: &[u8], mut i: usize, set: [u8; N]) -> usize {
    while let Some(chunk) = b.get(i..i + 8).and_then(|c| <[u8; 8]>::try_from(c).ok()) {
        let x = u64::from_le_bytes(chunk);
        let found = set.iter().fold(0, |m, &c| m | eq_bytes(x, c));
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(c) = b.get(i) {
        if set.contains(c) {
            return i;
        }
        i += 1;
    }
    b.len()
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // a failing index in a test is a failing test
mod tests {
    use super::*;

    /// Every position and alignment, against a plain byte search, with bytes on both sides of
    /// each searched value (the borrow cases: 0x00 and 0x01 next to each other, 0x80 and up).
    #[test]
    fn find_any_agrees_with_a_byte_search() {
        let alphabet = [
            0u8, 1, b'\n', b'\r', b':', b';', b'\\', b']', b'a', 0x7f, 0x80, 0xff,
        ];
        let mut seed = 7u32;
        for len in 0..40 {
            for _ in 0..200 {
                let b: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                        alphabet[(seed >> 16) as usize % alphabet.len()]
                    })
                    .collect();
                for from in 0..=len {
                    let want = |set: &[u8]| {
                        b[from..]
                            .iter()
                            .position(|c| set.contains(c))
                            .map_or(len, |p| from + p)
                    };
                    assert_eq!(
                        find_any(&b, from, [b'\n']),
                        want(b"\n"),
                        "{b:?} from {from}"
                    );
                    assert_eq!(
                        find_any(&b, from, [b'\n', 0, b':', b'\\']),
                        want(b"\n\0:\\"),
                        "{b:?} from {from}"
                    );
                }
            }
        }
    }

    #[test]
    fn below_flags_the_first_small_byte() {
        let x = u64::from_le_bytes(*b"ab\x1fcd\x00ef");
        assert_eq!(below(x, 0x20).trailing_zeros() / 8, 2);
        let x = u64::from_le_bytes(*b"abcdefgh");
        assert_eq!(below(x, 0x20), 0);
    }
}
