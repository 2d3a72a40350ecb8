//! Event lines: turns what happened on a channel (output and input bytes, markers, resizes) into
//! asciicast v2 event lines appended to a buffer. CPU only: it owns the clock offsets and the
//! UTF-8 carries, and knows nothing of files, hashing or sealing ([`super::Recorder`] does).
//! Public so that `benches/record.rs` can measure the encoding alone.

use std::io::Write;
use std::time::{Duration, Instant};

use super::json::{write_json_str, write_text};
use super::utf8::Utf8Carry;

/// Encodes one recording's events, in order, as `[time, "code", "data"]\n` lines.
#[derive(Debug)]
pub struct EventEncoder {
    /// Event times are offsets from this (monotonic: a clock step cannot reorder events).
    start: Instant,
    /// Offset of the latest event: events stamped out of order (by tasks that queued them
    /// concurrently) are clamped to it, so times in the file never go backwards.
    last_offset: Duration,
    /// Trailing bytes of an output sequence that continues in the next read.
    out_carry: Utf8Carry,
    /// The same for input; input and output are separate byte streams.
    in_carry: Utf8Carry,
    /// Event lines so far: the seal counts them.
    events: u64,
}

impl EventEncoder {
    /// An encoder whose event times count from `start`.
    pub fn new(start: Instant) -> EventEncoder {
        EventEncoder {
            start,
            last_offset: Duration::ZERO,
            out_carry: Utf8Carry::default(),
            in_carry: Utf8Carry::default(),
            events: 0,
        }
    }

    /// Event lines appended so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Appends output seen at `at` as an `o` event (nothing when `bytes` only start a UTF-8
    /// sequence that the next read completes).
    pub fn output(&mut self, buf: &mut Vec<u8>, bytes: &[u8], at: Instant) {
        self.text_event(buf, "o", bytes, at);
    }

    /// Appends input seen at `at` as an `i` event, likewise.
    pub fn input(&mut self, buf: &mut Vec<u8>, bytes: &[u8], at: Instant) {
        self.text_event(buf, "i", bytes, at);
    }

    /// An `o` or `i` event, each stream carrying its own partial UTF-8 sequence.
    fn text_event(&mut self, buf: &mut Vec<u8>, code: &str, bytes: &[u8], at: Instant) {
        let offset = self.offset(at);
        let line = buf.len();
        write_head(buf, offset, code);
        let text = buf.len();
        let carry = match code {
            "i" => &mut self.in_carry,
            _ => &mut self.out_carry,
        };
        write_text(buf, carry, bytes);
        self.end_text_event(buf, line, text, offset);
    }

    /// The streams ended: a sequence still carried can never complete and is written as
    /// U+FFFD (output first, then input).
    pub fn finish(&mut self, buf: &mut Vec<u8>, at: Instant) {
        if self.out_carry.finish() {
            self.event(buf, "o", "\u{fffd}", at);
        }
        if self.in_carry.finish() {
            self.event(buf, "i", "\u{fffd}", at);
        }
    }

    /// Appends any event (`m`, `r`, `x`, ...) with `data` as its text.
    pub fn event(&mut self, buf: &mut Vec<u8>, code: &str, data: &str, at: Instant) {
        let offset = self.offset(at);
        self.last_offset = offset;
        write_event(buf, offset.as_secs_f64(), code, data);
        self.events += 1;
    }

    /// The offset of an event seen at `at`, never before the previous event's.
    fn offset(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.start)
            .max(self.last_offset)
    }

    /// Closes the text event begun at `line` whose text starts at `text`, or takes it back
    /// when the text came out empty (a read that only began a UTF-8 sequence): no empty
    /// events, and its time does not count.
    fn end_text_event(&mut self, buf: &mut Vec<u8>, line: usize, text: usize, offset: Duration) {
        if buf.len() == text {
            buf.truncate(line);
            return;
        }
        buf.extend_from_slice(b"\"]\n");
        self.last_offset = offset;
        self.events += 1;
    }
}

/// Appends the start of an event line up to its text's opening quote: `[time, "code", "`.
fn write_head(buf: &mut Vec<u8>, offset: Duration, code: &str) {
    // Writing into a Vec cannot fail.
    let _ = write!(buf, "[{:.6}, ", offset.as_secs_f64());
    write_json_str(buf, code);
    buf.extend_from_slice(b", \"");
}

/// Appends one event line, `[time, "code", "data"]\n` with the time to 6 decimals.
pub(super) fn write_event(buf: &mut Vec<u8>, t: f64, code: &str, data: &str) {
    // Writing into a Vec cannot fail.
    let _ = write!(buf, "[{t:.6}, ");
    write_json_str(buf, code);
    buf.extend_from_slice(b", ");
    write_json_str(buf, data);
    buf.extend_from_slice(b"]\n");
}
