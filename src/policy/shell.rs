//! Shell text → every simple command it would run, with its redirections and where its stdin
//! comes from.
//!
//! This is the part that makes `ls; rm -rf /`, `$(...)`, `a && b`, subshells, loops, function
//! bodies and process substitutions visible. It walks brush-parser's AST and renders words with
//! [`super::words`]; constructs it cannot resolve statically become fail-closed findings. It
//! knows nothing of rules or wrappers: `unwrap` and `rules` work on what it returns.

use brush_parser::ast::{
    self, Command, CommandPrefixOrSuffixItem, CompoundCommand, CompoundList, IoFileRedirectKind,
    IoFileRedirectTarget, IoRedirect, Pipeline, SimpleCommand,
};

use super::cwd::Cwd;
use super::scope::{Scope, Value};
use super::words::{self, Arg, WordFindings};
use super::{Finding, MAX_DEPTH};

/// Where a command's standard input comes from, as far as the line shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stdin {
    /// Inherited from the session: whatever the agent types or pipes next.
    Session,
    /// From an earlier member of the pipeline.
    Pipe {
        /// Program names of the earlier pipeline members (to spot `curl ... | sh`).
        feeders: Vec<String>,
        /// The exact text piped in, when the feeder is an `echo`/`printf` of literals.
        literal: Option<String>,
    },
    /// A here-string or here-document; `None` when its text is not a literal.
    Text(Option<String>),
    /// Redirected from a file (`< file`).
    File,
}

/// How a redirection touches its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectKind {
    /// `<`, `<&`
    Read,
    /// `>`, `>|`, `<>`, `&>`, `>&file`: creates or truncates the target.
    Write,
    /// `>>`, `&>>`
    Append,
}

/// One redirection with its target word.
#[derive(Debug, Clone)]
pub struct Redirect {
    /// Read, write or append: rules care about writes.
    pub kind: RedirectKind,
    /// The target after quote removal.
    pub target: Arg,
}

/// One simple command as written, before wrappers are unwrapped.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Command name and arguments after quote removal; empty for a bare redirection/assignment.
    pub words: Vec<Arg>,
    /// `NAME=value` words before the command (or standing alone).
    pub assignments: Vec<(String, Arg)>,
    /// Redirections of the command, and of any compound command around it.
    pub redirects: Vec<Redirect>,
    /// Where stdin comes from: decides whether a shell or SQL client reads a script we can see.
    pub stdin: Stdin,
    /// Where it may run: relative operands and redirect targets are resolved against it.
    pub cwd: Cwd,
}

/// Everything found in one piece of shell text.
#[derive(Debug, Default)]
pub struct Extraction {
    /// Every simple command, in source order.
    pub commands: Vec<Invocation>,
    /// Fail-closed findings; each one holds the line.
    pub findings: Vec<Finding>,
}

impl Extraction {
    fn hold(&mut self, rule: &'static str, reason: impl Into<String>) {
        self.findings.push(Finding::new(rule, reason));
    }
}

/// Variables whose assignment changes what later commands run.
const DANGEROUS_VARIABLES: &[&str] = &[
    "PATH",
    "BASH_ENV",
    "ENV",
    "PROMPT_COMMAND",
    "IFS",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "GLOBIGNORE",
    "CDPATH",
];

/// Whether assigning `name` must hold the line.
pub fn dangerous_variable(name: &str) -> bool {
    DANGEROUS_VARIABLES.contains(&name) || name.starts_with("BASH_FUNC_")
}

/// Parses `script` and appends every command and finding to `out`. `depth` counts how many
/// scripts deep this one sits (substitutions, `bash -c`), bounded by [`MAX_DEPTH`].
#[cfg(test)]
pub fn extract(script: &str, depth: usize, out: &mut Extraction) {
    extract_in(script, depth, &Scope::default(), out);
}

