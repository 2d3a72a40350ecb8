//! Streaming redaction of secrets in target output (issue 7).
//!
//! A [`Masker`] sits on one output stream (stdout, stderr or PTY output) between the target and
//! everyone downstream (the agent, the recorder). It replaces private key blocks, cloud and
//! forge tokens, JWTs, `password=` values, passwords in URLs, card numbers and IBANs with
//! `[MASKED:kind]` (or a same-length run of `*` for PTY sessions), on arbitrary bytes.
//!
//! Streaming: a secret may arrive split across reads at any byte. The masker releases complete
//! lines at once (every detector but the key block is bounded by a line), holds back the
//! unfinished last line up to [`MAX_HOLD`] bytes, and lets the caller release it after
//! [`QUIET_FLUSH`] of silence. Bytes released early are remembered as context (not re-sent), so
//! a secret completed by the next read is still found and its remainder masked; an unfinished
//! token prefix (`AKIA…`, `ghp_…`, `password=…`) is masked when it has to be released.
//! Terminal escape sequences are removed before matching, so colour codes inside a secret do
//! not hide it; a masked region swallows the escapes inside it and re-emits them after the tag.
//!
//! This module is pure: no I/O, no timers, no async. It does not decide per-target settings
//! (the config layer does) and it is not a terminal emulator (cursor tricks are not replayed).

mod ansi;
mod card;
mod detect;
mod prefilter;
#[cfg(test)]
mod scan_tests;
mod stream;
#[cfg(test)]
mod test_rng;
#[cfg(test)]
mod tests;
mod windows;

use std::time::Duration;

use memchr::{memchr, memrchr};
use regex::bytes::{Regex, RegexBuilder};
use serde::Deserialize;

use detect::{Check, Detector, PEM_BEGIN, PEM_END, PRIVATE_KEY};
use prefilter::{kind_bit, Kinds, Prefilter, CUSTOM};

pub use detect::BUILTIN_KINDS;
pub use stream::Masker;

/// Most bytes a [`Masker`] holds back between calls.
pub const MAX_HOLD: usize = 4096;

/// Silence after which the caller should call [`Masker::flush`] if [`Masker::has_pending`].
pub const QUIET_FLUSH: Duration = Duration::from_millis(20);

/// A key block longer than this without its END line stops being suppressed (the detectors keep
/// running): a stray BEGIN line must not swallow a whole session.
pub const MAX_KEY_BLOCK: usize = 64 * 1024;

/// How much of the already released part of the current line is kept as matching context.
const CONTEXT: usize = 512;

/// How much of a suppressed key block is kept to find an END line split across reads.
const BLOCK_CARRY: usize = 256;

/// What replaces a secret.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MaskMode {
    /// `[MASKED:kind]`: readable, the default for exec output.
    #[default]
    Tag,
    /// One `*` per character, newlines and escapes kept: a PTY screen keeps its layout.
    SameLength,
}

/// `[masking]` settings, globally and per target.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskSettings {
    /// Masking can be switched off for a target whose output must reach the agent verbatim.
    pub enabled: bool,
    /// Built-in detectors switched off (names from [`BUILTIN_KINDS`]), e.g. `card` on a host
    /// whose output is full of test card numbers.
    pub disable: Vec<String>,
    /// Site-specific secrets the built-ins do not know.
    pub rules: Vec<CustomRule>,
    /// Replacement style.
    pub mode: MaskMode,
}

impl Default for MaskSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            disable: Vec::new(),
            rules: Vec::new(),
            mode: MaskMode::Tag,
        }
    }
}

/// A custom detector from the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRule {
    /// Shown as `[MASKED:name]` and used as the count key.
    pub name: String,
    /// Matched within one line of output; a group named `secret` limits the mask to that group.
    pub regex: String,
}

/// Invalid masking settings.
#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    /// A `disable` entry names no built-in detector.
    #[error("masking: unknown detector `{name}` in `disable` (known: {known})")]
    UnknownDetector {
        /// The name as written.
        name: String,
        /// The valid names, comma-separated.
        known: String,
    },
    /// A custom rule's regex does not compile.
    #[error("masking rule `{rule}`: invalid regex: {source}")]
    BadRegex {
        /// The rule's name.
        rule: String,
        /// What the regex parser said.
        source: regex::Error,
    },
    /// A custom rule's regex matches the empty string and would mask everywhere.
    #[error(
        "masking rule `{rule}`: the regex matches empty text; make it match at least one character"
    )]
    EmptyMatch {
        /// The rule's name.
        rule: String,
    },
    /// A custom rule's name cannot be shown in a tag.
    #[error("masking rule name `{rule}` is invalid: use 1-40 letters, digits, `-` or `_`")]
    BadName {
        /// The name as written.
        rule: String,
    },
    /// Two custom rules share a name, or one reuses a built-in name.
    #[error("masking rule `{rule}` is defined twice or reuses a built-in detector name")]
    DuplicateRule {
        /// The repeated name.
        rule: String,
    },
}

