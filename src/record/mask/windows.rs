//! Windows for card numbers and IBANs, which have no fixed string to search for: a card is 13
//! to 19 digits with single spaces or dashes, an IBAN two capitals, two digits and at least 11
//! more digits or capitals with single spaces. Both lie in a run of at least [`MIN_WINDOW`]
//! bytes of digits, capitals, spaces and dashes. Probing one byte in [`MIN_WINDOW`] skips
//! ordinary text; a probe that lands in such a run grows it, and a long run is checked for a
//! place where the card or IBAN pattern can start (13 digits from a digit 2-6 at a word
//! boundary; a known country code, two digits and 11 more characters).
//!
//! Like the other finders this only narrows where the detectors run, so every check errs
//! towards yes; the detectors decide.

use super::detect;

/// The shortest span a card number (13 digits) or an IBAN (15 characters) can cover, and so
/// the probing stride of the window finder.
const MIN_WINDOW: usize = 13;

/// A run that may hold a card number or an IBAN.
#[derive(Debug)]
pub(super) struct Found {
    /// Its first byte.
    pub(super) start: usize,
    /// One past its last byte; the search continues here.
    pub(super) end: usize,
    /// Whether a card number may start in it.
    pub(super) card: bool,
    /// Whether an IBAN may start in it.
    pub(super) iban: bool,
}

/// The first run at or after `from` (a line start, or where the previous search ended) that
/// may hold a card number (when `card`) or an IBAN (when `iban`).
pub(super) fn find(text: &[u8], from: usize, card: bool, iban: bool) -> Option<Found> {
    let mut probe = from + MIN_WINDOW - 1;
    while let Some(&c) = text.get(probe) {
        // A probe outside every window: no window of MIN_WINDOW bytes covers it, and the
        // next probe is the last byte such a window starting after it could reach.
        let k = class(c);
        let inside = k & ALNUM != 0
            || (k == SEP && alnum_at(text, probe.wrapping_sub(1)) && alnum_at(text, probe + 1));
        if !inside {
            probe += MIN_WINDOW;
            continue;
        }
        let w = Window::around(text, probe);
        let (mut found_card, mut found_iban) = (false, false);
        if w.end - w.start >= MIN_WINDOW {
            let (digits, capitals) = w.counts(text);
            found_card = card && digits >= 13 && card_window(text, w.start, w.end);
            found_iban = iban
                && capitals >= 2
                && digits + capitals >= 15
                && iban_window(text, w.start, w.end);
        }
        if found_card || found_iban {
            return Some(Found {
                start: w.start,
                end: w.end,
                card: found_card,
                iban: found_iban,
            });
        }
        // Byte `w.end` ends the window, so the next one starts after it.
        probe = w.end + MIN_WINDOW;
    }
    None
}

/// Class bit of a decimal digit.
const DIGIT: u8 = 1;
/// Class bit of an ASCII capital.
const CAPITAL: u8 = 2;
/// Either of the above: what windows are made of.
const ALNUM: u8 = DIGIT | CAPITAL;
/// Class of a single separator inside a window (space between IBAN groups, space or dash
/// between card digit groups).
const SEP: u8 = 4;

/// The window class of every byte value: one load per byte examined instead of a chain of
/// range tests (the window finder's loops run on a good part of every log line).
static CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = if c.is_ascii_digit() {
            DIGIT
        } else if c.is_ascii_uppercase() {
            CAPITAL
        } else if c == b' ' || c == b'-' {
            SEP
        } else {
            0
        };
        i += 1;
    }
    t
};

fn class(c: u8) -> u8 {
    CLASSES.get(usize::from(c)).copied().unwrap_or(0)
}

/// The class of `text[i]`, 0 outside the text.
fn class_at(text: &[u8], i: usize) -> u8 {
    text.get(i).map_or(0, |&c| class(c))
}

fn alnum_at(text: &[u8], i: usize) -> bool {
    class_at(text, i) & ALNUM != 0
}

fn digit_at(text: &[u8], i: usize) -> bool {
    class_at(text, i) == DIGIT
}

/// Each byte's high bit: the flag bit of the word-at-a-time test.
const HIGH: u64 = 0x8080_8080_8080_8080;
/// Each byte 1.
const ONES: u64 = 0x0101_0101_0101_0101;

/// For eight bytes at once (little-endian), the high bit of each byte that is a digit, a
/// capital, a space or a dash; branch-free.
fn window_bytes(x: u64) -> u64 {
    let low7 = x & !HIGH;
    // High bit set where the byte's low seven bits are at least `m` (no carry crosses bytes).
    let at_least = |m: u64| (low7 + ONES * (0x80 - m)) & HIGH;
    let digit = at_least(0x30) & !at_least(0x3a);
    let capital = at_least(0x41) & !at_least(0x5b);
    let equal = |m: u64| {
        let t = low7 ^ (ONES * m);
        !((t + !HIGH) | t) & HIGH
    };
    (digit | capital | equal(0x20) | equal(0x2d)) & !x
}