/// [`extract`] for a script that starts in `scope` (a substitution, `bash -c` after a `cd`).
pub fn extract_in(script: &str, depth: usize, scope: &Scope, out: &mut Extraction) {
    if depth > MAX_DEPTH {
        out.hold(
            "nesting-too-deep",
            format!("scripts nest deeper than {MAX_DEPTH} levels"),
        );
        return;
    }
    if let Some(reason) = super::limits::nesting_exceeds(script) {
        out.hold("nesting-too-deep", reason);
        return;
    }
    let program = match parse(script) {
        Ok(p) => p,
        Err(message) => {
            out.hold(
                "parse-error",
                format!("cannot parse the command line: {message}"),
            );
            return;
        }
    };
    let mut walker = Walker {
        out,
        depth,
        scope: scope.clone(),
    };
    for list in &program.complete_commands {
        walker.list(list, &[], 0);
    }
}

/// Parses shell text with bash-compatible options.
pub fn parse(script: &str) -> Result<ast::Program, brush_parser::ParseError> {
    let options = words::parser_options();
    let tokens = brush_parser::uncached_tokenize_str(script, &options.tokenizer_options())
        .map_err(|inner| brush_parser::ParseError::Tokenizing {
            inner,
            position: None,
        })?;
    brush_parser::parse_tokens(&tokens, &options)
}

struct Walker<'a> {
    /// Where commands and findings go.
    out: &'a mut Extraction,
    /// How many scripts deep this one sits.
    depth: usize,
    /// Where the next command runs and what variables hold, as far as the line so far tells.
    scope: Scope,
}

