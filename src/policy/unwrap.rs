//! From a simple command as written to every command it would really run.
//!
//! `sudo env FOO=1 nice rm -rf /` runs `rm`; `bash -c 'rm -rf /'` and `ssh host 'rm -rf /'` run
//! a script; `find / -exec rm -rf {} +` runs `rm` on `/`. The wrapper table (`[[wrappers]]`)
//! and the interpreter table (`[[interpreters]]`) come from the policy file so users can extend
//! them. Each command found becomes a [`Cmd`] that rules match on; what cannot be seen (a shell
//! reading stdin, `python -c`, a non-literal command name) becomes a fail-closed finding or a
//! built-in hold on the command.

use super::cwd::Cwd;
use super::normalize::{basename, normalize_path, parse_args, ParsedArgs};
use super::overlap::expand_braces;
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
    /// The inner command gets more arguments at run time, read from stdin (`xargs`,
    /// `parallel` without `:::`); gatehouse cannot see them.
    pub stdin_arguments: bool,
    /// Options whose value (or `{}`) is replaced by each input line (`xargs -I R`).
    pub replace_options: Vec<String>,
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
    /// Arguments only known at run time, each described for the reason (`` `$X` ``, "arguments
    /// xargs reads from stdin"). Each could be any flag or operand, so a rule that might match
    /// them holds the line instead of deciding it.
    pub unknown: Vec<String>,
    /// Operands that are still patterns: shell globs, the paths `find DIR -exec` passes.
    pub patterns: Vec<PathPattern>,
    /// Where the command may run; relative operands and redirect targets resolve against it.
    pub cwd: Cwd,
    /// A write redirection whose target is only known at run time (`> "$F"`).
    pub unknown_redirect: Option<String>,
}

/// An operand that expands at run time into paths matching a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    /// The pattern as written, path-normalized (`/e?c`, `/tmp/*.log`).
    pub text: String,
    /// Stands for the path and everything below it (`find DIR`), not a shell glob.
    pub below: bool,
}

/// Stands in, during option parsing, for an argument only known at run time: it takes the
/// place of an operand or option value and matches no glob.
pub const OPAQUE: &str = "\u{0}";

/// What a wrapper adds to its inner command beyond the words written.
#[derive(Debug, Default)]
struct Feed {
    /// Arguments added at run time, described.
    unknown: Vec<String>,
    /// Operand patterns added (what `find` visits).
    patterns: Vec<PathPattern>,
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
            out.cmds.push(bare_redirection(&inv.redirects, &inv.cwd));
        }
        return;
    }
    let place = Place {
        redirects: &inv.redirects,
        stdin: &inv.stdin,
        cwd: &inv.cwd,
    };
    expand_words(&inv.words, &place, Feed::default(), tables, depth, 0, out);
}

/// Where a command stands: its redirections, its stdin and its working directory.
struct Place<'a> {
    /// Redirections of the command (and of compound commands around it).
    redirects: &'a [Redirect],
    /// Where its stdin comes from.
    stdin: &'a Stdin,
    /// Where it may run.
    cwd: &'a Cwd,
}

fn bare_redirection(redirects: &[Redirect], cwd: &Cwd) -> Cmd {
    let (targets, unknown_redirect) = write_targets(redirects);
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
        unknown: Vec::new(),
        patterns: Vec::new(),
        cwd: cwd.clone(),
        unknown_redirect,
    }
}

/// Normalized write/append targets, and a description of one only known at run time.
fn write_targets(redirects: &[Redirect]) -> (Vec<String>, Option<String>) {
    let mut unknown = None;
    let targets = redirects
        .iter()
        .filter(|r| matches!(r.kind, RedirectKind::Write | RedirectKind::Append))
        .map(|r| {
            if r.target.opaque || r.target.glob || r.target.brace {
                unknown = Some(format!(
                    "the redirection target `{}` is only known at run time",
                    r.target.text
                ));
            }
            normalize_path(&r.target.text)
        })
        .collect();
    (targets, unknown)
}

fn quote(s: &str) -> String {
    shlex::try_quote(s).map_or_else(|_| format!("{s:?}"), |q| q.into_owned())
}

/// Brace-expands literal words (`/{etc,usr}` → `/etc /usr`, as bash would) and describes the
/// arguments only known at run time.
fn expand_args(rest: &[Arg], unknown: &mut Vec<String>) -> Vec<Arg> {
    let mut out = Vec::with_capacity(rest.len());
    for a in rest {
        if a.opaque {
            unknown.push(format!("`{}` is only known at run time", a.text));
            out.push(a.clone());
        } else if a.brace {
            match expand_braces(&a.text) {
                Some(words) => {
                    out.extend(words.into_iter().filter(|w| !w.is_empty()).map(|w| Arg {
                        text: w,
                        brace: false,
                        ..a.clone()
                    }))
                }
                None => {
                    unknown.push(format!("`{}` expands to too many words", a.text));
                    out.push(Arg {
                        opaque: true,
                        ..a.clone()
                    });
                }
            }
        } else {
            out.push(a.clone());
        }
    }
    out
}

