//! Reads asciicast v2 files: any player's recordings, and gatehouse's own (which add a
//! `gatehouse` object to the header, `m` markers for commands and decisions, and a last `x`
//! event with the exit status).
//!
//! Reading is forgiving where a crash or a copy can damage a file: a last line cut short (the
//! writer was killed mid-line) is dropped and the cast is marked truncated; an unreadable line
//! elsewhere is skipped and counted. A header that is not asciicast v2 is an error.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::model::RecordingItem;

/// Errors opening a recording.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: the file is empty")]
    Empty { path: String },
    #[error("{path}: line 1 is not an asciicast header: {reason}")]
    Header { path: String, reason: String },
    #[error("{path}: asciicast version {version} is not supported (only version 2)")]
    Version { path: String, version: String },
}

/// Identity and session facts from a gatehouse header's `gatehouse` object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatehouseInfo {
    /// Ties the recording to logs and audit records.
    pub session_id: String,
    /// Whose session it was.
    pub identity: String,
    /// Where it went.
    pub target: String,
    /// Whether the channel had a PTY; `false` means exec output with bare `\n`, which replay
    /// turns into `\r\n` so every line starts at column 0.
    pub pty: Option<bool>,
}

/// The header line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CastHeader {
    /// Terminal columns at the start.
    pub width: u16,
    /// Terminal rows at the start.
    pub height: u16,
    /// Unix time the recording started, if given.
    pub timestamp: Option<i64>,
    /// Shown in the replay's title bar.
    pub title: Option<String>,
    /// The recorder's own idle limit, if it set one; replay uses it instead of its default.
    pub idle_time_limit: Option<f64>,
    /// Present in gatehouse recordings.
    pub gatehouse: Option<GatehouseInfo>,
}

/// What one event line says.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// `o`: terminal output.
    Output(String),
    /// `i`: input (recorded only when configured; not drawn).
    Input(String),
    /// `r`: the terminal was resized to columns × rows.
    Resize(u16, u16),
    /// `m`: a marker (gatehouse: `cmd: ...`, `allow rule R`, `held ID ...`, `approved by X`, ...).
    Marker(String),
    /// `x`: the exit status.
    Exit(i32),
}

/// One event, at its time in seconds from the start (as recorded, before idle compression).
#[derive(Debug, Clone, PartialEq)]
pub struct CastEvent {
    pub time: f64,
    pub kind: EventKind,
}

/// A whole recording in memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cast {
    /// Where it was read from (for titles and errors).
    pub path: PathBuf,
    pub header: CastHeader,
    /// Events in file order.
    pub events: Vec<CastEvent>,
    /// The last line was cut short, or gatehouse recovered the file after a crash (its
    /// `truncated: ...` marker): the recording stops before the session did.
    pub truncated: bool,
    /// Unreadable lines skipped (other than a cut last line).
    pub skipped: usize,
    /// Set by [`Cast::open_limited`] when the file was longer than its bound: only this many
    /// bytes were read (and `truncated` is set), so a huge file cannot exhaust memory.
    pub read_limit: Option<u64>,
}

