use super::*;

const HOST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

fn base() -> String {
    "[server]\nssh_listen = \"127.0.0.1:2222\"\n\
     [ca]\nprivate_key = \"ca\"\n\
     [vault]\nmaster_key_file = \"mk\"\n"
        .to_string()
}

fn load(extra: &str) -> Result<Config, ConfigError> {
    Config::from_toml(&(base() + extra), Path::new("/etc/gh/gatehouse.toml"))
}

/// The error's line and message, or a panic if it loaded.
fn refused(extra: &str) -> (usize, String) {
    match load(extra) {
        Ok(_) => panic!("loaded: {extra}"),
        Err(ConfigError::Invalid { line, message, .. }) => (line, message),
        Err(e) => panic!("unexpected: {e}"),
    }
}

fn target(fields: &str) -> String {
    format!("[[targets]]\nname = \"web-1\"\naddress = \"10.0.0.5:22\"\nuser = \"deploy\"\n{fields}")
}

#[test]
fn reference_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/gatehouse.toml");
    let config = Config::load(&path).unwrap();
    assert_eq!(config.server.ssh_listen.to_string(), "127.0.0.1:2222");
    assert!(config.server.data_dir.ends_with("config/../data"));
    assert!(config.ca.private_key.ends_with("config/../data/user_ca"));
    let web = config.target("web-1").unwrap();
    assert_eq!(web.policy, "default");
    assert!(config.granted(&["group:agents".into()], "web-1"));
    assert!(!config.granted(&["group:other".into()], "web-1"));
}

