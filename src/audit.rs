//! Hash-chained, append-only audit log: the record an auditor trusts to answer "who logged in,
//! what was decided, who approved it, which recordings were sealed".
//!
//! The log is a JSON Lines file (`DATA/audit/audit.jsonl`), not a sled tree: sled admits one
//! process, and `gatehouse audit verify|export|head` must read the log while the server runs.
//! This module is the single writer; [`verify()`], [`export()`] and [`head()`] only read.
//!
//! # Record format
//!
//! Each line is one record, the canonical JSON of every key except `hash` — keys sorted
//! (byte order), no whitespace, strings escaped as `serde_json` escapes them — with
//! `,"hash":"<hex>"` spliced in before the final `}`:
//!
//! ```text
//! {"identity":"alice","kind":"auth.success","prev":"000…000","seq":1,"ts":"2025-01-02T03:04:05.000006Z","hash":"9f…"}
//! ```
//!
//! `seq` counts from 1; the first record's `prev` is 64 zeros ([`GENESIS`]); every other `prev`
//! is the `hash` of the record before it. The hash is hex SHA-256 over
//! `"gatehouse-audit-v1\0" ‖ seq (u64 big-endian) ‖ prev (64 ASCII hex) ‖ canonical JSON`.
//! Editing, deleting or reordering any record breaks the chain at that point; cutting records
//! off the *end* does not, which is why [`head()`] exists: anchor its output off the box.
//!
//! # What may go into a record
//!
//! Identities, targets, session ids, certificate serials, key fingerprints, rule ids, reasons,
//! exit statuses — never keys, tokens, passphrases or command output. The log is readable by
//! auditors and is meant to be copied off the box. Prefer strings, integers and booleans: the
//! hash covers the bytes as written, so floats are fine here but awkward for other verifiers.
//!
//! # Durability
//!
//! [`AuditLog::append`] returns only after the line is written and `sync_data` has returned:
//! a caller acknowledges an event (answers the agent, reports success) after `append`, so a
//! crash never loses an acknowledged record. A caller with other work to do meanwhile splits
//! it: [`AuditLog::write`] puts the record in the file (a killed process no longer loses it;
//! a power cut still may), and [`AuditLog::sync_through`] returns once it is on disk; nothing
//! may be acknowledged in between. Syncs are shared: one `sync_data` covers every record
//! written before it, so records written together by many sessions wait for one disk flush,
//! not one each. A sync that fails leaves the log refusing every later record until a
//! restart (what the failed flush kept is unknown). A crash mid-write leaves a final line
//! without its newline; [`AuditLog::open`] cuts it off (that write never returned, so nobody
//! was told it happened) and appends an `audit.recovered` record saying how many bytes it
//! dropped.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{SecondsFormat, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub(crate) mod read;

pub use read::{
    export, head, verify, AuditRecord, Export, VerifyError, VerifyReport, RECORDING_SEALED,
};

/// `prev` of the first record: there is nothing before it.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Domain separation: a hash made for this log can never be mistaken for one made elsewhere.
const DOMAIN_TAG: &[u8] = b"gatehouse-audit-v1\0";

/// Keys the log itself writes; a caller's fields may not shadow them.
const RESERVED_KEYS: [&str; 5] = ["seq", "ts", "kind", "prev", "hash"];

/// Audit writer errors. Every one means the event was NOT recorded: the caller must not
/// acknowledge it.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("audit log {path} is in use by another gatehouse process (only one may write it)")]
    Locked { path: String },
    #[error("audit log {path}: its last record is damaged ({reason}); run `gatehouse audit verify`, keep the file as evidence and move it aside")]
    CorruptTail { path: String, reason: String },
    #[error("audit log {path}: an earlier write or disk flush failed and could not be undone; restart gatehouse to recover the log")]
    Poisoned { path: String },
    #[error("audit record kind {0:?} must be 1-64 characters of a-z, 0-9, '.', '_' or '-'")]
    InvalidKind(String),
    #[error("audit record fields must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    #[error("audit record field {0:?} is reserved (seq, ts, kind, prev and hash are written by the log)")]
    ReservedField(String),
}

