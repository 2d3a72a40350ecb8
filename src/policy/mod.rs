//! The command policy engine: shell command line in, Allow / Deny / Hold out. Pure: no SSH, no
//! I/O on the decision path.
//!
//! A line is parsed into a shell AST (`shell`), every simple command is found and its words
//! quote-removed (`words`), wrappers and interpreters are unwrapped into the commands they
//! run (`unwrap`), and each command is matched against the policy's rules (`rules`, loaded by
//! `load`). Whatever cannot be resolved statically is held ("fail closed"), with a built-in
//! rule id naming why. The gateway calls [`decide`]; the line gate calls [`input_state`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod cwd;
mod escapes;
mod limits;
mod load;
pub mod normalize;
mod overlap;
mod rules;
mod scope;
mod shell;
mod sql;
mod unwrap;
mod words;

use normalize::ProgramSpec;
use unwrap::{Cmd, InterpreterSpec, WrapperSpec};

/// Deepest nesting (substitutions, compound commands, `bash -c` in `bash -c`) gatehouse reads;
/// deeper lines are held. Keeps every recursion bounded on hostile input.
pub const MAX_DEPTH: usize = 64;

/// Longest line gatehouse parses (bytes); longer lines are held.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// The default ruleset, compiled in.
const BUILTIN_POLICY: &str = include_str!("../../config/policy.toml");

/// What happens to a command line. Ordered by severity: a line's decision is the most severe of
/// its commands' (`Deny` > `Hold` > `Allow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Hold,
    Deny,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Allow => "allow",
            Action::Hold => "hold",
            Action::Deny => "deny",
        })
    }
}

/// The decision on one command line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Decision {
    /// Allow, hold or deny.
    pub decision: Action,
    /// Id of the rule (or built-in fail-closed reason id) that decided.
    pub rule: String,
    /// Text shown to the agent.
    pub reason: String,
    /// Every simple command found, normalized, argv quoted with shlex for display.
    pub commands: Vec<String>,
    /// Reviewer group for holds (approvals issue).
    pub reviewers: Option<String>,
    /// Distinct approvals required for holds.
    pub approvals_required: u32,
}

/// Errors loading a policy file (file:line and the key).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not a valid policy file.
    #[error("{path}:{line}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

/// Whether typed text is a whole command yet (for the line gate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputState {
    /// Parses as a complete program: decide it.
    Complete,
    /// Could become valid with more input (open quote, `if` without `fi`, trailing `|`).
    Incomplete,
    /// Can never become valid: decide it now (it will be held as a parse error).
    Invalid,
}

/// Classifies text with brush-parser's incomplete-vs-invalid distinction.
pub fn input_state(text: &[u8]) -> InputState {
    let Ok(text) = std::str::from_utf8(text) else {
        return InputState::Invalid;
    };
    if text.len() > MAX_LINE_BYTES || limits::nesting_exceeds(text).is_some() {
        return InputState::Invalid;
    }
    match shell::parse(text) {
        Ok(_) => InputState::Complete,
        Err(brush_parser::ParseError::ParsingAtEndOfInput) => InputState::Incomplete,
        Err(brush_parser::ParseError::Tokenizing { inner, .. }) if inner.is_incomplete() => {
            InputState::Incomplete
        }
        Err(_) => InputState::Invalid,
    }
}

/// A fail-closed reason: a built-in rule id and the text shown to the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Built-in rule id (`parse-error`, `non-literal-command`, ...).
    pub rule: &'static str,
    /// Why the line is held.
    pub reason: String,
    /// Hold, except for the few constructs that are always catastrophic (fork bombs).
    pub action: Action,
}

impl Finding {
    fn new(rule: &'static str, reason: impl Into<String>) -> Finding {
        Finding {
            rule,
            reason: reason.into(),
            action: Action::Hold,
        }
    }

    fn deny(rule: &'static str, reason: impl Into<String>) -> Finding {
        Finding {
            action: Action::Deny,
            ..Finding::new(rule, reason)
        }
    }
}

/// Program knowledge shared by every policy of a file: option tables, wrappers, interpreters.
#[derive(Debug, Default)]
pub struct Tables {
    /// `[programs.NAME]`: options with values, long options, aliases.
    programs: BTreeMap<String, ProgramSpec>,
    /// `[[wrappers]]`: programs that run another command.
    wrappers: Vec<WrapperSpec>,
    /// `[[interpreters]]`: shells and language runtimes.
    interpreters: Vec<InterpreterSpec>,
}