/// Checks settings without keeping the compiled result (config validation).
pub fn validate(settings: &MaskSettings) -> Result<(), MaskError> {
    MaskRules::compile(settings).map(|_| ())
}

/// Compiled detectors, shared by every [`Masker`] of a target (`Arc`).
#[derive(Debug)]
pub struct MaskRules {
    /// Span detectors in priority order (index = priority, lower wins on overlap).
    detectors: Vec<Detector>,
    /// Finds the lines that may hold a secret and which detectors to run there: output
    /// without a candidate passes after a few vectorised or strided scans.
    prefilter: Prefilter,
    /// Start of a private key block; `None` when `private-key` is disabled.
    key_begin: Option<Regex>,
    /// End of a private key block.
    key_end: Option<Regex>,
    /// Unfinished-secret patterns for early release: (detector index, end-anchored regex).
    partials: Vec<(usize, Regex)>,
}

fn build(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .size_limit(64 << 20)
        .dfa_size_limit(16 << 20)
        .build()
}

impl MaskRules {
    /// Compiles settings; errors name the offending rule or detector.
    pub fn compile(settings: &MaskSettings) -> Result<MaskRules, MaskError> {
        for name in &settings.disable {
            if !BUILTIN_KINDS.contains(&name.as_str()) {
                return Err(MaskError::UnknownDetector {
                    name: name.clone(),
                    known: BUILTIN_KINDS.join(", "),
                });
            }
        }
        let mut detectors = Vec::new();
        let mut custom_sources = Vec::new();
        let on = |kind: &str| settings.enabled && !settings.disable.iter().any(|d| d == kind);
        let mut enabled: Kinds = 0;
        for &kind in BUILTIN_KINDS {
            let Some((pattern, check)) = detect::builtin_pattern(kind) else {
                continue;
            };
            if !on(kind) {
                continue;
            }
            let regex = build(&pattern).map_err(|source| MaskError::BadRegex {
                rule: kind.to_owned(),
                source,
            })?;
            detectors.push(Detector {
                kind: kind.to_owned(),
                group: detect::Group::FirstParticipating,
                regex,
                check,
                kinds: kind_bit(kind),
            });
            enabled |= kind_bit(kind);
        }
        let mut seen: Vec<&str> = Vec::new();
        for rule in &settings.rules {
            let name = rule.name.as_str();
            let name_ok = !name.is_empty()
                && name.len() <= 40
                && name
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
            if !name_ok {
                return Err(MaskError::BadName {
                    rule: name.to_owned(),
                });
            }
            if seen.contains(&name) || BUILTIN_KINDS.contains(&name) {
                return Err(MaskError::DuplicateRule {
                    rule: name.to_owned(),
                });
            }
            seen.push(name);
            let regex = build(&rule.regex).map_err(|source| MaskError::BadRegex {
                rule: name.to_owned(),
                source,
            })?;
            if regex.is_match(b"") {
                return Err(MaskError::EmptyMatch {
                    rule: name.to_owned(),
                });
            }
            let group = regex
                .capture_names()
                .position(|n| n == Some("secret"))
                .map_or(detect::Group::Whole, detect::Group::Index);
            if settings.enabled {
                detectors.push(Detector {
                    kind: name.to_owned(),
                    regex,
                    group,
                    check: Check::Plain,
                    kinds: CUSTOM,
                });
                custom_sources.push(rule.regex.clone());
            }
        }
        let key_on = on(PRIVATE_KEY);
        let (key_begin, key_end) = if key_on {
            let begin = build(PEM_BEGIN).map_err(|source| MaskError::BadRegex {
                rule: PRIVATE_KEY.to_owned(),
                source,
            })?;
            let end = build(PEM_END).map_err(|source| MaskError::BadRegex {
                rule: PRIVATE_KEY.to_owned(),
                source,
            })?;
            enabled |= kind_bit(PRIVATE_KEY);
            (Some(begin), Some(end))
        } else {
            (None, None)
        };
        let combined = |source| MaskError::BadRegex {
            rule: "(all rules combined)".to_owned(),
            source,
        };
        let custom = if custom_sources.is_empty() {
            None
        } else {
            let union: Vec<String> = custom_sources.iter().map(|s| format!("(?:{s})")).collect();
            Some(build(&union.join("|")).map_err(combined)?)
        };
        let prefilter = Prefilter::new(enabled, custom).map_err(combined)?;
        let mut partials = Vec::new();
        for (kind, pattern) in detect::partial_patterns() {
            let Some(index) = detectors.iter().position(|d| d.kind == kind) else {
                continue;
            };
            let regex = build(&pattern).map_err(|source| MaskError::BadRegex {
                rule: kind.to_owned(),
                source,
            })?;
            partials.push((index, regex));
        }
        Ok(MaskRules {
            detectors,
            prefilter,
            key_begin,
            key_end,
            partials,
        })
    }

