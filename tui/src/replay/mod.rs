//! The replay view: plays an asciicast v2 recording in a terminal, driven by time
//! ([`ReplayApp::tick`]), keys ([`ReplayApp::handle_input`]) and frames ([`ReplayApp::render`]).
//!
//! Keys: space play/pause; `+`/`-` speed (0.25×–16×); ←/→ seek 5 s; ↑/↓ and PgUp/PgDn seek
//! 30 s; Home/End; `n`/`p` next/previous marker (pauses there); `m` marker list; `/` search in
//! the output, `N` next match; `?` help; `q`/Esc close.
//!
//! The same view runs inside the console (the console forwards keys and ticks) and on a local
//! terminal (`gatehouse replay FILE.cast`). This module reads files but writes nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;

use crate::frame::FrameWriter;
use crate::keys::{Key, KeyParser};
use crate::model::Action;

pub mod cast;
mod player;
mod view;

pub use cast::{
    summarize, summarize_limited, Cast, CastEvent, CastHeader, EventKind, GatehouseInfo,
    ReplayError,
};
pub use player::{Marker, IDLE_LIMIT_SECS};

use player::Player;

/// Playback speeds, slowest to fastest; `+`/`-` step through them.
pub const SPEEDS: [f64; 7] = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0];
/// Index of 1× in [`SPEEDS`].
const NORMAL_SPEED: usize = 2;
/// Short seek (←/→).
pub const SEEK_SHORT_SECS: f64 = 5.0;
/// Long seek (↑/↓, PgUp/PgDn).
pub const SEEK_LONG_SECS: f64 = 30.0;
/// Longest search text; the prompt stops taking characters there.
const MAX_QUERY: usize = 200;

/// A recording being replayed.
pub struct ReplayApp {
    /// Header facts and flags for the title bar.
    pub(crate) cast: Cast,
    /// Timeline, terminal and position.
    pub(crate) player: Player,
    /// Whether the position follows the clock.
    pub(crate) playing: bool,
    /// Index into [`SPEEDS`].
    pub(crate) speed: usize,
    /// The last tick's time: playing advances by the time since, times the speed.
    last_tick: Option<Instant>,
    /// Whether the marker list pane is shown.
    pub(crate) show_markers: bool,
    /// Whether the help overlay is shown.
    pub(crate) show_help: bool,
    /// The search text being typed, while the prompt is open.
    pub(crate) prompt: Option<String>,
    /// The last search, for `N`.
    pub(crate) query: Option<String>,
    /// One line for the status bar ("no more matches", "marker 3/7").
    pub(crate) message: Option<String>,
    /// Screen size when standalone (the console passes its own area to [`ReplayApp::draw`]).
    size: (u16, u16),
    /// Bytes to keys.
    keys: KeyParser,
    /// Frame diffing for [`ReplayApp::render`].
    frames: FrameWriter,
}

impl ReplayApp {
    /// Opens a recording file; it starts playing at the next [`ReplayApp::tick`].
    pub fn open(path: &Path) -> Result<ReplayApp, ReplayError> {
        Cast::open(path).map(ReplayApp::from_cast)
    }

    /// Replays an already parsed recording.
    pub fn from_cast(cast: Cast) -> ReplayApp {
        let player = Player::new(&cast);
        let mut app = ReplayApp {
            cast,
            player,
            playing: true,
            speed: NORMAL_SPEED,
            last_tick: None,
            show_markers: false,
            show_help: false,
            prompt: None,
            query: None,
            message: None,
            size: (80, 24),
            keys: KeyParser::new(),
            frames: FrameWriter::new(),
        };
        app.player.seek(0.0);
        app
    }

    /// Advances playback to `now`. Call it about 30 times a second while [`Self::is_playing`].
    pub fn tick(&mut self, now: Instant) {
        let last = self.last_tick.replace(now);
        if !self.playing {
            return;
        }
        let Some(last) = last else { return };
        let dt = now.saturating_duration_since(last).as_secs_f64() * self.speed_factor();
        self.player.seek(self.player.pos + dt);
        if self.player.at_end() {
            self.playing = false;
        }
    }

    /// Handles raw bytes from the terminal; returns [`Action::Quit`] when the viewer closes
    /// the replay.
    pub fn handle_input(&mut self, bytes: &[u8]) -> Vec<Action> {
        let mut actions = Vec::new();
        for key in self.keys.feed(bytes) {
            if let Some(action) = self.key(key) {
                actions.push(action);
            }
        }
        actions
    }

