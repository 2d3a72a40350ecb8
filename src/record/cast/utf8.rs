//! UTF-8 across reads: recordings hold text, output arrives as bytes cut anywhere. This module
//! carries a sequence cut at the end of one read to the next and completes it from the next
//! read's first bytes, reading it with exactly the standard library's rules (so invalid bytes
//! become the same U+FFFD as `String::from_utf8_lossy` would make of them). Whole reads are
//! validated and escaped in `json.rs`.

/// U+FFFD REPLACEMENT CHARACTER, UTF-8 encoded: what bytes that can never be UTF-8 become.
pub(super) const REPLACEMENT: &[u8] = "\u{fffd}".as_bytes();

/// What the bytes at the start of a slice are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unit {
    /// A valid character of this many bytes.
    Char(usize),
    /// This many bytes can never start a character: one U+FFFD for them (the standard
    /// library's `Utf8Error::error_len`), then decoding resumes after them.
    Invalid(usize),
    /// The slice ends inside a sequence that is valid so far: the next read may complete it.
    Incomplete,
}

/// Reads the character at the start of `bytes` (the standard library's UTF-8 rules: no
/// overlong forms, no surrogates, nothing above U+10FFFF).
pub(super) fn unit(bytes: &[u8]) -> Unit {
    let Some(&lead) = bytes.first() else {
        return Unit::Incomplete;
    };
    // Length, and the range of the second byte (narrower than 80..=BF where the lead byte
    // alone would allow overlong forms, surrogates or code points past U+10FFFF).
    let (len, low, high) = match lead {
        0x00..=0x7f => return Unit::Char(1),
        0xc2..=0xdf => (2, 0x80, 0xbf),
        0xe0 => (3, 0xa0, 0xbf),
        0xe1..=0xec | 0xee..=0xef => (3, 0x80, 0xbf),
        0xed => (3, 0x80, 0x9f),
        0xf0 => (4, 0x90, 0xbf),
        0xf1..=0xf3 => (4, 0x80, 0xbf),
        0xf4 => (4, 0x80, 0x8f),
        _ => return Unit::Invalid(1),
    };
    match bytes.get(1) {
        None => return Unit::Incomplete,
        Some(b) if !(low..=high).contains(b) => return Unit::Invalid(1),
        Some(_) => {}
    }
    for k in 2..len {
        match bytes.get(k) {
            None => return Unit::Incomplete,
            Some(b) if !(0x80..=0xbf).contains(b) => return Unit::Invalid(k),
            Some(_) => {}
        }
    }
    Unit::Char(len)
}

/// The start of a sequence that the next read may complete (one per byte stream).
#[derive(Debug, Default)]
pub(super) struct Utf8Carry {
    /// The carried bytes: at most 3 (a 4-byte sequence minus its last byte).
    pending: [u8; 3],
    /// How many of `pending` are in use.
    len: usize,
}

impl Utf8Carry {
    /// Completes a carried sequence with the first bytes of `bytes`, appending the character
    /// (or U+FFFD) to `out` (neither needs a JSON escape), and returns the bytes that follow
    /// it. When `bytes` is too short to complete it, they are carried too.
    pub(super) fn resume<'a>(&mut self, out: &mut Vec<u8>, bytes: &'a [u8]) -> &'a [u8] {
        if self.len == 0 {
            return bytes;
        }
        let held = self.len;
        let mut joined = [0u8; 7];
        let take = bytes.len().min(4);
        let (Some(head), Some(new), Some(start)) = (
            joined.get_mut(..held),
            bytes.get(..take),
            self.pending.get(..held),
        ) else {
            return bytes;
        };
        head.copy_from_slice(start);
        let joined_len = held + take;
        if let Some(tail) = joined.get_mut(held..joined_len) {
            tail.copy_from_slice(new);
        }
        let joined = joined.get(..joined_len).unwrap_or_default();
        // A carried sequence is valid so far, so whatever ends it ends past the carried
        // bytes: `used` is at least `held`.
        let used = match unit(joined) {
            Unit::Char(n) => {
                out.extend_from_slice(joined.get(..n).unwrap_or_default());
                n
            }
            Unit::Invalid(n) => {
                out.extend_from_slice(REPLACEMENT);
                n
            }
            Unit::Incomplete => {
                self.hold(joined);
                return &[];
            }
        };
        self.len = 0;
        bytes.get(used.saturating_sub(held)..).unwrap_or_default()
    }

    /// Carries `tail`, the [`Unit::Incomplete`] end of a read (at most 3 bytes).
    pub(super) fn hold(&mut self, tail: &[u8]) {
        let len = tail.len().min(self.pending.len());
        if let (Some(dst), Some(src)) = (self.pending.get_mut(..len), tail.get(..len)) {
            dst.copy_from_slice(src);
        }
        self.len = len;
    }

    /// The stream ended: true when a sequence was still carried, which can never complete
    /// (the caller writes one U+FFFD for it).
    pub(super) fn finish(&mut self) -> bool {
        std::mem::take(&mut self.len) > 0
    }
}