/// Eight bytes from `at` as a word, or `None` near the end of the text.
fn word_at(text: &[u8], at: usize) -> Option<u64> {
    let bytes: [u8; 8] = text.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// A maximal run of digits, capitals, spaces and dashes: the only kind of text a card number
/// or an IBAN fits in (the checks then parse their separators exactly).
#[derive(Debug)]
struct Window {
    /// Its first byte.
    start: usize,
    /// One past its last byte; the byte here is none of the four.
    end: usize,
}

impl Window {
    /// The window holding `probe`. Past a first byte, it grows eight bytes per step without
    /// a branch per byte: the lengths of the runs in log text (numbers, timestamps, capitalised
    /// words) are as random as its numbers, and a byte loop would mispredict its exit at each.
    fn around(text: &[u8], probe: usize) -> Window {
        let mut end = probe + 1;
        while class_at(text, end) != 0 {
            let Some(x) = word_at(text, end) else {
                while class_at(text, end) != 0 {
                    end += 1;
                }
                break;
            };
            let run = (!window_bytes(x) & HIGH).trailing_zeros() as usize / 8;
            end += run;
            if run < 8 {
                break;
            }
        }
        let mut start = probe;
        while class_at(text, start.wrapping_sub(1)) != 0 {
            let Some(x) = start.checked_sub(8).and_then(|at| word_at(text, at)) else {
                while start > 0 && class_at(text, start - 1) != 0 {
                    start -= 1;
                }
                break;
            };
            let run = (!window_bytes(x) & HIGH).leading_zeros() as usize / 8;
            start -= run;
            if run < 8 {
                break;
            }
        }
        Window { start, end }
    }

    /// Digits and capitals in it.
    fn counts(&self, text: &[u8]) -> (usize, usize) {
        let bytes = text.get(self.start..self.end).unwrap_or_default();
        bytes.iter().fold((0, 0), |(d, k), &c| {
            let c = class(c);
            (d + usize::from(c == DIGIT), k + usize::from(c == CAPITAL))
        })
    }
}

/// A byte the regex crate's ASCII `\w` matches.
fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Whether `text[i]` starts a word (`\b` before a word byte).
fn word_start(text: &[u8], i: usize) -> bool {
    i.checked_sub(1)
        .and_then(|p| text.get(p))
        .is_none_or(|&c| !is_word(c))
}

/// Whether the window holds a place where the card regex can start: a digit 2–6 at a word
/// boundary with at least 13 digits from it to the end of its digit run (digits with single
/// separators; a capital ends the run).
fn card_window(text: &[u8], start: usize, end: usize) -> bool {
    let digit_at = |i: usize| i < end && digit_at(text, i);
    let mut i = start;
    while i < end {
        if !digit_at(i) {
            i += 1;
            continue;
        }
        let run = i;
        let mut total = 0;
        let mut j = i;
        while j < end {
            if digit_at(j) {
                total += 1;
            } else if !(class_at(text, j) == SEP && digit_at(j + 1)) {
                break;
            }
            j += 1;
        }
        let mut before = 0;
        for p in run..j {
            if total - before < 13 {
                break;
            }
            let Some(&c) = text.get(p) else { break };
            if class(c) != DIGIT {
                continue;
            }
            let boundary = if p == run {
                word_start(text, p)
            } else {
                class_at(text, p - 1) == SEP
            };
            if boundary && (b'2'..=b'6').contains(&c) {
                return true;
            }
            before += 1;
        }
        i = j.max(i + 1);
    }
    false
}

/// Whether the window holds a place where the IBAN regex can start and its check can pass:
/// a known country code at a word boundary, two digits, then at least 11 more digits or
/// capitals with single spaces.
fn iban_window(text: &[u8], start: usize, end: usize) -> bool {
    let alnum_in = |i: usize| i < end && alnum_at(text, i);
    for s in start..end.saturating_sub(3) {
        if class_at(text, s) != CAPITAL
            || class_at(text, s + 1) != CAPITAL
            || class_at(text, s + 2) != DIGIT
            || class_at(text, s + 3) != DIGIT
            || !word_start(text, s)
            || !text.get(s..s + 2).is_some_and(detect::iban_country)
        {
            continue;
        }
        let mut n = 0;
        let mut k = s + 4;
        while n < 11 && k < end {
            if alnum_in(k) {
                n += 1;
                k += 1;
            } else if text.get(k) == Some(&b' ') && alnum_in(k + 1) {
                k += 1;
            } else {
                break;
            }
        }
        if n >= 11 {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_test_agrees_with_the_byte_classes() {
        for c in 0..=255u8 {
            for lane in 0..8 {
                let mut bytes = [b'x'; 8];
                bytes[lane] = c;
                let flags = window_bytes(u64::from_le_bytes(bytes));
                let want = if class(c) != 0 {
                    0x80u64 << (8 * lane)
                } else {
                    0
                };
                assert_eq!(flags, want, "byte {c:#x} in lane {lane}");
            }
        }
    }
}