    /// Handles one key (the console forwards decoded keys here).
    pub fn key(&mut self, key: Key) -> Option<Action> {
        if key == Key::CtrlC {
            return Some(Action::Quit);
        }
        if let Some(text) = &mut self.prompt {
            match key {
                Key::Enter => {
                    let query = std::mem::take(text);
                    self.prompt = None;
                    if !query.is_empty() {
                        self.query = Some(query);
                        self.search_next();
                    }
                }
                Key::Esc => self.prompt = None,
                Key::Backspace => {
                    text.pop();
                }
                Key::Char(c) if text.chars().count() < MAX_QUERY => text.push(c),
                _ => {}
            }
            return None;
        }
        if self.show_help {
            self.show_help = false;
            if matches!(key, Key::Char('?') | Key::Esc | Key::Char('q')) {
                return None;
            }
        }
        self.message = None;
        match key {
            Key::Char('q') | Key::Esc => return Some(Action::Quit),
            Key::Char(' ') => self.toggle_play(),
            Key::Char('+') | Key::Char('=') => self.set_speed_index(self.speed + 1),
            Key::Char('-') | Key::Char('_') => self.set_speed_index(self.speed.saturating_sub(1)),
            Key::Right => self.seek_by(SEEK_SHORT_SECS),
            Key::Left => self.seek_by(-SEEK_SHORT_SECS),
            Key::Down | Key::PageDown => self.seek_by(SEEK_LONG_SECS),
            Key::Up | Key::PageUp => self.seek_by(-SEEK_LONG_SECS),
            Key::Home => self.seek(0.0),
            Key::End => self.seek(self.player.duration),
            Key::Char('n') => self.jump_marker(true),
            Key::Char('p') => self.jump_marker(false),
            Key::Char('m') => self.show_markers = !self.show_markers,
            Key::Char('/') => self.prompt = Some(String::new()),
            Key::Char('N') => self.search_next(),
            Key::Char('?') => self.show_help = true,
            Key::Ctrl('l') => self.frames.invalidate(),
            _ => {}
        }
        None
    }

    /// Sets the standalone screen size (columns, rows).
    pub fn resize(&mut self, cols: u16, rows: u16) {
        self.size = (cols.max(1), rows.max(1));
        self.frames.invalidate();
    }

    /// The bytes that bring the terminal to the current frame (empty when nothing changed).
    pub fn render(&mut self) -> Vec<u8> {
        let (cols, rows) = self.size;
        let mut frames = std::mem::take(&mut self.frames);
        let out = frames.frame(cols, rows, |area, buf| self.draw(area, buf));
        self.frames = frames;
        out
    }

    /// Draws the view into part of a buffer (the console's whole screen, or a standalone frame).
    pub fn draw(&self, area: Rect, buf: &mut Buffer) {
        view::draw(self, area, buf);
    }

    /// Whether playback is running (the caller keeps ticking while it is).
    pub fn is_playing(&self) -> bool {
        self.playing
    }

    /// Starts or pauses playback; at the end, play starts over.
    pub fn toggle_play(&mut self) {
        if !self.playing && self.player.at_end() {
            self.player.seek(0.0);
        }
        self.playing = !self.playing;
    }

    /// The playback speed factor (0.25–16).
    pub fn speed_factor(&self) -> f64 {
        SPEEDS.get(self.speed).copied().unwrap_or(1.0)
    }

    /// Sets the speed to `SPEEDS[index]`, clamped to the table.
    pub fn set_speed_index(&mut self, index: usize) {
        self.speed = index.min(SPEEDS.len() - 1);
    }

    /// The position on the (idle-compressed) timeline.
    pub fn position(&self) -> Duration {
        Duration::from_secs_f64(self.player.pos.max(0.0))
    }

    /// The length of the (idle-compressed) timeline.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.player.duration.max(0.0))
    }

    /// Moves to `secs` on the timeline (clamped).
    pub fn seek(&mut self, secs: f64) {
        self.player.seek(secs);
    }

    fn seek_by(&mut self, delta: f64) {
        self.player.seek(self.player.pos + delta);
    }

    /// Jumps to the next (or previous) marker and pauses there.
    pub fn jump_marker(&mut self, forward: bool) {
        let found = if forward {
            self.player.next_marker()
        } else {
            self.player.prev_marker()
        };
        self.playing = false;
        self.message = Some(match found {
            Some(i) => format!("marker {}/{}", i + 1, self.player.markers.len()),
            None if forward => "no later marker".to_string(),
            None => "no earlier marker".to_string(),
        });
    }

    /// Searches for the last query after the position and pauses at the match.
    pub fn search_next(&mut self) {
        let Some(query) = self.query.clone() else {
            self.message = Some("no search yet: press / to search".to_string());
            return;
        };
        if self.player.search_forward(&query) {
            self.playing = false;
            self.message = Some(format!("found \"{query}\" (N: next)"));
        } else {
            self.message = Some(format!("no more matches for \"{query}\""));
        }
    }

    /// Every marker on the timeline.
    pub fn markers(&self) -> &[Marker] {
        &self.player.markers
    }

    /// The last marker at or before the position.
    pub fn current_marker(&self) -> Option<&Marker> {
        self.player
            .current_marker()
            .and_then(|i| self.player.markers.get(i))
    }

    /// The recorded terminal's text at the position (rows joined by `\n`).
    pub fn screen_text(&self) -> String {
        self.player.screen().contents()
    }

    /// The recording stops before the session did (cut last line or recovered after a crash).
    pub fn is_truncated(&self) -> bool {
        self.cast.truncated
    }

    /// The exit status from the recording's `x` event.
    pub fn exit_status(&self) -> Option<i32> {
        self.cast.exit_status()
    }

    /// The parsed recording.
    pub fn cast(&self) -> &Cast {
        &self.cast
    }
}

#[cfg(test)]
mod tests;
