//! Size and nesting limits, checked on raw text before brush-parser sees it.
//!
//! brush-parser is a recursive-descent (PEG) parser: 5,000 nested `$(` would recurse 5,000
//! levels deep inside it, and a deeply nested AST would also recurse when dropped. So the
//! nesting depth is estimated from the text first, conservatively (quotes other than single
//! quotes are not trusted to hide anything), and anything deeper than [`MAX_DEPTH`] is held
//! without parsing. A real command line never comes close.

use super::MAX_DEPTH;

/// Most `&&`, `||` and `!` a line holding `[[ ... ]]` may have: inside `[[ ]]` they build a
/// nested expression tree, not a flat list.
const MAX_TEST_OPERATORS: usize = 256;

/// Returns why `script` nests too deeply to parse safely, or `None` when it may be parsed.
pub fn nesting_exceeds(script: &str) -> Option<String> {
    let bytes = script.as_bytes();
    let mut depth: usize = 0;
    let mut deepest: usize = 0;
    let mut bangs_in_a_row: usize = 0;
    let mut test_operators: usize = 0;
    let mut i = 0;
    let mut word_start = true;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => i += 1,
            b'\'' => {
                // Single quotes hide everything up to the next quote (`$'..'` too, near enough:
                // an escaped quote only makes the estimate larger later on).
                i += 1;
                while let Some(&c) = bytes.get(i) {
                    if c == b'\'' {
                        break;
                    }
                    i += 1;
                }
            }
            b'(' | b'{' | b'`' => depth += 1,
            b')' | b'}' => depth = depth.saturating_sub(1),
            b'!' if word_start => {
                bangs_in_a_row += 1;
                test_operators += 1;
            }
            b'&' | b'|' if bytes.get(i + 1) == Some(&b) => {
                test_operators += 1;
                i += 1;
            }
            _ => {}
        }
        if word_start && !b.is_ascii_whitespace() && b != b'!' {
            bangs_in_a_row = 0;
            if let Some(delta) = keyword_at(bytes, i) {
                if delta > 0 {
                    depth += 1;
                } else {
                    depth = depth.saturating_sub(1);
                }
            }
        }
        word_start = b.is_ascii_whitespace() || matches!(b, b';' | b'&' | b'|' | b'(' | b')');
        deepest = deepest.max(depth);
        if deepest > MAX_DEPTH {
            return Some(format!("the line nests deeper than {MAX_DEPTH} levels"));
        }
        if bangs_in_a_row > MAX_DEPTH {
            return Some("too many `!` in a row".into());
        }
        i += 1;
    }
    if test_operators > MAX_TEST_OPERATORS && script.contains("[[") {
        return Some(format!(
            "a [[ ]] test with more than {MAX_TEST_OPERATORS} operators"
        ));
    }
    None
}

/// +1 for a keyword that opens a compound command, -1 for one that closes it.
fn keyword_at(bytes: &[u8], i: usize) -> Option<i8> {
    let rest = bytes.get(i..)?;
    let end = rest
        .iter()
        .position(|c| c.is_ascii_whitespace() || matches!(c, b';' | b'&' | b'|' | b'(' | b')'))
        .unwrap_or(rest.len());
    match rest.get(..end)? {
        b"if" | b"while" | b"until" | b"for" | b"case" | b"select" | b"function" => Some(1),
        b"fi" | b"done" | b"esac" => Some(-1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_lines_pass() {
        assert_eq!(
            nesting_exceeds("for f in *.log; do wc -l \"$f\"; done"),
            None
        );
        assert_eq!(nesting_exceeds(&"(a); ".repeat(1000)), None);
        assert_eq!(nesting_exceeds(&"a && ".repeat(1000)), None);
    }

    #[test]
    fn deep_nesting_refused() {
        let deep = format!("{}x{}", "$(".repeat(100), ")".repeat(100));
        assert!(nesting_exceeds(&deep).is_some());
        assert!(nesting_exceeds(&"if a; then ".repeat(100)).is_some());
        assert!(nesting_exceeds(&format!("[[ {} a ]]", "! ".repeat(100))).is_some());
        assert!(nesting_exceeds(&format!("[[ a {} ]]", "&& a ".repeat(300))).is_some());
    }
}
