//! Terminal escape sequences, seen from the masker's side: how long one is, and a copy of a
//! byte buffer with all of them removed (plus where each remaining byte came from).
//!
//! PTY output can interleave colour codes inside a secret (`AKIA\x1b[31mIOSF...`); detectors
//! match on the stripped text so such a secret is still seen. This is not a terminal emulator:
//! cursor movement and overwriting are not replayed.

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

/// `b` without escape sequences, and for each kept byte its index in `b`.
pub(super) fn strip(b: &[u8]) -> (Vec<u8>, Vec<usize>) {
    let mut text = Vec::with_capacity(b.len());
    let mut map = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == ESC {
            i += escape_len(b, i);
        } else {
            text.push(c);
            map.push(i);
            i += 1;
        }
    }
    (text, map)
}

/// Appends `b` with escape sequences removed.
pub(super) fn strip_into(b: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == ESC {
            i += escape_len(b, i);
        } else {
            out.push(c);
            i += 1;
        }
    }
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
        let (t, m) = strip(b"ab\x1b[31mcd\x1b[0m");
        assert_eq!(t, b"abcd");
        assert_eq!(m, vec![0, 1, 7, 8]);
    }
}
