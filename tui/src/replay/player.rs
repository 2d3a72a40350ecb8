//! The replay engine: a recording's events on an idle-compressed timeline, a vt100 terminal
//! fed up to the current position, and seeking (forward by feeding more; backward by feeding
//! again from the start — vt100's parser cannot be snapshotted).
//!
//! No input handling or drawing here; `ReplayApp` and `view` do that.

use super::cast::{Cast, EventKind};

/// Gaps between events longer than this are shortened to it, unless the recording's header
/// sets its own `idle_time_limit`: an agent waiting ten minutes for approval replays in two
/// seconds.
pub const IDLE_LIMIT_SECS: f64 = 2.0;

/// Terminal sizes from a header or resize event are clamped to this, so a corrupt file cannot
/// make the emulator allocate gigabytes.
const MAX_DIM: u16 = 1000;

/// One step of the timeline.
#[derive(Debug, Clone)]
enum Step {
    /// Bytes for the terminal (already `\r\n`-converted for PTY-less sessions).
    Output(String),
    /// Resize the terminal to cols × rows.
    Resize(u16, u16),
    /// A marker, by index into `Player::markers`.
    Marker,
}

/// A marker on the compressed timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    /// Seconds from the start on the replay's (idle-compressed) timeline.
    pub time: f64,
    /// The label (`cmd: ls -la`, `allow rule R`, ...).
    pub label: String,
}

/// The replay state.
pub struct Player {
    /// Steps in order with their compressed times.
    steps: Vec<(f64, Step)>,
    /// Every marker, in time order (also steps, so they can be found by position).
    pub markers: Vec<Marker>,
    /// The end of the timeline.
    pub duration: f64,
    /// Current position on the timeline.
    pub pos: f64,
    /// Index of the first step not yet fed to the terminal.
    next: usize,
    /// The emulated terminal, showing the recording as of `applied_until`.
    term: vt100::Parser,
    /// Size at the start, for resetting on a backward seek.
    initial_size: (u16, u16),
    /// Output with escape sequences removed and ASCII lowercased, for search.
    plain: String,
    /// Where each output step's text starts in `plain`, with the step's time.
    plain_index: Vec<(usize, f64)>,
}

impl Player {
    pub fn new(cast: &Cast) -> Player {
        let limit = cast.header.idle_time_limit.unwrap_or(IDLE_LIMIT_SECS);
        let crlf = cast.needs_crlf();
        let mut steps = Vec::with_capacity(cast.events.len());
        let mut markers = Vec::new();
        let mut plain = String::new();
        let mut plain_index = Vec::new();
        let (mut last_raw, mut t) = (0.0_f64, 0.0_f64);
        let mut prev_cr = false;
        for event in &cast.events {
            // Times only go forward; a gap longer than the limit is cut to it.
            let gap = (event.time - last_raw).max(0.0);
            last_raw = last_raw.max(event.time);
            t += gap.min(limit);
            let step = match &event.kind {
                EventKind::Output(text) => {
                    plain_index.push((plain.len(), t));
                    strip_escapes(text, &mut plain);
                    Step::Output(if crlf {
                        to_crlf(text, &mut prev_cr)
                    } else {
                        text.clone()
                    })
                }
                EventKind::Resize(c, r) => Step::Resize(*c, *r),
                EventKind::Marker(label) => {
                    markers.push(Marker {
                        time: t,
                        label: label.clone(),
                    });
                    Step::Marker
                }
                EventKind::Input(_) | EventKind::Exit(_) => continue,
            };
            steps.push((t, step));
        }
        let initial_size = (
            cast.header.width.clamp(1, MAX_DIM),
            cast.header.height.clamp(1, MAX_DIM),
        );
        Player {
            steps,
            markers,
            duration: t,
            pos: 0.0,
            next: 0,
            term: vt100::Parser::new(initial_size.1, initial_size.0, 0),
            initial_size,
            plain,
            plain_index,
        }
    }

    /// The emulated screen at the current position.
    pub fn screen(&self) -> &vt100::Screen {
        self.term.screen()
    }

