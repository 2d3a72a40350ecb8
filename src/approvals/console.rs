//! The reviewer console's exec commands, for scripts: `ssh console@bastion approvals --json`,
//! `approve ID --comment TEXT`, `deny ID`, `show ID`, `help`. A pure function from a command
//! line to stdout, stderr and an exit status; the SSH side (`gateway::console`) only carries
//! bytes. The line is split with shlex: it is never run by a shell, so splitting words is all
//! that is needed here.
//!
//! Exit statuses: 0 done; 1 unknown request or not pending (any more); 2 usage; 126 refused
//! (not a reviewer, own request, not in the request's group, already decided).
//!
//! Text output escapes control characters: commands come from agents, and an escape sequence
//! in a command must not drive the reviewer's terminal.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::request::{HeldCommand, RequestId, RequestView};
use super::{ApprovalError, Approvals};
use crate::identity::ca::CertIdentity;

/// Most requests `approvals --all` lists.
pub const MAX_LISTED: usize = 1000;
/// Command characters shown in the plain table (`show ID` prints it whole).
const TABLE_COMMAND_CHARS: usize = 60;

/// Exit status: refused.
pub const EXIT_REFUSED: u32 = 126;
/// Exit status: bad usage.
pub const EXIT_USAGE: u32 = 2;
/// Exit status: unknown request, or no longer pending.
pub const EXIT_FAILED: u32 = 1;

const USAGE: &str = "\
usage:
  approvals [--json] [--all]       pending requests (--all: recent requests in any state);
                                   --json prints one JSON object per line
  show ID [--json]                 one request in full
  approve ID [--comment TEXT]      approve a pending request
  deny ID [--comment TEXT]         deny a pending request
  help                             this text
";

/// What an exec command prints and its exit status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsoleReply {
    /// For the channel's stdout.
    pub stdout: String,
    /// For the channel's stderr (`gatehouse: ...` lines).
    pub stderr: String,
    /// Exit status for the channel.
    pub exit: u32,
}

impl ConsoleReply {
    fn ok(stdout: String) -> ConsoleReply {
        ConsoleReply {
            stdout,
            stderr: String::new(),
            exit: 0,
        }
    }

    fn err(exit: u32, message: impl std::fmt::Display) -> ConsoleReply {
        ConsoleReply {
            stdout: String::new(),
            stderr: format!("gatehouse: {message}\n"),
            exit,
        }
    }

    fn usage(message: impl std::fmt::Display) -> ConsoleReply {
        ConsoleReply {
            stdout: String::new(),
            stderr: format!("gatehouse: {message}\n{USAGE}"),
            exit: EXIT_USAGE,
        }
    }
}

/// Runs one exec command line for `reviewer` (a verified certificate).
pub fn run_console_command(
    approvals: &Approvals,
    reviewer: &CertIdentity,
    line: &str,
) -> ConsoleReply {
    if !approvals.is_reviewer(reviewer) {
        return ConsoleReply::err(
            EXIT_REFUSED,
            format_args!("{} is not in a reviewer group", reviewer.identity),
        );
    }
    let Some(words) = shlex::split(line) else {
        return ConsoleReply::usage("cannot split the command line (unbalanced quotes?)");
    };
    run_words(approvals, reviewer, &words)
}

/// Runs one console command given as words (`["approve", ID, "--comment", TEXT]`): the
/// console screen's approve and deny keys come here, so they pass the same reviewer checks
/// and the same [`Approvals::decide`] as `ssh console approve ID`.
pub fn run_console_words(
    approvals: &Approvals,
    reviewer: &CertIdentity,
    words: &[String],
) -> ConsoleReply {
    if !approvals.is_reviewer(reviewer) {
        return ConsoleReply::err(
            EXIT_REFUSED,
            format_args!("{} is not in a reviewer group", reviewer.identity),
        );
    }
    run_words(approvals, reviewer, words)
}