impl Cast {
    /// Reads and parses a file.
    pub fn open(path: &Path) -> Result<Cast, ReplayError> {
        let bytes = std::fs::read(path).map_err(|source| ReplayError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Cast::parse(path, &bytes)
    }

    /// Reads at most `max_bytes` of a file and parses them. A longer file is cut there: the
    /// cast is marked truncated and [`Cast::read_limit`] says where it was cut.
    pub fn open_limited(path: &Path, max_bytes: u64) -> Result<Cast, ReplayError> {
        let io = |source| ReplayError::Io {
            path: path.display().to_string(),
            source,
        };
        let (bytes, longer) = read_head(path, max_bytes).map_err(io)?;
        let mut cast = Cast::parse(path, &bytes)?;
        if longer {
            cast.truncated = true;
            cast.read_limit = Some(max_bytes);
        }
        Ok(cast)
    }

    /// Parses a recording's bytes; `path` only names it.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Cast, ReplayError> {
        let name = || path.display().to_string();
        let text = String::from_utf8_lossy(bytes);
        let mut lines = text.split('\n').filter(|l| !l.trim().is_empty()).peekable();
        let Some(first) = lines.next() else {
            return Err(ReplayError::Empty { path: name() });
        };
        let header = parse_header(first).map_err(|e| match e {
            HeaderProblem::Version(version) => ReplayError::Version {
                path: name(),
                version,
            },
            HeaderProblem::Invalid(reason) => ReplayError::Header {
                path: name(),
                reason,
            },
        })?;
        let ends_complete = text.ends_with('\n');
        let mut cast = Cast {
            path: path.to_path_buf(),
            header,
            ..Cast::default()
        };
        while let Some(line) = lines.next() {
            let last = lines.peek().is_none();
            match parse_event(line) {
                Some(Some(event)) => {
                    if let EventKind::Marker(label) = &event.kind {
                        if label.starts_with("truncated") {
                            cast.truncated = true;
                        }
                    }
                    cast.events.push(event);
                }
                // A valid event of a kind we do not know: ignored, as players do.
                Some(None) => {}
                None if last && !ends_complete => cast.truncated = true,
                None => cast.skipped += 1,
            }
        }
        Ok(cast)
    }

    /// The exit status from the `x` event, if any.
    pub fn exit_status(&self) -> Option<i32> {
        self.events.iter().rev().find_map(|e| match e.kind {
            EventKind::Exit(status) => Some(status),
            _ => None,
        })
    }

    /// Whether exec output needs `\n` turned into `\r\n`: the gatehouse header says there was
    /// no PTY.
    pub fn needs_crlf(&self) -> bool {
        self.header.gatehouse.as_ref().and_then(|g| g.pty) == Some(false)
    }

    /// The recordings-list row for this file: identity and target from the gatehouse header,
    /// the start time, the decision markers in short and the exit status.
    pub fn summary(&self) -> RecordingItem {
        let info = self.header.gatehouse.clone().unwrap_or_default();
        let mut decisions: Vec<&str> = Vec::new();
        for event in &self.events {
            if let EventKind::Marker(label) = &event.kind {
                if let Some(word) = decision_word(label) {
                    if !decisions.contains(&word) {
                        decisions.push(word);
                    }
                }
            }
        }
        RecordingItem {
            path: self.path.clone(),
            identity: info.identity,
            target: info.target,
            started: self.header.timestamp.map(utc_text).unwrap_or_default(),
            decision: decisions.join(","),
            exit: self.exit_status(),
        }
    }
}

/// Reads a recording and returns its recordings-list row (see [`Cast::summary`]). It reads the
/// whole file: fine for a list of recent recordings, not for thousands at once.
pub fn summarize(path: &Path) -> Result<RecordingItem, ReplayError> {
    Cast::open(path).map(|cast| cast.summary())
}

/// The recordings-list row of a file, reading at most `head` bytes from its start (header and
/// decision markers) and, when the file is longer, at most `tail` bytes from its end (the `x`
/// event with the exit status). A list of recent recordings stays cheap however long they are.
pub fn summarize_limited(path: &Path, head: u64, tail: u64) -> Result<RecordingItem, ReplayError> {
    let io = |source| ReplayError::Io {
        path: path.display().to_string(),
        source,
    };
    let (bytes, longer) = read_head(path, head).map_err(io)?;
    let mut item = Cast::parse(path, &bytes)?.summary();
    if longer {
        let end = read_tail(path, tail).map_err(io)?;
        let text = String::from_utf8_lossy(&end);
        // The first line of the tail is most likely cut: skip it.
        item.exit = text
            .split('\n')
            .skip(1)
            .filter_map(parse_event)
            .flatten()
            .filter_map(|e| match e.kind {
                EventKind::Exit(status) => Some(status),
                _ => None,
            })
            .last();
    }
    Ok(item)
}

