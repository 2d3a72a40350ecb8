//! The per-stream state machine: what is held back, what was already released on the current
//! line, whether a private key block is being suppressed, and how masked bytes are written.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use memchr::{memchr, memrchr};

use super::ansi::{escape_len, strip_into, Removed, ESC};
use super::detect::PRIVATE_KEY;
use super::{MaskMode, MaskRules, Span, BLOCK_CARRY, CONTEXT, MAX_HOLD, MAX_KEY_BLOCK};

/// Redacts one output stream. Feed it with [`push`](Masker::push); release what it holds with
/// [`flush`](Masker::flush) after [`QUIET_FLUSH`](super::QUIET_FLUSH) of silence and at EOF.
#[derive(Debug)]
pub struct Masker {
    /// The detectors, shared with the other streams of the target.
    rules: Arc<MaskRules>,
    /// Replacement style (tags for exec output, same length for PTYs).
    mode: MaskMode,
    /// Raw bytes received but not released: the unfinished last line, at most `MAX_HOLD`.
    held: Vec<u8>,
    /// Escape-free text of the part of the current line already released, so a secret that
    /// straddles an early release is still recognised (its released head cannot be recalled,
    /// its tail is masked).
    context: Vec<u8>,
    /// Whether the released text ended inside a mask: a span continuing from `context` is
    /// then the same secret and is not counted twice.
    context_masked: bool,
    /// Set while inside a private key block: everything is suppressed until the END line.
    block: Option<KeyBlock>,
    /// Masks written per kind since creation, for the recording marker and the audit log.
    counts: BTreeMap<String, u64>,
}

/// Suppression state inside a private key block.
#[derive(Debug, Default)]
struct KeyBlock {
    /// Tail of the suppressed bytes, to find an END line split across reads.
    carry: Vec<u8>,
    /// Bytes suppressed so far; past `MAX_KEY_BLOCK` the block is abandoned.
    suppressed: usize,
}

/// Matching text for held bytes: context, then the held bytes without escapes.
struct View<'a> {
    /// The text detectors run on.
    text: Cow<'a, [u8]>,
    /// Where escapes were removed from the held bytes (`None`: none were).
    map: Option<Removed>,
    /// Length of the context prefix of `text`.
    context: usize,
    /// Number of held bytes.
    raw_len: usize,
}

impl<'a> View<'a> {
    fn new(context: &[u8], raw: &'a [u8]) -> View<'a> {
        let escapes = memchr(ESC, raw).is_some();
        if context.is_empty() && !escapes {
            return View {
                text: Cow::Borrowed(raw),
                map: None,
                context: 0,
                raw_len: raw.len(),
            };
        }
        let mut text = Vec::with_capacity(context.len() + raw.len());
        text.extend_from_slice(context);
        let map = if escapes {
            Some(strip_into(raw, &mut text))
        } else {
            text.extend_from_slice(raw);
            None
        };
        View {
            text: Cow::Owned(text),
            map,
            context: context.len(),
            raw_len: raw.len(),
        }
    }

    fn raw_pos(&self, i: usize) -> usize {
        let j = i.saturating_sub(self.context);
        match &self.map {
            None => j,
            Some(_) if j >= self.text.len() - self.context => self.raw_len,
            Some(m) => m.original(j),
        }
    }

    /// Held-byte range of a text span: (start, end, starts in context). Escapes inside the
    /// span fall inside the range; a span from the context starts at held byte 0.
    fn raw_span(&self, s: &Span) -> Option<RawSpan> {
        if s.end <= self.context || s.end <= s.start {
            return None;
        }
        let continued = s.start < self.context;
        let start = if continued { 0 } else { self.raw_pos(s.start) };
        let end = (self.raw_pos(s.end - 1) + 1).min(self.raw_len);
        Some(RawSpan {
            start,
            end,
            det: s.det,
            continued,
        })
    }
}

/// What [`Masker::release`] left for its caller.
#[derive(Debug)]
enum Step {
    /// This many bytes were released; the rest is held.
    Keep(usize),
    /// A key block began; these bytes follow its BEGIN line and nothing is held.
    Block(Vec<u8>),
}

/// A span in held bytes.
#[derive(Debug, Clone, Copy)]
struct RawSpan {
    /// First held byte to replace.
    start: usize,
    /// One past the last.
    end: usize,
    /// Detector index (kind).
    det: usize,
    /// Began in already released text.
    continued: bool,
}

impl Masker {
    /// A masker for one stream.
    pub fn new(rules: Arc<MaskRules>, mode: MaskMode) -> Masker {
        Masker {
            rules,
            mode,
            held: Vec::new(),
            context: Vec::new(),
            context_masked: false,
            block: None,
            counts: BTreeMap::new(),
        }
    }

