//! Card numbers: the card pattern matched without the regex engine, and the checks that
//! confirm a match (grouping, no decimal fraction, Luhn).
//!
//! The pattern `\b[2-6][0-9](?:[ -]?[0-9]){11,17}\b` starts with 50 two-digit prefixes, so the
//! regex crate's literal search stops at nearly every digit pair of numeric output (metrics,
//! tables) and hands each to its automaton: about 60 MB/s on such text. Matched here by hand
//! the same text is checked at a few hundred MB/s. The regex stays the specification: a test
//! compares both on generated digit runs.

/// Calls `found(start, end)` for each match of the card pattern in `line`, leftmost first and
/// non-overlapping, exactly as the regex crate's `find_iter` reports them.
pub(super) fn matches(line: &[u8], mut found: impl FnMut(usize, usize)) {
    let mut at = 0;
    while let Some(start) = next_start(line, at) {
        match match_end(line, start) {
            Some(end) => {
                found(start, end);
                at = end;
            }
            None => at = start + 1,
        }
    }
}

/// The first place at or after `at` where the pattern can start: a digit 2-6 at a word
/// boundary, followed by a digit. One pass; a digit inside a number is never a start.
fn next_start(line: &[u8], at: usize) -> Option<usize> {
    let mut prev_word = at
        .checked_sub(1)
        .and_then(|p| line.get(p))
        .is_some_and(|&c| is_word(c));
    for (i, &c) in line.iter().enumerate().skip(at) {
        if !prev_word && matches!(c, b'2'..=b'6') && line.get(i + 1).is_some_and(u8::is_ascii_digit)
        {
            return Some(i);
        }
        prev_word = is_word(c);
    }
    None
}

/// The end of the pattern's match starting at `start` (a digit 2-6 followed by a digit): the
/// greedy repetition takes as many further digits (each after at most one separator) as it
/// can, up to 17, and gives them back until a word boundary follows; 11 are required.
fn match_end(line: &[u8], start: usize) -> Option<usize> {
    // ends[k]: the position after k repetitions of `[ -]?[0-9]`.
    let mut ends = [0usize; 18];
    let mut pos = start + 2;
    let mut count = 0;
    if let Some(first) = ends.first_mut() {
        *first = pos;
    }
    while count < 17 {
        let digit_at = |i: usize| line.get(i).is_some_and(u8::is_ascii_digit);
        pos = if digit_at(pos) {
            pos + 1
        } else if matches!(line.get(pos), Some(b' ' | b'-')) && digit_at(pos + 1) {
            pos + 2
        } else {
            break;
        };
        count += 1;
        if let Some(slot) = ends.get_mut(count) {
            *slot = pos;
        }
    }
    (11..=count)
        .rev()
        .filter_map(|k| ends.get(k).copied())
        .find(|&end| line.get(end).is_none_or(|&c| !is_word(c)))
}

/// A byte the regex crate's ASCII `\w` matches.
fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Confirms a match: the longest prefix at a group boundary with 13–19 digits that passes
/// Luhn, with one kind of separator and groups of 3–6 digits, not part of a decimal number.
pub(super) fn confirm(text: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    // A fraction (`3.14159...`) is not a card.
    if start >= 2
        && text.get(start - 1) == Some(&b'.')
        && text.get(start - 2).is_some_and(u8::is_ascii_digit)
    {
        return None;
    }
    let span = text.get(start..end)?;
    let sep = span.iter().copied().find(|c| !c.is_ascii_digit());
    if let Some(s) = sep {
        if span.iter().any(|&c| !c.is_ascii_digit() && c != s) {
            return None;
        }
    }
    // A prefix is well grouped when every group in it has 3–6 digits: ends at or past the
    // first bad group's end are not worth trying.
    let limit = match sep {
        None => usize::MAX,
        Some(s) => {
            let mut group_start = 0;
            let mut limit = usize::MAX;
            for group in span.split(|&c| c == s) {
                let group_end = group_start + group.len();
                if !(3..=6).contains(&group.len()) {
                    limit = group_end;
                    break;
                }
                group_start = group_end + 1;
            }
            limit
        }
    };
    // Candidate ends: the end, then every group boundary, longest first.
    let mut e = span.len();
    let mut digits = span.iter().filter(|c| c.is_ascii_digit()).count();
    loop {
        let prefix = span.get(..e).unwrap_or_default();
        if (13..=19).contains(&digits) && e < limit {
            let after = text.get(start + e..start + e + 2).unwrap_or_default();
            if after.first() == Some(&b'.') && after.get(1).is_some_and(u8::is_ascii_digit) {
                return None;
            }
            if luhn_ascii(prefix) {
                return Some((start, start + e));
            }
        }
        // Between two boundaries there are only digits.
        let boundary = prefix.iter().rposition(|c| !c.is_ascii_digit())?;
        digits -= e - boundary - 1;
        e = boundary;
    }
}

/// Luhn checksum over digit values (the tests' form; the masker checks ASCII directly).
#[cfg(test)]
pub(super) fn luhn(digits: &[u8]) -> bool {
    luhn_sum(digits.iter().rev().copied())
}

/// Luhn checksum over the ASCII digits of `text`, other bytes skipped.
fn luhn_ascii(text: &[u8]) -> bool {
    luhn_sum(
        text.iter()
            .rev()
            .filter(|c| c.is_ascii_digit())
            .map(|c| c - b'0'),
    )
}