/// One named policy (rules + default action).
#[derive(Debug, Clone)]
pub struct Policy {
    /// The name targets use to pick it.
    name: String,
    /// What a command no rule matches gets: `allow` (deny-list mode) or `hold` (allow-list).
    default: Action,
    /// Reviewer group for holds whose rule names none (`reviewers` unless configured).
    reviewers: String,
    /// Approvals for holds whose rule names none.
    approvals: u32,
    /// Rules in file order; the first match decides a command.
    rules: Arc<[rules::Rule]>,
    /// Option, wrapper and interpreter tables of the file.
    tables: Arc<Tables>,
}

impl Policy {
    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The action for commands no rule matches.
    pub fn default_action(&self) -> Action {
        self.default
    }

    /// A policy that holds everything: what [`PolicySet::builtin`] falls back to if the
    /// compiled-in ruleset were ever invalid.
    fn hold_everything() -> Policy {
        Policy {
            name: "default".into(),
            default: Action::Hold,
            reviewers: "reviewers".into(),
            approvals: 1,
            rules: Arc::from(Vec::new()),
            tables: Arc::new(Tables::default()),
        }
    }
}

/// All policies of a policy file.
#[derive(Debug, Clone)]
pub struct PolicySet {
    /// By name.
    policies: BTreeMap<String, Policy>,
}

impl PolicySet {
    /// The compiled-in default ruleset (config/policy.toml). Never panics: if the compiled-in
    /// text were invalid, the result holds every line.
    pub fn builtin() -> PolicySet {
        match Self::parse(BUILTIN_POLICY, Path::new("config/policy.toml")) {
            Ok(set) => set,
            Err(e) => {
                tracing::error!("compiled-in policy is invalid ({e}); holding every command");
                let mut policies = BTreeMap::new();
                policies.insert("default".to_string(), Policy::hold_everything());
                PolicySet { policies }
            }
        }
    }

    /// Loads a policy file.
    pub fn load(path: &Path) -> Result<PolicySet, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses policy text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<PolicySet, PolicyError> {
        load::parse_policy_file(text, origin)
    }

    /// The policy with this name.
    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.get(name)
    }

    /// Names of every policy in the set.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.policies.keys().map(String::as_str)
    }

    /// Every reviewer group a hold from this set can name (policy defaults and rules), plus
    /// `fallback`: the groups whose members may open the reviewer console.
    pub fn reviewer_groups(&self, fallback: &str) -> Vec<String> {
        let mut groups = std::collections::BTreeSet::new();
        groups.insert(fallback.to_string());
        for policy in self.policies.values() {
            groups.insert(policy.reviewers.clone());
            for rule in policy.rules.iter() {
                if let Some(g) = rule.reviewers.as_ref() {
                    groups.insert(g.clone());
                }
            }
        }
        groups.into_iter().collect()
    }
}

/// Everything found on a line: commands to match and fail-closed findings.
#[derive(Debug, Default)]
pub struct Analysis {
    /// Every command that would run, unwrapped.
    cmds: Vec<Cmd>,
    /// Reasons to hold that no rule can override.
    findings: Vec<Finding>,
}

/// Parses `script` and unwraps every command in it into `out`.
fn analyze(script: &str, cwd: &cwd::Cwd, tables: &Tables, depth: usize, out: &mut Analysis) {
    let mut extraction = shell::Extraction::default();
    shell::extract_in(script, depth, &scope::Scope::at(cwd), &mut extraction);
    out.findings.append(&mut extraction.findings);
    for inv in &extraction.commands {
        unwrap::expand(inv, tables, depth, out);
    }
}

/// Decides one command line (bytes: non-UTF-8 lines are held, never a panic).
pub fn decide(policy: &Policy, line: &[u8]) -> Decision {
    let hold = |rule: &str, reason: String| Decision {
        decision: Action::Hold,
        rule: rule.to_string(),
        reason,
        commands: Vec::new(),
        reviewers: Some(policy.reviewers.clone()),
        approvals_required: policy.approvals,
    };
    if line.len() > MAX_LINE_BYTES {
        return hold(
            "line-too-long",
            format!(
                "the line is {} bytes; gatehouse reads at most {MAX_LINE_BYTES}",
                line.len()
            ),
        );
    }
    let Ok(text) = std::str::from_utf8(line) else {
        return hold("non-utf8", "the line is not valid UTF-8".into());
    };
    if let Some(c) = text
        .chars()
        .find(|c| c.is_control() && *c != '\t' && *c != '\n')
    {
        return hold(
            "control-characters",
            format!("the line contains the control character {c:?}"),
        );
    }
    let mut analysis = Analysis::default();
    analyze(text, &cwd::Cwd::default(), &policy.tables, 0, &mut analysis);
    verdict(policy, &analysis)
}

