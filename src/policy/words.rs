//! Quote removal on one shell word, done from brush-parser's word pieces.
//!
//! A word is rendered to the text bash would pass to the program when that text is knowable
//! without running anything. Parameter expansions keep their `$NAME` spelling (so a rule can
//! name `$HOME`), tildes stay `~`, and every command substitution found anywhere inside the
//! word (double quotes, `${x:-...}` defaults, backquotes) is handed back for the caller to
//! parse as a script of its own. This module does not decide anything; it reports what it saw.

use brush_parser::word::{
    Parameter, ParameterExpr, ParameterTransformOp, SpecialParameter, TildeExpr, WordPiece,
};
use brush_parser::ParserOptions;

use super::scope::{Value, Vars};
use super::MAX_DEPTH;

/// One word after quote removal, with what made it (not) a plain literal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Arg {
    /// The word as bash would see it after quote removal; expansions keep their `$NAME` /
    /// `$(...)` spelling so rules can still match them.
    pub text: String,
    /// True when any part of the word is decided at run time (parameter, command or
    /// arithmetic expansion); a command name must not be.
    pub dynamic: bool,
    /// Unquoted glob characters (`*`, `?`, `[`): pathname expansion changes the word.
    pub glob: bool,
    /// Unquoted brace expansion (`{a,b}`, `{1..3}`): one word becomes several.
    pub brace: bool,
    /// ANSI-C quoting (`$'...'`) was used; hostile spellings of command names hide here.
    pub ansi_c: bool,
    /// Starts with an unquoted tilde (`~`, `~user`): stays `~` in `text`.
    pub tilde: bool,
    /// Some part is decided at run time and gatehouse cannot say what it becomes: every
    /// dynamic word except one whose only expansion is a leading `$HOME`, which rules name as
    /// written. Rules treat an opaque argument as possibly any flag or operand.
    pub opaque: bool,
}

