//! Turns ratatui buffers into ANSI bytes for a terminal at the other end of a byte stream.
//!
//! There is no ratatui `Terminal` or backend here: the console runs inside the SSH server, so a
//! frame is drawn into a [`Buffer`], compared with the previous one, and only the changed cells
//! are written (cursor moves + SGR colours + text). The first frame, and any frame after a
//! resize or [`FrameWriter::invalidate`], clears the screen and is written whole.
//!
//! This module does not know what is drawn; the console and replay views do.

use std::io::Write;

use ratatui::buffer::{Buffer, Cell, CellDiffOption};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier};
use unicode_width::UnicodeWidthStr;

/// Bytes that switch a terminal to the alternate screen, hide the cursor and clear: write them
/// once when the console opens.
pub fn enter_screen() -> &'static [u8] {
    b"\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J"
}

/// Bytes that undo [`enter_screen`]: write them when the console closes, so the reviewer's
/// shell comes back as it was.
pub fn leave_screen() -> &'static [u8] {
    b"\x1b[0m\x1b[?25h\x1b[?1049l"
}

/// Draws frames and writes the difference from the last one.
#[derive(Debug, Default)]
pub struct FrameWriter {
    /// What the terminal shows now, as far as we know; `None` until the first frame and after
    /// a resize, when the next frame is written whole.
    shown: Option<Buffer>,
}

impl FrameWriter {
    pub fn new() -> FrameWriter {
        FrameWriter::default()
    }

    /// Forgets what the terminal shows: the next frame is written whole (after a resize, or when
    /// the reviewer asks for a redraw with Ctrl-L).
    pub fn invalidate(&mut self) {
        self.shown = None;
    }

    /// Draws a frame of `cols`×`rows` with `draw` and returns the bytes that bring the terminal
    /// from the last frame to this one (empty when nothing changed).
    pub fn frame(&mut self, cols: u16, rows: u16, draw: impl FnOnce(Rect, &mut Buffer)) -> Vec<u8> {
        let area = Rect::new(0, 0, cols, rows);
        let mut buf = Buffer::empty(area);
        draw(area, &mut buf);
        let out = match &self.shown {
            Some(prev) if prev.area == buf.area => diff_bytes(prev, &buf),
            _ => full_bytes(&buf),
        };
        self.shown = Some(buf);
        out
    }
}

/// Every cell of `buf`, after clearing the screen.
pub fn full_bytes(buf: &Buffer) -> Vec<u8> {
    let mut out = Writer::default();
    out.bytes
        .extend_from_slice(b"\x1b[0m\x1b[?25l\x1b[H\x1b[2J");
    for y in buf.area.top()..buf.area.bottom() {
        let mut x = buf.area.left();
        while x < buf.area.right() {
            let Some(cell) = buf.cell((x, y)) else { break };
            if cell.diff_option != CellDiffOption::Skip {
                out.cell(x, y, cell);
            }
            x += u16::try_from(cell.symbol().width().max(1)).unwrap_or(1);
        }
    }
    out.finish()
}

/// The cells that differ between `prev` and `next` (same area).
pub fn diff_bytes(prev: &Buffer, next: &Buffer) -> Vec<u8> {
    let mut out = Writer::default();
    for (x, y, cell) in prev.diff(next) {
        if cell.diff_option != CellDiffOption::Skip {
            out.cell(x, y, cell);
        }
    }
    out.finish()
}

/// The text a buffer shows, one line per row with trailing spaces removed: what a test or a
/// screen reader would read.
pub fn buffer_text(buf: &Buffer) -> String {
    let mut lines = Vec::new();
    for y in buf.area.top()..buf.area.bottom() {
        let mut line = String::new();
        for x in buf.area.left()..buf.area.right() {
            if let Some(cell) = buf.cell((x, y)) {
                line.push_str(cell.symbol());
            }
        }
        lines.push(line.trim_end().to_string());
    }
    lines.join("\n")
}

/// ANSI output with the cursor position and style it leaves behind, so runs of cells need no
/// cursor moves and runs of one style need one SGR.
#[derive(Default)]
struct Writer {
    bytes: Vec<u8>,
    /// Where the terminal's cursor is after the bytes so far; `None` = unknown.
    cursor: Option<(u16, u16)>,
    /// The SGR state written last; `None` = unknown (reset is written first).
    style: Option<(Color, Color, Modifier)>,
}

