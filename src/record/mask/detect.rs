//! The detectors: one regex per kind of secret, the checksums that keep them honest (mod-97
//! for IBANs, a junk filter for `password=` values; cards have their own module), and the fixed
//! strings the candidate finder (`prefilter`) looks for so the detectors run on few lines.
//!
//! Everything here works on text already stripped of terminal escapes and knows nothing of
//! streaming; `super` (the masker) decides what may be released and when.

use regex::bytes::Regex;

use super::card;
#[cfg(test)]
pub(super) use super::card::luhn;
use super::prefilter::Kinds;
use super::Span;

/// Kind of a private key block; it is handled by the masker's block state, not as a span.
pub(super) const PRIVATE_KEY: &str = "private-key";

/// Built-in detector names in priority order: when two spans overlap, the merged span is
/// labelled with the earliest of these (a `token=` assignment holding a JWT reads `jwt`).
pub const BUILTIN_KINDS: &[&str] = &[
    PRIVATE_KEY,
    "aws-access-key",
    "aws-secret-key",
    "github-token",
    "gitlab-token",
    "slack-token",
    "stripe-key",
    "jwt",
    "db-password",
    "password",
    "card",
    "iban",
];

/// Fixed strings that every match of a detector contains, with its kind: the candidate finder
/// looks for these and runs the detector only on lines that hold one. Each pattern below must
/// keep its string (the prefilter tests compare against running every detector everywhere).
pub(super) const ANCHORS: &[(&str, &str)] = &[
    ("-----BEGIN ", PRIVATE_KEY),
    ("AKIA", "aws-access-key"),
    ("ASIA", "aws-access-key"),
    ("ghp_", "github-token"),
    ("gho_", "github-token"),
    ("ghu_", "github-token"),
    ("ghs_", "github-token"),
    ("ghr_", "github-token"),
    ("github_pat_", "github-token"),
    ("glpat-", "gitlab-token"),
    ("xox", "slack-token"),
    ("sk_live_", "stripe-key"),
    ("rk_live_", "stripe-key"),
    ("eyJ", "jwt"),
    ("://", "db-password"),
];

/// Start of a private key block (PEM, OpenSSH, PKCS#8, PGP armour).
pub(super) const PEM_BEGIN: &str = r"(?-u)-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----";
/// End of a private key block.
pub(super) const PEM_END: &str = r"(?-u)-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----";

/// Names a setting key as secret-bearing (`DB_PASSWORD`, `client_secret`, `GITHUB_TOKEN`,
/// `api-key`, `DB_PASS`). `pwd` alone is left out on purpose: `PWD=/home/x` is in every `env`.
const ASSIGN_KEY: &str = r"\b(?:[a-z0-9_.-]*(?:password|passwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key)(?:[_.-][a-z0-9_.-]*)?|[a-z0-9_.-]*_(?:pass|pwd)|pass)";

/// How a raw regex match is confirmed and trimmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Check {
    /// The match (or its first participating capture group) is the secret.
    Plain,
    /// 13–19 digits, Luhn-valid, with sane grouping.
    Card,
    /// Country length and mod-97 checksum.
    Iban,
    /// `key=value`: the value must not be a placeholder, boolean or variable reference.
    Assignment,
}

/// One compiled detector.
#[derive(Debug)]
pub(super) struct Detector {
    /// Label in `[MASKED:kind]` and in the counts.
    pub(super) kind: String,
    /// Finds candidates; capture groups, when present, delimit the part to mask. For cards it
    /// is the specification that `card::matches` follows (and is tested against).
    pub(super) regex: Regex,
    /// Which part of a match is the secret (value-only masking uses a group).
    pub(super) group: Group,
    /// Confirmation applied to each candidate.
    pub(super) check: Check,
    /// Its family for the candidate finder: the detector runs only on lines where a
    /// candidate of this family was found.
    pub(super) kinds: Kinds,
}

/// Which part of a regex match to mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Group {
    /// The whole match.
    Whole,
    /// The first capture group that took part (alternative value syntaxes), else the match.
    FirstParticipating,
    /// One capture group (a custom rule's `secret`); a match without it is skipped.
    Index(usize),
}