/// Where the chain ends: the last record's `seq` and `hash` ([`GENESIS`] and 0 when empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    /// Sequence number of the last record; 0 for an empty log.
    pub seq: u64,
    /// Hex SHA-256 of the last record; the next record's `prev`.
    pub hash: String,
}

impl AuditHead {
    fn genesis() -> AuditHead {
        AuditHead {
            seq: 0,
            hash: GENESIS.to_string(),
        }
    }
}

/// The one writer of an audit log file. Share it behind an `Arc`; appends serialize on an
/// internal mutex so the chain stays linear however many tasks log at once.
pub struct AuditLog {
    /// Shown in errors and logs.
    path: PathBuf,
    /// The open file, the chain's head and the known-good length, behind one lock so that
    /// "compute hash, write, advance head" is atomic with respect to other appends.
    inner: Mutex<Writer>,
    /// The flusher, behind its own lock: records are written while a flush runs, and the
    /// next flush covers all of them.
    flusher: Mutex<Flusher>,
}

struct Writer {
    /// Opened for append and held under an exclusive advisory lock: a second gatehouse process
    /// writing the same file would fork the chain.
    file: File,
    /// Head after the last written record.
    head: AuditHead,
    /// File length after the last written record; a failed write is cut back to it.
    len: u64,
    /// Set when a failed write could not be cut back (the file may hold half a record, so
    /// appending more would bury it) or a flush failed (what reached the disk is unknown).
    /// Only a reopen (which repairs the tail) clears it.
    poisoned: bool,
}

/// Makes written records durable, many at a time.
struct Flusher {
    /// The log file again (a second descriptor): `sync_data` runs on it without holding the
    /// writer's lock.
    file: File,
    /// File length known to be on disk.
    synced: u64,
}

/// A record [`AuditLog::write`] put in the file, not known to be on disk yet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a written record must be made durable (sync_through) before anyone is told of it"]
pub struct WrittenRecord {
    /// The chain's head with this record.
    pub head: AuditHead,
    /// File length just after it: what [`AuditLog::sync_through`] must see on disk.
    end: u64,
}

impl AuditLog {
    /// Opens (creating, with its directory) the audit log at `path`, recovers the chain head
    /// from its last record and cuts off a final line left half-written by a crash.
    ///
    /// Fails when another process holds the log, or when the last complete line is not a
    /// record of this log (fail closed: appending after it would hide the damage).
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let io = |source| AuditError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(AuditError::Locked {
                    path: path.display().to_string(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let tail = read::read_tail(&mut file).map_err(io)?;
        let len = tail.complete_len;
        let torn = tail.file_len - tail.complete_len;
        if torn > 0 {
            tracing::warn!(
                path = %path.display(),
                bytes = torn,
                "audit log ends in a half-written record (crash during a write); cutting it off"
            );
            file.set_len(len).map_err(io)?;
            file.sync_data().map_err(io)?;
            file.seek(SeekFrom::End(0)).map_err(io)?;
        }
        let head = match &tail.last_line {
            None => AuditHead::genesis(),
            Some(line) => read::parse_head(line).map_err(|reason| AuditError::CorruptTail {
                path: path.display().to_string(),
                reason,
            })?,
        };
        let flusher = Flusher {
            file: file.try_clone().map_err(io)?,
            // What a killed process wrote may still be only in the page cache.
            synced: 0,
        };
        let log = AuditLog {
            path: path.to_path_buf(),
            flusher: Mutex::new(flusher),
            inner: Mutex::new(Writer {
                file,
                head,
                len,
                poisoned: false,
            }),
        };
        if torn > 0 {
            log.append(
                "audit.recovered",
                serde_json::json!({ "truncated_bytes": torn, "reason": "partial final line after a crash" }),
            )?;
        }
        Ok(log)
    }

    /// The file this log writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The chain's current head.
    pub fn head(&self) -> AuditHead {
        self.lock().head.clone()
    }

    /// Appends one record of `kind` with `fields` (a JSON object; see the module docs for what
    /// may go in it) and returns the new head once the record is on disk.
    pub fn append(&self, kind: &str, fields: Value) -> Result<AuditHead, AuditError> {
        let written = self.write(kind, fields)?;
        self.sync_through(&written)?;
        Ok(written.head)
    }

    /// Writes one record like [`AuditLog::append`] but returns before it is on disk: the
    /// caller may start work that needs the record written (it is in the chain, and a killed
    /// process keeps it), and must call [`AuditLog::sync_through`] before it tells anyone.
    pub fn write(&self, kind: &str, fields: Value) -> Result<WrittenRecord, AuditError> {
        let valid_kind = (1..=64).contains(&kind.len())
            && kind.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            });
        if !valid_kind {
            return Err(AuditError::InvalidKind(kind.to_string()));
        }
        let mut record = match fields {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            other => return Err(AuditError::NotAnObject(json_type(&other))),
        };
        if let Some(key) = RESERVED_KEYS.iter().find(|k| record.contains_key(**k)) {
            return Err(AuditError::ReservedField((*key).to_string()));
        }
        let ts = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);

