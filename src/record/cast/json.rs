//! JSON string literals for event lines. ASCII, the bulk of most output, takes one pass that
//! copies sixteen bytes at a time and stops only where a byte needs a look (a word-at-a-time
//! test that also says which byte is the first to need one). From the first byte that is not
//! ASCII on, the rest of the read is checked as UTF-8 by the standard library's validator
//! (fast on multi-byte text) and then copied the same way, stopping only for escapes. Escapes
//! are exactly serde_json's (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, otherwise `\u00xx`), so
//! recordings read the same byte for byte as when serde_json wrote them; a run of NULs
//! (`\u0000` each, the only JSON spelling of U+0000) is written by doubling copies rather than
//! byte by byte. Output is the hot path of every recording.

use super::utf8::{Utf8Carry, REPLACEMENT};

/// Bytes examined and copied per step of the scan.
const LANES: usize = 16;
/// `0x0101…01`: one in every byte of a word.
const ONES: u64 = u64::from_le_bytes([0x01; 8]);
/// `0x8080…80`: the high bit of every byte.
const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);

/// Whether a byte needs a look: a control character, quote or backslash (escaped), or, when
/// `STOP_AT_UTF8`, any byte of a multi-byte sequence (validated).
fn needs_look<const STOP_AT_UTF8: bool>(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\' || (STOP_AT_UTF8 && b >= 0x80)
}

/// The high bit of byte `j` (little-endian) set for the bytes of `word` that need a look. Only
/// the lowest set bit is exact (a borrow may mark bytes above a real one), which is all the
/// scan uses: `trailing_zeros() / 8` is the first byte that needs a look.
fn look_bits<const STOP_AT_UTF8: bool>(word: u64) -> u64 {
    // The classic "has a zero byte" test, exact for the lowest match.
    let zero_in = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    let utf8 = if STOP_AT_UTF8 { word & HIGHS } else { 0 };
    below_space
        | utf8
        | zero_in(word ^ (ONES * u64::from(b'"')))
        | zero_in(word ^ (ONES * u64::from(b'\\')))
}

/// Zero when no byte of the block needs a look; otherwise `trailing_zeros() / 8` is the first.
fn look_mask<const STOP_AT_UTF8: bool>(block: &[u8; LANES]) -> u128 {
    let (low, high) = block.split_at(8);
    let word = |half: &[u8]| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(half);
        look_bits::<STOP_AT_UTF8>(u64::from_le_bytes(bytes))
    };
    u128::from(word(low)) | (u128::from(word(high)) << 64)
}

/// Copies the bytes from `i` on into `buf` up to the first that needs a look, and returns its
/// index (or `bytes.len()`).
fn copy_plain<const STOP_AT_UTF8: bool>(buf: &mut Vec<u8>, bytes: &[u8], mut i: usize) -> usize {
    while let Some(block) = bytes.get(i..i + LANES) {
        let Ok(block) = <&[u8; LANES]>::try_from(block) else {
            break;
        };
        let mask = look_mask::<STOP_AT_UTF8>(block);
        // The whole block, then back to the byte that needs a look: one fixed-size copy per
        // block costs less than finding where each run ends and copying it by its length.
        buf.extend_from_slice(block);
        if mask != 0 {
            let first = mask.trailing_zeros() as usize / 8;
            buf.truncate(buf.len() - (LANES - first));
            return i + first;
        }
        i += LANES;
    }
    while let Some(&b) = bytes.get(i) {
        if needs_look::<STOP_AT_UTF8>(b) {
            return i;
        }
        buf.push(b);
        i += 1;
    }
    i
}

/// Copies and escapes `bytes` from `i` on, up to the first byte of a multi-byte sequence when
/// `STOP_AT_UTF8` (returning its index), else to the end (for text already known to be UTF-8).
fn escape_run<const STOP_AT_UTF8: bool>(buf: &mut Vec<u8>, bytes: &[u8], mut i: usize) -> usize {
    loop {
        i = copy_plain::<STOP_AT_UTF8>(buf, bytes, i);
        match bytes.get(i) {
            None => return i,
            Some(&b) if b >= 0x80 => return i,
            Some(0) => {
                let n = nul_run(bytes.get(i..).unwrap_or_default());
                push_nuls(buf, n);
                i += n;
            }
            Some(&b) => {
                push_escape(buf, b);
                i += 1;
            }
        }
    }
}

