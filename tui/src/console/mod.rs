//! The reviewer console: pending approvals (list, detail, approve/deny with a comment), live
//! sessions, recent recordings with filters, help, and the replay view for a recording.
//!
//! The server owns the data and the decisions: it calls [`ConsoleApp::set_pending`] (and the
//! other setters) whenever its state changes, feeds the reviewer's raw bytes to
//! [`ConsoleApp::handle_input`], carries out the returned [`Action`]s, reports the outcome with
//! [`ConsoleApp::notice`], and writes [`ConsoleApp::render`]'s bytes back. Rendering is a diff
//! against the last frame, so calling it after every change (or every second) is cheap.

use std::time::Instant;

use crate::frame::FrameWriter;
use crate::keys::{Key, KeyParser};
use crate::model::{Action, LiveSession, PendingItem, RecordingItem};
use crate::replay::ReplayApp;

mod filter;
mod view;

pub use filter::RecordingFilter;

/// Longest comment or filter text the prompts accept.
const MAX_PROMPT: usize = 500;

/// The screens reachable from the tab bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Pending,
    Sessions,
    Recordings,
}

impl Tab {
    const ALL: [Tab; 3] = [Tab::Pending, Tab::Sessions, Tab::Recordings];

    fn index(self) -> usize {
        match self {
            Tab::Pending => 0,
            Tab::Sessions => 1,
            Tab::Recordings => 2,
        }
    }
}

/// What is drawn over (or instead of) the current tab's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The tab's list.
    List,
    /// One pending request in full.
    Detail { id: String },
    /// Typing the comment of an approval (or denial) of `id`.
    Comment {
        approve: bool,
        id: String,
        text: String,
        /// Where to go back to on Esc: the detail view or the list.
        from_detail: bool,
    },
    /// Typing the sessions/recordings filter.
    Filter { text: String },
    /// The key list.
    Help,
}

/// The console for one reviewer's terminal.
pub struct ConsoleApp {
    /// Terminal columns and rows.
    pub(crate) size: (u16, u16),
    /// Which list is shown.
    pub(crate) tab: Tab,
    /// What is shown on top of it.
    pub(crate) mode: Mode,
    /// Held requests, oldest first as the server gives them.
    pub(crate) pending: Vec<PendingItem>,
    /// When `pending` was set: ages shown are `age_secs` plus the time since.
    pending_at: Option<Instant>,
    pub(crate) sessions: Vec<LiveSession>,
    sessions_at: Option<Instant>,
    pub(crate) recordings: Vec<RecordingItem>,
    /// The selected row of each tab, by tab index.
    pub(crate) selected: [usize; 3],
    /// The selected request's id, so the selection stays on it when the queue changes.
    selected_id: Option<String>,
    /// The sessions/recordings filter in force.
    pub(crate) filter: RecordingFilter,
    /// The last outcome the server reported ("approved ABCD1234"), until the next key.
    pub(crate) notice: Option<String>,
    /// Who is reviewing, for the title bar.
    pub(crate) reviewer: Option<String>,
    /// The replay view, while a recording is open; it takes the whole screen and the keys.
    replay: Option<ReplayApp>,
    /// The latest tick; ages are computed against it (and not the wall clock) so frames only
    /// change when the server ticks.
    now: Option<Instant>,
    keys: KeyParser,
    frames: FrameWriter,
}

impl ConsoleApp {
    /// A console for a terminal of `(columns, rows)`.
    pub fn new(size: (u16, u16)) -> ConsoleApp {
        ConsoleApp {
            size: (size.0.max(1), size.1.max(1)),
            tab: Tab::Pending,
            mode: Mode::List,
            pending: Vec::new(),
            pending_at: None,
            sessions: Vec::new(),
            sessions_at: None,
            recordings: Vec::new(),
            selected: [0; 3],
            selected_id: None,
            filter: RecordingFilter::default(),
            notice: None,
            reviewer: None,
            replay: None,
            now: None,
            keys: KeyParser::new(),
            frames: FrameWriter::new(),
        }
    }