/// Luhn over digit values from the last to the first.
fn luhn_sum(from_last: impl Iterator<Item = u8>) -> bool {
    let sum: u32 = from_last
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::super::test_rng::Lcg;
    use super::*;
    use regex::bytes::Regex;

    #[test]
    fn luhn_known() {
        let d = |s: &str| s.bytes().map(|c| c - b'0').collect::<Vec<_>>();
        assert!(luhn(&d("4111111111111111")));
        assert!(luhn(&d("378282246310005")));
        assert!(!luhn(&d("4111111111111112")));
        assert!(luhn_ascii(b"4111 1111-1111 1111"));
    }

    #[test]
    fn card_grouping() {
        let t = b"4111 1111 1111 1111 22";
        assert_eq!(confirm(t, 0, t.len()), Some((0, 19)));
        let t = b"1.4111111111111111";
        assert_eq!(confirm(t, 2, t.len()), None);
        let t = b"4111111111111111.5";
        assert_eq!(confirm(t, 0, 16), None);
    }

    /// The confirmation as first written, with a vector per candidate end: the reference the
    /// allocation-free [`confirm`] must agree with.
    fn confirm_reference(text: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
        if start >= 2 && text[start - 1] == b'.' && text[start - 2].is_ascii_digit() {
            return None;
        }
        let span = &text[start..end];
        let sep = span.iter().copied().find(|c| !c.is_ascii_digit());
        if let Some(s) = sep {
            if span.iter().any(|&c| !c.is_ascii_digit() && c != s) {
                return None;
            }
        }
        let mut ends: Vec<usize> = (0..span.len())
            .filter(|&i| !span[i].is_ascii_digit())
            .collect();
        ends.push(span.len());
        for &e in ends.iter().rev() {
            let digits: Vec<u8> = span[..e]
                .iter()
                .filter(|c| c.is_ascii_digit())
                .map(|c| c - b'0')
                .collect();
            if !(13..=19).contains(&digits.len()) {
                continue;
            }
            let grouped = sep.is_none_or(|s| {
                span[..e]
                    .split(|&c| c == s)
                    .all(|g| (3..=6).contains(&g.len()))
            });
            if !grouped {
                continue;
            }
            let after = text.get(start + e..start + e + 2).unwrap_or_default();
            if after.first() == Some(&b'.') && after.get(1).is_some_and(u8::is_ascii_digit) {
                return None;
            }
            if luhn(&digits) {
                return Some((start, start + e));
            }
        }
        None
    }

    fn by_regex(line: &[u8]) -> Vec<(usize, usize)> {
        static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
        let re = RE.get_or_init(|| {
            let (pattern, _) = super::super::detect::builtin_pattern("card").unwrap();
            Regex::new(&pattern).unwrap()
        });
        re.find_iter(line).map(|m| (m.start(), m.end())).collect()
    }

    fn by_hand(line: &[u8]) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        matches(line, |s, e| v.push((s, e)));
        v
    }

    #[test]
    fn matches_like_the_regex() {
        let mut rng = Lcg(5);
        let mut next = |n: u64| rng.next() as u64 % n;
        const BYTES: &[u8] = b"0123456789012345678923456  --_a.x";
        let mut compared = 0;
        let mut confirmed = 0;
        for _ in 0..20_000 {
            let len = next(60) as usize;
            let line: Vec<u8> = (0..len)
                .map(|_| BYTES[next(BYTES.len() as u64) as usize])
                .collect();
            let want = by_regex(&line);
            assert_eq!(by_hand(&line), want, "{:?}", String::from_utf8_lossy(&line));
            compared += want.len();
            for &(s, e) in &want {
                let context = String::from_utf8_lossy(&line);
                assert_eq!(
                    confirm(&line, s, e),
                    confirm_reference(&line, s, e),
                    "{context:?}"
                );
                confirmed += usize::from(confirm(&line, s, e).is_some());
            }
        }
        assert!(
            compared > 1000,
            "the generator must produce matches ({compared})"
        );
        assert!(confirmed > 10, "and some must pass Luhn ({confirmed})");
        for line in [
            &b"4111 1111 1111 1111"[..],
            b"x 4111-1111-1111-1111 y",
            b"24111111111111111111111",
            b"5500 0000 0000 0004 5500 0000 0000 0004",
            b"1234567890123 2345678901234",
            b"_4111111111111111 4111111111111111_ 4111111111111111",
            b"4111  1111 1111 1111 1111 11",
        ] {
            assert_eq!(by_hand(line), by_regex(line), "{line:?}");
        }
    }

    #[test]
    fn confirm_like_the_first_version() {
        let mut rng = Lcg(9);
        let mut next = |n: u64| rng.next() as u64 % n;
        let mut confirmed = 0;
        for _ in 0..50_000 {
            let mut line = match next(4) {
                0 => b"1.".to_vec(),
                1 => b"x ".to_vec(),
                _ => Vec::new(),
            };
            let start = line.len();
            let sep = [b' ', b'-', b' '][next(3) as usize];
            let groups = 1 + next(6);
            for g in 0..groups {
                if g > 0 {
                    line.push(if next(20) == 0 { b'-' } else { sep });
                }
                for _ in 0..(2 + next(6)) {
                    line.push(b'0' + next(10) as u8);
                }
            }
            let end = line.len();
            line.extend_from_slice([&b""[..], b".5", b" 7", b"."][next(4) as usize]);
            let want = confirm_reference(&line, start, end);
            assert_eq!(
                confirm(&line, start, end),
                want,
                "{:?}",
                String::from_utf8_lossy(&line)
            );
            confirmed += usize::from(want.is_some());
        }
        assert!(confirmed > 500, "some candidates must pass ({confirmed})");
    }
}