impl Walker<'_> {
    /// `level` is AST nesting inside this script; it is bounded before parsing, checked again
    /// here so no input can recurse without limit.
    fn list(&mut self, list: &CompoundList, redirects: &[Redirect], level: usize) {
        if level > MAX_DEPTH * 2 {
            self.out
                .hold("nesting-too-deep", "commands nest too deeply");
            return;
        }
        for item in &list.0 {
            let before = self.scope.clone();
            let mut previous = self.scope.clone();
            for (i, (op, pipeline)) in item.0.iter().enumerate() {
                if op == ast::PipelineOperator::Or {
                    // Runs when the previous pipeline failed, perhaps before its `cd`.
                    self.scope.union(&previous);
                }
                previous = self.scope.clone();
                self.pipeline(pipeline, redirects, level + 1);
                if i > 0 {
                    // After `&&` / `||` the pipeline may not have run at all.
                    self.scope.vars.union(&previous.vars);
                }
            }
            match item.1 {
                // A background job runs in a subshell: its `cd` and assignments stay there.
                ast::SeparatorOperator::Async => self.scope = before,
                // The list may have stopped before its `cd` (`cd /x; rm -rf *` when /x is
                // missing runs the rm where the line started). Assignments cannot fail.
                ast::SeparatorOperator::Sequence => self.scope.cwd.union(&before.cwd),
            }
        }
    }

    fn pipeline(&mut self, pipeline: &Pipeline, redirects: &[Redirect], level: usize) {
        let mut feeders: Vec<String> = Vec::new();
        let mut literal: Option<String> = None;
        // Members of a real pipeline run in subshells: a `cd` there moves nothing after it.
        let before = (pipeline.seq.len() > 1).then(|| self.scope.clone());
        for (i, command) in pipeline.seq.iter().enumerate() {
            if let Some(b) = &before {
                self.scope = b.clone();
            }
            let stdin = if i == 0 {
                Stdin::Session
            } else {
                Stdin::Pipe {
                    feeders: feeders.clone(),
                    literal: literal.take(),
                }
            };
            let first = self.out.commands.len();
            self.command(command, redirects, stdin, level + 1);
            literal = None;
            if let Some(inv) = self.out.commands.get(first) {
                if let Some(name) = inv.words.first() {
                    feeders.push(super::normalize::basename(&name.text));
                }
                if self.out.commands.len() == first + 1 {
                    literal = echoed_literal(inv);
                }
            }
        }
        if let Some(b) = before {
            self.scope = b;
        }
    }

    fn command(&mut self, command: &Command, redirects: &[Redirect], stdin: Stdin, level: usize) {
        match command {
            Command::Simple(simple) => self.simple(simple, redirects, stdin, level),
            Command::Compound(compound, own) => {
                let mut all = redirects.to_vec();
                if let Some(own) = own {
                    self.redirect_list(&own.0, &mut all, &mut None, level);
                }
                if all.len() > redirects.len() {
                    // Redirections of a compound command apply to everything inside; record
                    // them once on their own so a rule on redirect targets sees them.
                    self.out.commands.push(Invocation {
                        words: Vec::new(),
                        assignments: Vec::new(),
                        redirects: all.get(redirects.len()..).unwrap_or_default().to_vec(),
                        stdin: Stdin::Session,
                        cwd: self.scope.cwd.clone(),
                    });
                }
                self.compound(compound, &all, level);
            }
            Command::Function(def) => {
                self.out.hold(
                    "function-definition",
                    format!(
                        "defines the function {:?}, which can shadow any command",
                        def.fname.value
                    ),
                );
                let mut all = redirects.to_vec();
                if let Some(own) = &def.body.1 {
                    self.redirect_list(&own.0, &mut all, &mut None, level);
                }
                let first = self.out.commands.len();
                // The body runs when called, not here: its `cd` moves nothing now.
                let before = self.scope.clone();
                self.compound(&def.body.0, &all, level);
                self.scope = before;
                self.fork_bomb(def, first);
            }
            Command::ExtendedTest(test, own) => {
                let mut all = redirects.to_vec();
                if let Some(own) = own {
                    self.redirect_list(&own.0, &mut all, &mut None, level);
                }
                self.extended_test(&test.expr, level);
            }
        }
    }

    /// A function that calls itself in a pipeline or in the background multiplies processes
    /// without end: `:(){ :|:& };:`.
    fn fork_bomb(&mut self, def: &ast::FunctionDefinition, first: usize) {
        let name = &def.fname.value;
        let calls = self
            .out
            .commands
            .get(first..)
            .unwrap_or_default()
            .iter()
            .filter(|c| c.words.first().is_some_and(|w| &w.text == name))
            .count();
        let body = def.body.0.to_string();
        if calls >= 2 || (calls == 1 && (body.contains('&') || body.contains('|'))) {
            self.out.findings.push(Finding::deny(
                "fork-bomb",
                format!("the function {name:?} calls itself in parallel: a fork bomb"),
            ));
        }
    }

    fn compound(&mut self, compound: &CompoundCommand, redirects: &[Redirect], level: usize) {
        match compound {
            CompoundCommand::Arithmetic(a) => self.arithmetic(&a.expr.value),
            CompoundCommand::ArithmeticForClause(f) => {
                for e in [&f.initializer, &f.condition, &f.updater]
                    .into_iter()
                    .flatten()
                {
                    self.arithmetic(&e.value);
                }
                self.list(&f.body.list, redirects, level + 1);
            }
            CompoundCommand::BraceGroup(g) => self.list(&g.list, redirects, level + 1),
            CompoundCommand::Subshell(s) => {
                let before = self.scope.clone();
                self.list(&s.list, redirects, level + 1);
                self.scope = before;
            }
            CompoundCommand::ForClause(f) => {
                let values: Option<Vec<Arg>> = f
                    .values
                    .as_ref()
                    .map(|ws| ws.iter().map(|w| self.word(&w.value)).collect());
                let before = self.scope.clone();
                self.scope.vars.set(&f.variable_name, loop_values(values));
                self.list(&f.body.list, redirects, level + 1);
                self.scope.after_loop(&before);
            }
            CompoundCommand::CaseClause(c) => {
                self.word(&c.value.value);
                let start = self.scope.clone();
                let mut end = start.clone();
                for item in &c.cases {
                    for p in &item.patterns {
                        self.word(&p.value);
                    }
                    if let Some(cmd) = &item.cmd {
                        self.scope = start.clone();
                        self.list(cmd, redirects, level + 1);
                        end.union(&self.scope);
                    }
                }
                self.scope = end;
            }
            CompoundCommand::IfClause(i) => {
                // Each branch starts where its condition left the shell; afterwards the shell is
                // wherever some branch (or no branch) left it.
                self.list(&i.condition, redirects, level + 1);
                let mut after_condition = self.scope.clone();
                let mut end = self.scope.clone();
                self.list(&i.then, redirects, level + 1);
                end.union(&self.scope);
                for e in i.elses.iter().flatten() {
                    self.scope = after_condition.clone();
                    if let Some(c) = &e.condition {
                        self.list(c, redirects, level + 1);
                        after_condition = self.scope.clone();
                        end.union(&self.scope);
                    }
                    self.list(&e.body, redirects, level + 1);
                    end.union(&self.scope);
                }
                self.scope = end;
            }
            CompoundCommand::WhileClause(w) | CompoundCommand::UntilClause(w) => {
                self.looped(|walker| {
                    walker.list(&w.0, redirects, level + 1);
                    walker.list(&w.1.list, redirects, level + 1);
                });
            }
            CompoundCommand::Coprocess(c) => {
                let before = self.scope.clone();
                self.command(&c.body, redirects, Stdin::Session, level + 1);
                self.scope = before;
            }
        }
    }

    /// A loop body runs zero or more times: a `cd` inside it leaves the shell anywhere from
    /// where it started to somewhere gatehouse cannot follow.
    fn looped(&mut self, body: impl FnOnce(&mut Self)) {
        let before = self.scope.clone();
        body(self);
        self.scope.after_loop(&before);
    }

    fn extended_test(&mut self, expr: &ast::ExtendedTestExpr, level: usize) {
        if level > MAX_DEPTH * 2 {
            self.out
                .hold("nesting-too-deep", "a [[ ]] test nests too deeply");
            return;
        }
        match expr {
            ast::ExtendedTestExpr::And(a, b) | ast::ExtendedTestExpr::Or(a, b) => {
                self.extended_test(a, level + 1);
                self.extended_test(b, level + 1);
            }
            ast::ExtendedTestExpr::Not(a) | ast::ExtendedTestExpr::Parenthesized(a) => {
                self.extended_test(a, level + 1)
            }
            ast::ExtendedTestExpr::UnaryTest(_, w) => {
                self.word(&w.value);
            }
            ast::ExtendedTestExpr::BinaryTest(_, a, b) => {
                self.word(&a.value);
                self.word(&b.value);
            }
        }
    }

    fn arithmetic(&mut self, expr: &str) {
        let mut f = WordFindings::default();
        words::check_arithmetic(expr, &mut f);
        self.absorb(f);
        // `(( i = 5 ))`, `i++`: any variable named in arithmetic may change.
        for name in identifiers(expr) {
            self.scope.vars.forget(name);
        }
    }

    /// Renders a word that is not a command argument (loop values, case subjects): only its
    /// substitutions and findings matter.
    fn word(&mut self, raw: &str) -> Arg {
        let mut f = WordFindings::default();
        let arg = words::render_in(raw, &mut f, self.depth, &self.scope.vars);
        self.absorb(f);
        arg
    }

    fn absorb(&mut self, f: WordFindings) {
        for (rule, reason) in f.holds {
            self.out.hold(rule, reason);
        }
        for script in f.substitutions {
            extract_in(&script, self.depth + 1, &self.scope, self.out);
        }
    }

    /// A simple command. When it names a variable with several possible values (a `for`
    /// list, joined branches) it is walked once per value, each a command that may run.
    fn simple(
        &mut self,
        simple: &SimpleCommand,
        redirects: &[Redirect],
        stdin: Stdin,
        level: usize,
    ) {
        let choices = if self.scope.vars.has_several() {
            let text = simple.to_string();
            self.scope.vars.several(|name| mentions(&text, name))
        } else {
            Vec::new()
        };
        if choices.is_empty() {
            return self.simple_once(simple, redirects, stdin, level);
        }
        let start = self.scope.clone();
        let mut end: Option<Scope> = None;
        for assignment in choices {
            self.scope = start.clone();
            for (name, value) in &assignment {
                self.scope.vars.set(name, vec![value.clone()]);
            }
            self.simple_once(simple, redirects, stdin.clone(), level);
            for (name, _) in &assignment {
                if let Some(values) = start.vars.values(name) {
                    self.scope.vars.set(name, values.to_vec());
                }
            }
            match end.as_mut() {
                Some(e) => e.union(&self.scope),
                None => end = Some(self.scope.clone()),
            }
        }
        if let Some(e) = end {
            self.scope = e;
        }
    }

    fn simple_once(
        &mut self,
        simple: &SimpleCommand,
        redirects: &[Redirect],
        stdin: Stdin,
        level: usize,
    ) {
        let mut inv = Invocation {
            words: Vec::new(),
            assignments: Vec::new(),
            redirects: redirects.to_vec(),
            stdin,
            cwd: self.scope.cwd.clone(),
        };
        let mut stdin_override: Option<Stdin> = None;
        // Commands inside process substitutions, decided after this one is recorded.
        let mut nested: Vec<&ast::SubshellCommand> = Vec::new();
        let mut all: Vec<(&CommandPrefixOrSuffixItem, bool)> = simple
            .prefix
            .iter()
            .flat_map(|p| p.0.iter())
            .map(|i| (i, true))
            .collect();
        let name_item;
        if let Some(name) = &simple.word_or_name {
            name_item = CommandPrefixOrSuffixItem::Word(name.clone());
            all.push((&name_item, false));
        }
        all.extend(
            simple
                .suffix
                .iter()
                .flat_map(|s| s.0.iter())
                .map(|i| (i, false)),
        );
        for (item, in_prefix) in all {
            match item {
                CommandPrefixOrSuffixItem::Word(w) => {
                    let arg = self.word(&w.value);
                    inv.words.push(arg);
                }
                CommandPrefixOrSuffixItem::AssignmentWord(assignment, w) => {
                    self.assignment(assignment, w, in_prefix && inv.words.is_empty(), &mut inv);
                }
                CommandPrefixOrSuffixItem::IoRedirect(r) => {
                    self.redirect(r, &mut inv.redirects, &mut stdin_override, level);
                }
                CommandPrefixOrSuffixItem::ProcessSubstitution(kind, sub) => {
                    let sigil = match kind {
                        ast::ProcessSubstitutionKind::Read => '<',
                        ast::ProcessSubstitutionKind::Write => '>',
                    };
                    inv.words.push(Arg {
                        text: format!("{sigil}({})", sub.list),
                        dynamic: true,
                        ..Arg::default()
                    });
                    nested.push(sub);
                }
            }
        }
        if let Some(s) = stdin_override {
            inv.stdin = s;
        }
        let moved = directory_change(&inv.words, &self.scope.cwd);
        self.track_variables(&inv);
        self.out.commands.push(inv);
        let before = self.scope.clone();
        for sub in nested {
            self.list(&sub.list, &[], level + 1);
            self.scope = before.clone();
        }
        if let Some(cwd) = moved {
            self.scope.cwd = cwd;
        }
    }

    /// What a command does to the variables the line knows: `X=lit` sets, `export X=lit` and
    /// friends too, `read X`, `unset X`, `printf -v X`, `let` and anything not literal forget.
    fn track_variables(&mut self, inv: &Invocation) {
        let Some((name, args)) = inv.words.split_first() else {
            for (var, value) in &inv.assignments {
                if value.opaque || value.ansi_c {
                    self.scope.vars.forget(var);
                } else {
                    self.scope
                        .vars
                        .set(var, vec![Value::literal(value.text.clone())]);
                }
            }
            return;
        };
        match name.text.as_str() {
            "export" | "declare" | "typeset" | "local" | "readonly" => {
                // Attributes other than export/readonly/global change what the value becomes:
                // `-n` makes a name reference (`declare -n D=X; rm -rf $D` removes $X), `-i`
                // evaluates arithmetic, `-l`/`-u` change case, `-a`/`-A` make arrays.
                let plain = args
                    .iter()
                    .filter(|a| a.text.starts_with(['-', '+']))
                    .all(|a| !a.opaque && a.text.chars().skip(1).all(|c| "xrg".contains(c)));
                for a in args.iter().filter(|a| !a.text.starts_with(['-', '+'])) {
                    if let Some((var, value)) = a.text.split_once('=') {
                        let var = var.trim_end_matches('+');
                        if !plain || a.opaque || a.text.contains("+=") {
                            self.scope.vars.forget(var);
                        } else {
                            self.scope.vars.set(var, vec![Value::literal(value)]);
                        }
                    }
                }
            }
            "read" | "unset" | "mapfile" | "readarray" | "getopts" | "printf" | "let" | "wait" => {
                for a in args {
                    for var in identifiers(&a.text) {
                        self.scope.vars.forget(var);
                    }
                }
            }
            _ => {}
        }
    }

    fn assignment(
        &mut self,
        assignment: &ast::Assignment,
        raw: &ast::Word,
        before_command: bool,
        inv: &mut Invocation,
    ) {
        let name = match &assignment.name {
            ast::AssignmentName::VariableName(n) => n.clone(),
            ast::AssignmentName::ArrayElementName(n, index) => {
                let mut f = WordFindings::default();
                words::check_arithmetic(&format!("{n}[{index}]"), &mut f);
                self.absorb(f);
                n.clone()
            }
        };
        if dangerous_variable(&name) {
            self.out.hold(
                "dangerous-assignment",
                format!("assigning {name} changes what later commands run"),
            );
        }
        match &assignment.value {
            ast::AssignmentValue::Scalar(w) => {
                let mut arg = self.word(&w.value);
                if assignment.append {
                    // `X+=...` appends to a value the line may not know.
                    arg.opaque = true;
                    arg.dynamic = true;
                }
                if before_command {
                    inv.assignments.push((name, arg));
                } else {
                    // `declare X=...` and friends: an argument of the command.
                    inv.words.push(Arg {
                        text: format!("{name}={}", arg.text),
                        ..arg
                    });
                }
            }
            ast::AssignmentValue::Array(items) => {
                for (key, value) in items {
                    if let Some(k) = key {
                        self.word(&k.value);
                    }
                    self.word(&value.value);
                }
                if !before_command {
                    inv.words.push(Arg {
                        text: raw.value.clone(),
                        dynamic: true,
                        opaque: true,
                        ..Arg::default()
                    });
                }
            }
        }
    }

    fn redirect_list(
        &mut self,
        list: &[IoRedirect],
        out: &mut Vec<Redirect>,
        stdin: &mut Option<Stdin>,
        level: usize,
    ) {
        for r in list {
            self.redirect(r, out, stdin, level);
        }
    }

    fn redirect(
        &mut self,
        r: &IoRedirect,
        out: &mut Vec<Redirect>,
        stdin: &mut Option<Stdin>,
        level: usize,
    ) {
        match r {
            IoRedirect::File(fd, kind, target) => {
                let kind_of = match kind {
                    IoFileRedirectKind::Read | IoFileRedirectKind::DuplicateInput => {
                        RedirectKind::Read
                    }
                    IoFileRedirectKind::Append => RedirectKind::Append,
                    IoFileRedirectKind::Write
                    | IoFileRedirectKind::Clobber
                    | IoFileRedirectKind::ReadAndWrite
                    | IoFileRedirectKind::DuplicateOutput => RedirectKind::Write,
                };
                let reads_stdin = kind_of == RedirectKind::Read && fd.unwrap_or(0) == 0;
                match target {
                    IoFileRedirectTarget::Filename(w) | IoFileRedirectTarget::Duplicate(w) => {
                        let arg = self.word(&w.value);
                        // `>&2`, `2>&1`: a descriptor, not a file.
                        let is_fd = matches!(target, IoFileRedirectTarget::Duplicate(_))
                            && (arg.text.chars().all(|c| c.is_ascii_digit() || c == '-'));
                        if reads_stdin && !is_fd {
                            *stdin = Some(Stdin::File);
                        }
                        if !is_fd {
                            out.push(Redirect {
                                kind: kind_of,
                                target: arg,
                            });
                        }
                    }
                    IoFileRedirectTarget::Fd(_) => {}
                    IoFileRedirectTarget::ProcessSubstitution(_, sub) => {
                        if reads_stdin {
                            // `sh < <(curl ...)`: stdin is another command's output.
                            *stdin = Some(Stdin::Pipe {
                                feeders: sub_programs(&sub.list),
                                literal: None,
                            });
                        }
                        self.list(&sub.list, &[], level + 1);
                    }
                }
            }
            IoRedirect::HereDocument(fd, doc) => {
                let mut f = WordFindings::default();
                let body = if doc.requires_expansion {
                    match brush_parser::word::parse_heredoc(
                        &doc.doc.value,
                        &words::parser_options(),
                    ) {
                        Ok(pieces) => {
                            let raw = &doc.doc.value;
                            let mut literal = true;
                            for p in &pieces {
                                if !matches!(
                                    p.piece,
                                    brush_parser::word::WordPiece::Text(_)
                                        | brush_parser::word::WordPiece::EscapeSequence(_)
                                ) {
                                    literal = false;
                                }
                                if let Some(text) = raw.get(p.start_index..p.end_index) {
                                    if !matches!(p.piece, brush_parser::word::WordPiece::Text(_)) {
                                        words::render(text, &mut f, self.depth);
                                    }
                                }
                            }
                            literal.then(|| raw.clone())
                        }
                        Err(_) => {
                            self.out
                                .hold("parse-error", "cannot read a here-document body");
                            None
                        }
                    }
                } else {
                    Some(doc.doc.value.clone())
                };
                self.absorb(f);
                if fd.unwrap_or(0) == 0 {
                    *stdin = Some(Stdin::Text(body));
                }
            }
            IoRedirect::HereString(fd, w) => {
                let arg = self.word(&w.value);
                if fd.unwrap_or(0) == 0 {
                    let literal = (!arg.dynamic).then(|| format!("{}\n", arg.text));
                    *stdin = Some(Stdin::Text(literal));
                }
            }
            IoRedirect::OutputAndError(w, append) => {
                let arg = self.word(&w.value);
                let kind = if *append {
                    RedirectKind::Append
                } else {
                    RedirectKind::Write
                };
                out.push(Redirect { kind, target: arg });
            }
        }
    }
}

