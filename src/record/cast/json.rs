//! JSON string literals for event lines, one pass over each read: UTF-8 validation (with the
//! carry across reads) and escaping happen in the same scan, which skips sixteen bytes at a
//! time while none of them needs a look (a byte test the compiler turns into SIMD compares).
//! Escapes are exactly serde_json's (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, otherwise
//! `\u00xx`), so recordings read the same byte for byte as when serde_json wrote them; a run
//! of NULs (`\u0000` each, the only JSON spelling of U+0000) is written by doubling copies
//! rather than byte by byte. Output is the hot path of every recording.

use super::utf8::{unit, Unit, Utf8Carry, REPLACEMENT};

/// Bytes examined per step of the scan.
const LANES: usize = 16;

/// Whether a byte needs a look: a control character or quote or backslash (escaped), or any
/// byte of a multi-byte sequence (validated). As `i8`, bytes 0x80 and up are negative, so one
/// signed compare covers both control characters and non-ASCII. Bitwise `|`, not `||`: no
/// branches, so a block's test becomes a few SIMD compares.
fn needs_look(b: u8) -> bool {
    ((b as i8) < 0x20) | (b == b'"') | (b == b'\\')
}

/// Whether any byte of the block needs a look.
fn block_needs_look(block: &[u8; LANES]) -> bool {
    block.iter().fold(false, |any, &b| any | needs_look(b))
}

/// The first index from `i` on whose byte needs a look, or `bytes.len()`.
fn skip_plain(bytes: &[u8], mut i: usize) -> usize {
    while let Some(block) = bytes.get(i..i + LANES) {
        let Ok(block) = <&[u8; LANES]>::try_from(block) else {
            break;
        };
        if block_needs_look(block) {
            break;
        }
        i += LANES;
    }
    // Within the block that needs a look (or the last few bytes), byte by byte.
    while let Some(&b) = bytes.get(i) {
        if needs_look(b) {
            return i;
        }
        i += 1;
    }
    i
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
    buf.reserve(bytes.len());
    // Bytes from `clean` to `i` need no escape and are copied in one piece.
    let mut clean = 0;
    let mut i = 0;
    loop {
        i = skip_plain(bytes, i);
        let Some(&b) = bytes.get(i) else {
            break;
        };
        let rest = bytes.get(i..).unwrap_or_default();
        if b >= 0x80 {
            let n = match unit(rest) {
                Unit::Char(n) => {
                    i += n;
                    continue;
                }
                Unit::Invalid(n) => n,
                Unit::Incomplete => {
                    buf.extend_from_slice(bytes.get(clean..i).unwrap_or_default());
                    carry.hold(rest);
                    return;
                }
            };
            buf.extend_from_slice(bytes.get(clean..i).unwrap_or_default());
            buf.extend_from_slice(REPLACEMENT);
            i += n;
        } else if b == 0 {
            buf.extend_from_slice(bytes.get(clean..i).unwrap_or_default());
            let n = nul_run(rest);
            push_nuls(buf, n);
            i += n;
        } else {
            buf.extend_from_slice(bytes.get(clean..i).unwrap_or_default());
            push_escape(buf, b);
            i += 1;
        }
        clean = i;
    }
    buf.extend_from_slice(bytes.get(clean..).unwrap_or_default());
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
    fn the_look_test_is_exact() {
        for b in 0u8..=0xff {
            let want = !(0x20..0x80).contains(&b) || b == b'"' || b == b'\\';
            assert_eq!(needs_look(b), want, "{b:#x}");
            for pos in 0..LANES {
                let mut block = [b'a'; LANES];
                block[pos] = b;
                assert_eq!(block_needs_look(&block), want, "{b:#x} at {pos}");
            }
        }
    }
}
