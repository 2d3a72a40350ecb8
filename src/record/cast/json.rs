//! JSON string literals for event lines, fast on bulk output: runs of bytes that need no escape
//! are found eight at a time and copied whole; the others get exactly serde_json's escapes
//! (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, otherwise `\u00xx`), so recordings read the same
//! byte for byte as when serde_json wrote them. Output is the hot path of every recording.

/// `0x0101…01`: one in every byte of a word.
const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
/// `0x8080…80`: the high bit of every byte.
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// Whether any byte of `word` is below 0x20, a `"` or a `\`. Exact for the existence of such
/// a byte (the classic "has a zero byte" test); bytes 0x80 and up (UTF-8) never count.
fn needs_escape(word: u64) -> bool {
    let zero_in = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS != 0;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS != 0;
    below_space
        || zero_in(word ^ (ONES * u64::from(b'"')))
        || zero_in(word ^ (ONES * u64::from(b'\\')))
}

/// Lower-case hex digit of a nibble.
fn hex(nibble: u8) -> u8 {
    match nibble {
        0..=9 => b'0' + nibble,
        _ => b'a' + (nibble & 0x0f) - 10,
    }
}

/// Appends `b` escaped (or as itself, should it need no escape).
fn push_escape(buf: &mut Vec<u8>, b: u8) {
    let short = match b {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x0c => b'f',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        0..=0x1f => {
            buf.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex(b >> 4), hex(b & 0x0f)]);
            return;
        }
        _ => {
            buf.push(b);
            return;
        }
    };
    buf.extend_from_slice(&[b'\\', short]);
}

/// Appends `s` as a JSON string literal.
pub(super) fn write_json_str(buf: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    buf.reserve(bytes.len() + 2);
    buf.push(b'"');
    // `clean` is where the run of bytes not yet copied starts.
    let mut clean = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            if !needs_escape(u64::from_ne_bytes(word)) {
                i += 8;
                continue;
            }
        }
        let Some(&b) = bytes.get(i) else { break };
        if b < 0x20 || b == b'"' || b == b'\\' {
            buf.extend_from_slice(bytes.get(clean..i).unwrap_or_default());
            push_escape(buf, b);
            clean = i + 1;
        }
        i += 1;
    }
    buf.extend_from_slice(bytes.get(clean..).unwrap_or_default());
    buf.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(s: &str) -> Vec<u8> {
        let mut buf = Vec::new();
        write_json_str(&mut buf, s);
        buf
    }

    #[test]
    fn every_ascii_byte_at_every_offset_matches_serde_json() {
        for b in 0u8..=0x7f {
            for pad in 0..17 {
                let s = format!("{}{}{}", "a".repeat(pad), b as char, "é".repeat(pad % 5));
                assert_eq!(
                    ours(&s),
                    serde_json::to_vec(&s).unwrap(),
                    "byte {b:#x} pad {pad}"
                );
            }
        }
    }

    #[test]
    fn mixed_text_matches_serde_json() {
        let samples = [
            String::new(),
            "plain log line with nothing to escape, long enough for words\n".repeat(7),
            "\0".repeat(100),
            "tab\tquote\"back\\slash\r\n\x1b[31mred\x1b[0m ünïcödé 😀\u{7f}\u{2028}".repeat(3),
        ];
        for s in samples {
            assert_eq!(ours(&s), serde_json::to_vec(&s).unwrap());
            let back: String = serde_json::from_slice(&ours(&s)).unwrap();
            assert_eq!(back, s);
        }
    }

    #[test]
    fn the_word_test_is_exact() {
        for b in 0u8..=0xff {
            for pos in 0..8 {
                let mut word = [b'a'; 8];
                word[pos] = b;
                let want = b < 0x20 || b == b'"' || b == b'\\';
                assert_eq!(
                    needs_escape(u64::from_ne_bytes(word)),
                    want,
                    "{b:#x} at {pos}"
                );
            }
        }
    }
}
