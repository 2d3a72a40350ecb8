//! From a simple command as written to every command it would really run.
//!
//! `sudo env FOO=1 nice rm -rf /` runs `rm`; `bash -c 'rm -rf /'` and `ssh host 'rm -rf /'` run
//! a script; `find / -exec rm -rf {} +` runs `rm` on `/`. The wrapper table (`[[wrappers]]`)
//! and the interpreter table (`[[interpreters]]`) come from the policy file so users can extend
//! them. Each command found becomes a [`Cmd`] that rules match on; what cannot be seen (a shell
//! reading stdin, `python -c`, a non-literal command name) becomes a fail-closed finding or a
//! built-in hold on the command.

use super::normalize::{basename, normalize_path, parse_args, ParsedArgs};
use super::rules::SqlClass;
use super::shell::{Invocation, Redirect, RedirectKind, Stdin};
use super::words::Arg;
use super::{escapes, sql, Analysis, Finding, Tables, MAX_DEPTH};

/// One wrapper program (`[[wrappers]]`): where its inner command starts.
#[derive(Debug, Clone, Default)]
pub struct WrapperSpec {
    /// Program basenames this entry applies to.
    pub names: Vec<String>,
    /// Applies only when the first argument is this word (`docker exec`, `kubectl exec`).
    pub subcommand: Option<String>,
    /// Options of the wrapper whose value is the next word (`sudo -u USER`).
    pub options_with_value: Vec<String>,
    /// `NAME=value` words before the command are skipped (`env`, `sudo`).
    pub assignments: bool,
    /// Operands before the command (`timeout DURATION`, `chroot DIR`, `ssh HOST`).
    pub skip_operands: usize,
    /// Options whose value is a shell script (`su -c SCRIPT`, `flock -c SCRIPT`).
    pub script_options: Vec<String>,
    /// The remaining words, joined by spaces, are a shell script (`ssh host CMD`, `watch CMD`).
    pub script_operands: bool,
    /// Options after which a command follows (`find -exec`), up to an end marker.
    pub command_options: Vec<String>,
    /// Words that end the inner command (`;`, `+`, `:::`).
    pub end_markers: Vec<String>,
    /// The inner command follows `--` (`kubectl exec POD -- CMD`).
    pub double_dash: bool,
    /// Without an inner command the wrapper starts an interactive shell (`su`, `ssh host`).
    pub interactive: bool,
    /// Options that start a shell (`sudo -s`, `sudo -i`).
    pub shell_options: Vec<String>,
    /// Replaced, in the inner command, by the wrapper's first operand (`find DIR -exec rm {}`).
    pub placeholder: Option<String>,
    /// Words after the end marker become arguments of the inner command (`parallel rm ::: /`).
    pub append_after_marker: bool,
    /// The operands skipped before the command may be absent (`su` alone, `su root`).
    pub optional_operands: bool,
}

/// What kind of program an interpreter runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterpreterKind {
    /// A POSIX-ish shell: `-c SCRIPT` is parsed and decided like the line itself.
    Shell,
    /// Any other language: gatehouse does not read its code, inline code is held.
    Code,
}

/// One interpreter (`[[interpreters]]`).
#[derive(Debug, Clone)]
pub struct InterpreterSpec {
    /// Program basenames.
    pub names: Vec<String>,
    /// Shell (parsed) or code (held).
    pub kind: InterpreterKind,
    /// Options that give the program inline (`-c`, `-e`, `--eval`).
    pub script_options: Vec<String>,
    /// Options whose value is the next word (`bash -o OPT`, `python -W ARG`).
    pub options_with_value: Vec<String>,
    /// Options that run a named module rather than stdin (`python -m`).
    pub module_options: Vec<String>,
}

/// One command that would run, normalized for rule matching.
#[derive(Debug, Clone)]
pub struct Cmd {
    /// Basename of the program after path normalization; empty for a bare redirection.
    pub program: String,
    /// Arguments after quote removal, as written.
    pub args: Vec<String>,
    /// Flags, option values and normalized operands.
    pub parsed: ParsedArgs,
    /// Normalized targets of write and append redirections.
    pub write_targets: Vec<String>,
    /// Classes of the SQL statements it carries, if it is a database client.
    pub sql: Vec<SqlClass>,
    /// The redis command (upper case), if it is `redis-cli`.
    pub redis: Option<String>,
    /// Program and arguments quoted with shlex: what decisions and the audit show.
    pub display: String,
    /// A built-in hold (interpreter, eval, ...) that applies when no rule matches.
    pub builtin: Option<Finding>,
}