impl Writer {
    fn cell(&mut self, x: u16, y: u16, cell: &Cell) {
        if self.cursor != Some((x, y)) {
            // Writes to a Vec cannot fail.
            let _ = write!(self.bytes, "\x1b[{};{}H", y + 1, x + 1);
        }
        let style = (cell.fg, cell.bg, cell.modifier);
        if self.style != Some(style) {
            self.sgr(style);
            self.style = Some(style);
        }
        let symbol = cell.symbol();
        let width = symbol.width();
        if symbol.is_empty() || symbol.chars().any(char::is_control) {
            self.bytes.push(b' ');
        } else {
            self.bytes.extend_from_slice(symbol.as_bytes());
        }
        let advance = u16::try_from(width.max(1)).unwrap_or(1);
        self.cursor = Some((x.saturating_add(advance), y));
    }

    fn sgr(&mut self, (fg, bg, modifier): (Color, Color, Modifier)) {
        let mut params = vec!["0".to_string()];
        for (flag, code) in [
            (Modifier::BOLD, "1"),
            (Modifier::DIM, "2"),
            (Modifier::ITALIC, "3"),
            (Modifier::UNDERLINED, "4"),
            (Modifier::REVERSED, "7"),
            (Modifier::CROSSED_OUT, "9"),
        ] {
            if modifier.contains(flag) {
                params.push(code.to_string());
            }
        }
        if let Some(p) = color_param(fg, false) {
            params.push(p);
        }
        if let Some(p) = color_param(bg, true) {
            params.push(p);
        }
        let _ = write!(self.bytes, "\x1b[{}m", params.join(";"));
    }

    fn finish(mut self) -> Vec<u8> {
        if self.style.is_some() {
            self.bytes.extend_from_slice(b"\x1b[0m");
        }
        self.bytes
    }
}

/// The SGR parameter for a colour; `None` for the terminal's default.
fn color_param(color: Color, background: bool) -> Option<String> {
    let base = if background { 40 } else { 30 };
    let code = |n: u8| Some((base + u16::from(n)).to_string());
    let bright = |n: u8| Some((base + 60 + u16::from(n)).to_string());
    match color {
        Color::Reset => None,
        Color::Black => code(0),
        Color::Red => code(1),
        Color::Green => code(2),
        Color::Yellow => code(3),
        Color::Blue => code(4),
        Color::Magenta => code(5),
        Color::Cyan => code(6),
        Color::Gray => code(7),
        Color::DarkGray => bright(0),
        Color::LightRed => bright(1),
        Color::LightGreen => bright(2),
        Color::LightYellow => bright(3),
        Color::LightBlue => bright(4),
        Color::LightMagenta => bright(5),
        Color::LightCyan => bright(6),
        Color::White => bright(7),
        Color::Indexed(i) => Some(format!("{};5;{i}", base + 8)),
        Color::Rgb(r, g, b) => Some(format!("{};2;{r};{g};{b}", base + 8)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::style::Style;

    fn screen_after(chunks: &[Vec<u8>], cols: u16, rows: u16) -> String {
        let mut term = vt100::Parser::new(rows, cols, 0);
        for c in chunks {
            term.process(c);
        }
        let text = term.screen().contents();
        text.lines()
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn full_then_diff_reproduce_the_buffer() {
        let mut w = FrameWriter::new();
        let first = w.frame(20, 3, |_, buf| {
            buf.set_string(0, 0, "hello", Style::default().fg(Color::Red));
            buf.set_string(2, 2, "wide: 日本", Style::default());
        });
        let second = w.frame(20, 3, |_, buf| {
            buf.set_string(0, 0, "help", Style::default().fg(Color::Red));
            buf.set_string(2, 2, "wide: 日本", Style::default());
        });
        assert!(second.len() < first.len());
        let third = w.frame(20, 3, |_, buf| {
            buf.set_string(0, 0, "help", Style::default().fg(Color::Red));
            buf.set_string(2, 2, "wide: 日本", Style::default());
        });
        assert!(third.is_empty(), "an unchanged frame writes nothing");
        let text = screen_after(&[first, second], 20, 3);
        assert_eq!(text, "help\n\n  wide: 日本");
    }

    #[test]
    fn resize_writes_a_full_frame() {
        let mut w = FrameWriter::new();
        let _ = w.frame(10, 2, |_, buf| buf.set_string(0, 0, "a", Style::default()));
        let again = w.frame(12, 2, |_, buf| buf.set_string(0, 0, "a", Style::default()));
        assert!(again.windows(4).any(|s| s == b"\x1b[2J"));
    }
}
