//! What the shell knows at a point of a line: its working directory and the values of the
//! variables the line itself assigned literals to.
//!
//! `D=/tmp/build; rm -rf "$D"` removes `/tmp/build`, and `for d in / /etc; do rm -rf $d; done`
//! removes `/` and `/etc`: with the values known, rules decide on them instead of holding the
//! line for an argument only known at run time. A variable the line did not assign (it comes
//! from the target's environment), or assigned from anything but a literal, stays unknown. Like
//! the directory, values flow through lists, branches (joined), loops, subshells and
//! substitutions (which see the values but change nothing outside).

use std::collections::BTreeMap;

use super::cwd::Cwd;

/// Most values one variable may have (a `for` list, joined branches) before it counts as
/// unknown.
const MAX_VALUES: usize = 16;

/// Most variables tracked; assignments beyond it leave the variable unknown.
const MAX_VARS: usize = 64;

/// One value a variable may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The text assigned.
    pub text: String,
    /// A path bash found by expanding this glob (`for f in *.log`): the variable holds some
    /// path matching it, not the glob itself.
    pub glob: bool,
}

impl Value {
    /// A literal value.
    pub fn literal(text: impl Into<String>) -> Value {
        Value {
            text: text.into(),
            glob: false,
        }
    }
}

/// Variables with literal values, each with every value it may hold here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars {
    /// Name → possible values; an absent name is unknown.
    known: BTreeMap<String, Vec<Value>>,
}

impl Vars {
    /// Every value `name` may hold, if the line assigned it literals.
    pub fn values(&self, name: &str) -> Option<&[Value]> {
        self.known.get(name).map(Vec::as_slice)
    }

    /// The value of `name` when it has exactly one.
    pub fn single(&self, name: &str) -> Option<&Value> {
        match self.known.get(name).map(Vec::as_slice) {
            Some([one]) => Some(one),
            _ => None,
        }
    }

    /// `name` now holds one of `values` (a literal assignment, a `for` list).
    pub fn set(&mut self, name: &str, values: Vec<Value>) {
        if values.is_empty() || values.len() > MAX_VALUES {
            self.forget(name);
            return;
        }
        if self.known.len() >= MAX_VARS && !self.known.contains_key(name) {
            return;
        }
        self.known.insert(name.to_string(), values);
    }

    /// `name` now holds something gatehouse cannot tell (`read`, `$(...)`, `unset`).
    pub fn forget(&mut self, name: &str) {
        self.known.remove(name);
    }

    /// Whether some variable has several possible values (a `for` list, joined branches).
    pub fn has_several(&self) -> bool {
        self.known.values().any(|v| v.len() > 1)
    }

    /// Every combination of values for the variables with several values that `mentioned`
    /// selects, each as (name, value) pairs; empty when none is mentioned or there would be
    /// more than [`MAX_VALUES`] combinations (they then stay unknown).
    pub fn several(&self, mentioned: impl Fn(&str) -> bool) -> Vec<Vec<(String, Value)>> {
        let mut combos: Vec<Vec<(String, Value)>> = vec![Vec::new()];
        for (name, values) in &self.known {
            if values.len() < 2 || !mentioned(name) {
                continue;
            }
            let mut next = Vec::new();
            for combo in &combos {
                for v in values {
                    let mut c = combo.clone();
                    c.push((name.clone(), v.clone()));
                    next.push(c);
                }
            }
            if next.len() > MAX_VALUES {
                return Vec::new();
            }
            combos = next;
        }
        if combos.len() == 1 {
            return Vec::new();
        }
        combos
    }

    /// Either history may have happened: a variable stays known only if both know it.
    pub fn union(&mut self, other: &Vars) {
        self.known
            .retain(|name, values| match other.known.get(name) {
                Some(theirs) => {
                    for v in theirs {
                        if !values.contains(v) {
                            values.push(v.clone());
                        }
                    }
                    values.len() <= MAX_VALUES
                }
                None => false,
            });
    }
}

/// The directory and variables at one point of a line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Where commands run.
    pub cwd: Cwd,
    /// What variables hold.
    pub vars: Vars,
}

impl Scope {
    /// A scope starting in `cwd` with no variables known (`bash -c` after a `cd`).
    pub fn at(cwd: &Cwd) -> Scope {
        Scope {
            cwd: cwd.clone(),
            vars: Vars::default(),
        }
    }

    /// Either of two histories may have happened.
    pub fn union(&mut self, other: &Scope) {
        self.cwd.union(&other.cwd);
        self.vars.union(&other.vars);
    }

    /// After a loop whose body changed the scope: the directory may be anywhere the body can
    /// take it, repeatedly; variables the body changed keep the values seen (joined).
    pub fn after_loop(&mut self, before: &Scope) {
        if self.cwd != before.cwd {
            self.cwd.union(&before.cwd);
            self.cwd.add_unknown();
        }
        self.vars.union(&before.vars);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_keeps_only_what_both_know() {
        let mut a = Vars::default();
        a.set("D", vec![Value::literal("/tmp")]);
        a.set("E", vec![Value::literal("x")]);
        let mut b = Vars::default();
        b.set("D", vec![Value::literal("/")]);
        a.union(&b);
        assert_eq!(
            a.values("D"),
            Some(&[Value::literal("/tmp"), Value::literal("/")][..])
        );
        assert_eq!(a.values("E"), None);
        assert_eq!(a.single("D"), None);
    }

    #[test]
    fn bounded() {
        let mut a = Vars::default();
        a.set(
            "D",
            (0..100).map(|i| Value::literal(i.to_string())).collect(),
        );
        assert_eq!(a.values("D"), None);
        for i in 0..200 {
            a.set(&format!("V{i}"), vec![Value::literal("x")]);
        }
        assert!(a.known.len() <= MAX_VARS);
    }
}
