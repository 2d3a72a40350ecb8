//! The rule model and how one rule matches one normalized command.
//!
//! A rule names conditions; every condition it names must hold for it to match (an absent
//! condition always holds). Within a policy the first matching rule, in file order, decides a
//! command; a line's decision is the most severe of its commands'. Loading lives in `load`.

use globset::GlobSet;
use regex::Regex;

use super::cwd::{anchored, resolve};
use super::overlap::Pattern;
use super::unwrap::{Cmd, OPAQUE};
use super::Action;

/// How far a rule matches a command whose arguments are not all known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Match {
    /// It cannot match, whatever the unknown parts turn out to be.
    No,
    /// It matches for some values of the unknown parts: decide it at run time, by a reviewer.
    Maybe,
    /// It matches whatever the unknown parts are.
    Yes,
}

impl Match {
    fn from_hit(hit: bool, unknown: bool) -> Match {
        match (hit, unknown) {
            (true, _) => Match::Yes,
            (false, true) => Match::Maybe,
            (false, false) => Match::No,
        }
    }
}

/// Globs on paths (operands, redirect targets), with the same globs as patterns so an operand
/// that is itself a pattern (`/e?c`) can be checked for overlap.
#[derive(Debug, Clone)]
pub struct PathGlobs {
    /// Matches a literal path.
    pub set: GlobSet,
    /// The globs as patterns; `None` when one has too many alternatives to model (then any
    /// pattern operand counts as overlapping).
    pub patterns: Option<Vec<Pattern>>,
    /// Compare in lower case.
    pub ignore_case: bool,
}

impl PathGlobs {
    /// Whether a pattern operand can expand to a path these globs match.
    fn overlaps(&self, pattern: &Pattern) -> bool {
        let lowered;
        let pattern = if self.ignore_case {
            lowered = pattern.lowercase();
            &lowered
        } else {
            pattern
        };
        match &self.patterns {
            Some(list) => list.iter().any(|r| pattern.overlaps(r)),
            None => true,
        }
    }

    /// Whether some path in `paths` (as written, relative ones resolved against the command's
    /// possible working directories) matches, for every directory, some, or none.
    fn check_paths(&self, cmd: &Cmd, paths: &[String], patterns: bool) -> Match {
        let mut all = true;
        let mut any = false;
        for world in cmd.cwd.worlds() {
            let m = self.check_in(world, cmd, paths, patterns);
            all &= m == Match::Yes;
            any |= m != Match::No;
        }
        if all && any {
            Match::Yes
        } else if any {
            Match::Maybe
        } else {
            Match::No
        }
    }

    fn check_in(&self, dir: Option<&str>, cmd: &Cmd, paths: &[String], patterns: bool) -> Match {
        let mut maybe = false;
        for p in paths.iter().filter(|p| p.as_str() != OPAQUE) {
            if self.set.is_match(p) {
                return Match::Yes;
            }
            if !anchored(p) {
                match dir {
                    Some(d) if self.set.is_match(resolve(d, p)) => return Match::Yes,
                    Some(_) => {}
                    None => maybe = true,
                }
            }
        }
        if patterns {
            for p in &cmd.patterns {
                let text = match dir {
                    _ if anchored(&p.text) => p.text.clone(),
                    Some(d) => resolve(d, &p.text),
                    None => {
                        maybe = true;
                        continue;
                    }
                };
                let pattern = if p.below {
                    Pattern::below(&text)
                } else {
                    Pattern::shell(&text)
                };
                if self.overlaps(&pattern) {
                    maybe = true;
                }
            }
        }
        if maybe {
            Match::Maybe
        } else {
            Match::No
        }
    }
}

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
    /// None of these canonical flags may be present (`find -delete` without `-name`).
    pub flags_none: Vec<String>,
    /// At least one operand (after the subcommand) must match.
    pub operands: Option<PathGlobs>,
    /// The last operand must match (the destination of `cp`, `ln`, `install`).
    pub last_operand: Option<PathGlobs>,
    /// At least one argument, as written after quote removal, must match.
    pub args_any: Option<GlobSet>,
    /// Option → value globs: some listed option must carry a matching value.
    pub values: Vec<(String, GlobSet)>,
    /// At least one write/append redirection target must match.
    pub redirects: Option<PathGlobs>,
    /// The command must be a database client carrying a statement of one of these classes.
    pub sql: Vec<SqlClass>,
    /// The command must be `redis-cli` running one of these commands (upper case).
    pub redis: Vec<String>,
    /// Last resort: a regex on the normalized command (argv joined with shlex quoting).
    pub regex: Option<Regex>,
}

