//! Reading a policy file: the TOML model, strict validation, compilation to [`Rule`]s.
//!
//! Loading is strict because a typo in a deny rule must not silently allow: unknown keys, bad
//! globs or regexes, unknown actions, duplicate rule ids and rules naming unknown policies are
//! refused with `file:line` and the key. Spans come from `toml::Spanned`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use globset::{GlobSet, GlobSetBuilder};
use serde::Deserialize;
use toml::Spanned;

use super::normalize::ProgramSpec;
use super::overlap::Pattern;
use super::rules::{PathGlobs, Rule, SqlClass};
use super::unwrap::{InterpreterKind, InterpreterSpec, WrapperSpec};
use super::{Action, Policy, PolicyError, PolicySet, Tables};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    policies: BTreeMap<String, RawPolicy>,
    #[serde(default)]
    wrappers: Vec<RawWrapper>,
    #[serde(default)]
    interpreters: Vec<RawInterpreter>,
    #[serde(default)]
    programs: BTreeMap<String, RawProgram>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    default: Spanned<String>,
    #[serde(default)]
    reviewers: Option<String>,
    #[serde(default)]
    approvals: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWrapper {
    names: Vec<String>,
    #[serde(default)]
    subcommand: Option<String>,
    #[serde(default)]
    options_with_value: Vec<String>,
    #[serde(default)]
    assignments: bool,
    #[serde(default)]
    skip_operands: usize,
    #[serde(default)]
    script_options: Vec<String>,
    #[serde(default)]
    script_operands: bool,
    #[serde(default)]
    command_options: Vec<String>,
    #[serde(default)]
    end_markers: Vec<String>,
    #[serde(default)]
    double_dash: bool,
    #[serde(default)]
    interactive: bool,
    #[serde(default)]
    shell_options: Vec<String>,
    #[serde(default)]
    placeholder: Option<String>,
    #[serde(default)]
    append_after_marker: bool,
    #[serde(default)]
    optional_operands: bool,
    #[serde(default)]
    stdin_arguments: bool,
    #[serde(default)]
    replace_options: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterpreter {
    names: Vec<String>,
    kind: Spanned<String>,
    #[serde(default)]
    script_options: Vec<String>,
    #[serde(default)]
    options_with_value: Vec<String>,
    #[serde(default)]
    module_options: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProgram {
    #[serde(default)]
    options_with_value: Vec<String>,
    #[serde(default)]
    long_options: Vec<String>,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
    #[serde(default)]
    no_flag_split: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    action: Spanned<String>,
    reason: String,
    #[serde(default)]
    policies: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    reviewers: Option<String>,
    #[serde(default)]
    approvals: Option<u32>,
    #[serde(default)]
    programs: Vec<Spanned<String>>,
    #[serde(default)]
    subcommands: Vec<String>,
    #[serde(default)]
    flags_all: Vec<String>,
    #[serde(default)]
    flags_any: Vec<String>,
    #[serde(default)]
    flags_none: Vec<String>,
    #[serde(default)]
    operands: Vec<Spanned<String>>,
    #[serde(default)]
    last_operand: Vec<Spanned<String>>,
    #[serde(default)]
    args_any: Vec<Spanned<String>>,
    #[serde(default)]
    values: BTreeMap<String, Vec<Spanned<String>>>,
    #[serde(default)]
    redirects: Vec<Spanned<String>>,
    #[serde(default)]
    sql: Vec<Spanned<String>>,
    #[serde(default)]
    redis: Vec<String>,
    #[serde(default)]
    regex: Option<Spanned<String>>,
    #[serde(default)]
    ignore_case: bool,
}

/// Parses and validates policy text; `origin` names it in errors.
pub fn parse_policy_file(text: &str, origin: &Path) -> Result<PolicySet, PolicyError> {
    parse_with(text, origin, true)
}

/// The compiled-in option, wrapper and interpreter tables.
fn builtin_tables() -> Option<Arc<Tables>> {
    let set = parse_with(
        super::BUILTIN_POLICY,
        Path::new("config/policy.toml"),
        false,
    )
    .ok()?;
    set.policies.values().next().map(|p| Arc::clone(&p.tables))
}

/// Parses a policy file; with `fill`, a table the file does not define at all (no
/// `[programs.*]`, no `[[wrappers]]` or no `[[interpreters]]`) is taken from the compiled-in
/// policy, so a file holding only rules still unwraps `sudo` and holds `python -c`.
fn parse_with(text: &str, origin: &Path, fill: bool) -> Result<PolicySet, PolicyError> {
    let at = |span: Option<Range<usize>>, key: &str, message: String| PolicyError::Invalid {
        path: origin.to_path_buf(),
        line: span.map(|s| line_of(text, s.start)).unwrap_or(0),
        key: key.to_string(),
        message,
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let key = e.message().split('`').nth(1).unwrap_or("").to_string();
        at(e.span(), &key, e.message().trim().to_string())
    })?;

    let mut programs = BTreeMap::new();
    for (name, p) in raw.programs {
        programs.insert(
            name,
            ProgramSpec {
                options_with_value: p.options_with_value,
                long_options: p.long_options,
                aliases: p.aliases,
                no_flag_split: p.no_flag_split,
            },
        );
    }
    let wrappers = raw
        .wrappers
        .into_iter()
        .map(|w| WrapperSpec {
            names: w.names,
            subcommand: w.subcommand,
            options_with_value: w.options_with_value,
            assignments: w.assignments,
            skip_operands: w.skip_operands,
            script_options: w.script_options,
            script_operands: w.script_operands,
            command_options: w.command_options,
            end_markers: w.end_markers,
            double_dash: w.double_dash,
            interactive: w.interactive,
            shell_options: w.shell_options,
            placeholder: w.placeholder,
            append_after_marker: w.append_after_marker,
            optional_operands: w.optional_operands,
            stdin_arguments: w.stdin_arguments,
            replace_options: w.replace_options,
        })
        .collect();
    let mut interpreters = Vec::new();
    for (i, it) in raw.interpreters.into_iter().enumerate() {
        let kind = match it.kind.get_ref().as_str() {
            "shell" => InterpreterKind::Shell,
            "code" => InterpreterKind::Code,
            other => {
                return Err(at(
                    Some(it.kind.span()),
                    &format!("interpreters[{i}].kind"),
                    format!("unknown interpreter kind {other:?} (expected shell or code)"),
                ))
            }
        };
        interpreters.push(InterpreterSpec {
            names: it.names,
            kind,
            script_options: it.script_options,
            options_with_value: it.options_with_value,
            module_options: it.module_options,
        });
    }
    let mut tables = Tables {
        programs,
        wrappers,
        interpreters,
    };
    if fill
        && (tables.programs.is_empty()
            || tables.wrappers.is_empty()
            || tables.interpreters.is_empty())
    {
        let builtin = builtin_tables().ok_or_else(|| {
            at(
                None,
                "",
                "the compiled-in policy tables are invalid".to_string(),
            )
        })?;
        if tables.programs.is_empty() {
            tables.programs = builtin.programs.clone();
        }
        if tables.wrappers.is_empty() {
            tables.wrappers = builtin.wrappers.clone();
        }
        if tables.interpreters.is_empty() {
            tables.interpreters = builtin.interpreters.clone();
        }
    }
    let tables = Arc::new(tables);

    let mut policy_meta = Vec::new();
    for (name, p) in &raw.policies {
        let default = parse_action(p.default.get_ref()).ok_or_else(|| {
            at(
                Some(p.default.span()),
                &format!("policies.{name}.default"),
                format!(
                    "unknown action {:?} (expected allow, hold or deny)",
                    p.default.get_ref()
                ),
            )
        })?;
        policy_meta.push((name.clone(), default, p));
    }
    if policy_meta.is_empty() {
        return Err(at(
            None,
            "policies",
            "the file defines no [policies.NAME]".into(),
        ));
    }

    let mut ids = BTreeSet::new();
    let mut compiled: Vec<(Option<Vec<String>>, Rule)> = Vec::new();
    for (i, r) in raw.rules.into_iter().enumerate() {
        let id = r.id.get_ref().clone();
        let key = |field: &str| format!("rules[{i}] ({id}).{field}");
        if id.is_empty() || !ids.insert(id.clone()) {
            return Err(at(
                Some(r.id.span()),
                &key("id"),
                format!("duplicate or empty rule id {id:?}"),
            ));
        }
        let action = parse_action(r.action.get_ref()).ok_or_else(|| {
            at(
                Some(r.action.span()),
                &key("action"),
                format!(
                    "unknown action {:?} (expected allow, hold or deny)",
                    r.action.get_ref()
                ),
            )
        })?;
        if let Some(p) = &r.policies {
            for name in p.get_ref() {
                if !raw.policies.contains_key(name) {
                    return Err(at(
                        Some(p.span()),
                        &key("policies"),
                        format!("unknown policy {name:?}"),
                    ));
                }
            }
        }
        let globs =
            |list: &[Spanned<String>], field: &str| -> Result<Option<GlobSet>, PolicyError> {
                // Path-like conditions keep `*` inside one path component; option values and
                // program names are not paths.
                let paths = matches!(field, "operands" | "last_operand" | "redirects");
                compile_globs(list, r.ignore_case, paths)
                    .map_err(|(span, e)| at(Some(span), &key(field), e))
            };
        let paths =
            |list: &[Spanned<String>], field: &str| -> Result<Option<PathGlobs>, PolicyError> {
                let Some(set) = globs(list, field)? else {
                    return Ok(None);
                };
                let mut patterns = Some(Vec::new());
                for g in list {
                    match (Pattern::rule(g.get_ref()), patterns.as_mut()) {
                        (Some(p), Some(all)) => all.extend(p.iter().map(|p| {
                            if r.ignore_case {
                                p.lowercase()
                            } else {
                                p.clone()
                            }
                        })),
                        _ => patterns = None,
                    }
                }
                Ok(Some(PathGlobs {
                    set,
                    patterns,
                    ignore_case: r.ignore_case,
                }))
            };
        let mut values = Vec::new();
        for (flag, list) in &r.values {
            if let Some(set) = globs(list, &format!("values.{flag}"))? {
                values.push((flag.clone(), set));
            }
        }
        let mut sql = Vec::new();
        for s in &r.sql {
            let class = SqlClass::parse(s.get_ref()).ok_or_else(|| {
                at(
                    Some(s.span()),
                    &key("sql"),
                    format!(
                        "unknown SQL class {:?} (expected one of {})",
                        s.get_ref(),
                        SqlClass::NAMES.join(", ")
                    ),
                )
            })?;
            sql.push(class);
        }
        let regex = match &r.regex {
            Some(re) => Some(
                regex::RegexBuilder::new(re.get_ref())
                    .case_insensitive(r.ignore_case)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| at(Some(re.span()), &key("regex"), format!("bad regex: {e}")))?,
            ),
            None => None,
        };
        let rule = Rule {
            id: id.clone(),
            action,
            reason: r.reason,
            reviewers: r.reviewers,
            approvals: r.approvals,
            programs: globs(&r.programs, "programs")?,
            subcommands: r
                .subcommands
                .iter()
                .map(|s| s.split_whitespace().map(String::from).collect())
                .collect(),
            flags_all: r.flags_all,
            flags_any: r.flags_any,
            flags_none: r.flags_none,
            operands: paths(&r.operands, "operands")?,
            last_operand: paths(&r.last_operand, "last_operand")?,
            args_any: globs(&r.args_any, "args_any")?,
            values,
            redirects: paths(&r.redirects, "redirects")?,
            sql,
            redis: r.redis.iter().map(|s| s.to_ascii_uppercase()).collect(),
            regex,
        };
        compiled.push((r.policies.map(Spanned::into_inner), rule));
    }

    let mut policies = BTreeMap::new();
    for (name, default, p) in policy_meta {
        let rules: Vec<Rule> = compiled
            .iter()
            .filter(|(only, _)| only.as_ref().is_none_or(|o| o.contains(&name)))
            .map(|(_, r)| r.clone())
            .collect();
        policies.insert(
            name.clone(),
            Policy {
                name,
                default,
                reviewers: p.reviewers.clone().unwrap_or_else(|| "reviewers".into()),
                approvals: p.approvals.unwrap_or(1),
                rules: rules.into(),
                tables: Arc::clone(&tables),
            },
        );
    }
    Ok(PolicySet { policies })
}