    /// Feeds a chunk; appends to `out` everything that can no longer be part of a secret.
    /// Holds back at most [`MAX_HOLD`] bytes.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if !self.rules.is_active() {
            out.extend_from_slice(chunk);
            return;
        }
        self.run(chunk, false, out);
    }

    /// Releases (masked) everything held back: after [`QUIET_FLUSH`](super::QUIET_FLUSH) of
    /// quiet and at EOF. An unfinished token at the end is masked as if complete.
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        if self.rules.is_active() {
            self.run(&[], true, out);
        }
    }

    /// Whether bytes are held back (the caller should arm its quiet timer).
    pub fn has_pending(&self) -> bool {
        !self.held.is_empty()
    }

    /// Number of bytes held back (never more than [`MAX_HOLD`]).
    pub fn held_len(&self) -> usize {
        self.held.len()
    }

    /// Masks written per kind since creation.
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }

    fn run(&mut self, chunk: &[u8], last: bool, out: &mut Vec<u8>) {
        let mut chunk = chunk;
        // Complete the held line with the chunk's first line on its own, so that the rest of
        // the chunk is scanned where it lies instead of being copied behind the held bytes.
        // Lines are masked independently, so the output is the same.
        if !self.held.is_empty() && self.block.is_none() {
            if let Some(nl) = memchr(b'\n', chunk) {
                let (first, rest) = chunk.split_at(nl + 1);
                self.feed(first, false, out);
                chunk = rest;
            }
        }
        self.feed(chunk, last, out);
    }

    fn feed(&mut self, chunk: &[u8], last: bool, out: &mut Vec<u8>) {
        let mut input: Cow<'_, [u8]> = Cow::Borrowed(chunk);
        loop {
            let rest = if self.block.is_some() {
                self.consume_block(&input, out)
            } else if self.held.is_empty() {
                if input.is_empty() {
                    return;
                }
                match self.release(&input, last, out) {
                    Step::Keep(cut) => {
                        self.held
                            .extend_from_slice(input.get(cut..).unwrap_or_default());
                        None
                    }
                    Step::Block(rest) => Some(rest),
                }
            } else {
                let mut text = std::mem::take(&mut self.held);
                text.extend_from_slice(&input);
                match self.release(&text, last, out) {
                    Step::Keep(cut) => {
                        text.drain(..cut);
                        self.held = text;
                        None
                    }
                    Step::Block(rest) => Some(rest),
                }
            };
            match rest {
                Some(rest) if !rest.is_empty() => input = Cow::Owned(rest),
                _ => return,
            }
        }
    }

    /// Scans `text` (the held bytes, which the caller took out, followed by new input) and
    /// releases what is safe (everything if `last`); the caller holds the rest. On a key-block
    /// BEGIN line, releases up to it and returns the bytes after it for block suppression.
    fn release(&mut self, text: &[u8], last: bool, out: &mut Vec<u8>) -> Step {
        let rules = Arc::clone(&self.rules);
        let view = View::new(&self.context, text);
        let mut spans = Vec::new();
        let begin = rules.scan(&view.text, &mut spans);
        let mut raw: Vec<RawSpan> = spans.iter().filter_map(|s| view.raw_span(s)).collect();
        let len = text.len();

        if let Some((bs, be)) = begin {
            let block = Span {
                start: bs,
                end: be,
                det: usize::MAX,
            };
            let (rs, re) = view.raw_span(&block).map_or((0, 0), |r| (r.start, r.end));
            raw.retain(|r| r.start < rs);
            for r in &mut raw {
                r.end = r.end.min(rs);
            }
            let head = text.get(..rs).unwrap_or_default();
            write_masked(
                &rules,
                self.mode,
                &mut self.counts,
                self.context_masked,
                head,
                &raw,
                out,
            );
            *self.counts.entry(PRIVATE_KEY.to_owned()).or_insert(0) += 1;
            let line = text.get(rs..re).unwrap_or_default();
            replace(self.mode, line, PRIVATE_KEY, out);
            let rest = text.get(re..).unwrap_or_default().to_vec();
            self.context.clear();
            self.context_masked = false;
            self.block = Some(KeyBlock::default());
            return Step::Block(rest);
        }

        let cut = if last {
            if raw.last().is_none_or(|r| r.end < len) {
                let floor = raw.last().map_or(0, |r| r.end);
                if let Some(r) = rules.partial(&view.text).and_then(|s| view.raw_span(&s)) {
                    if r.start >= floor || r.continued {
                        raw.push(r);
                    }
                }
            }
            len
        } else {
            safe_cut(text, &raw)
        };
        raw.retain(|r| r.end <= cut);
        drop(view);

        if cut == 0 {
            return Step::Keep(0);
        }
        let released = text.get(..cut).unwrap_or_default();
        write_masked(
            &rules,
            self.mode,
            &mut self.counts,
            self.context_masked,
            released,
            &raw,
            out,
        );
        let ends_masked = raw.last().is_some_and(|r| r.end == cut);
        remember(&mut self.context, released);
        self.context_masked = ends_masked;
        Step::Keep(cut)
    }

    /// Suppresses key-block bytes; returns what follows the END line, if it came.
    fn consume_block(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<Vec<u8>> {
        let mode = self.mode;
        let end_re = self.rules.key_end.as_ref();
        let block = self.block.as_mut()?;
        let carried = block.carry.len();
        let mut joined = std::mem::take(&mut block.carry);
        joined.extend_from_slice(input);
        let view = View::new(&[], &joined);
        let end = end_re.and_then(|re| re.find(&view.text)).map(|m| Span {
            start: m.start(),
            end: m.end(),
            det: usize::MAX,
        });
        if let Some(r) = end.and_then(|s| view.raw_span(&s)) {
            if mode == MaskMode::SameLength {
                let body = input
                    .get(..r.end.saturating_sub(carried))
                    .unwrap_or_default();
                replace(mode, body, PRIVATE_KEY, out);
            }
            let rest = joined.get(r.end..).unwrap_or_default().to_vec();
            self.block = None;
            return Some(rest);
        }
        if mode == MaskMode::SameLength {
            replace(mode, input, PRIVATE_KEY, out);
        }
        block.suppressed += input.len();
        if block.suppressed > MAX_KEY_BLOCK {
            // No END line: stop suppressing, the detectors keep running on what follows.
            self.block = None;
            return None;
        }
        let keep = joined.len().saturating_sub(BLOCK_CARRY);
        block.carry = joined.get(keep..).unwrap_or_default().to_vec();
        None
    }
}

