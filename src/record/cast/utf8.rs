//! UTF-8 across reads: recordings hold text, output arrives as bytes cut anywhere.

use std::borrow::Cow;

/// Turns a byte stream into UTF-8 text across reads: a sequence cut at the end of one read is
/// held back and completed by the next; bytes that can never be UTF-8 become U+FFFD.
#[derive(Debug, Default)]
pub(super) struct Utf8Carry {
    /// At most 3 bytes: the start of a sequence that the next read may complete.
    pending: Vec<u8>,
}

impl Utf8Carry {
    pub(super) fn decode<'a>(&mut self, bytes: &'a [u8]) -> Cow<'a, str> {
        if self.pending.is_empty() {
            if let Ok(s) = std::str::from_utf8(bytes) {
                return Cow::Borrowed(s); // the common case: no copy
            }
        }
        Cow::Owned(self.decode_slow(bytes))
    }

    fn decode_slow(&mut self, bytes: &[u8]) -> String {
        let joined;
        let mut input: &[u8] = if self.pending.is_empty() {
            bytes
        } else {
            let mut v = std::mem::take(&mut self.pending);
            v.extend_from_slice(bytes);
            joined = v;
            &joined
        };
        let mut out = String::with_capacity(input.len());
        loop {
            match std::str::from_utf8(input) {
                Ok(s) => {
                    out.push_str(s);
                    return out;
                }
                Err(e) => {
                    let (valid, rest) = input.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            input = rest.get(bad..).unwrap_or_default();
                        }
                        None => {
                            // Cut short at the end: wait for the rest.
                            self.pending = rest.to_vec();
                            return out;
                        }
                    }
                }
            }
        }
    }

    /// The stream ended: a sequence still pending can never complete.
    pub(super) fn finish(&mut self) -> String {
        if self.pending.is_empty() {
            String::new()
        } else {
            self.pending.clear();
            char::REPLACEMENT_CHARACTER.to_string()
        }
    }
}