/// The commands themselves, once the caller has checked that `reviewer` is one.
fn run_words(approvals: &Approvals, reviewer: &CertIdentity, words: &[String]) -> ConsoleReply {
    let Some((command, args)) = words.split_first() else {
        return ConsoleReply::usage("no command given");
    };
    match command.as_str() {
        "help" | "--help" | "-h" => ConsoleReply::ok(USAGE.to_string()),
        "approvals" => list(approvals, args),
        "show" => show(approvals, args),
        "approve" => decide(approvals, reviewer, args, true),
        "deny" => decide(approvals, reviewer, args, false),
        other => ConsoleReply::usage(format_args!("unknown command {:?}", escape(other))),
    }
}

/// `approvals [--json] [--all]`.
fn list(approvals: &Approvals, args: &[String]) -> ConsoleReply {
    let (mut json, mut all) = (false, false);
    for arg in args {
        match arg.as_str() {
            "--json" => json = true,
            "--all" => all = true,
            other => {
                return ConsoleReply::usage(format_args!(
                    "approvals: unknown argument {:?}",
                    escape(other)
                ))
            }
        }
    }
    let requests = if all {
        approvals.recent(MAX_LISTED)
    } else {
        approvals.pending()
    };
    if json {
        return match json_lines(&requests) {
            Ok(out) => ConsoleReply::ok(out),
            Err(e) => ConsoleReply::err(EXIT_FAILED, e),
        };
    }
    if requests.is_empty() {
        let what = if all { "requests" } else { "pending requests" };
        return ConsoleReply::ok(format!("no {what}\n"));
    }
    ConsoleReply::ok(table(&requests, Utc::now()))
}

/// One JSON object per line.
fn json_lines(requests: &[HeldCommand]) -> Result<String, serde_json::Error> {
    let mut out = String::new();
    for held in requests {
        out.push_str(&serde_json::to_string(&RequestView::from(held))?);
        out.push('\n');
    }
    Ok(out)
}

/// The plain table.
fn table(requests: &[HeldCommand], now: DateTime<Utc>) -> String {
    let mut out = format!(
        "{:<8}  {:<9}  {:>5}  {:<16}  {:<12}  {:<20}  {:>4}  COMMAND\n",
        "ID", "STATE", "AGE", "IDENTITY", "TARGET", "RULE", "OK"
    );
    for h in requests {
        let mut command = escape(&h.command_text());
        if command.chars().count() > TABLE_COMMAND_CHARS {
            command = command.chars().take(TABLE_COMMAND_CHARS - 1).collect();
            command.push('…');
        }
        let _ = writeln!(
            out,
            "{:<8}  {:<9}  {:>5}  {:<16}  {:<12}  {:<20}  {:>4}  {}",
            h.id,
            h.state.to_string(),
            age(now, h.created),
            escape(&h.requester),
            escape(&h.target),
            escape(&h.rule),
            format!("{}/{}", h.approvals(), h.approvals_required),
            command
        );
    }
    out
}

/// `show ID [--json]`.
fn show(approvals: &Approvals, args: &[String]) -> ConsoleReply {
    let mut json = false;
    let mut id = None;
    for arg in args {
        match arg.as_str() {
            "--json" => json = true,
            flag if flag.starts_with('-') => {
                return ConsoleReply::usage(format_args!(
                    "show: unknown argument {:?}",
                    escape(flag)
                ))
            }
            word if id.is_none() => id = Some(word),
            _ => return ConsoleReply::usage("show: one request id"),
        }
    }
    let id = match parse_id("show", id) {
        Ok(id) => id,
        Err(reply) => return reply,
    };
    let Some(held) = approvals.get(&id) else {
        return ConsoleReply::err(EXIT_FAILED, format_args!("no request {id}"));
    };
    if json {
        return match json_lines(std::slice::from_ref(&held)) {
            Ok(out) => ConsoleReply::ok(out),
            Err(e) => ConsoleReply::err(EXIT_FAILED, e),
        };
    }
    ConsoleReply::ok(detail(&held))
}

