//! Turns the raw bytes a terminal sends (over an SSH channel or a local tty in raw mode) into
//! keys: printable characters, Enter, Esc, Tab, arrows, Page Up/Down, Home/End, Backspace,
//! Ctrl-letters.
//!
//! Terminals send a lone Esc as the single byte `ESC` and a special key as an escape sequence
//! in one write, so an `ESC` that ends a read is taken as the Esc key (no timer needed); an
//! escape sequence cut by a read boundary is kept until the next read. Mouse reports and
//! other sequences this console does not use are dropped.

/// One key press.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A printable character (Shift already applied by the terminal).
    Char(char),
    Enter,
    Esc,
    Tab,
    BackTab,
    Backspace,
    Delete,
    Up,
    Down,
    Left,
    Right,
    Home,
    End,
    PageUp,
    PageDown,
    /// Ctrl with a letter, lowercase (`Ctrl('l')`); Ctrl-C is [`Key::CtrlC`].
    Ctrl(char),
    /// Ctrl-C: quit from anywhere.
    CtrlC,
}

/// Longest escape sequence kept across reads; anything longer is garbage and dropped.
const MAX_PENDING: usize = 32;

/// Key decoder with the state needed to join sequences split across reads.
#[derive(Debug, Default)]
pub struct KeyParser {
    /// Bytes of an escape sequence or UTF-8 character that the last read cut short.
    pending: Vec<u8>,
    /// The last read ended in `\r`: a `\n` opening the next read belongs to the same Enter.
    after_cr: bool,
}

impl KeyParser {
    pub fn new() -> KeyParser {
        KeyParser::default()
    }

    /// Decodes one read's worth of bytes.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Key> {
        let mut input = std::mem::take(&mut self.pending);
        input.extend_from_slice(bytes);
        let mut keys = Vec::new();
        let mut i = 0;
        while let Some(&b) = input.get(i) {
            let rest = input.get(i..).unwrap_or_default();
            if b == b'\n' && self.after_cr {
                self.after_cr = false;
                i += 1;
                continue;
            }
            self.after_cr = b == b'\r';
            let used = match b {
                0x1b => match escape(rest) {
                    Parsed::Key(key, n) => {
                        keys.extend(key);
                        n
                    }
                    Parsed::Incomplete => {
                        if rest.len() <= MAX_PENDING {
                            self.pending = rest.to_vec();
                        }
                        break;
                    }
                },
                b'\r' | b'\n' => {
                    keys.push(Key::Enter);
                    1
                }
                b'\t' => {
                    keys.push(Key::Tab);
                    1
                }
                0x7f | 0x08 => {
                    keys.push(Key::Backspace);
                    1
                }
                0x03 => {
                    keys.push(Key::CtrlC);
                    1
                }
                0x01..=0x1a => {
                    keys.push(Key::Ctrl(char::from(b - 1 + b'a')));
                    1
                }
                0x00..=0x1f => 1,
                _ => match utf8_char(rest) {
                    Some((c, n)) => {
                        keys.push(Key::Char(c));
                        n
                    }
                    None if rest.len() < utf8_len(b) => {
                        self.pending = rest.to_vec();
                        break;
                    }
                    None => 1,
                },
            };
            i += used;
        }
        keys
    }
}

/// What an escape sequence decoded to.
enum Parsed {
    /// A key (or nothing, for sequences we ignore) and how many bytes it used.
    Key(Option<Key>, usize),
    /// The sequence continues in the next read.
    Incomplete,
}

/// Decodes the escape sequence at the start of `s` (which starts with ESC).
fn escape(s: &[u8]) -> Parsed {
    match s.get(1) {
        // A lone ESC at the end of a read is the Esc key.
        None => Parsed::Key(Some(Key::Esc), 1),
        Some(b'[') => csi(s),
        Some(b'O') => match s.get(2) {
            None => Parsed::Incomplete,
            Some(&f) => Parsed::Key(final_key(f), 3),
        },
        // ESC ESC, or Alt+key: the Esc key, then the next byte on its own.
        Some(_) => Parsed::Key(Some(Key::Esc), 1),
    }
}