/// How many NULs start `bytes`.
fn nul_run(bytes: &[u8]) -> usize {
    let mut n = 0;
    while let Some(block) = bytes.get(n..n + LANES) {
        if block.iter().fold(0, |acc, &b| acc | b) != 0 {
            break;
        }
        n += LANES;
    }
    n + bytes
        .get(n..)
        .unwrap_or_default()
        .iter()
        .take_while(|&&b| b == 0)
        .count()
}

/// The escape of one NUL, sixteen times: the seed that [`push_nuls`] doubles.
const NULS: &[u8] = br"\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000";

/// Appends `n` escaped NULs, copying what is already written to double it each time.
fn push_nuls(buf: &mut Vec<u8>, n: usize) {
    let start = buf.len();
    let total = n * 6;
    buf.reserve(total);
    buf.extend_from_slice(NULS.get(..total.min(NULS.len())).unwrap_or_default());
    // Every copy is a whole number of escapes, so the pattern continues unbroken.
    while buf.len() - start < total {
        let have = buf.len() - start;
        buf.extend_from_within(start..start + have.min(total - have));
    }
}

/// Lower-case hex digit of a nibble.
fn hex(nibble: u8) -> u8 {
    match nibble {
        0..=9 => b'0' + nibble,
        _ => b'a' + (nibble & 0x0f) - 10,
    }
}

/// Appends the escape of the ASCII byte `b` (or `b` itself, should it need none).
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

/// Appends the text in `bytes` as the inside of a JSON string literal (no quotes): valid UTF-8
/// as it is, escapes where JSON needs them, U+FFFD for bytes that can never be UTF-8, and a
/// sequence cut at the end held in `carry` for the next read (completed from its start first).
pub(super) fn write_text(buf: &mut Vec<u8>, carry: &mut Utf8Carry, bytes: &[u8]) {
    let bytes = carry.resume(buf, bytes);
    // Room for the text as it is plus a block: escapes may still grow the buffer.
    buf.reserve(bytes.len() + LANES);
    let mut i = escape_run::<true>(buf, bytes, 0);
    while let Some(rest) = bytes.get(i..).filter(|rest| !rest.is_empty()) {
        let (valid, error) = match std::str::from_utf8(rest) {
            Ok(_) => (rest.len(), None),
            Err(e) => (e.valid_up_to(), Some(e.error_len())),
        };
        escape_run::<false>(buf, rest.get(..valid).unwrap_or_default(), 0);
        i += valid;
        match error {
            None => return,
            Some(Some(invalid)) => {
                buf.extend_from_slice(REPLACEMENT);
                i += invalid;
            }
            Some(None) => {
                // Cut short at the end of the read: the next one may complete it.
                carry.hold(rest.get(valid..).unwrap_or_default());
                return;
            }
        }
    }
}

