//! Built-in holds for commands that run code gatehouse cannot read: `eval`, `source`,
//! `alias`, `trap`, assignments to variables that change what runs, awk `system()`, GNU sed's
//! `e`, editor and pager `!` escapes.
//!
//! These are holds "by default": a rule in the policy file that matches the command decides
//! instead (so a site can allow `awk` scripts it trusts). Fail-closed cases that no rule can
//! override (non-literal command names, parse errors) live in `shell` and `unwrap`.

use std::sync::OnceLock;

use regex::Regex;

use super::shell::dangerous_variable;
use super::unwrap::Cmd;
use super::words::Arg;
use super::Finding;

/// The built-in hold for `cmd`, if any. `args` are the words after the program name.
pub fn builtin_hold(cmd: &Cmd, args: &[Arg]) -> Option<Finding> {
    let p = cmd.program.as_str();
    match p {
        "eval" => Some(Finding::new(
            "eval",
            "eval runs a string as code; gatehouse does not evaluate it",
        )),
        "source" | "." => Some(Finding::new(
            "source",
            format!("{p} runs a script file in the current shell"),
        )),
        "alias" | "unalias" if !cmd.args.is_empty() => Some(Finding::new(
            "alias-definition",
            "alias definitions change what later command names mean",
        )),
        "trap" if cmd.args.len() > 1 || cmd.args.first().is_some_and(|a| !a.starts_with('-')) => {
            Some(Finding::new(
                "trap",
                "trap runs code later, on a signal gatehouse cannot foresee",
            ))
        }
        "enable" => Some(Finding::new(
            "enable",
            "enable loads or disables shell builtins",
        )),
        "hash" if cmd.args.iter().any(|a| a.starts_with("-p")) => Some(Finding::new(
            "alias-definition",
            "hash -p maps a command name to another program",
        )),
        "export" | "declare" | "typeset" | "local" | "readonly" => {
            let hit = cmd.args.iter().find(|a| {
                let name = a.split_once('=').map_or(a.as_str(), |(n, _)| n);
                let name = name.trim_end_matches('+');
                dangerous_variable(name)
            });
            hit.map(|a| {
                Finding::new(
                    "dangerous-assignment",
                    format!("{p} {a} changes what later commands run"),
                )
            })
        }
        "awk" | "gawk" | "mawk" | "nawk" | "busybox-awk" => awk(args),
        "sed" | "gsed" => sed(cmd),
        "vim" | "vi" | "nvim" | "ex" | "view" | "vimdiff" | "less" | "more" | "most" => editor(cmd),
        _ => None,
    }
}

/// awk's `system()`, `| "cmd"`, `cmd | getline` run shell commands.
fn awk(args: &[Arg]) -> Option<Finding> {
    let mut program: Option<&str> = None;
    let mut iter = args.iter();
    while let Some(a) = iter.next() {
        let t = a.text.as_str();
        match t {
            "-f" | "--file" => return None,
            "-F" | "-v" | "--assign" | "--field-separator" => {
                iter.next();
            }
            "--" => {
                program = iter.next().map(|a| a.text.as_str());
                break;
            }
            _ if t.starts_with('-') && t.len() > 1 => {}
            _ => {
                program = Some(t);
                break;
            }
        }
    }
    let program = program?;
    let without_or = program.replace("||", "");
    if program.contains("system") || without_or.contains('|') || program.contains("ENVIRON") {
        return Some(Finding::new(
            "awk-system",
            "this awk program runs shell commands (system(), pipes)",
        ));
    }
    None
}

/// GNU sed's `e` command and `s///e` flag run the pattern space as a shell command.
fn sed(cmd: &Cmd) -> Option<Finding> {
    static EXEC: OnceLock<Option<Regex>> = OnceLock::new();
    let re = EXEC
        .get_or_init(|| {
            Regex::new(
                r"(?m)(?:^|[;{}\n])\s*(?:[0-9$]+|/[^/]*/)?\s*!?\s*e(?:\s|;|$)|s([/|#:,@_!])(?:\\.|[^\\])*?[/|#:,@_!](?:\\.|[^\\])*?[/|#:,@_!][gpiImM0-9w]*e",
            )
            .ok()
        })
        .as_ref()?;
    let mut scripts: Vec<&str> = cmd
        .parsed
        .values
        .iter()
        .filter(|(f, _)| f == "-e" || f == "--expression")
        .map(|(_, v)| v.as_str())
        .collect();
    if scripts.is_empty() {
        scripts.extend(cmd.parsed.operands.first().map(String::as_str));
    }
    scripts.iter().any(|s| re.is_match(s)).then(|| {
        Finding::new(
            "sed-exec",
            "this sed script uses the `e` command, which runs shell commands",
        )
    })
}

/// `vim -c ':!cmd'`, `vim +'!cmd'`, `less +'!cmd'`: shell escapes from editors and pagers.
fn editor(cmd: &Cmd) -> Option<Finding> {
    let escape = |s: &str| s.contains('!');
    let in_plus = cmd.args.iter().any(|a| a.starts_with('+') && escape(a));
    let in_c = cmd
        .args
        .windows(2)
        .any(|w| matches!(w, [o, v] if (o == "-c" || o == "--cmd") && escape(v)));
    (in_plus || in_c).then(|| {
        Finding::new(
            "editor-escape",
            format!("{} is given a command that escapes to a shell", cmd.program),
        )
    })
}
