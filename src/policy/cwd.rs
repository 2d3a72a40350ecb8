//! The working directories a command may run in, so relative operands resolve like the shell
//! would resolve them: `cd / && rm -rf *` removes `/*`, and `cd "$D" && rm -rf build` removes
//! something gatehouse cannot name.
//!
//! An exec request starts in the target user's home (`~`). A `cd` moves every later command of
//! the line; one that may fail (`cd /x; rm -rf *` runs the `rm` in `~` when `/x` is missing)
//! leaves both directories possible. A rule matches for certain only when it matches in every
//! possible directory, and "possibly" when it matches in some — which holds the line.

use super::normalize::normalize_path;
use super::words::Arg;

/// Most distinct directories tracked; beyond it the directory counts as unknown.
const MAX_DIRS: usize = 8;

/// Where a command may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cwd {
    /// Directories the command may run in, normalized (`~`, `/tmp/x`).
    dirs: Vec<String>,
    /// The command may also run somewhere gatehouse cannot name (`cd "$D"`, `cd -`, `popd`).
    unknown: bool,
}

impl Default for Cwd {
    /// A session's start: the target user's home.
    fn default() -> Cwd {
        Cwd {
            dirs: vec!["~".to_string()],
            unknown: false,
        }
    }
}

impl Cwd {
    /// Every place the command may run: `Some(dir)`, and `None` for "somewhere unknown".
    pub fn worlds(&self) -> impl Iterator<Item = Option<&str>> {
        self.dirs
            .iter()
            .map(|d| Some(d.as_str()))
            .chain(self.unknown.then_some(None))
    }

    /// Either of two histories may have happened (a `cd` that may have failed, a branch).
    pub fn union(&mut self, other: &Cwd) {
        self.unknown |= other.unknown;
        for d in &other.dirs {
            if !self.dirs.contains(d) {
                self.dirs.push(d.clone());
            }
        }
        if self.dirs.len() > MAX_DIRS {
            self.dirs.truncate(MAX_DIRS);
            self.unknown = true;
        }
    }

    /// Where a directory-changing builtin (`cd`, `pushd`, `popd`) leaves the shell, assuming it
    /// succeeds; `args` are its arguments. `None` when `name` changes no directory.
    pub fn after(&self, name: &str, args: &[Arg]) -> Option<Cwd> {
        match name {
            "cd" | "pushd" => {}
            "popd" => return Some(Cwd::nowhere()),
            _ => return None,
        }
        let mut operands = args
            .iter()
            .skip_while(|a| matches!(a.text.as_str(), "-L" | "-P" | "-e" | "-@" | "-LP" | "-PL"));
        let target = match operands.next() {
            // `pushd` alone swaps the top two directories of a stack gatehouse does not keep.
            None if name == "pushd" => return Some(Cwd::nowhere()),
            None => return Some(Cwd::home()),
            Some(a) if a.text == "--" => match operands.next() {
                None => return Some(Cwd::home()),
                Some(a) => a,
            },
            Some(a) => a,
        };
        let text = target.text.as_str();
        let unreadable = target.opaque || target.glob || target.brace || target.ansi_c;
        if unreadable || text == "-" || text.is_empty() || text.starts_with(['+', '-']) {
            return Some(Cwd::nowhere());
        }
        let mut next = Cwd {
            dirs: Vec::new(),
            unknown: self.unknown,
        };
        for dir in &self.dirs {
            let resolved = resolve(dir, text);
            if !next.dirs.contains(&resolved) {
                next.dirs.push(resolved);
            }
        }
        Some(next)
    }

    /// The shell may also be somewhere gatehouse cannot name.
    pub fn add_unknown(&mut self) {
        self.unknown = true;
    }

    fn home() -> Cwd {
        Cwd::default()
    }

    fn nowhere() -> Cwd {
        Cwd {
            dirs: Vec::new(),
            unknown: true,
        }
    }
}

/// Whether a word names a path independent of the working directory.
pub fn anchored(word: &str) -> bool {
    word.starts_with('/') || word.starts_with('~') || word.starts_with("$HOME")
}

/// `word` as seen from `dir`: anchored words stay, relative ones are joined and normalized.
pub fn resolve(dir: &str, word: &str) -> String {
    if anchored(word) {
        normalize_path(word)
    } else {
        normalize_path(&format!("{dir}/{word}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Arg {
        Arg {
            text: s.to_string(),
            ..Arg::default()
        }
    }

    #[test]
    fn cd_moves_and_unknown_targets_are_unknown() {
        let start = Cwd::default();
        let root = start.after("cd", &[lit("/")]).expect("cd");
        assert_eq!(root.worlds().collect::<Vec<_>>(), [Some("/")]);
        let etc = root.after("cd", &[lit("etc")]).expect("cd");
        assert_eq!(etc.worlds().collect::<Vec<_>>(), [Some("/etc")]);
        let up = etc.after("cd", &[lit("-P"), lit("..")]).expect("cd");
        assert_eq!(up.worlds().collect::<Vec<_>>(), [Some("/")]);
        let home = up.after("cd", &[]).expect("cd");
        assert_eq!(home.worlds().collect::<Vec<_>>(), [Some("~")]);
        let dash = home.after("cd", &[lit("-")]).expect("cd");
        assert_eq!(dash.worlds().collect::<Vec<_>>(), [None]);
        let dynamic = Arg {
            opaque: true,
            dynamic: true,
            ..lit("$D")
        };
        assert_eq!(
            home.after("cd", &[dynamic])
                .expect("cd")
                .worlds()
                .collect::<Vec<_>>(),
            [None]
        );
        assert!(home.after("ls", &[lit("/")]).is_none());
        assert_eq!(
            root.after("pushd", &[])
                .expect("pushd")
                .worlds()
                .collect::<Vec<_>>(),
            [None]
        );
    }

    #[test]
    fn union_keeps_both_and_bounds() {
        let mut a = Cwd::default();
        let b = a.after("cd", &[lit("/tmp")]).expect("cd");
        a.union(&b);
        assert_eq!(a.worlds().collect::<Vec<_>>(), [Some("~"), Some("/tmp")]);
        for i in 0..20 {
            let c = Cwd::default()
                .after("cd", &[lit(&format!("/d{i}"))])
                .expect("cd");
            a.union(&c);
        }
        assert!(a.worlds().any(|w| w.is_none()));
    }

    #[test]
    fn resolving() {
        assert_eq!(resolve("/", "*"), "/*");
        assert_eq!(resolve("~", "."), "~");
        assert_eq!(resolve("/tmp/x", "../../etc"), "/etc");
        assert_eq!(resolve("/tmp", "/etc"), "/etc");
        assert_eq!(resolve("/tmp", "$HOME/x"), "$HOME/x");
    }
}
