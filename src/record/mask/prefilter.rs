//! Candidate finding: which lines of a text may hold a secret, and which detectors could match
//! there, so that the detectors (regexes with captures, checksums) run on a few lines instead
//! of a combined regex stepping through every byte.
//!
//! Four finders, each a superset of what its detectors match:
//! - fixed strings that every match of a token, key-block or URL detector contains (`AKIA`,
//!   `ghp_`, `-----BEGIN `, `://`, ...), found by the regex crate's literal searcher;
//! - the key words of `key=value` assignments (`pass`, `secret`, `token`, `key`, `_pwd`, any
//!   case), kept only when an `=` or `:` follows the word;
//! - windows for card numbers and IBANs, which have no fixed string (see `windows`): runs of
//!   at least 13 bytes of digits, capitals and single separators, probed one byte in 13;
//! - custom rules, through the union of their regexes (fast when they start with a literal, a
//!   full scan of that target's output when they do not).
//!
//! Nothing here decides what is a secret: a candidate only means "run these detectors on this
//! line". Missing a candidate would let a secret through, so every check errs towards yes.

use regex::bytes::Regex;

use super::detect::{ANCHORS, BUILTIN_KINDS, PRIVATE_KEY};
use super::windows;

/// A set of detector families: bit `i` is `BUILTIN_KINDS[i]`, [`CUSTOM`] every custom rule.
pub(super) type Kinds = u32;

/// The family of every custom rule.
pub(super) const CUSTOM: Kinds = 1 << 31;

/// The family bit of a built-in kind (0 for an unknown name).
pub(super) fn kind_bit(kind: &str) -> Kinds {
    BUILTIN_KINDS
        .iter()
        .position(|k| *k == kind)
        .map_or(0, |i| 1 << i)
}

/// Key words, one of which every assignment detector's key contains (`password`, `passwd`,
/// `passphrase`, `DB_PASS`, `client_secret`, `aws_secret_access_key`, `GITHUB_TOKEN`,
/// `api-key`, `apikey`, `private_key`, `DB_PWD`), searched in a [`fold`]ed copy of the text:
/// five literals there are twice as fast to find as their 128 case variants in the original.
const KEYWORDS: &str = r"(?-u)pass|secret|token|key|\x7fpwd";

/// Sets bit 5 of every byte: ASCII capitals become small letters and `_` becomes DEL. Only the
/// two case variants of a letter (and `_`/DEL) fold to the same byte, so a key word in any
/// case is found in the folded copy at the same position, and nothing else is.
fn fold(text: &[u8]) -> Vec<u8> {
    text.iter().map(|&c| c | 0x20).collect()
}

