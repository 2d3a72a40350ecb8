//! Whether two path patterns can name the same path, and brace expansion of literal words.
//!
//! An operand that is still a pattern when the line is decided — a shell glob (`/e?c`), the
//! paths `find DIR -exec` hands to its command (`DIR/**`) — expands to paths gatehouse cannot
//! list. A rule's glob (`/etc/**`) can still be checked against it: if some path matches both,
//! the rule may apply and the command is held; if none can, the rule cannot apply. This module
//! answers that question on a small pattern model, erring towards "they overlap" (a class
//! `[...]` counts as any character), which can only turn an allow into a hold.
//!
//! It also performs bash's brace expansion on literal words (`/{etc,usr}` → `/etc /usr`),
//! bounded, so rules see every word the shell would pass.

/// One step of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    /// Exactly this character.
    Lit(char),
    /// One character other than `/` (`?`, `[...]`).
    One,
    /// Any run of characters without `/` (`*`).
    Star,
    /// Any run of characters, `/` included (`**`).
    Globstar,
}

/// A path pattern in the model both sides are translated to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The steps, in order.
    toks: Vec<Tok>,
}

/// Longest pattern compared; longer operands are assumed to overlap (fail closed).
const MAX_PATTERN: usize = 1024;

/// Most words one brace expansion may produce before the word counts as unreadable.
pub const MAX_BRACE_WORDS: usize = 256;

/// Longest word brace-expanded; a longer one counts as unreadable (keeps the work bounded).
const MAX_BRACE_WORD: usize = 4096;

impl Pattern {
    /// A shell glob as bash expands it in an argument: `*`, `?` and `[...]` stay inside one
    /// path component. Extglob groups (`@(..)`, `!(..)`) become `*`.
    pub fn shell(text: &str) -> Pattern {
        let mut toks = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => push_star(&mut toks, Tok::Star),
                '?' if chars.peek() != Some(&'(') => toks.push(Tok::One),
                '[' => {
                    if skip_class(&mut chars) {
                        toks.push(Tok::One);
                    } else {
                        toks.push(Tok::Lit('['));
                    }
                }
                '?' | '@' | '!' | '+' if chars.peek() == Some(&'(') => {
                    skip_group(&mut chars);
                    push_star(&mut toks, Tok::Star);
                }
                c => toks.push(Tok::Lit(c)),
            }
        }
        Pattern { toks }
    }

    /// A path with every descendant: what `find DIR` visits (`DIR`, `DIR/**`).
    pub fn below(dir: &str) -> Pattern {
        let mut p = Pattern::shell(dir);
        if p.toks.last() != Some(&Tok::Lit('/')) {
            p.toks.push(Tok::Lit('/'));
        }
        p.toks.push(Tok::Globstar);
        p
    }

    /// A rule glob (globset syntax with `*` inside one component): `{a,b}` alternatives are
    /// expanded, `\x` escapes a character. `None` when it has more alternatives than
    /// [`MAX_BRACE_WORDS`]; callers then treat the glob as overlapping everything.
    pub fn rule(glob: &str) -> Option<Vec<Pattern>> {
        let alternatives = expand_globset_braces(glob)?;
        Some(
            alternatives
                .iter()
                .map(|g| {
                    let mut toks = Vec::new();
                    let mut chars = g.chars().peekable();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => toks.push(Tok::Lit(chars.next().unwrap_or('\\'))),
                            '*' if chars.peek() == Some(&'*') => {
                                chars.next();
                                push_star(&mut toks, Tok::Globstar);
                            }
                            '*' => push_star(&mut toks, Tok::Star),
                            '?' => toks.push(Tok::One),
                            '[' => {
                                if skip_class(&mut chars) {
                                    toks.push(Tok::One);
                                } else {
                                    toks.push(Tok::Lit('['));
                                }
                            }
                            c => toks.push(Tok::Lit(c)),
                        }
                    }
                    Pattern { toks }
                })
                .collect(),
        )
    }

    /// The same pattern in lower case (for rules with `ignore_case`).
    pub fn lowercase(&self) -> Pattern {
        Pattern {
            toks: self
                .toks
                .iter()
                .map(|t| match t {
                    Tok::Lit(c) => Tok::Lit(c.to_ascii_lowercase()),
                    other => *other,
                })
                .collect(),
        }
    }

    /// Whether some path matches both patterns. A rule pattern opening with `~` or `$` (a home
    /// directory as written) only overlaps an operand written the same way: a glob never
    /// expands to a word starting with a tilde that bash would then expand.
    pub fn overlaps(&self, rule: &Pattern) -> bool {
        if let Some(Tok::Lit(anchor @ ('~' | '$'))) = rule.toks.first() {
            if self.toks.first() != Some(&Tok::Lit(*anchor)) {
                return false;
            }
        }
        if self.toks.len() > MAX_PATTERN || rule.toks.len() > MAX_PATTERN {
            return true;
        }
        intersect(&self.toks, &rule.toks)
    }
}