impl Cmd {
    /// The command as shown in decisions: argv, then its write redirections.
    pub fn shown(&self) -> String {
        let mut shown = self.display.clone();
        for t in &self.write_targets {
            if self.program.is_empty() && shown.is_empty() {
                shown = format!("> {}", quote(t));
            } else if !self.program.is_empty() {
                shown.push_str(&format!(" > {}", quote(t)));
            }
        }
        shown
    }
}

/// Programs whose output piped into a shell means download-and-execute.
const DOWNLOADERS: &[&str] = &[
    "curl", "wget", "fetch", "nc", "ncat", "aria2c", "http", "lynx",
];

/// Expands one invocation into commands and findings, appended to `out`.
pub fn expand(inv: &Invocation, tables: &Tables, depth: usize, out: &mut Analysis) {
    if inv.words.is_empty() {
        if !inv.redirects.is_empty() {
            out.cmds.push(bare_redirection(&inv.redirects));
        }
        return;
    }
    expand_words(
        &inv.words,
        &inv.redirects,
        &inv.stdin,
        tables,
        depth,
        0,
        out,
    );
}

fn bare_redirection(redirects: &[Redirect]) -> Cmd {
    let targets = write_targets(redirects);
    Cmd {
        program: String::new(),
        args: Vec::new(),
        parsed: ParsedArgs::default(),
        display: targets
            .iter()
            .map(|t| format!("> {}", quote(t)))
            .collect::<Vec<_>>()
            .join(" "),
        write_targets: targets,
        sql: Vec::new(),
        redis: None,
        builtin: None,
    }
}

fn write_targets(redirects: &[Redirect]) -> Vec<String> {
    redirects
        .iter()
        .filter(|r| matches!(r.kind, RedirectKind::Write | RedirectKind::Append))
        .map(|r| normalize_path(&r.target.text))
        .collect()
}

fn quote(s: &str) -> String {
    shlex::try_quote(s).map_or_else(|_| format!("{s:?}"), |q| q.into_owned())
}