/// The rule (or finding) that decides a line, while the verdict is being worked out.
struct Winner {
    /// Its action; a later candidate replaces it only when strictly more severe.
    action: Action,
    /// Rule id or built-in id.
    rule: String,
    /// Shown to the agent.
    reason: String,
    /// The rule's reviewer group, if it names one.
    reviewers: Option<String>,
    /// The rule's approvals count, if it names one.
    approvals: Option<u32>,
}

/// The hold for a command that a rule matches only for some values of its run-time parts.
fn unresolved(cmd: &Cmd, rule: &rules::Rule) -> Winner {
    let why = cmd
        .unknown
        .first()
        .cloned()
        .or_else(|| cmd.unknown_redirect.clone())
        .or_else(|| {
            cmd.patterns
                .iter()
                .find(|p| !p.below)
                .map(|p| format!("the pattern `{}` expands at run time", p.text))
        })
        .or_else(|| {
            cmd.patterns
                .first()
                .map(|p| format!("find passes every path under `{}`", p.text))
        })
        .unwrap_or_else(|| {
            "the working directory is not certain (a `cd` may fail or is not a literal)".into()
        });
    Winner {
        action: Action::Hold,
        rule: "unresolved-argument".into(),
        reason: format!(
            "`{}`: {why}; rule {} ({}) would apply to some values: {}",
            cmd.display, rule.id, rule.action, rule.reason
        ),
        reviewers: rule.reviewers.clone(),
        approvals: rule.approvals,
    }
}

/// The most severe outcome over every command and finding; the first one wins a tie.
fn verdict(policy: &Policy, analysis: &Analysis) -> Decision {
    let commands: Vec<String> = analysis.cmds.iter().map(Cmd::shown).collect();
    let mut best: Option<Winner> = None;
    let mut consider = |candidate: Winner| {
        if best.as_ref().is_none_or(|b| candidate.action > b.action) {
            best = Some(candidate);
        }
    };
    let finding = |f: &Finding| Winner {
        action: f.action,
        rule: f.rule.to_string(),
        reason: f.reason.clone(),
        reviewers: None,
        approvals: None,
    };
    for f in &analysis.findings {
        consider(finding(f));
    }
    for cmd in &analysis.cmds {
        // Rules that match only for some values of what is known at run time come before the
        // rule (or default) that surely decides; each is an outcome the command may have.
        let mut possible: Option<&rules::Rule> = None;
        let mut decided: Option<Winner> = None;
        for rule in policy.rules.iter() {
            match rule.check(cmd) {
                rules::Match::No => {}
                rules::Match::Maybe => {
                    if possible.is_none_or(|p| rule.action > p.action) {
                        possible = Some(rule);
                    }
                }
                rules::Match::Yes => {
                    decided = Some(Winner {
                        action: rule.action,
                        rule: rule.id.clone(),
                        reason: rule.reason.clone(),
                        reviewers: rule.reviewers.clone(),
                        approvals: rule.approvals,
                    });
                    break;
                }
            }
        }
        let decided = match decided {
            Some(w) => w,
            None => match &cmd.builtin {
                Some(f) => finding(f),
                None => Winner {
                    action: policy.default,
                    rule: "default".into(),
                    reason: format!(
                        "no rule matched `{}`; the policy default applies",
                        cmd.display
                    ),
                    reviewers: None,
                    approvals: None,
                },
            },
        };
        match possible {
            // A certain deny stands; otherwise a possible stricter outcome is for a reviewer.
            Some(rule) if rule.action != decided.action && decided.action != Action::Deny => {
                consider(unresolved(cmd, rule));
            }
            _ => {}
        }
        consider(decided);
    }
    let winner = best.unwrap_or_else(|| Winner {
        action: Action::Allow,
        rule: "empty".into(),
        reason: "the line runs no command".into(),
        reviewers: None,
        approvals: None,
    });
    let holds = winner.action == Action::Hold;
    Decision {
        decision: winner.action,
        rule: winner.rule,
        reason: winner.reason,
        commands,
        reviewers: holds.then(|| winner.reviewers.unwrap_or_else(|| policy.reviewers.clone())),
        approvals_required: if holds {
            winner.approvals.unwrap_or(policy.approvals)
        } else {
            0
        },
    }
}

#[cfg(test)]
mod tests;