fn push_star(toks: &mut Vec<Tok>, star: Tok) {
    // `**` in a shell glob (without globstar) and `***` mean what one star means.
    match toks.last_mut() {
        Some(last @ Tok::Star) if star == Tok::Globstar => *last = Tok::Globstar,
        Some(Tok::Star | Tok::Globstar) if star == Tok::Star => {}
        _ => toks.push(star),
    }
}

/// Skips a bracket class after its `[`; false (nothing consumed) if it never closes.
fn skip_class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> bool {
    let rest: String = chars.clone().collect();
    let body_start = usize::from(rest.starts_with(['!', '^']));
    // A `]` right after the opening (or its negation) is a member, not the end.
    let search_from =
        body_start + usize::from(rest.get(body_start..).is_some_and(|r| r.starts_with(']')));
    match rest.get(search_from..).and_then(|r| r.find(']')) {
        Some(end) => {
            let consumed = rest
                .get(..search_from + end + 1)
                .map_or(0, |s| s.chars().count());
            for _ in 0..consumed {
                chars.next();
            }
            true
        }
        None => false,
    }
}

/// Skips an extglob group after its sigil, up to the matching `)`.
fn skip_group(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    let mut depth = 0usize;
    for c in chars.by_ref() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return;
                }
            }
            _ => {}
        }
    }
}

/// Can some string be produced by both token sequences? A search over pairs of positions:
/// each side either skips a star (empty run) or both consume one common character.
fn intersect(a: &[Tok], b: &[Tok]) -> bool {
    let width = b.len() + 1;
    let mut seen = vec![false; (a.len() + 1) * width];
    let mut stack = vec![(0usize, 0usize)];
    while let Some((i, j)) = stack.pop() {
        let Some(slot) = seen.get_mut(i * width + j) else {
            continue;
        };
        if *slot {
            continue;
        }
        *slot = true;
        let (ta, tb) = (a.get(i), b.get(j));
        if ta.is_none() && tb.is_none() {
            return true;
        }
        if matches!(ta, Some(Tok::Star | Tok::Globstar)) {
            stack.push((i + 1, j));
        }
        if matches!(tb, Some(Tok::Star | Tok::Globstar)) {
            stack.push((i, j + 1));
        }
        if let (Some(x), Some(y)) = (ta, tb) {
            if common_char(*x, *y) {
                let ni = if matches!(x, Tok::Star | Tok::Globstar) {
                    i
                } else {
                    i + 1
                };
                let nj = if matches!(y, Tok::Star | Tok::Globstar) {
                    j
                } else {
                    j + 1
                };
                stack.push((ni, nj));
            }
        }
    }
    false
}

/// Whether one character can be produced by both steps.
fn common_char(x: Tok, y: Tok) -> bool {
    let slash_ok = |t: Tok| matches!(t, Tok::Globstar);
    match (x, y) {
        (Tok::Lit(a), Tok::Lit(b)) => a == b,
        (Tok::Lit(c), other) | (other, Tok::Lit(c)) => c != '/' || slash_ok(other),
        _ => true,
    }
}

/// Bash brace expansion of one literal word: `a{b,c}d` → `abd acd`, `{1..3}` → `1 2 3`,
/// `{a..c}`; nested groups too. `None` when the result would exceed [`MAX_BRACE_WORDS`].
pub fn expand_braces(word: &str) -> Option<Vec<String>> {
    if word.len() > MAX_BRACE_WORD {
        return None;
    }
    let mut out = Vec::new();
    expand_into(word, &mut out, 0)?;
    Some(out)
}