/// Appends `s` as a JSON string literal.
pub(super) fn write_json_str(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    // A `str` is valid UTF-8: nothing is replaced and nothing is carried.
    write_text(buf, &mut Utf8Carry::default(), s.as_bytes());
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

    /// `bytes` cut at `cuts`, through `write_text` and the carry, as one JSON literal.
    fn chunked(bytes: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut buf = vec![b'"'];
        let mut carry = Utf8Carry::default();
        let mut from = 0;
        for &cut in cuts.iter().chain([bytes.len()].iter()) {
            write_text(&mut buf, &mut carry, &bytes[from..cut]);
            from = cut;
        }
        if carry.finish() {
            buf.extend_from_slice(REPLACEMENT);
        }
        buf.push(b'"');
        buf
    }

    #[test]
    fn every_ascii_byte_at_every_offset_matches_serde_json() {
        for b in 0u8..=0x7f {
            for pad in 0..40 {
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
            "\0".repeat(1000) + "x" + &"\0".repeat(17) + "\u{1}\0",
            "tab\tquote\"back\\slash\r\n\x1b[31mred\x1b[0m ünïcödé 😀\u{7f}\u{2028}".repeat(3),
        ];
        for s in samples {
            assert_eq!(ours(&s), serde_json::to_vec(&s).unwrap());
            let back: String = serde_json::from_slice(&ours(&s)).unwrap();
            assert_eq!(back, s);
        }
    }

    #[test]
    fn nul_runs_of_every_length() {
        for n in 0..300 {
            for pad in [0, 1, 15] {
                let s = "x".repeat(pad) + &"\0".repeat(n) + "y";
                assert_eq!(ours(&s), serde_json::to_vec(&s).unwrap(), "{n} NULs");
            }
        }
    }

    #[test]
    fn units_follow_the_standard_library() {
        use crate::record::cast::utf8::{unit, Unit};
        // Every lead byte with every interesting follower, cut at every length.
        let follow = [
            0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xf5, 0xff,
        ];
        for lead in 0u8..=0xff {
            for &a in &follow {
                for &b in &follow {
                    for &c in &follow {
                        let seq = [lead, a, b, c];
                        for len in 1..=4 {
                            let bytes = &seq[..len];
                            let want = match std::str::from_utf8(bytes) {
                                Ok(s) => Unit::Char(s.chars().next().unwrap().len_utf8()),
                                Err(e) if e.valid_up_to() > 0 => Unit::Char(
                                    std::str::from_utf8(&bytes[..e.valid_up_to()])
                                        .unwrap()
                                        .chars()
                                        .next()
                                        .unwrap()
                                        .len_utf8(),
                                ),
                                Err(e) => match e.error_len() {
                                    Some(n) => Unit::Invalid(n),
                                    None => Unit::Incomplete,
                                },
                            };
                            assert_eq!(unit(bytes), want, "{bytes:x?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn random_bytes_cut_anywhere_match_from_utf8_lossy() {
        // xorshift: reproducible without a dependency.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet: Vec<u8> = b"ab\0\n\"\\\x1b"
            .iter()
            .copied()
            .chain("é€😀".bytes())
            .chain([0x80, 0xbf, 0xc0, 0xe0, 0xed, 0xf0, 0xf4, 0xff])
            .collect();
        for round in 0..3000 {
            let len = (next() % 80) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let mut cuts: Vec<usize> = (0..next() % 6)
                .map(|_| (next() % (len as u64 + 1)) as usize)
                .collect();
            cuts.sort_unstable();
            let want = serde_json::to_vec(&String::from_utf8_lossy(&bytes)).unwrap();
            assert_eq!(
                chunked(&bytes, &cuts),
                want,
                "round {round}: {bytes:x?} cut {cuts:?}"
            );
        }
    }

    #[test]
    fn the_word_test_finds_the_first_byte_that_needs_a_look() {
        let first = |block: &[u8; LANES]| match look_mask::<true>(block) {
            0 => None,
            mask => Some(mask.trailing_zeros() as usize / 8),
        };
        for b in 0u8..=0xff {
            let want = !(0x20..0x80).contains(&b) || b == b'"' || b == b'\\';
            assert_eq!(needs_look::<true>(b), want, "{b:#x}");
            assert_eq!(needs_look::<false>(b), want && b < 0x80, "{b:#x}");
            for pos in 0..LANES {
                let mut block = [b'a'; LANES];
                block[pos] = b;
                assert_eq!(first(&block), want.then_some(pos), "{b:#x} at {pos}");
                // Whatever follows the first one (borrows run upward) does not move it.
                for after in [0x00, 0x1f, 0x20, 0x21, 0x22, 0x5c, 0x7f, 0x80, 0xff] {
                    let mut block = [b'a'; LANES];
                    block[pos] = b;
                    block[(pos + 1)..].fill(after);
                    let want = block.iter().position(|&b| needs_look::<true>(b));
                    assert_eq!(first(&block), want, "{b:#x} at {pos}, then {after:#x}");
                    let mask = look_mask::<false>(&block);
                    let want = block.iter().position(|&b| needs_look::<false>(b));
                    let got = (mask != 0).then(|| mask.trailing_zeros() as usize / 8);
                    assert_eq!(got, want, "{b:#x} at {pos}, then {after:#x}, UTF-8 known");
                }
            }
        }
    }
}