/// What rendering a word found besides its text.
#[derive(Debug, Default)]
pub struct WordFindings {
    /// Scripts of command substitutions (`$(...)`, backquotes) to be parsed and decided.
    pub substitutions: Vec<String>,
    /// Fail-closed reasons: (built-in rule id, reason).
    pub holds: Vec<(&'static str, String)>,
}

/// The parser options gatehouse reads every line with: bash, not POSIX sh, extglob on.
pub fn parser_options() -> ParserOptions {
    ParserOptions::default()
}

/// Renders one raw word (as it appears in the AST, quotes included).
pub fn render(raw: &str, findings: &mut WordFindings, depth: usize) -> Arg {
    render_in(raw, findings, depth, &Vars::default())
}

/// [`render`] where `vars` holds the literal values the line gave its variables: `$D` with one
/// known value renders as that value.
pub fn render_in(raw: &str, findings: &mut WordFindings, depth: usize, vars: &Vars) -> Arg {
    let mut arg = Arg::default();
    if depth > MAX_DEPTH {
        findings.holds.push((
            "nesting-too-deep",
            "words nest deeper than gatehouse reads".into(),
        ));
        arg.text = raw.to_string();
        arg.dynamic = true;
        arg.opaque = true;
        return arg;
    }
    match brush_parser::word::parse(raw, &parser_options()) {
        Ok(pieces) => {
            for (i, p) in pieces.iter().enumerate() {
                render_piece(
                    &p.piece,
                    raw,
                    (p.start_index, p.end_index),
                    i == 0,
                    false,
                    &mut arg,
                    findings,
                    depth,
                    vars,
                );
            }
        }
        Err(e) => {
            findings
                .holds
                .push(("parse-error", format!("cannot read the word {raw:?}: {e}")));
            arg.text = raw.to_string();
            arg.dynamic = true;
            arg.opaque = true;
        }
    }
    arg
}

#[allow(clippy::too_many_arguments)]
fn render_piece(
    piece: &WordPiece,
    raw: &str,
    (start, end): (usize, usize),
    first: bool,
    quoted: bool,
    arg: &mut Arg,
    findings: &mut WordFindings,
    depth: usize,
    vars: &Vars,
) {
    match piece {
        WordPiece::Text(s) => {
            if !quoted {
                note_unquoted_text(s, arg);
            }
            arg.text.push_str(s);
        }
        WordPiece::SingleQuotedText(s) => arg.text.push_str(s),
        WordPiece::AnsiCQuotedText(s) => {
            arg.ansi_c = true;
            match decode_ansi_c(s) {
                Some(text) => arg.text.push_str(&text),
                None => {
                    arg.dynamic = true;
                    arg.opaque = true;
                    arg.text.push_str(s);
                }
            }
        }
        WordPiece::DoubleQuotedSequence(inner) | WordPiece::GettextDoubleQuotedSequence(inner) => {
            for p in inner {
                render_piece(
                    &p.piece,
                    raw,
                    (p.start_index, p.end_index),
                    false,
                    true,
                    arg,
                    findings,
                    depth,
                    vars,
                );
            }
        }
        WordPiece::TildeExpansion(t) => {
            if first && !quoted {
                arg.tilde = true;
            }
            match t {
                TildeExpr::Home => arg.text.push('~'),
                TildeExpr::UserHome(u) => {
                    arg.text.push('~');
                    arg.text.push_str(u);
                }
                _ => {
                    arg.dynamic = true;
                    arg.opaque = true;
                    arg.text.push_str(raw.get(start..end).unwrap_or("~"));
                }
            }
        }
        WordPiece::ParameterExpansion(expr) => {
            if let Some(value) = known_value(expr, vars, quoted) {
                // Assigned a literal earlier on the line: bash substitutes exactly this.
                if !quoted {
                    // Globs in the value expand; braces do not (brace expansion came first).
                    let brace = arg.brace;
                    note_unquoted_text(&value.text, arg);
                    arg.brace = brace;
                }
                // A path a `for` glob found: some path matching it, quoted or not.
                arg.glob |= value.glob;
                arg.text.push_str(&value.text);
                return;
            }
            arg.dynamic = true;
            // `$HOME` / `${HOME}` opening the word stays known: rules name `$HOME` as written.
            let leading_home = arg.text.is_empty()
                && matches!(
                    expr,
                    ParameterExpr::Parameter {
                        parameter: Parameter::Named(name),
                        indirect: false,
                    } if name == "HOME"
                );
            // `$$`, `$!`, `$?`, `$#`: numbers the shell owns (its pid, a child's pid, a status, a
            // count) that are never a path, a flag or pid 1 for a command run over SSH.
            let shell_number = matches!(
                expr,
                ParameterExpr::Parameter {
                    parameter: Parameter::Special(
                        SpecialParameter::ProcessId
                            | SpecialParameter::LastBackgroundProcessId
                            | SpecialParameter::LastExitStatus
                            | SpecialParameter::PositionalParameterCount
                    ),
                    ..
                }
            );
            if !leading_home && !shell_number {
                arg.opaque = true;
            }
            render_parameter(
                expr,
                raw.get(start..end).unwrap_or("$?"),
                arg,
                findings,
                depth,
            );
        }
        WordPiece::CommandSubstitution(script) => {
            arg.dynamic = true;
            arg.opaque = true;
            arg.text.push_str("$(");
            arg.text.push_str(script);
            arg.text.push(')');
            findings.substitutions.push(script.clone());
        }
        WordPiece::BackquotedCommandSubstitution(script) => {
            arg.dynamic = true;
            arg.opaque = true;
            arg.text.push('`');
            arg.text.push_str(script);
            arg.text.push('`');
            findings.substitutions.push(script.clone());
        }
        WordPiece::EscapeSequence(s) => {
            let mut chars = s.chars();
            let _backslash = chars.next();
            match chars.next() {
                // Line continuation: backslash-newline disappears.
                Some('\n') => {}
                Some(c) => arg.text.push(c),
                None => arg.text.push('\\'),
            }
        }
        WordPiece::ArithmeticExpression(expr) => {
            arg.dynamic = true;
            arg.opaque = true;
            arg.text.push_str("$((");
            arg.text.push_str(&expr.value);
            arg.text.push_str("))");
            check_arithmetic(&expr.value, findings);
        }
    }
}

/// The value `$NAME` / `${NAME}` expands to, when the line assigned it one literal. Unquoted,
/// a value that word splitting would change (whitespace, empty) stays unknown.
fn known_value<'v>(expr: &ParameterExpr, vars: &'v Vars, quoted: bool) -> Option<&'v Value> {
    let ParameterExpr::Parameter {
        parameter: Parameter::Named(name),
        indirect: false,
    } = expr
    else {
        return None;
    };
    let value = vars.single(name)?;
    if !quoted && (value.text.is_empty() || value.text.contains([' ', '\t', '\n'])) {
        return None;
    }
    Some(value)
}

