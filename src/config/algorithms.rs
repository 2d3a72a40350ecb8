//! `[server] ciphers` and `[server] macs`: the transport algorithms gatehouse offers agents, in
//! order of preference, like OpenSSH's `Ciphers` and `MACs`.
//!
//! Only algorithms with no known weakness can be named: AEAD ciphers, AES-CTR, and HMAC-SHA2.
//! CBC modes, 3DES, SHA-1 and `none` are refused with a file:line error rather than offered.
//! The agent's client picks the first of *its* list that the server offers, so narrowing this
//! list is how an operator steers clients: `ciphers = ["aes128-gcm@openssh.com",
//! "aes256-gcm@openssh.com"]` makes OpenSSH and paramiko (3.5 and later) use AES-GCM, which
//! needs no separate MAC and costs gatehouse far less CPU per byte on AES-capable hardware than
//! ChaCha20-Poly1305 or AES-CTR with HMAC-SHA2 (see the README's benchmarks). Clients that know
//! none of the offered algorithms cannot connect. Unconfigured, gatehouse already narrows the
//! list to its AES-GCM ciphers for clients that announce paramiko 3.5 or later
//! (`gateway::handshake`).

use toml::Spanned;

use super::{Checker, ConfigError};

/// Ciphers that may be configured.
pub const CIPHERS: [&str; 6] = [
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
];

/// MACs that may be configured (used only with the AES-CTR ciphers).
pub const MACS: [&str; 4] = [
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512",
    "hmac-sha2-256",
];

/// russh's default order, keeping only the names gatehouse allows (so a weaker default in a
/// later russh is not offered unnoticed).
fn default_names(russh_default: &[impl AsRef<str>], allowed: &[&str]) -> Vec<String> {
    russh_default
        .iter()
        .map(|name| name.as_ref())
        .filter(|name| allowed.contains(name))
        .map(str::to_string)
        .collect()
}

/// Checks one configured list against what may be named; `None` means russh's default order.
fn list(
    check: &Checker,
    value: Option<Spanned<Vec<Spanned<String>>>>,
    key: &str,
    allowed: &[&str],
    russh_default: &[impl AsRef<str>],
) -> Result<Vec<String>, ConfigError> {
    let Some(value) = value else {
        return Ok(default_names(russh_default, allowed));
    };
    if value.get_ref().is_empty() {
        return Err(check.invalid(&value, key, "must name at least one algorithm"));
    }
    let mut names: Vec<String> = Vec::new();
    for (i, name) in value.get_ref().iter().enumerate() {
        if !allowed.contains(&name.get_ref().as_str()) {
            return Err(check.invalid(
                name,
                &format!("{key}[{i}]"),
                &format!(
                    "{:?} is not offered by gatehouse (unknown, or weak: CBC, 3DES, SHA-1, none); \
                     choose from {}",
                    name.get_ref(),
                    allowed.join(", ")
                ),
            ));
        }
        if names.contains(name.get_ref()) {
            return Err(check.invalid(name, &format!("{key}[{i}]"), "named twice"));
        }
        names.push(name.get_ref().clone());
    }
    Ok(names)
}

/// The configured (or default) ciphers and MACs, in order of preference. The MAC list applies
/// only when an AES-CTR cipher is chosen; AEAD ciphers ignore it.
pub(super) fn check(
    check: &Checker,
    ciphers: Option<Spanned<Vec<Spanned<String>>>>,
    macs: Option<Spanned<Vec<Spanned<String>>>>,
) -> Result<(Vec<String>, Vec<String>), ConfigError> {
    Ok((
        list(
            check,
            ciphers,
            "server.ciphers",
            &CIPHERS,
            &russh::Preferred::DEFAULT.cipher,
        )?,
        list(
            check,
            macs,
            "server.macs",
            &MACS,
            &russh::Preferred::DEFAULT.mac,
        )?,
    ))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Config, ConfigError};
    use super::*;

    fn load(server_lines: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "[server]\nssh_listen = \"127.0.0.1:2222\"\n{server_lines}\
             [ca]\nprivate_key = \"ca\"\n[vault]\nmaster_key_file = \"mk\"\n"
        );
        Config::from_toml(&text, Path::new("/etc/gh/gatehouse.toml"))
    }

    #[test]
    fn defaults_are_russh_s_order() {
        let c = load("").unwrap();
        assert_eq!(
            c.server.ciphers,
            [
                "chacha20-poly1305@openssh.com",
                "aes256-gcm@openssh.com",
                "aes256-ctr",
                "aes192-ctr",
                "aes128-ctr"
            ]
        );
        assert_eq!(c.server.macs, MACS);
    }

    #[test]
    fn defaults_keep_only_allowed_names() {
        assert_eq!(
            default_names(&["aes128-cbc", "aes128-ctr", "none"], &CIPHERS),
            ["aes128-ctr"]
        );
    }

    #[test]
    fn a_configured_list_keeps_its_order() {
        let c = load(
            "ciphers = [\"aes128-gcm@openssh.com\", \"aes256-gcm@openssh.com\"]\n\
             macs = [\"hmac-sha2-256-etm@openssh.com\"]\n",
        )
        .unwrap();
        assert_eq!(
            c.server.ciphers,
            ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]
        );
        assert_eq!(c.server.macs, ["hmac-sha2-256-etm@openssh.com"]);
    }

    #[test]
    fn weak_unknown_empty_and_repeated_names_are_refused_with_their_line() {
        for (lines, line, needle) in [
            (
                "ciphers = [\"aes128-gcm@openssh.com\", \"aes128-cbc\"]\n",
                3,
                "ciphers[1]",
            ),
            ("\nciphers = [\"none\"]\n", 4, "\"none\" is not offered"),
            ("macs = [\"hmac-sha1\"]\n", 3, "macs[0]"),
            ("ciphers = []\n", 3, "at least one"),
            (
                "ciphers = [\"aes128-ctr\", \"aes128-ctr\"]\n",
                3,
                "named twice",
            ),
            ("ciphers = [\"AES128-CTR\"]\n", 3, "choose from"),
        ] {
            match load(lines) {
                Err(ConfigError::Invalid {
                    line: l, message, ..
                }) => {
                    assert_eq!(l, line, "{lines}: {message}");
                    assert!(message.contains(needle), "{lines}: {message}");
                }
                other => panic!("{lines}: {:?}", other.map(|_| ())),
            }
        }
    }

    #[test]
    fn every_allowed_name_is_known_to_russh() {
        for name in CIPHERS {
            assert!(russh::cipher::Name::try_from(name).is_ok(), "{name}");
        }
        for name in MACS {
            assert!(russh::mac::Name::try_from(name).is_ok(), "{name}");
        }
    }
}
