//! Terminal escape sequences, seen from the masker's side: how long one is, and a copy of a
//! byte buffer with all of them removed (plus where the removed ones were).
//!
//! PTY output can interleave colour codes inside a secret (`AKIA\x1b[31mIOSF...`); detectors
//! match on the stripped text so such a secret is still seen. This is not a terminal emulator:
//! cursor movement and overwriting are not replayed.

use memchr::memchr;

/// Longest CSI sequence we accept; anything longer is treated as a lone ESC so that a
/// stray ESC cannot hide kilobytes of text from the detectors.
const MAX_CSI: usize = 64;

/// Longest OSC/DCS string we accept before the terminator (titles, hyperlinks).
const MAX_STRING: usize = 512;

/// The escape (ESC) byte.
pub(super) const ESC: u8 = 0x1b;

/// Length of the escape sequence starting at `b[i]` (which must be ESC). An unterminated
/// sequence at the end of `b` counts to the end of `b`.
pub(super) fn escape_len(b: &[u8], i: usize) -> usize {
    let rest = b.get(i..).unwrap_or_default();
    match rest.get(1) {
        None => 1,
        Some(b'[') => {
            let mut j = 2;
            while let Some(&c) = rest.get(j) {
                if j > MAX_CSI {
                    return 1;
                }
                if (0x40..=0x7e).contains(&c) {
                    return j + 1;
                }
                if !(0x20..=0x3f).contains(&c) {
                    return j;
                }
                j += 1;
            }
            j
        }
        Some(b']' | b'P' | b'X' | b'^' | b'_') => {
            let mut j = 2;
            while let Some(&c) = rest.get(j) {
                if j > MAX_STRING {
                    return 2;
                }
                if c == 0x07 {
                    return j + 1;
                }
                if c == ESC {
                    return if rest.get(j + 1) == Some(&b'\\') {
                        j + 2
                    } else {
                        j
                    };
                }
                j += 1;
            }
            j
        }
        Some(&c) if (0x20..=0x2f).contains(&c) => {
            let mut j = 2;
            while let Some(&c) = rest.get(j) {
                j += 1;
                if !(0x20..=0x2f).contains(&c) {
                    return j;
                }
            }
            j
        }
        Some(_) => 2,
    }
}

/// Where the escapes of a stripped buffer were: for each, the position in the stripped text
/// it preceded and the number of bytes removed up to and including it. A few entries per line
/// of coloured output instead of one index per byte.
#[derive(Debug, Default)]
pub(super) struct Removed(Vec<(usize, usize)>);

impl Removed {
    /// Index in the original buffer of byte `i` of the stripped text.
    pub(super) fn original(&self, i: usize) -> usize {
        let before = self.0.partition_point(|&(at, _)| at <= i);
        let shift = before
            .checked_sub(1)
            .and_then(|k| self.0.get(k))
            .map_or(0, |&(_, total)| total);
        i + shift
    }
}

/// Appends `b` to `out` with escape sequences removed, and returns where they were.
pub(super) fn strip_into(b: &[u8], out: &mut Vec<u8>) -> Removed {
    let base = out.len();
    let mut removed = Removed::default();
    let mut total = 0;
    let mut i = 0;
    while let Some(rest) = b.get(i..) {
        let Some(p) = memchr(ESC, rest) else {
            out.extend_from_slice(rest);
            break;
        };
        out.extend_from_slice(rest.get(..p).unwrap_or_default());
        let n = escape_len(b, i + p);
        total += n;
        removed.0.push((out.len() - base, total));
        i += p + n;
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        assert_eq!(escape_len(b"\x1b[31mX", 0), 5);
        assert_eq!(escape_len(b"\x1b[1;32mX", 0), 7);
        assert_eq!(escape_len(b"\x1b]0;title\x07X", 0), 10);
        assert_eq!(escape_len(b"\x1b]8;;http://x\x1b\\X", 0), 15);
        assert_eq!(escape_len(b"\x1b(BX", 0), 3);
        assert_eq!(escape_len(b"\x1b=X", 0), 2);
        assert_eq!(escape_len(b"\x1b[3", 0), 3);
        assert_eq!(escape_len(b"\x1b", 0), 1);
    }

    #[test]
    fn strips_and_maps() {
        let mut t = Vec::new();
        let removed = strip_into(b"ab\x1b[31mcd\x1b[0m", &mut t);
        assert_eq!(t, b"abcd");
        let m: Vec<usize> = (0..t.len()).map(|i| removed.original(i)).collect();
        assert_eq!(m, vec![0, 1, 7, 8]);
        let mut t = b"ctx".to_vec();
        let removed = strip_into(b"\x1b[1m\x1b[0mx\x1b[3", &mut t);
        assert_eq!(t, b"ctxx");
        assert_eq!(removed.original(0), 8);
    }
}