    /// Names the reviewer in the title bar.
    pub fn set_reviewer(&mut self, name: impl Into<String>) {
        self.reviewer = Some(name.into());
    }

    /// Replaces the pending queue. The selection stays on the same request if it is still
    /// there; a detail view of a request that is gone closes with a notice.
    pub fn set_pending(&mut self, items: Vec<PendingItem>) {
        self.pending = items;
        self.pending_at = self.now.or_else(|| Some(Instant::now()));
        let index = self
            .selected_id
            .as_ref()
            .and_then(|id| self.pending.iter().position(|p| &p.id == id));
        self.selected[0] = index.unwrap_or(self.selected[0]);
        self.clamp_selection();
        if let Mode::Detail { id } | Mode::Comment { id, .. } = &self.mode {
            if !self.pending.iter().any(|p| &p.id == id) {
                self.notice = Some(format!("{id} is no longer pending"));
                self.mode = Mode::List;
            }
        }
        self.remember_selected();
    }

    /// Replaces the live sessions list.
    pub fn set_sessions(&mut self, sessions: Vec<LiveSession>) {
        self.sessions = sessions;
        self.sessions_at = self.now.or_else(|| Some(Instant::now()));
        self.clamp_selection();
    }

    /// Replaces the recordings list (newest first reads best).
    pub fn set_recordings(&mut self, recordings: Vec<RecordingItem>) {
        self.recordings = recordings;
        self.clamp_selection();
    }

    /// Shows one line of outcome in the status bar ("approved ABCD1234", an error).
    pub fn notice(&mut self, msg: impl Into<String>) {
        self.notice = Some(msg.into());
    }

    /// The terminal was resized.
    pub fn resize(&mut self, cols: u16, rows: u16) {
        self.size = (cols.max(1), rows.max(1));
        self.frames.invalidate();
    }

    /// Opens the replay view (after [`Action::OpenRecording`]); `q` in it comes back here.
    pub fn show_replay(&mut self, replay: ReplayApp) {
        self.replay = Some(replay);
    }

    /// Whether the replay view is open.
    pub fn replay_open(&self) -> bool {
        self.replay.is_some()
    }

    /// Whether the caller should tick (and render) about 30 times a second: a replay is playing.
    /// Otherwise one tick a second keeps the ages current.
    pub fn wants_fast_ticks(&self) -> bool {
        self.replay.as_ref().is_some_and(ReplayApp::is_playing)
    }

    /// Advances time: ages, and the replay when one is playing.
    pub fn tick(&mut self, now: Instant) {
        self.now = Some(now);
        if let Some(replay) = &mut self.replay {
            replay.tick(now);
        }
    }

    /// Forces the next [`Self::render`] to redraw the whole screen.
    pub fn redraw(&mut self) {
        self.frames.invalidate();
    }

    /// The bytes that bring the reviewer's terminal to the current frame (empty when nothing
    /// changed). Write [`crate::enter_screen`] once before the first frame.
    pub fn render(&mut self) -> Vec<u8> {
        let (cols, rows) = self.size;
        let mut frames = std::mem::take(&mut self.frames);
        let out = frames.frame(cols, rows, |area, buf| match &self.replay {
            Some(replay) => replay.draw(area, buf),
            None => view::draw(self, area, buf),
        });
        self.frames = frames;
        out
    }

    /// The screen as text (rows joined by `\n`): for tests and logs.
    pub fn screen_text(&self) -> String {
        let (cols, rows) = self.size;
        let area = ratatui::layout::Rect::new(0, 0, cols, rows);
        let mut buf = ratatui::buffer::Buffer::empty(area);
        match &self.replay {
            Some(replay) => replay.draw(area, &mut buf),
            None => view::draw(self, area, &mut buf),
        }
        crate::frame::buffer_text(&buf)
    }

    /// Handles raw bytes from the reviewer's terminal.
    pub fn handle_input(&mut self, bytes: &[u8]) -> Vec<Action> {
        let mut actions = Vec::new();
        for key in self.keys.feed(bytes) {
            if let Some(action) = self.key(key) {
                let quit = action == Action::Quit;
                actions.push(action);
                if quit {
                    break;
                }
            }
        }
        actions
    }