/// `show ID` as text.
fn detail(h: &HeldCommand) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "request    {}", h.id);
    let _ = writeln!(out, "state      {}", h.state);
    let _ = writeln!(
        out,
        "identity   {} (certificate serial {})",
        escape(&h.requester),
        h.serial
    );
    let _ = writeln!(
        out,
        "target     {} as {}",
        escape(&h.target),
        escape(&h.upstream_user)
    );
    let _ = writeln!(out, "rule       {}: {}", escape(&h.rule), escape(&h.reason));
    let _ = writeln!(
        out,
        "reviewers  group {} ({} of {} approvals)",
        escape(&h.reviewers),
        h.approvals(),
        h.approvals_required
    );
    let _ = writeln!(out, "created    {}", h.created.to_rfc3339());
    let _ = writeln!(out, "expires    {}", h.expires.to_rfc3339());
    if let Some(grant) = h.grant_expires {
        let _ = writeln!(out, "grant until {}", grant.to_rfc3339());
    }
    let _ = writeln!(out, "session    {}", escape(&h.session_id));
    let _ = writeln!(out, "command    {}", escape(&h.command_text()));
    out.push_str("commands\n");
    for c in &h.commands {
        let _ = writeln!(out, "  {}", escape(c));
    }
    if !h.decisions.is_empty() {
        out.push_str("decisions\n");
        for d in &h.decisions {
            let verb = if d.approve { "approved" } else { "denied" };
            let _ = write!(
                out,
                "  {} {} {verb}",
                d.at.to_rfc3339(),
                escape(&d.reviewer)
            );
            if let Some(comment) = &d.comment {
                let _ = write!(out, ": {}", escape(comment));
            }
            out.push('\n');
        }
    }
    out
}

/// `approve|deny ID [--comment TEXT]`.
fn decide(
    approvals: &Approvals,
    reviewer: &CertIdentity,
    args: &[String],
    approve: bool,
) -> ConsoleReply {
    let verb = if approve { "approve" } else { "deny" };
    let mut id = None;
    let mut comment = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--comment" | "-m" => match args.next() {
                Some(text) => comment = Some(text.clone()),
                None => return ConsoleReply::usage(format_args!("{verb}: --comment needs TEXT")),
            },
            flag if flag.starts_with("--comment=") => {
                comment = flag.strip_prefix("--comment=").map(str::to_string);
            }
            flag if flag.starts_with('-') => {
                return ConsoleReply::usage(format_args!(
                    "{verb}: unknown argument {:?}",
                    escape(flag)
                ))
            }
            word if id.is_none() => id = Some(word),
            _ => return ConsoleReply::usage(format_args!("{verb}: one request id")),
        }
    }
    let id = match parse_id(verb, id) {
        Ok(id) => id,
        Err(reply) => return reply,
    };
    match approvals.decide(&id, reviewer, approve, comment) {
        Ok(held) => ConsoleReply::ok(format!(
            "{} {} ({} of {} approvals)\n",
            held.id,
            held.state,
            held.approvals(),
            held.approvals_required
        )),
        Err(e) if e.is_forbidden() => ConsoleReply::err(EXIT_REFUSED, e),
        Err(e @ ApprovalError::NotFound(_)) | Err(e @ ApprovalError::NotPending { .. }) => {
            ConsoleReply::err(EXIT_FAILED, e)
        }
        Err(e) => ConsoleReply::err(EXIT_FAILED, format_args!("could not record: {e}")),
    }
}

fn parse_id(verb: &str, id: Option<&str>) -> Result<RequestId, ConsoleReply> {
    let Some(id) = id else {
        return Err(ConsoleReply::usage(format_args!(
            "{verb}: missing request id"
        )));
    };
    id.parse::<RequestId>()
        .map_err(|e| ConsoleReply::usage(format_args!("{verb}: {}", escape(&e.to_string()))))
}

/// Age as `42s`, `7m`, `3h`, `2d`.
fn age(now: DateTime<Utc>, then: DateTime<Utc>) -> String {
    let secs = (now - then).num_seconds().max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Control characters (ESC, CR, C1 ...) shown as escapes, so that text from an agent cannot
/// move the cursor or rewrite the reviewer's screen.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
#[path = "console_tests.rs"]
mod tests;
