//! SQL and redis commands given to database clients: what they say, classified.
//!
//! `psql -c`, `mysql -e`, `sqlite3 DB 'SQL'`, and SQL fed through a here-string, here-document
//! or `echo ... |` are read; comments are stripped first (`DROP/**/TABLE` is `DROP TABLE`) and
//! each statement is classified ([`SqlClass`]). A client reading SQL from the session or from a
//! pipe gatehouse cannot read gets a built-in hold. `redis-cli`'s command word is recorded.

use super::rules::SqlClass;
use super::shell::Stdin;
use super::unwrap::Cmd;
use super::{Analysis, Finding};

/// Fills `cmd.sql` / `cmd.redis` for database clients, or a built-in hold when the SQL is
/// unseen. `_out` is kept for symmetry with interpreters (scripts may be nested later).
pub fn classify(cmd: &mut Cmd, stdin: &Stdin, _out: &mut Analysis) {
    let (inline, file, reads_stdin): (Vec<String>, bool, bool) = match cmd.program.as_str() {
        "psql" => {
            let inline: Vec<String> = values(cmd, &["-c", "--command"]);
            let files = values(cmd, &["-f", "--file"]);
            let info = cmd.parsed.flags.iter().any(|f| {
                matches!(
                    f.as_str(),
                    "-l" | "--list" | "-V" | "--version" | "--help" | "-?"
                )
            });
            let from_stdin = files.iter().any(|f| f == "-");
            (
                inline.clone(),
                !files.is_empty() && !from_stdin,
                (inline.is_empty() && files.is_empty() && !info) || from_stdin,
            )
        }
        "mysql" | "mariadb" => {
            let inline = values(cmd, &["-e", "--execute"]);
            let info = cmd
                .parsed
                .flags
                .iter()
                .any(|f| matches!(f.as_str(), "-V" | "--version" | "--help" | "-?"));
            (inline.clone(), false, inline.is_empty() && !info)
        }
        "sqlite3" => {
            let mut inline = values(cmd, &["-cmd"]);
            let sql_operands: Vec<String> = cmd.parsed.operands.iter().skip(1).cloned().collect();
            let has = !sql_operands.is_empty();
            inline.extend(sql_operands);
            let info = cmd
                .parsed
                .flags
                .iter()
                .any(|f| matches!(f.as_str(), "-version" | "--version" | "-help" | "--help"));
            (inline, false, !has && !info)
        }
        "redis-cli" => {
            match cmd.parsed.operands.first() {
                Some(c) => cmd.redis = Some(c.to_ascii_uppercase()),
                None if matches!(stdin, Stdin::File) => {}
                None if !cmd
                    .parsed
                    .flags
                    .iter()
                    .any(|f| f == "--version" || f == "--help") =>
                {
                    cmd.builtin = Some(Finding::new(
                        "interpreter-stdin",
                        "redis-cli without a command reads commands from stdin, which this decision cannot see",
                    ));
                }
                None => {}
            }
            return;
        }
        _ => return,
    };
    let mut texts = inline;
    if reads_stdin && !file {
        match stdin {
            Stdin::File => {}
            Stdin::Text(Some(t))
            | Stdin::Pipe {
                literal: Some(t), ..
            } => texts.push(t.clone()),
            Stdin::Session => {
                cmd.builtin = Some(Finding::new(
                    "interpreter-stdin",
                    format!(
                        "{} without -c reads SQL from stdin, which this decision cannot see",
                        cmd.program
                    ),
                ));
            }
            _ => {
                cmd.builtin = Some(Finding::new(
                    "interpreter",
                    format!(
                        "{} reads SQL from a pipe gatehouse cannot read",
                        cmd.program
                    ),
                ));
            }
        }
    }
    let mut classes: Vec<SqlClass> = texts.iter().flat_map(|t| classify_sql(t)).collect();
    classes.sort();
    classes.dedup();
    cmd.sql = classes;
}

fn values(cmd: &Cmd, flags: &[&str]) -> Vec<String> {
    cmd.parsed
        .values
        .iter()
        .filter(|(f, _)| flags.contains(&f.as_str()))
        .map(|(_, v)| v.clone())
        .collect()
}