/// Arithmetic is evaluated by bash, and an array subscript inside it evaluates `$(...)`
/// (`a[$(rm -rf /)]`): gatehouse does not evaluate arithmetic, so it refuses to guess.
pub fn check_arithmetic(expr: &str, findings: &mut WordFindings) {
    if expr.contains('[') || expr.contains("$(") || expr.contains('`') {
        findings.holds.push((
            "arithmetic-subscript",
            "arithmetic with array subscripts or substitutions runs code gatehouse cannot see"
                .into(),
        ));
    }
}

fn note_unquoted_text(s: &str, arg: &mut Arg) {
    if s.contains(['*', '?', '[']) {
        arg.glob = true;
    }
    if let Some(open) = s.find('{') {
        let rest = s.get(open..).unwrap_or("");
        if rest.contains('}') && (rest.contains(',') || rest.contains("..")) {
            arg.brace = true;
        }
    }
    // extglob: `@(..)`, `!(..)`, `+(..)` (`*(` and `?(` are caught as globs above).
    if s.contains("@(") || s.contains("!(") || s.contains("+(") {
        arg.glob = true;
    }
}

fn render_parameter(
    expr: &ParameterExpr,
    raw: &str,
    arg: &mut Arg,
    findings: &mut WordFindings,
    depth: usize,
) {
    // Strings inside the expansion that bash expands in turn (defaults, patterns, ...).
    let mut nested: Vec<&str> = Vec::new();
    let mut parameter: Option<&Parameter> = None;
    match expr {
        ParameterExpr::Parameter { parameter: p, .. } => {
            parameter = Some(p);
            if let Parameter::Named(name) = p {
                arg.text.push('$');
                arg.text.push_str(name);
            } else {
                arg.text.push_str(raw);
            }
        }
        ParameterExpr::UseDefaultValues {
            parameter: p,
            default_value: v,
            ..
        }
        | ParameterExpr::AssignDefaultValues {
            parameter: p,
            default_value: v,
            ..
        }
        | ParameterExpr::UseAlternativeValue {
            parameter: p,
            alternative_value: v,
            ..
        }
        | ParameterExpr::IndicateErrorIfNullOrUnset {
            parameter: p,
            error_message: v,
            ..
        }
        | ParameterExpr::RemoveSmallestSuffixPattern {
            parameter: p,
            pattern: v,
            ..
        }
        | ParameterExpr::RemoveLargestSuffixPattern {
            parameter: p,
            pattern: v,
            ..
        }
        | ParameterExpr::RemoveSmallestPrefixPattern {
            parameter: p,
            pattern: v,
            ..
        }
        | ParameterExpr::RemoveLargestPrefixPattern {
            parameter: p,
            pattern: v,
            ..
        }
        | ParameterExpr::UppercaseFirstChar {
            parameter: p,
            pattern: v,
            ..
        }
        | ParameterExpr::UppercasePattern {
            parameter: p,
            pattern: v,
            ..
        }
        | ParameterExpr::LowercaseFirstChar {
            parameter: p,
            pattern: v,
            ..
        }
        | ParameterExpr::LowercasePattern {
            parameter: p,
            pattern: v,
            ..
        } => {
            parameter = Some(p);
            nested.extend(v.as_deref());
            arg.text.push_str(raw);
        }
        ParameterExpr::ReplaceSubstring {
            parameter: p,
            pattern,
            replacement,
            ..
        } => {
            parameter = Some(p);
            nested.push(pattern);
            nested.extend(replacement.as_deref());
            arg.text.push_str(raw);
        }
        ParameterExpr::Substring {
            parameter: p,
            offset,
            length,
            ..
        } => {
            parameter = Some(p);
            check_arithmetic(&offset.value, findings);
            if let Some(l) = length {
                check_arithmetic(&l.value, findings);
            }
            arg.text.push_str(raw);
        }
        ParameterExpr::Transform {
            parameter: p, op, ..
        } => {
            parameter = Some(p);
            if matches!(op, ParameterTransformOp::PromptExpand) {
                findings.holds.push((
                    "prompt-expansion",
                    "${x@P} expands a prompt string, which runs command substitutions".into(),
                ));
            }
            arg.text.push_str(raw);
        }
        ParameterExpr::ParameterLength { parameter: p, .. } => {
            parameter = Some(p);
            arg.text.push_str(raw);
        }
        ParameterExpr::VariableNames { .. } | ParameterExpr::MemberKeys { .. } => {
            arg.text.push_str(raw);
        }
    }
    if let Some(Parameter::NamedWithIndex { index, .. }) = parameter {
        check_arithmetic_index(index, findings);
    }
    for text in nested {
        if text.contains(['$', '`', '\\', '\'', '"', '~']) {
            let inner = render(text, findings, depth + 1);
            drop(inner);
        }
    }
}