    /// Handles one key.
    pub fn key(&mut self, key: Key) -> Option<Action> {
        if let Some(replay) = &mut self.replay {
            // Ctrl-C quits the console from anywhere; `q` and Esc only close the replay.
            if key == Key::CtrlC {
                return Some(Action::Quit);
            }
            if replay.key(key) == Some(Action::Quit) {
                self.replay = None;
                self.frames.invalidate();
            }
            return None;
        }
        if key == Key::CtrlC {
            return Some(Action::Quit);
        }
        if key == Key::Ctrl('l') {
            self.frames.invalidate();
            return None;
        }
        self.notice = None;
        match std::mem::replace(&mut self.mode, Mode::List) {
            Mode::List => self.list_key(key),
            Mode::Detail { id } => self.detail_key(key, id),
            Mode::Comment {
                approve,
                id,
                text,
                from_detail,
            } => self.comment_key(key, approve, id, text, from_detail),
            Mode::Filter { text } => {
                self.filter_key(key, text);
                None
            }
            Mode::Help => None,
        }
    }

    fn list_key(&mut self, key: Key) -> Option<Action> {
        match key {
            Key::Char('q') => return Some(Action::Quit),
            Key::Char('?') => self.mode = Mode::Help,
            Key::Char('r') => return Some(Action::Refresh),
            Key::Tab | Key::Right => self.switch_tab(1),
            Key::BackTab | Key::Left => self.switch_tab(Tab::ALL.len() - 1),
            Key::Char('1') => self.tab = Tab::Pending,
            Key::Char('2') => self.tab = Tab::Sessions,
            Key::Char('3') => self.tab = Tab::Recordings,
            Key::Up | Key::Char('k') => self.move_selection(-1),
            Key::Down | Key::Char('j') => self.move_selection(1),
            Key::PageUp => self.move_selection(-10),
            Key::PageDown => self.move_selection(10),
            Key::Home | Key::Char('g') => self.move_selection(isize::MIN / 2),
            Key::End | Key::Char('G') => self.move_selection(isize::MAX / 2),
            _ => return self.tab_key(key),
        }
        None
    }

    /// Keys that mean something on one tab only.
    fn tab_key(&mut self, key: Key) -> Option<Action> {
        match (self.tab, key) {
            (Tab::Pending, Key::Enter) => {
                if let Some(item) = self.selected_pending() {
                    self.mode = Mode::Detail {
                        id: item.id.clone(),
                    };
                }
            }
            (Tab::Pending, Key::Char(c @ ('a' | 'd'))) => {
                if let Some(item) = self.selected_pending() {
                    self.mode = Mode::Comment {
                        approve: c == 'a',
                        id: item.id.clone(),
                        text: String::new(),
                        from_detail: false,
                    };
                }
            }
            (Tab::Recordings, Key::Enter) => {
                let visible = self.visible_recordings();
                let index = self.selection(Tab::Recordings);
                if let Some(item) = visible.get(index) {
                    return Some(Action::OpenRecording(item.path.clone()));
                }
            }
            (Tab::Sessions | Tab::Recordings, Key::Char('f' | '/')) => {
                self.mode = Mode::Filter {
                    text: self.filter.text().to_string(),
                };
            }
            (Tab::Sessions | Tab::Recordings, Key::Char('c') | Key::Esc) => {
                self.filter = RecordingFilter::default();
                self.clamp_selection();
            }
            _ => {}
        }
        None
    }

    fn detail_key(&mut self, key: Key, id: String) -> Option<Action> {
        match key {
            Key::Char(c @ ('a' | 'd')) => {
                self.mode = Mode::Comment {
                    approve: c == 'a',
                    id,
                    text: String::new(),
                    from_detail: true,
                };
            }
            Key::Esc | Key::Char('q') | Key::Backspace | Key::Left => {}
            Key::Char('?') => self.mode = Mode::Help,
            _ => self.mode = Mode::Detail { id },
        }
        None
    }

