//! The rule model and how one rule matches one normalized command.
//!
//! A rule names conditions; every condition it names must hold for it to match (an absent
//! condition always holds). Within a policy the first matching rule, in file order, decides a
//! command; a line's decision is the most severe of its commands'. Loading lives in `load`.

use globset::GlobSet;
use regex::Regex;

use super::unwrap::Cmd;
use super::Action;

/// Classes of SQL statements a rule can name (`sql = ["drop", ...]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SqlClass {
    /// `DROP ...`
    Drop,
    /// `TRUNCATE ...`
    Truncate,
    /// `ALTER ...`
    Alter,
    /// `GRANT` / `REVOKE`
    Grant,
    /// `DELETE` without a `WHERE`
    DeleteWithoutWhere,
    /// `UPDATE` without a `WHERE`
    UpdateWithoutWhere,
    /// psql `\!`, `COPY ... PROGRAM`, `\o |cmd`: runs a shell command on the database host.
    ShellEscape,
    /// Any other statement (`SELECT`, `INSERT`, ...): lets a production policy allow reads.
    Other,
}

impl SqlClass {
    /// Spellings accepted in the policy file.
    pub const NAMES: &'static [&'static str] = &[
        "drop",
        "truncate",
        "alter",
        "grant",
        "delete-without-where",
        "update-without-where",
        "shell-escape",
        "other",
    ];

    /// Parses a policy-file spelling.
    pub fn parse(s: &str) -> Option<SqlClass> {
        Some(match s {
            "drop" => SqlClass::Drop,
            "truncate" => SqlClass::Truncate,
            "alter" => SqlClass::Alter,
            "grant" => SqlClass::Grant,
            "delete-without-where" => SqlClass::DeleteWithoutWhere,
            "update-without-where" => SqlClass::UpdateWithoutWhere,
            "shell-escape" => SqlClass::ShellEscape,
            "other" => SqlClass::Other,
            _ => return None,
        })
    }
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Shown in decisions and audit; unique in the file.
    pub id: String,
    /// What a match does.
    pub action: Action,
    /// Shown to the agent.
    pub reason: String,
    /// Reviewer group for holds; the policy's when `None`.
    pub reviewers: Option<String>,
    /// Approvals needed for holds; the policy's when `None`.
    pub approvals: Option<u32>,
    /// Program basenames (globs); `None` matches any program, even none (bare redirections).
    pub programs: Option<GlobSet>,
    /// Leading operands that must follow the program (`["push"]`, `["stack", "rm"]`); any one.
    pub subcommands: Vec<Vec<String>>,
    /// Every one of these canonical flags must be present.
    pub flags_all: Vec<String>,
    /// At least one of these canonical flags must be present.
    pub flags_any: Vec<String>,
    /// At least one operand (after the subcommand) must match.
    pub operands: Option<GlobSet>,
    /// The last operand must match (the destination of `cp`, `ln`, `install`).
    pub last_operand: Option<GlobSet>,
    /// At least one argument, as written after quote removal, must match.
    pub args_any: Option<GlobSet>,
    /// Option → value globs: some listed option must carry a matching value.
    pub values: Vec<(String, GlobSet)>,
    /// At least one write/append redirection target must match.
    pub redirects: Option<GlobSet>,
    /// The command must be a database client carrying a statement of one of these classes.
    pub sql: Vec<SqlClass>,
    /// The command must be `redis-cli` running one of these commands (upper case).
    pub redis: Vec<String>,
    /// Last resort: a regex on the normalized command (argv joined with shlex quoting).
    pub regex: Option<Regex>,
}

impl Rule {
    /// Whether every condition of the rule holds for `cmd`.
    pub fn matches(&self, cmd: &Cmd) -> bool {
        if let Some(programs) = &self.programs {
            if cmd.program.is_empty() || !programs.is_match(&cmd.program) {
                return false;
            }
        }
        let mut operands: &[String] = &cmd.parsed.operands;
        if !self.subcommands.is_empty() {
            let found = self.subcommands.iter().find(|sub| {
                sub.len() <= operands.len() && sub.iter().zip(operands).all(|(a, b)| a == b)
            });
            match found {
                Some(sub) => operands = operands.get(sub.len()..).unwrap_or_default(),
                None => return false,
            }
        }
        if !self.flags_all.iter().all(|f| cmd.parsed.flags.contains(f)) {
            return false;
        }
        if !self.flags_any.is_empty()
            && !self.flags_any.iter().any(|f| cmd.parsed.flags.contains(f))
        {
            return false;
        }
        if let Some(globs) = &self.operands {
            if !operands.iter().any(|o| globs.is_match(o)) {
                return false;
            }
        }
        if let Some(globs) = &self.last_operand {
            if !operands.last().is_some_and(|o| globs.is_match(o)) {
                return false;
            }
        }
        if let Some(globs) = &self.args_any {
            if !cmd.args.iter().any(|a| globs.is_match(a)) {
                return false;
            }
        }
        if !self.values.is_empty() {
            let hit = self.values.iter().any(|(flag, globs)| {
                cmd.parsed
                    .values
                    .iter()
                    .any(|(f, v)| f == flag && globs.is_match(v))
            });
            if !hit {
                return false;
            }
        }
        if let Some(globs) = &self.redirects {
            if !cmd.write_targets.iter().any(|t| globs.is_match(t)) {
                return false;
            }
        }
        if !self.sql.is_empty() && !self.sql.iter().any(|c| cmd.sql.contains(c)) {
            return false;
        }
        if !self.redis.is_empty() {
            match &cmd.redis {
                Some(c) if self.redis.contains(c) => {}
                _ => return false,
            }
        }
        if let Some(re) = &self.regex {
            if !re.is_match(&cmd.display) {
                return false;
            }
        }
        true
    }
}