/// Program names appearing at the start of a list's pipelines (for feeders of process
/// substitutions).
fn sub_programs(list: &CompoundList) -> Vec<String> {
    let mut names = Vec::new();
    for item in &list.0 {
        for (_, p) in item.0.iter() {
            for c in &p.seq {
                if let Command::Simple(s) = c {
                    if let Some(w) = &s.word_or_name {
                        let arg = words::render(&w.value, &mut WordFindings::default(), MAX_DEPTH);
                        names.push(super::normalize::basename(&arg.text));
                    }
                }
            }
        }
    }
    names
}

/// The text an `echo` or `printf` of literal words writes, when it can be known.
fn echoed_literal(inv: &Invocation) -> Option<String> {
    let (name, args) = inv.words.split_first()?;
    if name.dynamic || args.iter().any(|a| a.dynamic || a.glob || a.brace) {
        return None;
    }
    match super::normalize::basename(&name.text).as_str() {
        "echo" => {
            let texts: Vec<&str> = args.iter().map(|a| a.text.as_str()).collect();
            if texts.first().is_some_and(|t| t.starts_with('-')) {
                return None;
            }
            Some(format!("{}\n", texts.join(" ")))
        }
        "printf" => match args {
            [one] if !one.text.contains(['%', '\\']) => Some(one.text.clone()),
            [fmt, rest @ ..] if fmt.text == "%s\\n" => {
                Some(rest.iter().map(|a| format!("{}\n", a.text)).collect())
            }
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
#[path = "shell_tests.rs"]
mod tests;

/// Where a `cd` / `pushd` / `popd` (also behind `builtin` or `command`) moves the shell.
fn directory_change(words: &[Arg], cwd: &Cwd) -> Option<Cwd> {
    let mut words = words;
    while let Some((first, rest)) = words.split_first() {
        if first.opaque {
            return None;
        }
        match first.text.as_str() {
            "builtin" | "command" => words = rest,
            name => return cwd.after(name, rest),
        }
    }
    None
}

/// The possible values of a `for` list: literal words, brace-expanded; `None` (positional
/// parameters), globs or unknown words give no values (the variable is unknown).
fn loop_values(values: Option<Vec<Arg>>) -> Vec<Value> {
    let Some(values) = values else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for v in values {
        if v.opaque || v.ansi_c {
            return Vec::new();
        }
        let words = if v.brace {
            match super::overlap::expand_braces(&v.text) {
                Some(words) => words.into_iter().filter(|w| !w.is_empty()).collect(),
                None => return Vec::new(),
            }
        } else {
            vec![v.text]
        };
        out.extend(words.into_iter().map(|text| Value { text, glob: v.glob }));
    }
    out
}

/// Whether shell text mentions `$name` or `${name...`.
fn mentions(text: &str, name: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(name).any(|(at, _)| {
        let before = text.get(..at).unwrap_or_default();
        let after = text.get(at + name.len()..).unwrap_or_default();
        (before.ends_with('$') || before.ends_with("${")) && !after.starts_with(ident)
    })
}

/// Identifier-like words of a text (variable names in arithmetic, `read` operands).
fn identifiers(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'))
}
