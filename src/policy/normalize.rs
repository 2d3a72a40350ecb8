//! Normalizing one command's argv: the program name by basename after path normalization,
//! operand paths made lexical-canonical, flags split and canonicalized.
//!
//! Flag parsing needs to know, per program, which options take a value, which long options
//! exist (for GNU unambiguous prefixes like `--rec`) and which spellings are aliases
//! (`--recursive` = `-r` = `-R`). That knowledge is a [`ProgramSpec`] from the policy file.
//! Nothing here decides: rules match on the [`ParsedArgs`] this module produces.

use std::collections::BTreeMap;

/// What gatehouse knows about one program's options (`[programs.NAME]` in the policy file).
#[derive(Debug, Clone, Default)]
pub struct ProgramSpec {
    /// Options whose value is the next word (or attached: `-n5`, `--lines=5`).
    pub options_with_value: Vec<String>,
    /// Long options of the program, without dashes, so `--rec` resolves to `--recursive`.
    pub long_options: Vec<String>,
    /// Spelling → canonical flag (`--recursive` → `-r`), applied after prefix resolution.
    pub aliases: BTreeMap<String, String>,
    /// Single-dash words are whole options (`find -delete`, `kill -9`), never clusters.
    pub no_flag_split: bool,
}

/// Flags, option values and operands of one command, after normalization.
#[derive(Debug, Clone, Default)]
pub struct ParsedArgs {
    /// Canonical flags (`-r`, `-f`, `--no-preserve-root`), wherever they stood.
    pub flags: Vec<String>,
    /// Options with their values (`("-o", "ProxyCommand=x")`).
    pub values: Vec<(String, String)>,
    /// Everything that is not an option, paths normalized, in order.
    pub operands: Vec<String>,
}

/// The last path component: `/usr/bin/../bin/rm` → `rm`, `rm` → `rm`.
pub fn basename(name: &str) -> String {
    let normalized = normalize_path(name);
    match normalized.rsplit_once('/') {
        Some((_, base)) if !base.is_empty() => base.to_string(),
        _ => normalized,
    }
}