impl Detector {
    /// Adds confirmed spans found in `line` (at `offset` in the matching text) to `spans`.
    pub(super) fn find(&self, line: &[u8], offset: usize, index: usize, spans: &mut Vec<Span>) {
        let mut push = |start: usize, end: usize| {
            if let Some((s, e)) = confirm(self.check, line, start, end) {
                if e > s {
                    spans.push(Span {
                        start: offset + s,
                        end: offset + e,
                        det: index,
                    });
                }
            }
        };
        if self.check == Check::Card {
            // The card regex's matches, found without the regex engine (see `card`).
            card::matches(line, push);
            return;
        }
        match self.group {
            Group::Whole => {
                for m in self.regex.find_iter(line) {
                    push(m.start(), m.end());
                }
            }
            Group::FirstParticipating => {
                for c in self.regex.captures_iter(line) {
                    let m = (1..c.len()).find_map(|k| c.get(k)).or_else(|| c.get(0));
                    if let Some(m) = m {
                        push(m.start(), m.end());
                    }
                }
            }
            Group::Index(k) => {
                for c in self.regex.captures_iter(line) {
                    if let Some(m) = c.get(k) {
                        push(m.start(), m.end());
                    }
                }
            }
        }
    }
}

/// Built-in detector patterns, keyed by kind (`private-key` is handled apart).
pub(super) fn builtin_pattern(kind: &str) -> Option<(String, Check)> {
    let p = match kind {
        "aws-access-key" => r"(?-u)\b(?:AKIA|ASIA)[A-Z0-9]{16}\b".to_owned(),
        "aws-secret-key" => r#"(?i-u)(?:aws_?secret_?access_?key|aws_?secret_?key|secret_?access_?key)["']?[ \t]*[:=][ \t]*["']?([A-Za-z0-9/+=]{40})(?:[^A-Za-z0-9/+=]|$)"#.to_owned(),
        "github-token" => r"(?-u)\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})".to_owned(),
        "gitlab-token" => r"(?-u)\bglpat-[A-Za-z0-9_-]{20,}".to_owned(),
        "slack-token" => r"(?-u)\bxox[abprs]-[A-Za-z0-9-]{10,}".to_owned(),
        "stripe-key" => r"(?-u)\b[sr]k_live_[A-Za-z0-9]{16,}".to_owned(),
        "jwt" => r"(?-u)\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*".to_owned(),
        "db-password" => r"(?-u)\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:([^\s/]+)@".to_owned(),
        "password" => format!(
            r#"(?i-u){ASSIGN_KEY}["']?[ \t]*[:=][ \t]*(?:"([^"\r\n]+)"|'([^'\r\n]+)'|([^\s"'&,;<>]+))"#
        ),
        "card" => r"(?-u)\b[2-6][0-9](?:[ -]?[0-9]){11,17}\b".to_owned(),
        "iban" => r"(?-u)\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,34}".to_owned(),
        _ => return None,
    };
    let check = match kind {
        "card" => Check::Card,
        "iban" => Check::Iban,
        "password" => Check::Assignment,
        _ => Check::Plain,
    };
    Some((p, check))
}

/// Patterns that recognise the unfinished start of a secret at the very end of the text, used
/// when held bytes must be released early (quiet flush): `(kind, pattern)`; the first capture
/// group that took part, if any, is the part to mask.
pub(super) fn partial_patterns() -> Vec<(&'static str, String)> {
    vec![
        (
            "aws-access-key",
            r"(?-u)\b(?:AKIA|ASIA)[A-Z0-9]*$".to_owned(),
        ),
        (
            "github-token",
            r"(?-u)\b(?:gh[pousr]_|github_pat_)[A-Za-z0-9_]*$".to_owned(),
        ),
        ("gitlab-token", r"(?-u)\bglpat-[A-Za-z0-9_-]*$".to_owned()),
        (
            "slack-token",
            r"(?-u)\bxox[abprs]-[A-Za-z0-9-]*$".to_owned(),
        ),
        ("stripe-key", r"(?-u)\b[sr]k_live_[A-Za-z0-9]*$".to_owned()),
        ("jwt", r"(?-u)\beyJ[A-Za-z0-9_.-]*$".to_owned()),
        (
            "db-password",
            r"(?-u)\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:([^\s/]*[^\s/0-9][^\s/]*)$".to_owned(),
        ),
        (
            "password",
            format!(
                r#"(?i-u){ASSIGN_KEY}["']?[ \t]*[:=][ \t]*(?:"([^"\r\n]+)|'([^'\r\n]+)|([^\s"'&,;<>]+))$"#
            ),
        ),
    ]
}

