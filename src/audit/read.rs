//! Reading the audit log: chain verification (with the sealed recordings it names), export and
//! head. Everything here opens the file read-only and takes no lock, so it runs beside a live
//! server; a final line without its newline is an append still in progress (or a crash not yet
//! repaired) and is left out, never reported as tampering.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Component, Path};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{record_hash, AuditHead, RESERVED_KEYS};

/// The kind of record that seals a recording; `verify` re-hashes the file each one names.
pub const RECORDING_SEALED: &str = "recording.sealed";

/// Length of `,"hash":"<64 hex>"}` at the end of every stored line.
const HASH_SUFFIX_LEN: usize = 9 + 64 + 2;

/// Why the log (or a recording it seals) cannot be trusted, or could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Record `seq` (= its line number) is not the record the chain expects there: edited,
    /// deleted, inserted or reordered.
    #[error("audit record {seq} (line {seq}) is broken: {reason}")]
    Record { seq: u64, reason: String },
    /// A recording sealed by record `seq` is missing or differs from what was sealed.
    #[error("recording {path} (sealed by audit record {seq}) is broken: {reason}")]
    Recording {
        seq: u64,
        path: String,
        reason: String,
    },
}

/// What a successful [`verify`] checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records whose hash and link were checked.
    pub records: u64,
    /// The last verified record; compare it with a head anchored off the box to detect records
    /// cut off the end.
    pub head: AuditHead,
    /// Sealed recordings re-hashed (0 when no recordings root was given).
    pub recordings: u64,
    /// The file ended in a line without its newline: an append in progress, or a crash that
    /// the next `AuditLog::open` will repair. That line was not checked.
    pub incomplete_tail: bool,
}

/// One verified record, as [`export`] yields it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub seq: u64,
    pub ts: DateTime<Utc>,
    pub kind: String,
    /// The caller's fields (everything but seq, ts, kind, prev, hash).
    pub fields: Map<String, Value>,
    pub prev: String,
    pub hash: String,
    /// The line exactly as stored (no newline), so an export can be re-verified elsewhere.
    pub line: String,
}

/// Walks the whole chain at `path`, then re-hashes every recording sealed in it under
/// `recordings_root` (sha256 and size must match). Returns the first break as an error.
///
/// When one path is sealed twice (a crash between sealing and removing the `.open` marker makes
/// startup recovery seal it again), the later seal is the one the file must match.
pub fn verify(path: &Path, recordings_root: Option<&Path>) -> Result<VerifyReport, VerifyError> {
    let mut chain = Chain::open(path)?;
    let mut seals: BTreeMap<String, Seal> = BTreeMap::new();
    while let Some(record) = chain.next_record()? {
        if record.kind == RECORDING_SEALED {
            let seal = Seal::from_fields(record.seq, &record.fields)?;
            seals.insert(seal.path.clone(), seal);
        }
    }
    let mut recordings = 0;
    if let Some(root) = recordings_root {
        let mut ordered: Vec<Seal> = seals.into_values().collect();
        ordered.sort_by_key(|s| s.seq);
        for seal in ordered {
            seal.check(root)?;
            recordings += 1;
        }
    }
    Ok(VerifyReport {
        records: chain.head.seq,
        head: chain.head,
        recordings,
        incomplete_tail: chain.incomplete_tail,
    })
}

/// Records at `path` from `since` on (all when `None`), verified as they are read: the
/// iterator yields an error, then stops, at the first break in the chain.
pub fn export(path: &Path, since: Option<DateTime<Utc>>) -> Result<Export, VerifyError> {
    Ok(Export {
        chain: Chain::open(path)?,
        since,
        done: false,
    })
}

/// Iterator over exported records; see [`export`].
pub struct Export {
    chain: Chain,
    since: Option<DateTime<Utc>>,
    done: bool,
}