#[test]
fn login_grace_defaults_to_a_minute_and_is_bounded_with_line() {
    let with = |v: &str| {
        let text = base().replace("ssh_listen", &format!("login_grace = {v}\nssh_listen"));
        Config::from_toml(&text, Path::new("/etc/gh/gatehouse.toml"))
    };
    assert_eq!(load("").unwrap().server.login_grace, DEFAULT_LOGIN_GRACE);
    assert_eq!(
        with("\"90s\"").unwrap().server.login_grace,
        Duration::from_secs(90)
    );
    for (bad, why) in [
        ("\"11m\"", "at most 10m"),
        ("\"0s\"", "must be positive"),
        ("\"soon\"", "expected a number"),
    ] {
        match with(bad) {
            Err(ConfigError::Invalid { line, message, .. }) => {
                assert_eq!(line, 2, "{bad}");
                assert!(message.contains(why), "{bad}: {message}");
            }
            other => panic!("{bad}: {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn worker_threads_bounded_with_line() {
    let with = |n: &str| {
        let text = base().replace("ssh_listen", &format!("worker_threads = {n}\nssh_listen"));
        Config::from_toml(&text, Path::new("/etc/gh/gatehouse.toml"))
    };
    assert_eq!(with("3").unwrap().server.worker_threads, Some(3));
    assert_eq!(load("").unwrap().server.worker_threads, None);
    for bad in ["0", "257", "-1"] {
        match with(bad) {
            Err(ConfigError::Invalid { line, message, .. }) => {
                assert_eq!(line, 2, "{bad}");
                assert!(
                    message.contains("worker_threads") || bad == "-1",
                    "{message}"
                );
            }
            other => panic!("{bad}: {:?}", other.map(|_| ())),
        }
    }
    assert!(default_worker_threads() >= 1);
}

#[test]
fn valid_target_and_defaults() {
    let c = load(&target(&format!("host_keys = [\"{HOST_KEY}\"]\n"))).unwrap();
    let t = c.target("web-1").unwrap();
    assert_eq!(t.policy, "default");
    assert_eq!(t.max_channels, 10);
    assert_eq!(t.approval, ApprovalMode::Wait);
    assert_eq!(t.host_keys.len(), 1);
    assert_eq!(c.ca.private_key, PathBuf::from("/etc/gh/ca"));
}

#[test]
fn unknown_key_names_line_and_key() {
    let (line, msg) =
        refused("[[targets]]\nname = \"a\"\naddress = \"h:22\"\nuser = \"u\"\nbogus = 1\n");
    assert_eq!(line, 11);
    assert!(msg.contains("bogus"), "{msg}");
}

#[test]
fn bad_target_names() {
    for bad in ["Web", "-web", "", "web 1", "web/1", &"a".repeat(65)] {
        let text = target("").replace("web-1", bad);
        let (line, msg) = refused(&text);
        assert_eq!(line, 8, "{bad}");
        assert!(msg.starts_with("targets[0].name:"), "{msg}");
    }
    assert!(is_target_name(&"a".repeat(64)));
    assert!(is_target_name("db.prod_2-a"));
}

#[test]
fn duplicate_target() {
    let (line, msg) = refused(&(target("") + &target("")));
    assert_eq!(line, 12);
    assert!(msg.contains("targets[1].name: duplicate"), "{msg}");
}

#[test]
fn bad_addresses() {
    for bad in [
        "10.0.0.5",
        "10.0.0.5:0",
        "10.0.0.5:99999",
        ":22",
        "a b:22",
        "[zz]:22",
    ] {
        let text = target("").replace("10.0.0.5:22", bad);
        let (line, msg) = refused(&text);
        assert_eq!(line, 9, "{bad}");
        assert!(msg.starts_with("targets[0].address:"), "{msg}");
    }
    for good in ["[::1]:22", "web-1.internal:2200", "localhost:22"] {
        load(&target("").replace("10.0.0.5:22", good)).unwrap();
    }
}

#[test]
fn bad_user_host_key_policy_channels() {
    let (line, msg) = refused(&target("").replace("\"deploy\"", "\"\""));
    assert_eq!(
        (line, msg.starts_with("targets[0].user:")),
        (10, true),
        "{msg}"
    );
    let (line, msg) = refused(&target("host_keys = [\"ssh-ed25519 nonsense\"]\n"));
    assert_eq!(line, 11);
    assert!(msg.starts_with("targets[0].host_keys[0]:"), "{msg}");
    let (line, msg) = refused(&target("policy = \" \"\n"));
    assert_eq!(
        (line, msg.starts_with("targets[0].policy:")),
        (11, true),
        "{msg}"
    );
    let (line, msg) = refused(&target("max_channels = 0\n"));
    assert_eq!(
        (line, msg.starts_with("targets[0].max_channels:")),
        (11, true),
        "{msg}"
    );
    let (_, msg) = refused(&target("max_channels = -1\n"));
    assert!(
        msg.contains("max_channels") || msg.contains("invalid"),
        "{msg}"
    );
}

#[test]
fn bad_trusted_ca_key() {
    let text = base().replace(
        "private_key = \"ca\"",
        "private_key = \"ca\"\ntrusted_public_keys = [\"x\"]",
    );
    let err = Config::from_toml(&text, Path::new("g.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("g.toml:5: ca.trusted_public_keys[0]:"),
        "{err}"
    );
}

#[test]
fn grants_validated() {
    let grant = |p: &str, t: &str| format!("[[grants]]\nprincipals = [{p}]\ntargets = [{t}]\n");
    load(&grant(
        "\"group:agents\", \"alice@example.com\", \"ci-*\"",
        "\"web-*\", \"db-[12]\"",
    ))
    .unwrap();
    let (line, msg) = refused(&grant("\"group:Agents\"", "\"web-1\""));
    assert_eq!(
        (line, msg.starts_with("grants[0].principals[0]:")),
        (8, true),
        "{msg}"
    );
    let (line, msg) = refused(&grant("\"a\"", "\"web-[\""));
    assert_eq!(
        (line, msg.starts_with("grants[0].targets[0]:")),
        (9, true),
        "{msg}"
    );
    let (_, msg) = refused(&grant("", "\"web-1\""));
    assert!(
        msg.starts_with("grants[0].principals: must not be empty"),
        "{msg}"
    );
    let (_, msg) = refused(&grant("\"a\"", "\"Web\""));
    assert!(msg.starts_with("grants[0].targets[0]:"), "{msg}");
}

#[test]
fn syntax_error_has_line() {
    let err = Config::from_toml("[server]\nssh_listen = \"nope\"\n", Path::new("g.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("g.toml:2:"), "{err}");
}
