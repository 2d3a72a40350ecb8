//! The plain data the server hands to the console, and the actions the console hands back.
//!
//! These types deliberately mirror nothing in gatehouse's own crates: the server converts its
//! held requests, sessions and recording files into them, so this crate never depends on SSH,
//! storage or policy types.

use std::path::PathBuf;

/// A held command waiting for reviewers, as the pending queue shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PendingItem {
    /// Request id (8 characters, base32): what an approval names.
    pub id: String,
    /// Who asked: the agent's certificate identity.
    pub requester: String,
    /// Where the command would run.
    pub target: String,
    /// The exact command line, as it would be sent upstream.
    pub command: String,
    /// Byte range of `command` that made the rule match, shown highlighted so the reviewer sees
    /// at once what is risky; ignored if it is not a valid range of the string.
    pub highlight: Option<(usize, usize)>,
    /// The rule that held it.
    pub rule: String,
    /// The rule's reason, for the reviewer.
    pub reason: String,
    /// Age in seconds when the server built this item; the console adds the time since.
    pub age_secs: u64,
    /// Distinct reviewers who approved so far.
    pub approvals: u32,
    /// Approvals needed before it runs.
    pub approvals_required: u32,
    /// The commands the policy found in the line (after unwrapping `sh -c`, substitutions and
    /// the like): what will really run, shown in the detail view.
    pub normalized: Vec<String>,
}

/// A session open on the bastion right now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LiveSession {
    /// Session id: ties the row to logs, audit records and the recording file name.
    pub session_id: String,
    /// Who is connected.
    pub identity: String,
    /// To which target.
    pub target: String,
    /// The agent's address.
    pub client: String,
    /// What it runs: the exec command, or "shell".
    pub command: String,
    /// Seconds since the session opened, when the server built this item.
    pub age_secs: u64,
    /// Start time, `YYYY-MM-DD HH:MM:SS` (UTC), like [`RecordingItem::started`]: the filter's
    /// `date:` prefix applies to live sessions too.
    pub started: String,
    /// What the policy and reviewers decided so far (`allow`, `held`, `approved`, ...), for
    /// the filter's `decision:` term.
    pub decision: String,
}

/// A recording file, as the recordings list shows and filters it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordingItem {
    /// The `.cast` file; [`Action::OpenRecording`] hands it back to the server.
    pub path: PathBuf,
    /// Who the session belonged to.
    pub identity: String,
    /// Where it went.
    pub target: String,
    /// Start time, `YYYY-MM-DD HH:MM:SS` (UTC): sorted and filtered as text, so a date filter
    /// is a prefix (`2025-06-01`).
    pub started: String,
    /// The decision markers in short (`allow`, `deny`, `held`, `approved`, `denied`, ...).
    pub decision: String,
    /// The exit status from the `x` event, if the session ended with one.
    pub exit: Option<i32>,
}

/// What the console asks the server to do. The console never decides anything itself: the
/// server checks the reviewer's rights, carries the action out and reports back with
/// [`crate::ConsoleApp::notice`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Approve a held request.
    Approve {
        id: String,
        /// The reviewer's comment, if they typed one.
        comment: Option<String>,
    },
    /// Deny a held request.
    Deny { id: String, comment: Option<String> },
    /// Open this recording in the replay view (the server reads it and calls
    /// [`crate::ConsoleApp::show_replay`]).
    OpenRecording(PathBuf),
    /// The reviewer wants fresh lists now.
    Refresh,
    /// Close the console (or, for a local replay, the player).
    Quit,
}