fn expand_into(word: &str, out: &mut Vec<String>, depth: usize) -> Option<()> {
    if depth > 32 {
        return None;
    }
    let Some((open, close, alternatives)) = first_group(word)? else {
        push_bounded(out, word.to_string())?;
        return Some(());
    };
    let prefix = word.get(..open).unwrap_or_default();
    let suffix = word.get(close + 1..).unwrap_or_default();
    for alt in alternatives {
        expand_into(&format!("{prefix}{alt}{suffix}"), out, depth + 1)?;
        if out.len() > MAX_BRACE_WORDS {
            return None;
        }
    }
    Some(())
}

fn push_bounded(out: &mut Vec<String>, word: String) -> Option<()> {
    if out.len() >= MAX_BRACE_WORDS {
        return None;
    }
    out.push(word);
    Some(())
}

/// The first brace group that expands: its byte range and its alternatives. `None` when a
/// sequence is too long to expand; `Some(None)` when nothing expands.
type Group = (usize, usize, Vec<String>);

fn first_group(word: &str) -> Option<Option<Group>> {
    let bytes: Vec<(usize, char)> = word.char_indices().collect();
    for (k, &(open, c)) in bytes.iter().enumerate() {
        if c != '{' || (k > 0 && bytes.get(k - 1).is_some_and(|&(_, p)| p == '$')) {
            continue;
        }
        // Find the matching close and the top-level commas.
        let mut depth = 0usize;
        let mut commas = Vec::new();
        let mut close = None;
        for &(pos, ch) in bytes.get(k + 1..).unwrap_or_default() {
            match ch {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    close = Some(pos);
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => commas.push(pos),
                _ => {}
            }
        }
        let Some(close) = close else { continue };
        let body = word.get(open + 1..close).unwrap_or_default();
        if !commas.is_empty() {
            let mut alts = Vec::new();
            let mut start = open + 1;
            for c in commas.iter().copied().chain(std::iter::once(close)) {
                alts.push(word.get(start..c).unwrap_or_default().to_string());
                start = c + 1;
            }
            return Some(Some((open, close, alts)));
        }
        match sequence(body) {
            Sequence::Words(seq) => return Some(Some((open, close, seq))),
            Sequence::TooLong => return None,
            Sequence::NotOne => {}
        }
    }
    Some(None)
}

/// What a `{..}` body is as a sequence expression.
enum Sequence {
    /// Its words, in order.
    Words(Vec<String>),
    /// A sequence with more than [`MAX_BRACE_WORDS`] words.
    TooLong,
    /// Not a sequence expression: the braces stay literal.
    NotOne,
}

/// `1..5`, `5..1`, `1..10..2`, `a..e`: the words of a sequence expression.
fn sequence(body: &str) -> Sequence {
    let parts: Vec<&str> = body.split("..").collect();
    let (from, to, step) = match parts.as_slice() {
        [a, b] => (*a, *b, None),
        [a, b, s] => (*a, *b, Some(*s)),
        _ => return Sequence::NotOne,
    };
    let step: i64 = match step.map(|s| s.parse::<i64>()) {
        Some(Ok(s)) => s.saturating_abs().max(1),
        Some(Err(_)) => return Sequence::NotOne,
        None => 1,
    };
    if let (Ok(a), Ok(b)) = (from.parse::<i64>(), to.parse::<i64>()) {
        let count = a.abs_diff(b) / step.unsigned_abs() + 1;
        if count > MAX_BRACE_WORDS as u64 {
            return Sequence::TooLong;
        }
        let mut words = Vec::new();
        let mut v = a;
        for _ in 0..count {
            words.push(v.to_string());
            v = if a <= b {
                v.saturating_add(step)
            } else {
                v.saturating_sub(step)
            };
        }
        return Sequence::Words(words);
    }
    let (mut fc, mut tc) = (from.chars(), to.chars());
    if let (Some(a), None, Some(b), None) = (fc.next(), fc.next(), tc.next(), tc.next()) {
        if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() {
            let (lo, hi) = (a.min(b) as u8, a.max(b) as u8);
            let mut words: Vec<String> = (lo..=hi)
                .step_by(usize::try_from(step).unwrap_or(1))
                .map(|c| char::from(c).to_string())
                .collect();
            if a > b {
                words.reverse();
            }
            return Sequence::Words(words);
        }
    }
    Sequence::NotOne
}