/// The first `max` bytes of a file, and whether there was more.
fn read_head(path: &Path, max: u64) -> std::io::Result<(Vec<u8>, bool)> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    // One byte more than the bound tells whether the file goes on.
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    let longer = u64::try_from(bytes.len()).unwrap_or(u64::MAX) > max;
    bytes.truncate(usize::try_from(max).unwrap_or(usize::MAX));
    Ok((bytes, longer))
}

/// The last `max` bytes of a file.
fn read_tail(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The short decision a gatehouse marker records, if it is a decision.
fn decision_word(label: &str) -> Option<&'static str> {
    let first = label.split([' ', ':']).next().unwrap_or_default();
    Some(match first {
        "allow" => "allow",
        "deny" => "deny",
        "held" => "held",
        "approved" => "approved",
        "denied" => "denied",
        "expired" => "expired",
        "cancelled" => "cancelled",
        _ => return None,
    })
}

enum HeaderProblem {
    Version(String),
    Invalid(String),
}

fn parse_header(line: &str) -> Result<CastHeader, HeaderProblem> {
    let value: Value =
        serde_json::from_str(line).map_err(|e| HeaderProblem::Invalid(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(HeaderProblem::Invalid("not a JSON object".into()));
    };
    match obj.get("version").and_then(Value::as_u64) {
        Some(2) => {}
        Some(v) => return Err(HeaderProblem::Version(v.to_string())),
        None => {
            let v = obj.get("version").map(|v| v.to_string());
            return Err(HeaderProblem::Version(
                v.unwrap_or_else(|| "missing".into()),
            ));
        }
    }
    let dim = |key: &str, default: u16| {
        obj.get(key)
            .and_then(Value::as_u64)
            .and_then(|n| u16::try_from(n).ok())
            .filter(|&n| n > 0)
            .unwrap_or(default)
    };
    let text = |v: Option<&Value>, key: &str| {
        v.and_then(|v| v.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let gatehouse = obj.get("gatehouse").map(|g| GatehouseInfo {
        session_id: text(Some(g), "session_id").unwrap_or_default(),
        identity: text(Some(g), "identity").unwrap_or_default(),
        target: text(Some(g), "target").unwrap_or_default(),
        pty: g.get("pty").and_then(Value::as_bool),
    });
    Ok(CastHeader {
        width: dim("width", 80),
        height: dim("height", 24),
        timestamp: obj.get("timestamp").and_then(Value::as_i64),
        title: obj.get("title").and_then(Value::as_str).map(str::to_string),
        idle_time_limit: obj
            .get("idle_time_limit")
            .and_then(Value::as_f64)
            .filter(|l| *l > 0.0),
        gatehouse,
    })
}

/// `None`: not an event line; `Some(None)`: an event of a kind replay ignores.
fn parse_event(line: &str) -> Option<Option<CastEvent>> {
    let value: Value = serde_json::from_str(line).ok()?;
    let Value::Array(items) = value else {
        return None;
    };
    let time = items
        .first()?
        .as_f64()
        .filter(|t| t.is_finite() && *t >= 0.0)?;
    let code = items.get(1)?.as_str()?;
    let data = items.get(2)?;
    let data_text = data.as_str().map(str::to_string);
    let kind = match code {
        "o" => EventKind::Output(data_text?),
        "i" => EventKind::Input(data_text?),
        "m" => EventKind::Marker(data_text?),
        "r" => {
            let (cols, rows) = data_text?.split_once('x').and_then(|(c, r)| {
                Some((c.trim().parse::<u16>().ok()?, r.trim().parse::<u16>().ok()?))
            })?;
            EventKind::Resize(cols.max(1), rows.max(1))
        }
        "x" => {
            let status = match data {
                Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok())?,
                Value::String(s) => s.trim().parse().ok()?,
                _ => return None,
            };
            EventKind::Exit(status)
        }
        _ => return Some(None),
    };
    Some(Some(CastEvent { time, kind }))
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for a Unix time, without a date library.
pub fn utc_text(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}