/// Confirms a candidate; returns the span to mask (it may be shorter than the match).
/// `text` is the whole line, the span is in its coordinates.
pub(super) fn confirm(
    check: Check,
    text: &[u8],
    start: usize,
    end: usize,
) -> Option<(usize, usize)> {
    match check {
        Check::Plain => Some((start, end)),
        Check::Card => card::confirm(text, start, end),
        Check::Iban => iban(text, start, end),
        Check::Assignment => {
            let value = text.get(start..end)?;
            plausible_value(value).then_some((start, end))
        }
    }
}

/// Rejects values that are clearly not secrets: placeholders, booleans, variable references,
/// already-masked text, numbers (counts like `max_tokens=100`).
pub(super) fn plausible_value(v: &[u8]) -> bool {
    let Some(&first) = v.first() else {
        return false;
    };
    if matches!(first, b'=' | b'$' | b'<' | b'[' | b'%' | b'{') {
        return false;
    }
    if v.iter()
        .all(|&c| c == b'*' || c == b'x' || c == b'X' || c == b'.')
    {
        return false;
    }
    if v.iter().all(u8::is_ascii_digit) {
        return false;
    }
    const JUNK: &[&str] = &[
        "true",
        "false",
        "null",
        "none",
        "nil",
        "yes",
        "no",
        "on",
        "off",
        "undefined",
        "redacted",
        "masked",
        "hidden",
        "required",
        "optional",
        "string",
        "bool",
    ];
    !JUNK.iter().any(|j| j.as_bytes().eq_ignore_ascii_case(v))
}

/// IBAN lengths per country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

/// Whether `code` is a country with IBANs (the [`iban`] check fails for any other).
pub(super) fn iban_country(code: &[u8]) -> bool {
    IBAN_LENGTHS.iter().any(|(c, _)| c.as_slice() == code)
}

/// IBAN: exactly the country's length of alphanumerics (single spaces allowed between them),
/// not followed by another alphanumeric, with a mod-97 remainder of 1.
fn iban(text: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    let span = text.get(start..end)?;
    let country = span.get(..2)?;
    let want = IBAN_LENGTHS
        .iter()
        .find(|(c, _)| c.as_slice() == country)
        .map(|&(_, n)| n)?;
    let mut chars = Vec::with_capacity(want);
    let mut stop = None;
    for (i, &c) in span.iter().enumerate() {
        if c == b' ' {
            continue;
        }
        chars.push(c);
        if chars.len() == want {
            stop = Some(i + 1);
            break;
        }
    }
    let stop = stop?;
    if text
        .get(start + stop)
        .is_some_and(u8::is_ascii_alphanumeric)
    {
        return None;
    }
    // Move the first four characters to the end, letters to numbers, remainder mod 97.
    let (head, tail) = chars.split_at(4);
    let mut rem: u32 = 0;
    for &c in tail.iter().chain(head) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return None,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    (rem == 1).then_some((start, start + stop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iban_known() {
        let t = b"DE89370400440532013000";
        assert_eq!(iban(t, 0, t.len()), Some((0, 22)));
        let t = b"GB82 WEST 1234 5698 7654 32 EUR";
        assert_eq!(iban(t, 0, 30), Some((0, 27)));
        let t = b"DE89370400440532013001";
        assert_eq!(iban(t, 0, t.len()), None);
    }

    #[test]
    fn values() {
        assert!(plausible_value(b"hunter2"));
        assert!(!plausible_value(b"true"));
        assert!(!plausible_value(b"${DB_PASSWORD}"));
        assert!(!plausible_value(b"100"));
        assert!(!plausible_value(b"****"));
    }
}
