//! Startup repair of recordings a crash left unsealed: cut at the last complete line, mark as
//! truncated, seal as recovered. Lives apart from the writer because it runs once, before any
//! session, and reads files the writer never reads.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::event::write_event;
use super::{io_err, sync_dir, RecordError, OPEN_SUFFIX};
use crate::audit::read::read_tail;
use crate::audit::{AuditLog, RECORDING_SEALED};

/// The marker a recovered recording ends with.
pub const TRUNCATED_MARKER: &str = "truncated: gatehouse restarted";

/// Finds every recording under `root` that still has its `.open` marker (the process died
/// before sealing it), cuts it at its last complete line, appends a marker
/// `truncated: gatehouse restarted`, and seals it in `audit` with `recovered: true`. Returns the
/// repaired files. Call once at startup, before accepting sessions.
pub fn recover_unsealed(root: &Path, audit: &AuditLog) -> Result<Vec<PathBuf>, RecordError> {
    let mut repaired = Vec::new();
    let days = match std::fs::read_dir(root) {
        Ok(days) => days,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(repaired),
        Err(e) => return Err(io_err(root, e)),
    };
    let mut markers = Vec::new();
    for day in days {
        let day = day.map_err(|e| io_err(root, e))?.path();
        if !day.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&day).map_err(|e| io_err(&day, e))? {
            let path = entry.map_err(|e| io_err(&day, e))?.path();
            let is_marker = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(&format!(".cast{OPEN_SUFFIX}")));
            if is_marker {
                markers.push(path);
            }
        }
    }
    markers.sort();
    for marker in markers {
        if let Some(cast) = recover_one(root, &marker, audit)? {
            repaired.push(cast);
        }
    }
    Ok(repaired)
}

fn recover_one(
    root: &Path,
    marker: &Path,
    audit: &AuditLog,
) -> Result<Option<PathBuf>, RecordError> {
    let marker_name = marker.to_string_lossy();
    let cast = PathBuf::from(
        marker_name
            .strip_suffix(OPEN_SUFFIX)
            .unwrap_or(&marker_name)
            .to_string(),
    );
    let dir = marker.parent().unwrap_or(root);
    let cast_meta = match std::fs::metadata(&cast) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(&cast, e)),
    };
    let cast_len = cast_meta.as_ref().map(|m| m.len());
    // The marker is the file's second name; a marker that is a file of its own (as earlier
    // versions made them) holds a copy of the header.
    let marker_meta = std::fs::metadata(marker).map_err(|e| io_err(marker, e))?;
    let linked = cast_meta
        .as_ref()
        .is_some_and(|c| (c.dev(), c.ino()) == (marker_meta.dev(), marker_meta.ino()));
    let header = match linked {
        true => String::new(),
        false => std::fs::read_to_string(marker).map_err(|e| io_err(marker, e))?,
    };
    // Died between the marker and the file, or with a reservation never started (no header
    // anywhere, nothing in the file): nothing was recorded, nothing ran.
    if cast_len.is_none() || (header.trim().is_empty() && cast_len == Some(0)) {
        if cast_len.is_some() {
            std::fs::remove_file(&cast).map_err(|e| io_err(&cast, e))?;
        }
        std::fs::remove_file(marker).map_err(|e| io_err(marker, e))?;
        sync_dir(dir).map_err(|e| io_err(dir, e))?;
        return Ok(None);
    }
    let io = |e| io_err(&cast, e);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&cast)
        .map_err(io)?;
    let tail = read_tail(&mut file).map_err(io)?;
    let (file_len, complete_len) = (tail.file_len, tail.complete_len);
    file.set_len(complete_len).map_err(io)?;
    file.seek(SeekFrom::End(0)).map_err(io)?;
    let mut last_time = 0.0;
    match tail.last_line {
        // Not even the header made it: write it from an old-style marker's copy, or a bare
        // one every player reads.
        None if header.trim().is_empty() => {
            let bare = json!({"version": 2, "width": 80, "height": 24}).to_string();
            file.write_all(bare.as_bytes()).map_err(io)?;
            file.write_all(b"\n").map_err(io)?;
        }
        None => {
            file.write_all(header.trim_end().as_bytes()).map_err(io)?;
            file.write_all(b"\n").map_err(io)?;
        }
        Some(line) => {
            if let Ok(Value::Array(event)) = serde_json::from_str::<Value>(&line) {
                last_time = event.first().and_then(Value::as_f64).unwrap_or(0.0);
            }
        }
    }
    let mut line = Vec::new();
    write_event(&mut line, last_time, "m", TRUNCATED_MARKER);
    file.write_all(&line).map_err(io)?;
    file.sync_all().map_err(io)?;
    let (size, sha256, lines) = hash_and_count(&mut file).map_err(io)?;

    let relative = cast
        .strip_prefix(root)
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .unwrap_or_else(|_| cast.to_string_lossy().into_owned());
    // The session's ids come from the marker's header, or the file's own when the marker's
    // copy did not survive.
    let header = match header.trim().is_empty() {
        true => first_line(&mut file).map_err(io)?,
        false => header,
    };
    let meta: Value = serde_json::from_str(&header).unwrap_or(Value::Null);
    let gatehouse = meta.get("gatehouse").cloned().unwrap_or(Value::Null);
    audit
        .append(
            RECORDING_SEALED,
            json!({
                "path": relative,
                "size": size,
                "sha256": sha256,
                "events": lines.saturating_sub(1),
                "exit_status": null,
                "recovered": true,
                "truncated_bytes": file_len.saturating_sub(complete_len),
                "session_id": gatehouse.get("session_id"),
                "channel": gatehouse.get("channel"),
            }),
        )
        .map_err(|source| RecordError::Audit {
            path: cast.display().to_string(),
            source,
        })?;
    std::fs::remove_file(marker).map_err(|e| io_err(marker, e))?;
    sync_dir(dir).map_err(|e| io_err(dir, e))?;
    tracing::warn!(path = %cast.display(), "sealed a recording left open by a crash (marked truncated)");
    Ok(Some(cast))
}

/// The file's first line (its header), at most 64 KiB of it.
fn first_line(file: &mut File) -> std::io::Result<String> {
    file.seek(SeekFrom::Start(0))?;
    let mut head = Vec::new();
    Read::by_ref(file).take(64 * 1024).read_to_end(&mut head)?;
    let end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    Ok(String::from_utf8_lossy(head.get(..end).unwrap_or_default()).into_owned())
}

/// Size, hex SHA-256 and newline count of the whole file.
fn hash_and_count(file: &mut File) -> std::io::Result<(u64, String, u64)> {
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let (mut size, mut lines) = (0u64, 0u64);
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        hasher.update(chunk);
        lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize()), lines))
}