fn expand_words(
    words: &[Arg],
    place: &Place<'_>,
    feed: Feed,
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
    let mut unknown = feed.unknown;
    let rest = expand_args(rest, &mut unknown);
    let args: Vec<String> = rest.iter().map(|a| a.text.clone()).collect();
    // Option parsing sees a placeholder where a word is only known at run time, so a value or
    // operand position is kept and no rule glob can match it.
    let parse_input: Vec<String> = rest
        .iter()
        .map(|a| {
            if a.opaque {
                OPAQUE.to_string()
            } else {
                a.text.clone()
            }
        })
        .collect();
    let parsed = parse_args(&parse_input, tables.programs.get(&program));
    let mut patterns = feed.patterns;
    patterns.extend(
        rest.iter()
            .filter(|a| a.glob && !a.opaque && !a.text.starts_with('-'))
            .map(|a| PathPattern {
                text: normalize_path(&a.text),
                below: false,
            }),
    );
    let mut display_argv = vec![program.clone()];
    display_argv.extend(args.iter().cloned());
    let display = display_argv
        .iter()
        .map(|a| quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    let (write_targets, unknown_redirect) = write_targets(place.redirects);
    let mut cmd = Cmd {
        program,
        args,
        parsed,
        write_targets,
        sql: Vec::new(),
        redis: None,
        display,
        builtin: None,
        unknown,
        patterns,
        cwd: place.cwd.clone(),
        unknown_redirect,
    };
    cmd.builtin = escapes::builtin_hold(&cmd, &rest);
    sql::classify(&mut cmd, place.stdin, out);
    if cmd.builtin.is_none() {
        if let Some(spec) = tables
            .interpreters
            .iter()
            .find(|i| i.names.contains(&cmd.program))
        {
            cmd.builtin = interpreter(&cmd.program, spec, &rest, place, tables, depth, out);
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
            &rest
        };
        let inner = Place {
            redirects: &[],
            ..*place
        };
        unwrap_wrapper(&program, spec, args, &inner, tables, depth, wraps, out);
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
    place: &Place<'_>,
    tables: &Tables,
    depth: usize,
    wraps: usize,
    out: &mut Analysis,
) {
    if !spec.command_options.is_empty() {
        unwrap_find(spec, args, place, tables, depth, wraps, out);
        return;
    }
    let mut i = 0;
    let mut skipped = 0;
    let mut shell = false;
    let mut replace: Option<String> = None;
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
                    Some(script) => run_script(program, script, place.cwd, tables, depth, out),
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
                run_script(program, &arg, place.cwd, tables, depth, out);
                return;
            }
            if spec.shell_options.iter().any(|o| o == t) {
                shell = true;
            }
            if let Some(r) = replacement(t, args.get(i + 1), &spec.replace_options) {
                replace = Some(r);
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
    let marker = rest.get(inner.len()).map(|a| a.text.as_str());
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
    let mut feed = Feed::default();
    if spec.stdin_arguments {
        match (&replace, marker) {
            (Some(r), _) => {
                // `xargs -I R cmd ... R ...`: each input line takes R's place.
                for a in inner.iter_mut().filter(|a| a.text.contains(r.as_str())) {
                    a.opaque = true;
                    a.dynamic = true;
                }
                if !inner.iter().skip(1).any(|a| a.opaque) {
                    return expand_words(&inner, place, feed, tables, depth, wraps + 1, out);
                }
                feed.unknown.push(format!(
                    "{program} puts lines read from stdin in place of `{r}`"
                ));
            }
            (None, Some(m)) if m.starts_with("::::") => feed
                .unknown
                .push(format!("{program} reads more arguments from a file")),
            (None, Some(_)) => {}
            (None, None) => feed
                .unknown
                .push(format!("{program} adds arguments read from stdin")),
        }
    }
    if spec.script_operands {
        let text = inner
            .iter()
            .map(|a| a.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let dynamic = inner.iter().any(|a| a.dynamic) || !feed.unknown.is_empty();
        let arg = Arg {
            text,
            dynamic,
            ..Arg::default()
        };
        run_script(program, &arg, place.cwd, tables, depth, out);
        return;
    }
    expand_words(&inner, place, feed, tables, depth, wraps + 1, out);
}

/// `find PATH... EXPR -exec CMD {} +`: each inner command runs on the paths find visits —
/// each PATH and everything below it.
fn unwrap_find(
    spec: &WrapperSpec,
    args: &[Arg],
    place: &Place<'_>,
    tables: &Tables,
    depth: usize,
    wraps: usize,
    out: &mut Analysis,
) {
    // The start paths lead, before the first expression word; none means `.`.
    let mut starts: Vec<Arg> = args
        .iter()
        .take_while(|a| !a.text.starts_with(['-', '(', '!']) && a.text != ")")
        .cloned()
        .collect();
    if starts.is_empty() {
        starts.push(Arg {
            text: ".".into(),
            ..Arg::default()
        });
    }
    let mut i = starts.len();
    while let Some(a) = args.get(i) {
        i += 1;
        if spec.command_options.contains(&a.text) {
            let inner = take_until_marker(args.get(i..).unwrap_or_default(), &spec.end_markers);
            i += inner.len();
            let mut feed = Feed::default();
            let placeholder = spec.placeholder.as_deref();
            if placeholder.is_some_and(|p| inner.iter().any(|w| w.text.contains(p))) {
                for start in &starts {
                    if start.opaque {
                        feed.unknown.push(format!(
                            "find's start path `{}` is only known at run time",
                            start.text
                        ));
                        continue;
                    }
                    for below in [false, true] {
                        feed.patterns.push(PathPattern {
                            text: normalize_path(&start.text),
                            below,
                        });
                    }
                }
            }
            let inner = substitute(inner, placeholder, starts.first());
            let session = Place {
                stdin: &Stdin::Session,
                ..*place
            };
            expand_words(&inner, &session, feed, tables, depth, wraps + 1, out);
        }
    }
}

/// The replacement string an `xargs -I R` style option sets, if `t` is one.
fn replacement(t: &str, next: Option<&Arg>, options: &[String]) -> Option<String> {
    for o in options {
        if t == o {
            // `-I R` takes the next word; `-i` and `--replace` alone mean `{}`.
            return Some(if o == "-I" {
                next.map_or_else(|| "{}".to_string(), |a| a.text.clone())
            } else {
                "{}".to_string()
            });
        }
        if let Some(v) = t.strip_prefix(o.as_str()) {
            let v = v.strip_prefix('=').unwrap_or(v);
            if !o.starts_with("--") || t.contains('=') {
                return Some(v.to_string());
            }
        }
    }
    None
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

fn substitute(args: &[Arg], placeholder: Option<&str>, with: Option<&Arg>) -> Vec<Arg> {
    args.iter()
        .map(|a| match (placeholder, with) {
            (Some(p), Some(w)) if a.text.contains(p) => Arg {
                text: a.text.replace(p, &w.text),
                dynamic: a.dynamic || w.dynamic,
                opaque: a.opaque || w.opaque,
                glob: a.glob || w.glob,
                ..a.clone()
            },
            _ => a.clone(),
        })
        .collect()
}

/// A script handed to a shell: decided like the line itself, one level deeper, starting where
/// the shell that runs it stands.
fn run_script(
    program: &str,
    script: &Arg,
    cwd: &Cwd,
    tables: &Tables,
    depth: usize,
    out: &mut Analysis,
) {
    if script.dynamic {
        out.findings.push(downloaded_or(
            script,
            "interpreter",
            format!("the script given to {program} is not a literal; gatehouse cannot read it"),
        ));
        return;
    }
    super::analyze(&script.text, cwd, tables, depth + 1, out);
}

/// Decides what an interpreter would run; returns a built-in hold for what it cannot see.
fn interpreter(
    program: &str,
    spec: &InterpreterSpec,
    args: &[Arg],
    place: &Place<'_>,
    tables: &Tables,
    depth: usize,
    out: &mut Analysis,
) -> Option<Finding> {
    let stdin = place.stdin;
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
                None => stdin_hold(name, stdin, None, place.cwd, tables, depth, out),
            }
        }
        InterpreterKind::Shell => {
            if inline {
                return match operand {
                    Some(script) => {
                        run_script(name, script, place.cwd, tables, depth, out);
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
                None => stdin_hold(name, stdin, Some(()), place.cwd, tables, depth, out),
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
    cwd: &Cwd,
    tables: &Tables,
    depth: usize,
    out: &mut Analysis,
) -> Option<Finding> {
    match stdin {
        Stdin::File => None,
        Stdin::Text(Some(text)) | Stdin::Pipe { literal: Some(text), .. } if shell.is_some() => {
            super::analyze(text, cwd, tables, depth + 1, out);
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