/// Classes of every statement in `sql`.
pub fn classify_sql(sql: &str) -> Vec<SqlClass> {
    let clean = strip_comments(sql);
    let mut classes = Vec::new();
    for statement in split_statements(&clean) {
        let upper = statement.to_ascii_uppercase();
        let words: Vec<&str> = upper
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '\\' || c == '!'))
            .filter(|w| !w.is_empty())
            .collect();
        let trimmed = upper.trim_start();
        if trimmed.starts_with("\\!")
            || upper.contains("\\! ")
            || trimmed.starts_with("\\O |")
            || trimmed.starts_with("\\O|")
        {
            classes.push(SqlClass::ShellEscape);
            continue;
        }
        let has = |w: &str| words.contains(&w);
        // `WITH x AS (...) DELETE FROM t`: the verb is the first data-changing word.
        let verb = words
            .iter()
            .find(|w| {
                matches!(
                    **w,
                    "DROP"
                        | "TRUNCATE"
                        | "ALTER"
                        | "GRANT"
                        | "REVOKE"
                        | "DELETE"
                        | "UPDATE"
                        | "COPY"
                        | "SELECT"
                        | "INSERT"
                )
            })
            .copied()
            .or_else(|| words.first().copied());
        let class = match verb {
            Some("DROP") => SqlClass::Drop,
            Some("TRUNCATE") => SqlClass::Truncate,
            Some("ALTER") => SqlClass::Alter,
            Some("GRANT") | Some("REVOKE") => SqlClass::Grant,
            Some("DELETE") if !has("WHERE") => SqlClass::DeleteWithoutWhere,
            Some("UPDATE") if !has("WHERE") => SqlClass::UpdateWithoutWhere,
            Some("COPY") if has("PROGRAM") => SqlClass::ShellEscape,
            _ => SqlClass::Other,
        };
        classes.push(class);
    }
    classes
}

/// Removes `-- ...`, `# ...` (MySQL) and `/* ... */` comments outside string literals; a
/// comment becomes a space so `DROP/**/TABLE` reads as two words.
pub fn strip_comments(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            out.push(c);
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' | '`' => {
                quote = Some(c);
                out.push(c);
            }
            '-' if chars.peek() == Some(&'-') => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
                out.push('\n');
            }
            '#' => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
                out.push('\n');
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

/// Splits on `;` and newlines before psql meta-commands, outside string literals.
fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
                current.push(c);
            }
            None if c == ';' || (c == '\n' && current.trim_start().starts_with('\\')) => {
                out.push(std::mem::take(&mut current));
            }
            None => {
                if matches!(c, '\'' | '"' | '`') {
                    quote = Some(c);
                }
                if c == '\\'
                    && !current.trim().is_empty()
                    && !current.trim_start().starts_with('\\')
                {
                    out.push(std::mem::take(&mut current));
                }
                current.push(c);
            }
        }
    }
    out.push(current);
    out.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(classify_sql("DROP TABLE users"), [SqlClass::Drop]);
        assert_eq!(classify_sql("drop/**/table users"), [SqlClass::Drop]);
        assert_eq!(
            classify_sql("select 1; -- drop table x\n"),
            [SqlClass::Other]
        );
        assert_eq!(classify_sql("SELECT 'DROP TABLE x'"), [SqlClass::Other]);
        assert_eq!(
            classify_sql("delete from t"),
            [SqlClass::DeleteWithoutWhere]
        );
        assert_eq!(classify_sql("delete from t where id=1"), [SqlClass::Other]);
        assert_eq!(
            classify_sql("update t set a=1"),
            [SqlClass::UpdateWithoutWhere]
        );
        assert_eq!(classify_sql("truncate t"), [SqlClass::Truncate]);
        assert_eq!(classify_sql("GRANT ALL ON t TO x"), [SqlClass::Grant]);
        assert_eq!(
            classify_sql("ALTER TABLE t DROP COLUMN c"),
            [SqlClass::Alter]
        );
        assert_eq!(classify_sql("\\! rm -rf /"), [SqlClass::ShellEscape]);
        assert_eq!(
            classify_sql("COPY t FROM PROGRAM 'id'"),
            [SqlClass::ShellEscape]
        );
        assert_eq!(
            classify_sql("select 1; DROP TABLE x"),
            [SqlClass::Other, SqlClass::Drop]
        );
    }
}