/// Lexical path normalization: `//` → `/`, `/./` → `/`, `a/../` removed, trailing `/`
/// dropped. Leaves words that are not paths alone. `..` above the root stays at the root, like
/// the kernel does.
pub fn normalize_path(word: &str) -> String {
    let rooted = word.starts_with('/');
    let anchored =
        rooted || word.starts_with('~') || word.starts_with("$HOME") || word.starts_with("${HOME}");
    if !anchored && !word.contains('/') {
        return word.to_string();
    }
    let owned;
    let word = match word.strip_prefix("${HOME}") {
        Some(rest) => {
            owned = format!("$HOME{rest}");
            owned.as_str()
        }
        None => word,
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in word.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                // Above an anchor (`~`, `$HOME`) `..` is kept: it names something we do not
                // resolve; above `/` it stays at `/`.
                match parts.last() {
                    Some(last)
                        if *last != ".." && !(parts.len() == 1 && !rooted && is_anchor(last)) =>
                    {
                        parts.pop();
                    }
                    None if rooted => {}
                    _ => parts.push(".."),
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    if rooted {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

fn is_anchor(part: &str) -> bool {
    part.starts_with('~') || part == "$HOME"
}

/// Splits `args` (argv without the program name) into flags, option values and operands.
pub fn parse_args(args: &[String], spec: Option<&ProgramSpec>) -> ParsedArgs {
    let empty = ProgramSpec::default();
    let spec = spec.unwrap_or(&empty);
    let mut parsed = ParsedArgs::default();
    let mut iter = args.iter();
    let mut options_done = false;
    while let Some(arg) = iter.next() {
        if options_done || arg == "-" || !arg.starts_with('-') || arg.len() < 2 {
            parsed.operands.push(normalize_path(arg));
            continue;
        }
        if arg == "--" {
            options_done = true;
            continue;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let full = format!("--{}", resolve_prefix(name, spec));
            let takes_value = spec.options_with_value.contains(&full);
            let canonical = canonical(&full, spec);
            let value = match inline {
                Some(v) => Some(v),
                None if takes_value => iter.next().cloned(),
                None => None,
            };
            push_flag(&mut parsed, canonical, value);
            continue;
        }
        if spec.no_flag_split || spec.options_with_value.contains(arg) {
            let value = spec
                .options_with_value
                .contains(arg)
                .then(|| iter.next().cloned())
                .flatten();
            push_flag(&mut parsed, canonical(arg, spec), value);
            continue;
        }
        // A cluster: `-rf` = `-r -f`; `-n5` = `-n 5` when `-n` takes a value.
        let body = arg.get(1..).unwrap_or_default();
        for (pos, c) in body.char_indices() {
            let flag = format!("-{c}");
            if spec.options_with_value.contains(&flag) {
                let rest = body.get(pos + c.len_utf8()..).unwrap_or_default();
                let value = if rest.is_empty() {
                    iter.next().cloned()
                } else {
                    Some(rest.to_string())
                };
                push_flag(&mut parsed, canonical(&flag, spec), value);
                break;
            }
            push_flag(&mut parsed, canonical(&flag, spec), None);
        }
    }
    parsed
}

fn push_flag(parsed: &mut ParsedArgs, flag: String, value: Option<String>) {
    if let Some(v) = value {
        parsed.values.push((flag.clone(), v));
    }
    parsed.flags.push(flag);
}

fn canonical(flag: &str, spec: &ProgramSpec) -> String {
    spec.aliases
        .get(flag)
        .cloned()
        .unwrap_or_else(|| flag.to_string())
}

/// GNU getopt_long accepts any unambiguous prefix of a long option (`--rec` = `--recursive`).
fn resolve_prefix<'a>(name: &'a str, spec: &'a ProgramSpec) -> &'a str {
    if spec.long_options.iter().any(|o| o == name) || name.is_empty() {
        return name;
    }
    let mut matches = spec.long_options.iter().filter(|o| o.starts_with(name));
    match (matches.next(), matches.next()) {
        (Some(only), None) => only,
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rm_spec() -> ProgramSpec {
        ProgramSpec {
            long_options: vec![
                "recursive".into(),
                "force".into(),
                "no-preserve-root".into(),
                "preserve-root".into(),
            ],
            aliases: [("-R", "-r"), ("--recursive", "-r"), ("--force", "-f")]
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            ..ProgramSpec::default()
        }
    }

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn basenames() {
        assert_eq!(basename("/usr/bin/../bin/rm"), "rm");
        assert_eq!(basename("rm"), "rm");
        assert_eq!(basename("./rm"), "rm");
        assert_eq!(basename("//bin//rm"), "rm");
    }

    #[test]
    fn paths() {
        assert_eq!(normalize_path("/"), "/");
        assert_eq!(normalize_path("//"), "/");
        assert_eq!(normalize_path("/."), "/");
        assert_eq!(normalize_path("/tmp/.."), "/");
        assert_eq!(normalize_path("/../.."), "/");
        assert_eq!(normalize_path("/etc/"), "/etc");
        assert_eq!(normalize_path("~/"), "~");
        assert_eq!(normalize_path("${HOME}/x/.."), "$HOME");
        assert_eq!(normalize_path("~/.."), "~/..");
        assert_eq!(normalize_path("a.txt"), "a.txt");
    }

    #[test]
    fn flags_split_and_canonical() {
        let p = parse_args(&args("-rf /"), Some(&rm_spec()));
        assert_eq!(p.flags, ["-r", "-f"]);
        assert_eq!(p.operands, ["/"]);
        let p = parse_args(&args("/ --rec --force --no-pres"), Some(&rm_spec()));
        assert_eq!(p.flags, ["-r", "-f", "--no-preserve-root"]);
        let p = parse_args(&args("-- -rf"), Some(&rm_spec()));
        assert_eq!(p.operands, ["-rf"]);
    }

    #[test]
    fn values_attached_and_separate() {
        let spec = ProgramSpec {
            options_with_value: vec!["-o".into(), "--lines".into(), "-n".into()],
            long_options: vec!["lines".into()],
            ..ProgramSpec::default()
        };
        let p = parse_args(&args("-oProxyCommand=x -n 5 --lin=3 host"), Some(&spec));
        assert_eq!(
            p.values,
            [
                ("-o".into(), "ProxyCommand=x".into()),
                ("-n".into(), "5".into()),
                ("--lines".into(), "3".into())
            ]
        );
        assert_eq!(p.operands, ["host"]);
    }
}