/// A subscript is arithmetic; a plain number or name is harmless, anything else is not read.
fn check_arithmetic_index(index: &str, findings: &mut WordFindings) {
    let plain = index
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '@' || c == '*');
    if !plain {
        findings.holds.push((
            "arithmetic-subscript",
            "an array subscript is evaluated as arithmetic and may run code".into(),
        ));
    }
}

/// Decodes the body of `$'...'` the way bash does; `None` for escapes gatehouse does not
/// decode (`\c`, malformed `\u`), which then count as non-literal.
pub fn decode_ansi_c(body: &str) -> Option<String> {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = chars.next() else {
            out.push('\\');
            break;
        };
        match e {
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'e' | 'E' => out.push('\x1b'),
            'f' => out.push('\x0c'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\x0b'),
            '\\' | '\'' | '"' | '?' => out.push(e),
            '0'..='7' => {
                let mut value = e.to_digit(8)?;
                for _ in 0..2 {
                    match chars.peek().and_then(|c| c.to_digit(8)) {
                        Some(d) => {
                            value = value * 8 + d;
                            chars.next();
                        }
                        None => break,
                    }
                }
                out.push(char::from_u32(value & 0xff)?);
            }
            'x' => {
                let value = take_hex(&mut chars, 2)?;
                out.push(char::from_u32(value)?);
            }
            'u' => {
                let value = take_hex(&mut chars, 4)?;
                out.push(char::from_u32(value)?);
            }
            'U' => {
                let value = take_hex(&mut chars, 8)?;
                out.push(char::from_u32(value)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

fn take_hex(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, max: usize) -> Option<u32> {
    let mut value: u32 = 0;
    let mut n = 0;
    while n < max {
        match chars.peek().and_then(|c| c.to_digit(16)) {
            Some(d) => {
                value = value.checked_mul(16)?.checked_add(d)?;
                chars.next();
                n += 1;
            }
            None => break,
        }
    }
    (n > 0).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(raw: &str) -> Arg {
        render(raw, &mut WordFindings::default(), 0)
    }

    #[test]
    fn quote_removal() {
        assert_eq!(text("r''m").text, "rm");
        assert_eq!(text("\"r\"m").text, "rm");
        assert_eq!(text("\\rm").text, "rm");
        assert_eq!(text("'/usr/bin/../bin/rm'").text, "/usr/bin/../bin/rm");
        assert_eq!(text("\"a\\\"b\\x\"").text, "a\"b\\x");
    }

    #[test]
    fn ansi_c_decoded_and_flagged() {
        let a = text("$'\\x72\\x6d'");
        assert_eq!(a.text, "rm");
        assert!(a.ansi_c);
        assert_eq!(text("$'\\162m'").text, "rm");
    }

    #[test]
    fn globs_braces_and_expansions_flagged() {
        assert!(text("/bin/r?").glob);
        assert!(!text("'/bin/r?'").glob);
        assert!(text("{r,}m").brace);
        assert!(text("$a").dynamic);
        assert_eq!(text("\"$HOME\"").text, "$HOME");
        assert!(text("~/x").tilde);
    }

    #[test]
    fn substitutions_found_everywhere() {
        for raw in [
            "$(id)",
            "\"a $(id)\"",
            "${x:-$(id)}",
            "`id`",
            "\"${x:-\"$(id)\"}\"",
        ] {
            let mut f = WordFindings::default();
            render(raw, &mut f, 0);
            assert_eq!(f.substitutions.len(), 1, "{raw}");
        }
    }

    #[test]
    fn prompt_expansion_and_subscripts_hold() {
        let mut f = WordFindings::default();
        render("${x@P}", &mut f, 0);
        assert_eq!(f.holds.first().map(|h| h.0), Some("prompt-expansion"));
        let mut f = WordFindings::default();
        render("$((a[$(id)]))", &mut f, 0);
        assert_eq!(f.holds.first().map(|h| h.0), Some("arithmetic-subscript"));
    }
}
