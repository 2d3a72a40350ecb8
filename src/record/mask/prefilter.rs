//! Candidate finding: which lines of a text may hold a secret, and which detectors could match
//! there, so that the detectors (regexes with captures, checksums) run on a few lines instead
//! of a combined regex stepping through every byte.
//!
//! Four finders, each a superset of what its detectors match:
//! - fixed strings that every match of a token, key-block or URL detector contains (`AKIA`,
//!   `ghp_`, `-----BEGIN `, `://`, ...), found by the regex crate's literal searcher;
//! - the key words of `key=value` assignments (`pass`, `secret`, `token`, `key`, `_pwd`, any
//!   case), kept only when an `=` or `:` follows the word;
//! - windows for card numbers and IBANs, which have no fixed string: a run of at least 13
//!   bytes of digits and capitals with single separators, probed one byte in 13 so ordinary
//!   text is skipped, then checked for 13 digits or a known IBAN country at a word boundary;
//! - custom rules, through the union of their regexes (fast when they start with a literal, a
//!   full scan of that target's output when they do not).
//!
//! Nothing here decides what is a secret: a candidate only means "run these detectors on this
//! line". Missing a candidate would let a secret through, so every check errs towards yes.

use regex::bytes::Regex;

use super::detect::{self, ANCHORS, BUILTIN_KINDS, PRIVATE_KEY};

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

/// The shortest span a card number (13 digits) or an IBAN (15 characters) can cover, and so
/// the probing stride of the window finder.
const MIN_WINDOW: usize = 13;

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
            let mut kinds = 0;
            if w.end - w.start >= MIN_WINDOW {
                let (digits, capitals) = w.counts(text);
                if self.card != 0 && digits >= 13 && card_window(text, w.start, w.end) {
                    kinds |= self.card;
                }
                if self.iban != 0
                    && capitals >= 2
                    && digits + capitals >= 15
                    && iban_window(text, w.start, w.end)
                {
                    kinds |= self.iban;
                }
            }
            if kinds != 0 {
                return Some(Hit {
                    start: w.start,
                    end: w.end,
                    kinds,
                    resume: w.end,
                });
            }
            // Byte `w.end` ends the window, so the next one starts after it.
            probe = w.end + MIN_WINDOW;
        }
        None
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

/// A maximal run of digits and capitals with single separators between them: the only kind
/// of text a card number or an IBAN fits in.
#[derive(Debug)]
struct Window {
    /// First byte (a digit or capital).
    start: usize,
    /// One past the last byte (a digit or capital); the byte here is not part of any window.
    end: usize,
}

impl Window {
    /// The window holding `probe` (a digit, a capital, or a separator between two of them).
    fn around(text: &[u8], probe: usize) -> Window {
        let mut end = probe;
        loop {
            let k = class_at(text, end);
            if k & ALNUM != 0 {
                end += 1;
            } else if k == SEP && alnum_at(text, end + 1) {
                end += 2;
            } else {
                break;
            }
        }
        let mut start = probe;
        loop {
            let k = class_at(text, start.wrapping_sub(1));
            if k & ALNUM != 0 {
                start -= 1;
            } else if k == SEP && alnum_at(text, start.wrapping_sub(2)) {
                start -= 2;
            } else {
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