#[allow(clippy::too_many_arguments)]
fn expand_words(
    words: &[Arg],
    redirects: &[Redirect],
    stdin: &Stdin,
    tables: &Tables,
    depth: usize,
    wraps: usize,
    out: &mut Analysis,
) {
    let Some((name, rest)) = words.split_first() else {
        return;
    };
    if wraps > MAX_DEPTH {
        out.findings
            .push(Finding::new("nesting-too-deep", "wrappers nest too deeply"));
        return;
    }
    if let Some(f) = name_finding(name) {
        out.findings.push(f);
        return;
    }
    let program = basename(&name.text);
    let args: Vec<String> = rest.iter().map(|a| a.text.clone()).collect();
    let parsed = parse_args(&args, tables.programs.get(&program));
    let mut display_argv = vec![program.clone()];
    display_argv.extend(args.iter().cloned());
    let display = display_argv
        .iter()
        .map(|a| quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = Cmd {
        program,
        args,
        parsed,
        write_targets: write_targets(redirects),
        sql: Vec::new(),
        redis: None,
        display,
        builtin: None,
    };
    cmd.builtin = escapes::builtin_hold(&cmd, rest);
    sql::classify(&mut cmd, stdin, out);
    if cmd.builtin.is_none() {
        if let Some(spec) = tables
            .interpreters
            .iter()
            .find(|i| i.names.contains(&cmd.program))
        {
            cmd.builtin = interpreter(&cmd.program, spec, rest, stdin, tables, depth, out);
        }
    }
    let wrapper = tables.wrappers.iter().find(|w| {
        w.names.contains(&cmd.program)
            && w.subcommand
                .as_ref()
                .is_none_or(|s| rest.first().is_some_and(|a| &a.text == s))
    });
    let program = cmd.program.clone();
    out.cmds.push(cmd);
    if let Some(spec) = wrapper {
        let args = if spec.subcommand.is_some() {
            rest.get(1..).unwrap_or_default()
        } else {
            rest
        };
        unwrap_wrapper(&program, spec, args, stdin, tables, depth, wraps, out);
    }
}

/// A command name must be a plain literal: anything else is decided at run time.
fn name_finding(name: &Arg) -> Option<Finding> {
    let what = if name.ansi_c {
        "uses ANSI-C quoting ($'...')"
    } else if name.dynamic {
        "comes from an expansion or substitution"
    } else if name.glob {
        "is a glob pattern"
    } else if name.brace {
        "uses brace expansion"
    } else if name.text.is_empty() {
        "is empty"
    } else {
        return None;
    };
    Some(Finding::new(
        "non-literal-command",
        format!(
            "the command name {:?} {what}; gatehouse cannot tell what runs",
            name.text
        ),
    ))
}

#[allow(clippy::too_many_arguments)]
fn unwrap_wrapper(
    program: &str,
    spec: &WrapperSpec,
    args: &[Arg],
    stdin: &Stdin,
    tables: &Tables,
    depth: usize,
    wraps: usize,
    out: &mut Analysis,
) {
    if !spec.command_options.is_empty() {
        // find-style: several inner commands, each after a command option.
        let start = args
            .iter()
            .find(|a| !a.text.starts_with(['-', '(', '!']))
            .map(|a| a.text.clone());
        let mut i = 0;
        while let Some(a) = args.get(i) {
            i += 1;
            if spec.command_options.contains(&a.text) {
                let inner = take_until_marker(args.get(i..).unwrap_or_default(), &spec.end_markers);
                i += inner.len();
                let inner = substitute(inner, spec.placeholder.as_deref(), start.as_deref());
                expand_words(&inner, &[], &Stdin::Session, tables, depth, wraps + 1, out);
            }
        }
        return;
    }
    let mut i = 0;
    let mut skipped = 0;
    let mut shell = false;
    if let Some(pos) = args
        .iter()
        .position(|a| a.text == "--")
        .filter(|_| spec.double_dash)
    {
        // `kubectl exec POD -- CMD`: everything after `--` is the command.
        i = pos + 1;
        skipped = spec.skip_operands;
    } else {
        while let Some(a) = args.get(i) {
            let t = a.text.as_str();
            if t == "--" {
                i += 1;
                break;
            }
            if spec.script_options.iter().any(|o| o == t) {
                match args.get(i + 1) {
                    Some(script) => run_script(program, script, tables, depth, out),
                    None => out.findings.push(Finding::new(
                        "interpreter",
                        format!("{program} {t} without a script"),
                    )),
                }
                return;
            }
            if let Some(script) = spec
                .script_options
                .iter()
                .find_map(|o| t.strip_prefix(o.as_str()).and_then(|r| r.strip_prefix('=')))
            {
                let arg = Arg {
                    text: script.to_string(),
                    ..a.clone()
                };
                run_script(program, &arg, tables, depth, out);
                return;
            }
            if spec.shell_options.iter().any(|o| o == t) {
                shell = true;
            }
            if t.starts_with('-') {
                i += 1 + option_value_words(t, &spec.options_with_value);
                continue;
            }
            if spec.assignments && is_assignment(t) {
                i += 1;
                continue;
            }
            if skipped < spec.skip_operands {
                skipped += 1;
                i += 1;
                continue;
            }
            break;
        }
    }
    let rest = args.get(i..).unwrap_or_default();
    let mut inner = take_until_marker(rest, &spec.end_markers).to_vec();
    if spec.append_after_marker {
        let extra = rest
            .get(inner.len()..)
            .unwrap_or_default()
            .iter()
            .filter(|a| !spec.end_markers.contains(&a.text));
        inner.extend(extra.cloned());
    }
    if inner.is_empty() {
        let operands_given = skipped == spec.skip_operands || spec.optional_operands;
        if (spec.interactive && operands_given) || shell {
            out.findings.push(Finding::new(
                "interactive-shell",
                format!(
                    "{program} starts a shell whose commands gatehouse cannot see on this line"
                ),
            ));
        }
        return;
    }
    if spec.script_operands {
        let text = inner
            .iter()
            .map(|a| a.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let dynamic = inner.iter().any(|a| a.dynamic);
        let arg = Arg {
            text,
            dynamic,
            ..Arg::default()
        };
        run_script(program, &arg, tables, depth, out);
        return;
    }
    expand_words(&inner, &[], stdin, tables, depth, wraps + 1, out);
}

/// How many following words an option consumes: 1 if it takes a separate value.
fn option_value_words(t: &str, with_value: &[String]) -> usize {
    if with_value.iter().any(|o| o == t) {
        return 1;
    }
    if t.starts_with("--") {
        return 0;
    }
    // Short cluster: `-u` `-uroot`, `-iu root`.
    let body = t.get(1..).unwrap_or_default();
    for (pos, c) in body.char_indices() {
        if with_value
            .iter()
            .any(|o| o.len() == 2 && o.ends_with(c) && o.starts_with('-'))
        {
            return usize::from(
                body.get(pos + c.len_utf8()..)
                    .unwrap_or_default()
                    .is_empty(),
            );
        }
    }
    0
}

fn is_assignment(t: &str) -> bool {
    match t.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}

fn take_until_marker<'a>(args: &'a [Arg], markers: &[String]) -> &'a [Arg] {
    let end = args
        .iter()
        .position(|a| markers.iter().any(|m| m == &a.text))
        .unwrap_or(args.len());
    args.get(..end).unwrap_or_default()
}

fn substitute(args: &[Arg], placeholder: Option<&str>, with: Option<&str>) -> Vec<Arg> {
    args.iter()
        .map(|a| match (placeholder, with) {
            (Some(p), Some(w)) if a.text.contains(p) => Arg {
                text: a.text.replace(p, w),
                ..a.clone()
            },
            _ => a.clone(),
        })
        .collect()
}