/// Writes `bytes` with `spans` replaced, counting each new secret (a span continuing a mask
/// already written is the same secret).
fn write_masked(
    rules: &MaskRules,
    mode: MaskMode,
    counts: &mut BTreeMap<String, u64>,
    context_masked: bool,
    bytes: &[u8],
    spans: &[RawSpan],
    out: &mut Vec<u8>,
) {
    let mut pos = 0;
    for r in spans {
        out.extend_from_slice(bytes.get(pos..r.start).unwrap_or_default());
        let kind = rules.kind(r.det);
        if !(r.continued && context_masked) {
            match counts.get_mut(kind) {
                Some(n) => *n += 1,
                None => {
                    counts.insert(kind.to_owned(), 1);
                }
            }
        }
        replace(
            mode,
            bytes.get(r.start..r.end).unwrap_or_default(),
            kind,
            out,
        );
        pos = r.end;
    }
    out.extend_from_slice(bytes.get(pos..).unwrap_or_default());
}

/// Where to stop releasing held bytes when more input may follow: after the last newline, or
/// when the unfinished line is longer than `MAX_HOLD`, at a point that splits neither a found
/// secret nor (if it fits) a whitespace-free run that could still become one.
fn safe_cut(held: &[u8], spans: &[RawSpan]) -> usize {
    let len = held.len();
    let line_start = memrchr(b'\n', held).map_or(0, |p| p + 1);
    if len - line_start <= MAX_HOLD {
        return line_start;
    }
    let floor = len - MAX_HOLD;
    let mut cut = len - MAX_HOLD / 2;
    let head = held.get(..cut).unwrap_or_default();
    let run_start = head
        .iter()
        .rposition(u8::is_ascii_whitespace)
        .map_or(0, |p| p + 1);
    if run_start >= floor {
        cut = run_start;
    }
    if let Some(r) = spans.iter().find(|r| r.start < cut && cut < r.end) {
        cut = if r.end < len {
            r.end
        } else if r.start >= floor {
            r.start
        } else {
            len
        };
    }
    cut
}

/// Updates the released-line context with newly released bytes.
fn remember(context: &mut Vec<u8>, released: &[u8]) {
    match memrchr(b'\n', released) {
        Some(p) => {
            context.clear();
            strip_into(released.get(p + 1..).unwrap_or_default(), context);
        }
        None => {
            strip_into(released, context);
        }
    }
    if context.len() > CONTEXT {
        let excess = context.len() - CONTEXT;
        context.drain(..excess);
    }
}

/// Writes the replacement for `secret`. Escape sequences inside it are kept (after the tag, or
/// in place in same-length mode) so colours and terminal state stay consistent.
fn replace(mode: MaskMode, secret: &[u8], kind: &str, out: &mut Vec<u8>) {
    if mode == MaskMode::Tag {
        out.extend_from_slice(b"[MASKED:");
        out.extend_from_slice(kind.as_bytes());
        out.push(b']');
    }
    let mut i = 0;
    while let Some(&c) = secret.get(i) {
        if c == ESC {
            let n = escape_len(secret, i);
            out.extend_from_slice(secret.get(i..i + n).unwrap_or_default());
            i += n;
            continue;
        }
        if mode == MaskMode::SameLength {
            if c == b'\n' || c == b'\r' {
                out.push(c);
            } else if c & 0xC0 != 0x80 {
                // One star per character: UTF-8 continuation bytes add none.
                out.push(b'*');
            }
        }
        i += 1;
    }
}