    /// Every built-in detector, no custom rules.
    pub fn builtin() -> MaskRules {
        match Self::compile(&MaskSettings::default()) {
            Ok(rules) => rules,
            Err(e) => {
                // Unreachable while the built-in patterns compile (a unit test proves they do);
                // if it ever happens, say so loudly rather than abort a running bastion.
                tracing::error!(error = %e, "built-in masking rules failed to compile");
                MaskRules {
                    detectors: Vec::new(),
                    prefilter: Prefilter::empty(),
                    key_begin: None,
                    key_end: None,
                    partials: Vec::new(),
                }
            }
        }
    }

    /// Whether any detector is on (an all-off rule set passes bytes straight through).
    pub fn is_active(&self) -> bool {
        !self.detectors.is_empty() || self.key_begin.is_some()
    }

    fn kind(&self, det: usize) -> &str {
        self.detectors
            .get(det)
            .map_or(PRIVATE_KEY, |d| d.kind.as_str())
    }

    /// Finds secret spans in `text` (merged, sorted) and the first key-block BEGIN line.
    /// Spans after the BEGIN line are not looked for.
    fn scan(&self, text: &[u8], spans: &mut Vec<Span>) -> Option<(usize, usize)> {
        let mut candidates = self.prefilter.candidates(text);
        let mut at = 0;
        let mut begin = None;
        while let Some(first) = candidates.first_from(at) {
            let head = text.get(..first.start).unwrap_or_default();
            let line_start = memrchr(b'\n', head).map_or(0, |p| p + 1);
            let tail = text.get(first.start..).unwrap_or_default();
            let line_end = memchr(b'\n', tail)
                .map_or(text.len(), |p| first.start + p)
                .max(first.end);
            let kinds = candidates.kinds_before(line_end.max(first.start + 1));
            let line = text.get(line_start..line_end).unwrap_or_default();
            for (index, d) in self.detectors.iter().enumerate() {
                if d.kinds & kinds != 0 {
                    d.find(line, line_start, index, spans);
                }
            }
            if kinds & self.prefilter.key_block != 0 {
                if let Some(b) = self.key_begin.as_ref().and_then(|r| r.find(line)) {
                    begin = Some((line_start + b.start(), line_start + b.end()));
                    break;
                }
            }
            at = (line_end + 1).max(at + 1);
            if at > text.len() {
                break;
            }
        }
        merge(spans);
        begin
    }

    /// An unfinished secret at the very end of `text` (its last line).
    fn partial(&self, text: &[u8]) -> Option<Span> {
        let line_start = memrchr(b'\n', text).map_or(0, |p| p + 1);
        let line = text.get(line_start..).unwrap_or_default();
        self.partials.iter().find_map(|(det, re)| {
            let c = re.captures(line)?;
            let m = (1..c.len()).find_map(|k| c.get(k)).or_else(|| c.get(0))?;
            let value = line.get(m.start()..m.end()).unwrap_or_default();
            let is_assignment =
                self.detectors.get(*det).map(|d| d.check) == Some(Check::Assignment);
            if is_assignment && !detect::plausible_value(value) {
                return None;
            }
            Some(Span {
                start: line_start + m.start(),
                end: line_start + m.end(),
                det: *det,
            })
        })
    }
}

/// A secret's location in matching text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    /// First byte of the secret.
    start: usize,
    /// One past its last byte.
    end: usize,
    /// Index into `MaskRules::detectors`: kind and priority.
    det: usize,
}

/// Sorts spans and merges overlapping ones under the higher-priority kind.
fn merge(spans: &mut Vec<Span>) {
    spans.sort_by_key(|s| (s.start, s.det));
    let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
    for s in spans.drain(..) {
        match merged.last_mut() {
            Some(last) if s.start < last.end => {
                last.end = last.end.max(s.end);
                last.det = last.det.min(s.det);
            }
            _ => merged.push(s),
        }
    }
    *spans = merged;
}