impl Iterator for Export {
    type Item = Result<AuditRecord, VerifyError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.chain.next_record() {
                Ok(Some(record)) if self.since.is_some_and(|t| record.ts < t) => continue,
                Ok(Some(record)) => return Some(Ok(record)),
                Ok(None) => self.done = true,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

/// The last complete record's seq and hash (its own hash is checked, not the whole chain).
pub fn head(path: &Path) -> Result<AuditHead, VerifyError> {
    let read_err = |source| VerifyError::Read {
        path: path.display().to_string(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let tail = read_tail(&mut file).map_err(read_err)?;
    match tail.last_line {
        None => Ok(AuditHead::genesis()),
        Some(line) => parse_head(&line).map_err(|reason| VerifyError::Record {
            seq: 0,
            reason: format!("last record: {reason}"),
        }),
    }
}

/// Reads records in order, checking each one's hash and its link to the one before.
struct Chain {
    path: String,
    reader: BufReader<File>,
    head: AuditHead,
    incomplete_tail: bool,
}

impl Chain {
    fn open(path: &Path) -> Result<Chain, VerifyError> {
        let file = File::open(path).map_err(|source| VerifyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Chain {
            path: path.display().to_string(),
            reader: BufReader::with_capacity(256 * 1024, file),
            head: AuditHead::genesis(),
            incomplete_tail: false,
        })
    }

    fn next_record(&mut self) -> Result<Option<AuditRecord>, VerifyError> {
        let mut raw = Vec::new();
        let n = self
            .reader
            .read_until(b'\n', &mut raw)
            .map_err(|source| VerifyError::Read {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 {
            return Ok(None);
        }
        if raw.pop() != Some(b'\n') {
            self.incomplete_tail = true;
            return Ok(None);
        }
        let seq = self.head.seq + 1;
        let broken = |reason: String| VerifyError::Record { seq, reason };
        let line = String::from_utf8(raw).map_err(|_| broken("not valid UTF-8".into()))?;
        let record = check_line(line).map_err(broken)?;
        if record.seq != seq {
            return Err(broken(format!(
                "has seq {} where seq {seq} belongs (a record was deleted, inserted or moved)",
                record.seq
            )));
        }
        if record.prev != self.head.hash {
            return Err(broken(format!(
                "prev {} does not match the hash of record {} ({})",
                record.prev, self.head.seq, self.head.hash
            )));
        }
        self.head = AuditHead {
            seq: record.seq,
            hash: record.hash.clone(),
        };
        Ok(Some(record))
    }
}

/// Parses one stored line and checks its own hash (not its link to the record before).
fn check_line(line: String) -> Result<AuditRecord, String> {
    let split = line
        .len()
        .checked_sub(HASH_SUFFIX_LEN)
        .filter(|&at| line.is_char_boundary(at))
        .ok_or("too short to hold a hash")?;
    let (open, suffix) = line.split_at(split);
    let hash = suffix
        .strip_prefix(",\"hash\":\"")
        .and_then(|s| s.strip_suffix("\"}"))
        .filter(|h| is_hex64(h))
        .ok_or("does not end in its \"hash\" key")?
        .to_string();
    let body = format!("{open}}}");
    let value: Value = serde_json::from_str(&body).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(mut fields) = value else {
        return Err("not a JSON object".into());
    };
    let seq = fields.get("seq").and_then(Value::as_u64).ok_or("no seq")?;
    let prev = take_str(&mut fields, "prev")?;
    if !is_hex64(&prev) {
        return Err("prev is not 64 hex digits".into());
    }
    let expected = record_hash(seq, &prev, body.as_bytes());
    if expected != hash {
        return Err(format!(
            "content does not match its hash (stored {hash}, computed {expected}): the record was edited"
        ));
    }
    let kind = take_str(&mut fields, "kind")?;
    let ts = take_str(&mut fields, "ts")?;
    let ts = DateTime::parse_from_rfc3339(&ts)
        .map_err(|e| format!("ts {ts:?}: {e}"))?
        .with_timezone(&Utc);
    for key in RESERVED_KEYS {
        fields.remove(key);
    }
    Ok(AuditRecord {
        seq,
        ts,
        kind,
        fields,
        prev,
        hash,
        line,
    })
}

fn take_str(fields: &mut Map<String, Value>, key: &str) -> Result<String, String> {
    match fields.remove(key) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(format!("no {key}")),
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The head a last line claims, after checking that line's own hash.
pub(super) fn parse_head(line: &str) -> Result<AuditHead, String> {
    let record = check_line(line.to_string())?;
    Ok(AuditHead {
        seq: record.seq,
        hash: record.hash,
    })
}

/// The end of a log file, found by reading backwards (the log may be large).
pub(crate) struct Tail {
    /// Current length of the file.
    pub file_len: u64,
    /// Length up to and including the last newline: everything after it is a torn write.
    pub complete_len: u64,
    /// The last complete line, without its newline.
    pub last_line: Option<String>,
}

/// Finds the last complete line of `file` without reading the whole file.
pub(crate) fn read_tail(file: &mut File) -> std::io::Result<Tail> {
    let file_len = file.metadata()?.len();
    let mut window: u64 = 64 * 1024;
    loop {
        let start = file_len.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        file.by_ref().take(file_len - start).read_to_end(&mut buf)?;
        let last_nl = buf.iter().rposition(|&b| b == b'\n');
        let Some(last_nl) = last_nl else {
            if start == 0 {
                return Ok(Tail {
                    file_len,
                    complete_len: 0,
                    last_line: None,
                });
            }
            window = window.saturating_mul(4);
            continue;
        };
        let before = buf.get(..last_nl).unwrap_or_default();
        let line_start = match before.iter().rposition(|&b| b == b'\n') {
            Some(p) => p + 1,
            None if start == 0 => 0,
            None => {
                window = window.saturating_mul(4);
                continue;
            }
        };
        let line = buf.get(line_start..last_nl).unwrap_or_default();
        return Ok(Tail {
            file_len,
            complete_len: start + last_nl as u64 + 1,
            last_line: Some(String::from_utf8_lossy(line).into_owned()),
        });
    }
}

/// What a `recording.sealed` record promises about one file.
struct Seal {
    seq: u64,
    /// Relative to the recordings root, `/`-separated.
    path: String,
    size: u64,
    sha256: String,
}

impl Seal {
    fn from_fields(seq: u64, fields: &Map<String, Value>) -> Result<Seal, VerifyError> {
        let path = fields.get("path").and_then(Value::as_str).unwrap_or("");
        let bad = |reason: &str| VerifyError::Recording {
            seq,
            path: path.to_string(),
            reason: reason.to_string(),
        };
        let size = fields
            .get("size")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("seal record has no size"))?;
        let sha256 = fields
            .get("sha256")
            .and_then(Value::as_str)
            .filter(|s| is_hex64(s))
            .ok_or_else(|| bad("seal record has no sha256"))?;
        let relative = !path.is_empty()
            && Path::new(path)
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
        if !relative {
            return Err(bad("seal record path is not a plain relative path"));
        }
        Ok(Seal {
            seq,
            path: path.to_string(),
            size,
            sha256: sha256.to_string(),
        })
    }

    fn check(&self, root: &Path) -> Result<(), VerifyError> {
        let bad = |reason: String| VerifyError::Recording {
            seq: self.seq,
            path: self.path.clone(),
            reason,
        };
        let (size, sha256) = hash_file(&root.join(&self.path)).map_err(|e| bad(e.to_string()))?;
        if size != self.size {
            return Err(bad(format!(
                "size is {size} bytes, {} were sealed",
                self.size
            )));
        }
        if sha256 != self.sha256 {
            return Err(bad(format!(
                "sha256 is {sha256}, {} was sealed: the file was changed",
                self.sha256
            )));
        }
        Ok(())
    }
}

/// Size and hex SHA-256 of a file, streamed.
pub(crate) fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}