/// The candidate finders of one rule set.
#[derive(Debug)]
pub(super) struct Prefilter {
    /// Alternation of the fixed strings of the enabled token, key-block and URL detectors;
    /// the regex crate runs it as a vectorised multi-literal search.
    literals: Option<Regex>,
    /// The family of each fixed string, to mark only the detectors it belongs to.
    anchors: Vec<(&'static [u8], Kinds)>,
    /// Assignment key words, when an assignment detector is on.
    keywords: Option<Regex>,
    /// The families the key words stand for (`password`, `aws-secret-key`, when on).
    keyword_kinds: Kinds,
    /// The `card` family when it is on, else 0.
    card: Kinds,
    /// The `iban` family when it is on, else 0 (with `card` 0 too, no window is looked for).
    iban: Kinds,
    /// The `private-key` family when it is on, else 0.
    pub(super) key_block: Kinds,
    /// Union of the custom rules' regexes.
    custom: Option<Regex>,
}

/// A place where detectors must look.
#[derive(Debug, Clone, Copy)]
pub(super) struct Hit {
    /// First byte of the candidate.
    pub(super) start: usize,
    /// One past its last byte (a custom match may reach past the line it starts on).
    pub(super) end: usize,
    /// Families that may match around it.
    pub(super) kinds: Kinds,
    /// Where the same finder continues.
    resume: usize,
}

impl Prefilter {
    /// Finders for the enabled families `on`; `custom` is the union of the custom regexes.
    pub(super) fn new(on: Kinds, custom: Option<Regex>) -> Result<Prefilter, regex::Error> {
        let anchors: Vec<(&'static [u8], Kinds)> = ANCHORS
            .iter()
            .map(|&(lit, kind)| (lit.as_bytes(), kind_bit(kind)))
            .filter(|&(_, bit)| bit & on != 0)
            .collect();
        let literals = if anchors.is_empty() {
            None
        } else {
            let alternation: Vec<String> = anchors
                .iter()
                .map(|(lit, _)| regex::escape(&String::from_utf8_lossy(lit)))
                .collect();
            Some(Regex::new(&alternation.join("|"))?)
        };
        let keyword_kinds = on & (kind_bit("password") | kind_bit("aws-secret-key"));
        let keywords = if keyword_kinds == 0 {
            None
        } else {
            Some(Regex::new(KEYWORDS)?)
        };
        Ok(Prefilter {
            literals,
            anchors,
            keywords,
            keyword_kinds,
            card: on & kind_bit("card"),
            iban: on & kind_bit("iban"),
            key_block: on & kind_bit(PRIVATE_KEY),
            custom,
        })
    }

    /// No finder at all (no detector on).
    pub(super) fn empty() -> Prefilter {
        Prefilter {
            literals: None,
            anchors: Vec::new(),
            keywords: None,
            keyword_kinds: 0,
            card: 0,
            iban: 0,
            key_block: 0,
            custom: None,
        }
    }

    /// The candidates of `text`, in order.
    pub(super) fn candidates<'a>(&'a self, text: &'a [u8]) -> Candidates<'a> {
        Candidates {
            pre: self,
            text,
            folded: if self.keywords.is_some() {
                fold(text)
            } else {
                Vec::new()
            },
            slots: [Slot::Pending; FINDERS],
        }
    }

    fn find(&self, finder: usize, text: &[u8], folded: &[u8], from: usize) -> Option<Hit> {
        match finder {
            0 => self.find_literal(text, from),
            1 => self.find_keyword(text, folded, from),
            2 => self.find_window(text, from),
            _ => {
                let m = self.custom.as_ref()?.find_at(text, from)?;
                Some(Hit {
                    start: m.start(),
                    end: m.end(),
                    kinds: CUSTOM,
                    resume: m.end().max(m.start() + 1),
                })
            }
        }
    }

    fn find_literal(&self, text: &[u8], from: usize) -> Option<Hit> {
        let re = self.literals.as_ref()?;
        let mut at = from;
        loop {
            let m = re.find_at(text, at)?;
            // Overlapping strings of another family must not hide behind this one.
            at = m.start() + 1;
            let lit = m.as_bytes();
            let kinds = self
                .anchors
                .iter()
                .filter(|(a, _)| *a == lit)
                .fold(0, |k, (_, bit)| k | bit);
            if lit == b"://" && !url_password_follows(text, m.end()) {
                continue;
            }
            return Some(Hit {
                start: m.start(),
                end: m.end(),
                kinds,
                resume: at,
            });
        }
    }

    fn find_keyword(&self, text: &[u8], folded: &[u8], from: usize) -> Option<Hit> {
        let re = self.keywords.as_ref()?;
        let mut at = from;
        loop {
            let m = re.find_at(folded, at)?;
            let word_end = skip_key_chars(text, m.end());
            if assignment_follows(text, word_end) {
                return Some(Hit {
                    start: m.start(),
                    end: m.end(),
                    kinds: self.keyword_kinds,
                    resume: m.end(),
                });
            }
            // Every key word later in the same key ends at the same place: skip them.
            at = word_end.max(m.start() + 1);
        }
    }

    fn find_window(&self, text: &[u8], from: usize) -> Option<Hit> {
        if self.card | self.iban == 0 {
            return None;
        }
        let w = windows::find(text, from, self.card != 0, self.iban != 0)?;
        Some(Hit {
            start: w.start,
            end: w.end,
            kinds: if w.card { self.card } else { 0 } | if w.iban { self.iban } else { 0 },
            resume: w.end,
        })
    }
}

/// Number of finders in [`Prefilter::find`].
const FINDERS: usize = 4;

/// A finder's progress through the text.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// Not searched yet.
    Pending,
    /// Its next candidate.
    Found(Hit),
    /// No candidate left.
    Done,
}

/// The candidates of one text, merged from every finder in order of position.
#[derive(Debug)]
pub(super) struct Candidates<'a> {
    /// The finders.
    pre: &'a Prefilter,
    /// The text searched.
    text: &'a [u8],
    /// The text [`fold`]ed, when key words are looked for.
    folded: Vec<u8>,
    /// Each finder's next candidate, searched lazily: lines skipped by the caller are never
    /// searched again.
    slots: [Slot; FINDERS],
}