    fn comment_key(
        &mut self,
        key: Key,
        approve: bool,
        id: String,
        mut text: String,
        from_detail: bool,
    ) -> Option<Action> {
        match key {
            Key::Enter => {
                let comment = Some(text.trim().to_string()).filter(|c| !c.is_empty());
                self.notice = Some(format!(
                    "{} {id}…",
                    if approve { "approving" } else { "denying" }
                ));
                return Some(if approve {
                    Action::Approve { id, comment }
                } else {
                    Action::Deny { id, comment }
                });
            }
            Key::Esc => {
                if from_detail {
                    self.mode = Mode::Detail { id };
                }
                return None;
            }
            Key::Backspace => {
                text.pop();
            }
            Key::Char(c) if text.chars().count() < MAX_PROMPT => text.push(c),
            _ => {}
        }
        self.mode = Mode::Comment {
            approve,
            id,
            text,
            from_detail,
        };
        None
    }

    fn filter_key(&mut self, key: Key, mut text: String) {
        match key {
            Key::Enter => return,
            Key::Esc => {
                self.filter = RecordingFilter::default();
                self.clamp_selection();
                return;
            }
            Key::Backspace => {
                text.pop();
            }
            Key::Char(c) if text.chars().count() < MAX_PROMPT => text.push(c),
            _ => {}
        }
        // Filters as the reviewer types.
        self.filter = RecordingFilter::parse(&text);
        self.clamp_selection();
        self.mode = Mode::Filter { text };
    }

    fn switch_tab(&mut self, step: usize) {
        let next = (self.tab.index() + step) % Tab::ALL.len();
        self.tab = Tab::ALL.get(next).copied().unwrap_or(Tab::Pending);
    }

    fn list_len(&self, tab: Tab) -> usize {
        match tab {
            Tab::Pending => self.pending.len(),
            Tab::Sessions => self.visible_sessions().len(),
            Tab::Recordings => self.visible_recordings().len(),
        }
    }

    fn move_selection(&mut self, delta: isize) {
        let len = self.list_len(self.tab);
        if let Some(sel) = self.selected.get_mut(self.tab.index()) {
            let moved = sel.saturating_add_signed(delta);
            *sel = moved.min(len.saturating_sub(1));
        }
        self.remember_selected();
    }

    fn clamp_selection(&mut self) {
        for tab in Tab::ALL {
            let len = self.list_len(tab);
            if let Some(sel) = self.selected.get_mut(tab.index()) {
                *sel = (*sel).min(len.saturating_sub(1));
            }
        }
    }

    fn remember_selected(&mut self) {
        if self.tab == Tab::Pending {
            self.selected_id = self.selected_pending().map(|p| p.id.clone());
        }
    }

    /// The selected row of `tab`.
    pub(crate) fn selection(&self, tab: Tab) -> usize {
        self.selected.get(tab.index()).copied().unwrap_or(0)
    }

    pub(crate) fn selected_pending(&self) -> Option<&PendingItem> {
        self.pending.get(self.selection(Tab::Pending))
    }

    /// Recordings that pass the filter, in the server's order.
    pub(crate) fn visible_recordings(&self) -> Vec<&RecordingItem> {
        self.recordings
            .iter()
            .filter(|r| self.filter.matches_recording(r))
            .collect()
    }

    /// Live sessions that pass the filter (its date and decision terms do not apply).
    pub(crate) fn visible_sessions(&self) -> Vec<&LiveSession> {
        self.sessions
            .iter()
            .filter(|s| self.filter.matches_session(s))
            .collect()
    }

    /// Seconds since `base` was given, as of the last tick.
    pub(crate) fn elapsed(&self, pending: bool) -> u64 {
        let at = if pending {
            self.pending_at
        } else {
            self.sessions_at
        };
        match (at, self.now) {
            (Some(at), Some(now)) => now.saturating_duration_since(at).as_secs(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests;