/// `ESC [ params final`.
fn csi(s: &[u8]) -> Parsed {
    let body = s.get(2..).unwrap_or_default();
    let Some(end) = body.iter().position(|b| (0x40..=0x7e).contains(b)) else {
        return Parsed::Incomplete;
    };
    let params = body.get(..end).unwrap_or_default();
    let used = 2 + end + 1;
    let Some(&f) = body.get(end) else {
        return Parsed::Incomplete;
    };
    if f == b'~' {
        // The first parameter names the key; modifiers after `;` are ignored.
        let first = params.split(|&b| b == b';').next().unwrap_or_default();
        let key = match first {
            b"1" | b"7" => Some(Key::Home),
            b"3" => Some(Key::Delete),
            b"4" | b"8" => Some(Key::End),
            b"5" => Some(Key::PageUp),
            b"6" => Some(Key::PageDown),
            _ => None,
        };
        return Parsed::Key(key, used);
    }
    if f == b'Z' {
        return Parsed::Key(Some(Key::BackTab), used);
    }
    // Mouse reports (`ESC [ <`, `ESC [ M`) and anything else: ignored.
    if params.first() == Some(&b'<') || f == b'M' {
        return Parsed::Key(None, used);
    }
    Parsed::Key(final_key(f), used)
}

/// The final byte shared by CSI and SS3 cursor keys.
fn final_key(f: u8) -> Option<Key> {
    match f {
        b'A' => Some(Key::Up),
        b'B' => Some(Key::Down),
        b'C' => Some(Key::Right),
        b'D' => Some(Key::Left),
        b'H' => Some(Key::Home),
        b'F' => Some(Key::End),
        _ => None,
    }
}

/// Length of the UTF-8 sequence a lead byte announces (1 for invalid leads, so they are skipped).
fn utf8_len(lead: u8) -> usize {
    match lead {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

/// The character at the start of `s`, if it is complete and valid.
fn utf8_char(s: &[u8]) -> Option<(char, usize)> {
    let n = utf8_len(*s.first()?);
    let text = std::str::from_utf8(s.get(..n)?).ok()?;
    text.chars().next().map(|c| (c, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_control_keys() {
        let mut p = KeyParser::new();
        assert_eq!(
            p.feed(b"a?\r\t\x7f\x03\x0c"),
            vec![
                Key::Char('a'),
                Key::Char('?'),
                Key::Enter,
                Key::Tab,
                Key::Backspace,
                Key::CtrlC,
                Key::Ctrl('l')
            ]
        );
    }

    #[test]
    fn crlf_is_one_enter_even_across_reads() {
        let mut p = KeyParser::new();
        assert_eq!(p.feed(b"\r\n"), vec![Key::Enter]);
        assert_eq!(p.feed(b"\r"), vec![Key::Enter]);
        assert_eq!(p.feed(b"\n"), vec![]);
    }

    #[test]
    fn escape_sequences() {
        let mut p = KeyParser::new();
        assert_eq!(
            p.feed(b"\x1b[A\x1b[B\x1bOC\x1b[D\x1b[5~\x1b[6~\x1b[1;5A\x1b[Z"),
            vec![
                Key::Up,
                Key::Down,
                Key::Right,
                Key::Left,
                Key::PageUp,
                Key::PageDown,
                Key::Up,
                Key::BackTab
            ]
        );
    }

    #[test]
    fn lone_esc_and_split_sequences() {
        let mut p = KeyParser::new();
        assert_eq!(p.feed(b"\x1b"), vec![Key::Esc]);
        assert_eq!(p.feed(b"\x1b["), vec![]);
        assert_eq!(p.feed(b"6~x"), vec![Key::PageDown, Key::Char('x')]);
        assert_eq!(p.feed("é".as_bytes().get(..1).unwrap()), vec![]);
        assert_eq!(
            p.feed("é".as_bytes().get(1..).unwrap()),
            vec![Key::Char('é')]
        );
        assert_eq!(p.feed(b"\x1b[<0;3;4M"), vec![]);
    }
}