impl Candidates<'_> {
    /// The first candidate starting at or after `at`, without consuming it.
    pub(super) fn first_from(&mut self, at: usize) -> Option<Hit> {
        let mut best: Option<Hit> = None;
        for (finder, slot) in self.slots.iter_mut().enumerate() {
            let stale = match *slot {
                Slot::Pending => true,
                Slot::Found(h) => h.start < at,
                Slot::Done => false,
            };
            if stale {
                *slot = self
                    .pre
                    .find(finder, self.text, &self.folded, at)
                    .map_or(Slot::Done, Slot::Found);
            }
            if let Slot::Found(h) = *slot {
                if best.is_none_or(|b| h.start < b.start) {
                    best = Some(h);
                }
            }
        }
        best
    }

    /// The families of every candidate starting before `limit`; consumes them.
    pub(super) fn kinds_before(&mut self, limit: usize) -> Kinds {
        let mut kinds = 0;
        for (finder, slot) in self.slots.iter_mut().enumerate() {
            while let Slot::Found(h) = *slot {
                if h.start >= limit {
                    break;
                }
                kinds |= h.kinds;
                *slot = self
                    .pre
                    .find(finder, self.text, &self.folded, h.resume)
                    .map_or(Slot::Done, Slot::Found);
            }
        }
        kinds
    }
}

/// Past the characters an assignment key may continue with after its key word.
fn skip_key_chars(text: &[u8], mut i: usize) -> usize {
    while text
        .get(i)
        .is_some_and(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
    {
        i += 1;
    }
    i
}

/// Whether an assignment operator follows the key ending at `i`: an optional quote, spaces or
/// tabs, then `=` or `:`.
fn assignment_follows(text: &[u8], mut i: usize) -> bool {
    if matches!(text.get(i), Some(b'"' | b'\'')) {
        i += 1;
    }
    while matches!(text.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    matches!(text.get(i), Some(b'=' | b':'))
}

/// The regex crate's ASCII `\s`.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Whether `user:password@` follows a `://` ending at `i`, as the `db-password` detector
/// requires: a user part without spaces, `:`, `/` or `@`, a colon, then a password without
/// spaces or `/` that an `@` ends.
fn url_password_follows(text: &[u8], mut i: usize) -> bool {
    while text
        .get(i)
        .is_some_and(|&c| !is_space(c) && !matches!(c, b':' | b'/' | b'@'))
    {
        i += 1;
    }
    if text.get(i) != Some(&b':') {
        return false;
    }
    let password = i + 1;
    let mut j = password;
    while let Some(&c) = text.get(j) {
        if is_space(c) || c == b'/' {
            return false;
        }
        if c == b'@' && j > password {
            return true;
        }
        j += 1;
    }
    false
}