impl Rule {
    /// Whether every condition of the rule holds for `cmd`: for certain, only for some values
    /// of what is known at run time, or not at all.
    pub fn check(&self, cmd: &Cmd) -> Match {
        if let Some(programs) = &self.programs {
            if cmd.program.is_empty() || !programs.is_match(&cmd.program) {
                return Match::No;
            }
        }
        let unknown = !cmd.unknown.is_empty();
        let mut result = Match::Yes;
        let mut operands: &[String] = &cmd.parsed.operands;
        if !self.subcommands.is_empty() {
            let found = self.subcommands.iter().find(|sub| {
                sub.len() <= operands.len() && sub.iter().zip(operands).all(|(a, b)| a == b)
            });
            match found {
                Some(sub) => operands = operands.get(sub.len()..).unwrap_or_default(),
                None => result = result.min(Match::from_hit(false, unknown)),
            }
        }
        if !self.flags_all.is_empty() {
            let hit = self.flags_all.iter().all(|f| cmd.parsed.flags.contains(f));
            result = result.min(Match::from_hit(hit, unknown));
        }
        if !self.flags_any.is_empty() {
            let hit = self.flags_any.iter().any(|f| cmd.parsed.flags.contains(f));
            result = result.min(Match::from_hit(hit, unknown));
        }
        if !self.flags_none.is_empty() {
            // An argument known only at run time may be one of them.
            if self.flags_none.iter().any(|f| cmd.parsed.flags.contains(f)) {
                return Match::No;
            }
            if unknown {
                result = result.min(Match::Maybe);
            }
        }
        if result == Match::No {
            return result;
        }
        if let Some(globs) = &self.operands {
            let m = globs.check_paths(cmd, operands, true);
            result = result.min(if m == Match::No && unknown {
                Match::Maybe
            } else {
                m
            });
        }
        if let Some(globs) = &self.last_operand {
            let m = globs.check_paths(
                cmd,
                operands
                    .last()
                    .map(std::slice::from_ref)
                    .unwrap_or_default(),
                true,
            );
            // Arguments added at run time may come last.
            result = result.min(if unknown { Match::Maybe } else { m });
        }
        if let Some(globs) = &self.args_any {
            let hit = cmd
                .args
                .iter()
                .filter(|a| a.as_str() != OPAQUE)
                .any(|a| globs.is_match(a));
            result = result.min(Match::from_hit(hit, unknown));
        }
        if !self.values.is_empty() {
            let hit = self.values.iter().any(|(flag, globs)| {
                cmd.parsed
                    .values
                    .iter()
                    .any(|(f, v)| f == flag && v != OPAQUE && globs.is_match(v))
            });
            let opaque_value = cmd
                .parsed
                .values
                .iter()
                .any(|(f, v)| v == OPAQUE && self.values.iter().any(|(flag, _)| flag == f));
            result = result.min(Match::from_hit(hit, unknown || opaque_value));
        }
        if let Some(globs) = &self.redirects {
            let m = globs.check_paths(cmd, &cmd.write_targets, false);
            let unknown_target = cmd.unknown_redirect.is_some();
            result = result.min(if m == Match::No && unknown_target {
                Match::Maybe
            } else {
                m
            });
        }
        if !self.sql.is_empty() && !self.sql.iter().any(|c| cmd.sql.contains(c)) {
            return Match::No;
        }
        if !self.redis.is_empty() {
            match &cmd.redis {
                Some(c) if self.redis.contains(c) => {}
                _ => return Match::No,
            }
        }
        if let Some(re) = &self.regex {
            result = result.min(Match::from_hit(re.is_match(&cmd.display), unknown));
        }
        result
    }
}