    /// Moves to `t` seconds (clamped to the recording) and brings the screen there.
    pub fn seek(&mut self, t: f64) {
        let t = if t.is_finite() {
            t.clamp(0.0, self.duration)
        } else {
            0.0
        };
        let applied_past_t = self
            .next
            .checked_sub(1)
            .and_then(|i| self.steps.get(i))
            .is_some_and(|(st, _)| *st > t);
        if applied_past_t {
            let (cols, rows) = self.initial_size;
            self.term = vt100::Parser::new(rows, cols, 0);
            self.next = 0;
        }
        while let Some((st, step)) = self.steps.get(self.next) {
            if *st > t {
                break;
            }
            match step {
                Step::Output(text) => self.term.process(text.as_bytes()),
                Step::Resize(cols, rows) => self
                    .term
                    .screen_mut()
                    .set_size((*rows).clamp(1, MAX_DIM), (*cols).clamp(1, MAX_DIM)),
                Step::Marker => {}
            }
            self.next += 1;
        }
        self.pos = t;
    }

    /// Index of the last marker at or before the position.
    pub fn current_marker(&self) -> Option<usize> {
        self.markers
            .iter()
            .rposition(|m| m.time <= self.pos + TIME_EPSILON)
    }

    /// Jumps to the first marker after the position; returns its index.
    pub fn next_marker(&mut self) -> Option<usize> {
        let i = self
            .markers
            .iter()
            .position(|m| m.time > self.pos + TIME_EPSILON)?;
        let time = self.markers.get(i)?.time;
        self.seek(time);
        Some(i)
    }

    /// Jumps to the last marker before the position; returns its index.
    pub fn prev_marker(&mut self) -> Option<usize> {
        let i = self
            .markers
            .iter()
            .rposition(|m| m.time < self.pos - TIME_EPSILON)?;
        let time = self.markers.get(i)?.time;
        self.seek(time);
        Some(i)
    }

    /// Finds `query` (case-insensitive for ASCII) in the output after the position and jumps to
    /// the output event where the match ends; returns whether it found one.
    pub fn search_forward(&mut self, query: &str) -> bool {
        let query = query.to_ascii_lowercase();
        if query.is_empty() {
            return false;
        }
        // Output already on screen is before the position: search what follows it.
        let from = self
            .plain_index
            .iter()
            .find(|(_, t)| *t > self.pos + TIME_EPSILON)
            .map_or(self.plain.len(), |(offset, _)| *offset);
        let Some(found) = self.plain.get(from..).and_then(|rest| rest.find(&query)) else {
            return false;
        };
        let end = from + found + query.len().saturating_sub(1);
        let time = self
            .plain_index
            .iter()
            .take_while(|(offset, _)| *offset <= end)
            .last()
            .map(|(_, t)| *t);
        match time {
            Some(t) => {
                self.seek(t);
                true
            }
            None => false,
        }
    }

    /// Whether the position is at the end.
    pub fn at_end(&self) -> bool {
        self.pos >= self.duration
    }
}

/// Times closer than this are the same instant (float rounding in seeks and markers).
const TIME_EPSILON: f64 = 1e-6;

/// Turns bare `\n` into `\r\n`; `prev_cr` carries a `\r` that ended the previous event.
fn to_crlf(text: &str, prev_cr: &mut bool) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    for c in text.chars() {
        if c == '\n' && !*prev_cr {
            out.push('\r');
        }
        out.push(c);
        *prev_cr = c == '\r';
    }
    out
}

/// Appends `text` to `out` without escape sequences or control characters (newlines kept),
/// ASCII-lowercased: what search looks through.
fn strip_escapes(text: &str, out: &mut String) {
    #[derive(PartialEq)]
    enum State {
        Text,
        Esc,
        Csi,
        Osc,
        OscEsc,
    }
    let mut state = State::Text;
    for c in text.chars() {
        state = match state {
            State::Text => match c {
                '\x1b' => State::Esc,
                '\n' => {
                    out.push('\n');
                    State::Text
                }
                c if c.is_control() => State::Text,
                c => {
                    out.push(c.to_ascii_lowercase());
                    State::Text
                }
            },
            State::Esc => match c {
                '[' => State::Csi,
                ']' | 'P' | '_' | '^' => State::Osc,
                _ => State::Text,
            },
            State::Csi => {
                if ('\x40'..='\x7e').contains(&c) {
                    State::Text
                } else {
                    State::Csi
                }
            }
            State::Osc => match c {
                '\x07' => State::Text,
                '\x1b' => State::OscEsc,
                _ => State::Osc,
            },
            State::OscEsc => State::Text,
        };
    }
}
