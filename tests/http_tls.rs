//! The issuance endpoint's transport as `gatehouse serve` runs it: HTTPS with a certificate
//! made by `openssl req` at test time (reqwest trusting only that certificate gets `/healthz`;
//! a client without it, and plain HTTP, get nothing), and plain HTTP on a non-loopback address
//! refused unless `insecure_http = true` says a TLS proxy sits in front.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A gatehouse configuration directory with its CA and vault master key created.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    /// `server` lines go under `[server]`, `http` under `[http]`.
    fn new(server: &str, http: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let site = Site { dir };
        std::fs::write(
            site.config(),
            format!(
                "[server]\nssh_listen = \"127.0.0.1:{ssh}\"\n{server}\ndata_dir = \"data\"\n\
                 recordings_dir = \"recordings\"\n\n[ca]\nprivate_key = \"ca/user_ca\"\n\n\
                 [vault]\nmaster_key_file = \"vault.key\"\n\n[http]\n{http}\n",
                ssh = free_port()
            ),
        )
        .unwrap();
        std::fs::create_dir_all(site.path().join("ca")).unwrap();
        for cmd in [["ca", "init"], ["vault", "init"]] {
            let out = site.gatehouse(&cmd);
            assert!(out.status.success(), "{cmd:?}: {}", text(&out.stderr));
        }
        site
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn config(&self) -> PathBuf {
        self.path().join("gatehouse.toml")
    }

    fn gatehouse(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--config")
            .arg(self.config())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

/// `gatehouse serve`, stopped with SIGTERM when dropped.
struct Served {
    child: Child,
    log: PathBuf,
}

impl Served {
    fn start(site: &Site) -> Served {
        let log = site.path().join("serve.log");
        let child = Command::new(BIN)
            .arg("--config")
            .arg(site.config())
            .arg("serve")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut served = Served { child, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !served.log().contains("certificate issuance listening") {
            assert!(
                served.child.try_wait().unwrap().is_none(),
                "serve exited: {}",
                served.log()
            );
            assert!(Instant::now() < deadline, "not listening: {}", served.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        served
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM; the exit status.
    fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// A self-signed P-256 certificate for 127.0.0.1 and localhost, from OpenSSL's own tool.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost", "-addext"])
        .arg("subjectAltName=IP:127.0.0.1,DNS:localhost")
        // An end-entity certificate: webpki refuses a CA certificate as a server's own.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (the openssl command line tool) is installed");
    assert!(out.status.success(), "openssl: {}", text(&out.stderr));
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuance_endpoint_serves_https_with_the_configured_certificate() {
    let port = free_port();
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path());
    let site = Site::new(
        &format!("http_listen = \"127.0.0.1:{port}\""),
        &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"",
            cert.display(),
            key.display()
        ),
    );
    let mut served = Served::start(&site);
    assert!(served.log().contains("tls=true"), "{}", served.log());

    let ca = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let trusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}/healthz");
    let answer = trusting.get(&url).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "ok\n");

    // The same endpoint without trusting the certificate: the handshake fails.
    let stranger = reqwest::Client::builder().build().unwrap();
    let refused = stranger.get(&url).send().await;
    assert!(refused.is_err(), "{refused:?}");
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = stranger
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");

    assert!(served.stop().success(), "{}", served.log());
}

#[test]
fn plain_http_off_loopback_needs_insecure_http() {
    // Nothing is bound in this test: the refusal comes before any socket is opened, and the
    // accepted configuration is only checked.
    let listen = format!("http_listen = \"0.0.0.0:{}\"", free_port());
    let site = Site::new("", "");
    std::fs::write(
        site.config(),
        std::fs::read_to_string(site.config())
            .unwrap()
            .replace("[server]\n", &format!("[server]\n{listen}\n")),
    )
    .unwrap();
    let check = site.gatehouse(&["config", "check"]);
    let err = text(&check.stderr);
    assert!(!check.status.success());
    assert!(
        err.contains("gatehouse.toml:2:") && err.contains("insecure_http"),
        "{err}"
    );
    let serve = site.gatehouse(&["serve"]);
    assert_eq!(serve.status.code(), Some(1));
    assert!(text(&serve.stderr).contains("insecure_http"));

    std::fs::write(
        site.config(),
        std::fs::read_to_string(site.config())
            .unwrap()
            .replace("[http]\n", "[http]\ninsecure_http = true\n"),
    )
    .unwrap();
    let check = site.gatehouse(&["config", "check"]);
    assert!(check.status.success(), "{}", text(&check.stderr));
}