        let mut w = self.lock();
        if w.poisoned {
            return Err(AuditError::Poisoned {
                path: self.path.display().to_string(),
            });
        }
        let seq = w.head.seq + 1;
        record.insert("seq".into(), Value::from(seq));
        record.insert("ts".into(), Value::from(ts));
        record.insert("kind".into(), Value::from(kind));
        record.insert("prev".into(), Value::from(w.head.hash.clone()));
        let body = canonical_json(&Value::Object(record));
        let hash = record_hash(seq, &w.head.hash, body.as_bytes());
        let line = seal_line(&body, &hash);

        if let Err(source) = w.file.write_all(line.as_bytes()) {
            // Cut back to the last good record so a retry does not glue onto half a line.
            let len = w.len;
            if w.file
                .set_len(len)
                .and_then(|()| w.file.sync_data())
                .is_err()
            {
                w.poisoned = true;
            }
            return Err(AuditError::Io {
                path: self.path.display().to_string(),
                source,
            });
        }
        w.len += line.len() as u64;
        w.head = AuditHead { seq, hash };
        Ok(WrittenRecord {
            head: w.head.clone(),
            end: w.len,
        })
    }

    /// Returns once `record` (and every record written before it) is on disk. One flush
    /// serves every record written when it starts, so concurrent callers mostly find their
    /// record already flushed. A failed flush poisons the log: this and every later record
    /// is refused until a restart.
    pub fn sync_through(&self, record: &WrittenRecord) -> Result<(), AuditError> {
        let mut flusher = self
            .flusher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if flusher.synced >= record.end {
            return Ok(());
        }
        let written = {
            let w = self.lock();
            if w.poisoned {
                return Err(AuditError::Poisoned {
                    path: self.path.display().to_string(),
                });
            }
            w.len
        };
        if let Err(source) = flusher.file.sync_data() {
            self.lock().poisoned = true;
            return Err(AuditError::Io {
                path: self.path.display().to_string(),
                source,
            });
        }
        flusher.synced = written;
        Ok(())
    }

    /// What a failed flush leaves behind, for the tests of the log's callers (it cannot be
    /// provoked on a healthy disk).
    #[cfg(test)]
    pub(crate) fn poison(&self) {
        self.lock().poisoned = true;
    }

    /// The writer lock; a panic in another appender cannot leave a half-updated head (the head
    /// moves only after a durable write), so a poisoned mutex is still safe to use.
    fn lock(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Hex SHA-256 of one record: domain tag, seq (u64 big-endian), prev (hex text), canonical body.
pub(crate) fn record_hash(seq: u64, prev: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(DOMAIN_TAG);
    h.update(seq.to_be_bytes());
    h.update(prev.as_bytes());
    h.update(body);
    hex::encode(h.finalize())
}

/// The stored line: the canonical body with `"hash"` spliced in as its last key, then `\n`.
fn seal_line(body: &str, hash: &str) -> String {
    let open = body.strip_suffix('}').unwrap_or(body);
    let sep = if open.len() > 1 { "," } else { "" };
    format!("{open}{sep}\"hash\":\"{hash}\"}}\n")
}

/// Canonical JSON: object keys sorted by their UTF-8 bytes at every depth, no whitespace,
/// strings and numbers as `serde_json` writes them. Sorting is done here rather than relied on
/// from `serde_json::Map`, whose order changes when any crate in the build enables
/// `preserve_order`.
pub(crate) fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                if let Some(value) = map.get(key) {
                    write_canonical(value, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
#[path = "audit/tests.rs"]
mod tests;