/// A script handed to a shell: decided like the line itself, one level deeper.
fn run_script(program: &str, script: &Arg, tables: &Tables, depth: usize, out: &mut Analysis) {
    if script.dynamic {
        out.findings.push(downloaded_or(
            script,
            "interpreter",
            format!("the script given to {program} is not a literal; gatehouse cannot read it"),
        ));
        return;
    }
    super::analyze(&script.text, tables, depth + 1, out);
}

/// Decides what an interpreter would run; returns a built-in hold for what it cannot see.
fn interpreter(
    program: &str,
    spec: &InterpreterSpec,
    args: &[Arg],
    stdin: &Stdin,
    tables: &Tables,
    depth: usize,
    out: &mut Analysis,
) -> Option<Finding> {
    let mut inline = false;
    let mut module = false;
    let mut i = 0;
    let mut operand: Option<&Arg> = None;
    while let Some(a) = args.get(i) {
        let t = a.text.as_str();
        i += 1;
        if t == "--" || t == "-" {
            operand = args.get(i).filter(|_| t == "--");
            break;
        }
        let is_option = t.len() > 1
            && (t.starts_with('-') || (spec.kind == InterpreterKind::Shell && t.starts_with('+')));
        if !is_option {
            operand = Some(a);
            break;
        }
        if spec
            .script_options
            .iter()
            .any(|o| o == t || (t.starts_with("--") && t.starts_with(&format!("{o}="))))
        {
            inline = true;
        } else if spec
            .module_options
            .iter()
            .any(|o| o == t || (!t.starts_with("--") && t.starts_with(o.as_str())))
        {
            module = true;
        } else if !t.starts_with("--") {
            let cluster = t.get(1..).unwrap_or_default();
            for c in cluster.chars() {
                let flag = format!("-{c}");
                if spec.script_options.contains(&flag) {
                    inline = true;
                }
            }
        }
        if !inline && !module {
            i += option_value_words(t, &spec.options_with_value);
        } else if spec.kind == InterpreterKind::Code {
            break;
        }
    }
    let name = &program;
    match spec.kind {
        InterpreterKind::Code => {
            if inline {
                return Some(Finding::new(
                    "interpreter",
                    format!("{name} runs inline code that gatehouse does not read"),
                ));
            }
            if module {
                return None;
            }
            match operand {
                Some(a) if a.dynamic => Some(downloaded_or(
                    a,
                    "interpreter",
                    format!("{name} runs a script that is not a literal"),
                )),
                Some(_) => None,
                None => stdin_hold(name, stdin, None, tables, depth, out),
            }
        }
        InterpreterKind::Shell => {
            if inline {
                return match operand {
                    Some(script) => {
                        run_script(name, script, tables, depth, out);
                        None
                    }
                    None => Some(Finding::new(
                        "interpreter",
                        format!("{name} -c without a script"),
                    )),
                };
            }
            match operand {
                Some(a) if a.dynamic => Some(downloaded_or(
                    a,
                    "interpreter",
                    format!("{name} runs a script that is not a literal"),
                )),
                Some(_) => None,
                None => stdin_hold(name, stdin, Some(()), tables, depth, out),
            }
        }
    }
}

fn downloaded_or(a: &Arg, rule: &'static str, reason: String) -> Finding {
    if DOWNLOADERS.iter().any(|d| a.text.contains(d)) {
        Finding::new(
            "download-and-execute",
            "runs a script downloaded from the network",
        )
    } else {
        Finding::new(rule, reason)
    }
}

/// An interpreter with no script argument reads its program from stdin. `shell` is `Some`
/// for shells, whose literal stdin scripts are parsed and decided.
fn stdin_hold(
    name: &str,
    stdin: &Stdin,
    shell: Option<()>,
    tables: &Tables,
    depth: usize,
    out: &mut Analysis,
) -> Option<Finding> {
    match stdin {
        Stdin::File => None,
        Stdin::Text(Some(text)) | Stdin::Pipe { literal: Some(text), .. } if shell.is_some() => {
            super::analyze(text, tables, depth + 1, out);
            None
        }
        Stdin::Pipe { feeders, .. } if feeders.iter().any(|f| DOWNLOADERS.contains(&f.as_str())) => Some(
            Finding::new("download-and-execute", format!("pipes a download into {name}")),
        ),
        Stdin::Session => Some(Finding::new(
            "interpreter-stdin",
            format!("{name} without a script reads its program from stdin, which this decision cannot see"),
        )),
        _ => Some(Finding::new(
            "interpreter",
            format!("{name} reads a program from stdin that gatehouse cannot read"),
        )),
    }
}
