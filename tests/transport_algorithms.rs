//! `[server] ciphers` and `macs` with the real OpenSSH client: gatehouse offers exactly the
//! configured algorithms, a client that knows none of them is refused at key exchange, and one
//! that does negotiates the first it prefers among them.

mod common;

use std::process::{Command, Output, Stdio};

use common::serve::start_serve;

/// `ssh -v` to the `demo` host with extra options; only the handshake matters here.
fn ssh(ssh_config: &std::path::Path, extra: &[&str]) -> Output {
    Command::new("ssh")
        .arg("-F")
        .arg(ssh_config)
        .args(["-v", "-o", "BatchMode=yes"])
        .args(extra)
        .args(["demo", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn only_the_configured_ciphers_and_macs_are_offered() {
    common::require_openssh();
    let demo = common::Demo::left_behind();
    let dir = demo.path();
    let config_path = dir.join("gatehouse.toml");
    let config = std::fs::read_to_string(&config_path).unwrap().replace(
        "[server]\n",
        "[server]\nciphers = [\"aes128-gcm@openssh.com\", \"aes256-ctr\"]\n\
         macs = [\"hmac-sha2-256-etm@openssh.com\"]\n",
    );
    std::fs::write(&config_path, config).unwrap();
    let log_path = dir.join("serve.log");
    let _serve = start_serve(&config_path, &[], &log_path);
    let ssh_config = demo.ssh_config();

    // OpenSSH prefers ChaCha20-Poly1305, then AES-CTR, then AES-GCM: offered AES-GCM and
    // AES-256-CTR, it takes AES-256-CTR with the one MAC on offer.
    let out = ssh(&ssh_config, &[]);
    let err = common::stderr(&out);
    assert!(
        err.contains("server->client cipher: aes256-ctr MAC: hmac-sha2-256-etm@openssh.com"),
        "{err}"
    );
    assert!(err.contains("Authenticated to"), "{err}");

    let out = ssh(&ssh_config, &["-c", "aes128-gcm@openssh.com"]);
    let err = common::stderr(&out);
    assert!(
        err.contains("server->client cipher: aes128-gcm@openssh.com MAC: <implicit>"),
        "{err}"
    );

    // What is not configured is not offered, even though gatehouse could speak it.
    for (option, value) in [
        ("-c", "chacha20-poly1305@openssh.com"),
        ("-m", "hmac-sha2-512-etm@openssh.com"),
    ] {
        let out = ssh(&ssh_config, &["-c", "aes256-ctr", option, value]);
        let err = common::stderr(&out);
        assert!(!out.status.success(), "{value} was accepted: {err}");
        assert!(err.contains("no matching"), "{value}: {err}");
    }
}