/// Expands `{a,b}` alternatives of a globset pattern (no sequences there).
fn expand_globset_braces(glob: &str) -> Option<Vec<String>> {
    if !glob.contains('{') {
        return Some(vec![glob.to_string()]);
    }
    let mut out = Vec::new();
    expand_into(glob, &mut out, 0)?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlap(operand: &str, rule: &str) -> bool {
        let p = Pattern::shell(operand);
        Pattern::rule(rule)
            .expect("rule")
            .iter()
            .any(|r| p.overlaps(r))
    }

    #[test]
    fn shell_globs_against_rule_globs() {
        assert!(overlap("/e?c", "/etc"));
        assert!(overlap("/e*/*", "/etc/**"));
        // `/etc/**` names what is below /etc; a one-component glob cannot reach it.
        assert!(!overlap("/e*", "/etc/**"));
        assert!(overlap("/*", "/etc"));
        assert!(overlap("/[a-f]tc", "/etc"));
        assert!(overlap("/usr/*/bin", "/usr/**"));
        assert!(!overlap("/tmp/*", "/etc/**"));
        assert!(!overlap("/tmp/*.o", "/*"));
        assert!(!overlap("*.log", "/etc/**"));
        assert!(!overlap("/tmp/*", "/usr/*"));
        // A star never crosses `/` on either side.
        assert!(!overlap("/*", "/usr/lib/*"));
        assert!(overlap("/*/lib/*", "/usr/lib/*"));
    }

    #[test]
    fn home_anchors_only_match_as_written() {
        assert!(!overlap("*", "~*"));
        assert!(!overlap("*", "$HOME"));
        assert!(overlap("~/*", "~/\\*"));
        assert!(!overlap("~/*.o", "~/\\*"));
    }

    #[test]
    fn find_below_a_directory() {
        let below = Pattern::below("/");
        assert!(Pattern::rule("/etc/**")
            .expect("rule")
            .iter()
            .any(|r| below.overlaps(r)));
        let tmp = Pattern::below("/tmp/x");
        assert!(!Pattern::rule("/etc/**")
            .expect("rule")
            .iter()
            .any(|r| tmp.overlaps(r)));
        assert!(!Pattern::rule("/*")
            .expect("rule")
            .iter()
            .any(|r| tmp.overlaps(r)));
    }

    #[test]
    fn brace_expansion_like_bash() {
        assert_eq!(expand_braces("/{etc,usr}").expect("x"), ["/etc", "/usr"]);
        assert_eq!(expand_braces("{/,}").expect("x"), ["/", ""]);
        assert_eq!(
            expand_braces("a{b,c{d,e}}f").expect("x"),
            ["abf", "acdf", "acef"]
        );
        assert_eq!(expand_braces("{1..3}").expect("x"), ["1", "2", "3"]);
        assert_eq!(expand_braces("{3..1}").expect("x"), ["3", "2", "1"]);
        assert_eq!(expand_braces("{a..c}").expect("x"), ["a", "b", "c"]);
        assert_eq!(expand_braces("x{1..10..4}").expect("x"), ["x1", "x5", "x9"]);
        assert_eq!(expand_braces("{a}").expect("x"), ["{a}"]);
        assert_eq!(expand_braces("${a,b}").expect("x"), ["${a,b}"]);
        assert!(expand_braces("{1..100000}").is_none());
        assert!(expand_braces(&format!("{}a,b}}", "{".repeat(60_000))).is_none());
        assert!(expand_braces("{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}").is_none());
    }

    #[test]
    fn brace_expansion_agrees_with_bash() {
        for word in [
            "/{etc,usr}",
            "{/,}",
            "a{b,c{d,e}}f",
            "{1..3}",
            "x{a..c}y",
            "{a}",
            "p{1..7..3}",
        ] {
            let Ok(out) = std::process::Command::new("bash")
                .arg("-c")
                .arg(format!("printf '%s\\n' {word}"))
                .output()
            else {
                return; // no bash on this machine
            };
            let bash: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(String::from)
                .collect();
            let mine: Vec<String> = expand_braces(word)
                .expect("bounded")
                .into_iter()
                .filter(|w| !w.is_empty())
                .collect();
            assert_eq!(mine, bash, "{word}");
        }
    }
}