fn parse_action(s: &str) -> Option<Action> {
    match s {
        "allow" => Some(Action::Allow),
        "hold" => Some(Action::Hold),
        "deny" => Some(Action::Deny),
        _ => None,
    }
}

fn compile_globs(
    list: &[Spanned<String>],
    ignore_case: bool,
    paths: bool,
) -> Result<Option<GlobSet>, (Range<usize>, String)> {
    if list.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for g in list {
        let glob = globset::GlobBuilder::new(g.get_ref())
            .literal_separator(paths)
            .case_insensitive(ignore_case)
            .build()
            .map_err(|e| (g.span(), format!("bad glob {:?}: {e}", g.get_ref())))?;
        builder.add(glob);
    }
    builder.build().map(Some).map_err(|e| {
        (
            list.first().map(|g| g.span()).unwrap_or(0..0),
            e.to_string(),
        )
    })
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(0, |t| t.matches('\n').count()) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match parse_policy_file(text, Path::new("p.toml")) {
            Ok(_) => String::from("ok"),
            Err(e) => e.to_string(),
        }
    }

    const HEAD: &str = "[policies.default]\ndefault = \"allow\"\n";

    #[test]
    fn unknown_key_refused_with_line() {
        let e = err(&format!(
            "{HEAD}[[rules]]\nid = \"a\"\naction = \"deny\"\nreason = \"r\"\nprogramz = [\"rm\"]\n"
        ));
        assert!(e.starts_with("p.toml:7:"), "{e}");
        assert!(e.contains("programz"), "{e}");
    }

    #[test]
    fn bad_action_glob_regex_duplicate() {
        let rule = |extra: &str| {
            format!("{HEAD}[[rules]]\nid = \"a\"\naction = \"deny\"\nreason = \"r\"\n{extra}\n")
        };
        let e = err(&format!(
            "{HEAD}[[rules]]\nid = \"a\"\naction = \"block\"\nreason = \"r\"\n"
        ));
        assert!(
            e.starts_with("p.toml:5:") && e.contains("rules[0] (a).action"),
            "{e}"
        );
        let e = err(&rule("operands = [\"/etc/[\"]"));
        assert!(e.starts_with("p.toml:7:") && e.contains("operands"), "{e}");
        let e = err(&rule("regex = \"(\""));
        assert!(e.starts_with("p.toml:7:") && e.contains("regex"), "{e}");
        let e = err(&format!(
            "{}[[rules]]\nid = \"a\"\naction = \"deny\"\nreason = \"r\"\n",
            rule("")
        ));
        assert!(e.starts_with("p.toml:9:") && e.contains("duplicate"), "{e}");
        let e = err(&rule("policies = [\"nope\"]"));
        assert!(e.contains("unknown policy"), "{e}");
        let e = err(&rule("sql = [\"dorp\"]"));
        assert!(e.contains("unknown SQL class"), "{e}");
    }
}
