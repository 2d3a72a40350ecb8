//! The notification webhook: each new request is POSTed as JSON (the request's fields plus a
//! Slack-compatible `text`) to the configured URL, off the data path, with retries.
//!
//! The client is a minimal HTTP/1.1 POST over a tokio `TcpStream`: `http://` only, https is not
//! supported yet (point it at a local relay, or add a TLS client when needed). Delivery is
//! best effort: the console and `approvals` are the source of truth, so a webhook that is down
//! delays nobody's decision.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::request::{HeldCommand, RequestView};

/// Attempts per notification (the first plus two retries).
pub const WEBHOOK_ATTEMPTS: u32 = 3;
/// Wait before the first retry; doubled for each further one.
pub const WEBHOOK_BACKOFF: Duration = Duration::from_millis(250);
/// Limit for one attempt (connect, send, read the status line).
pub const WEBHOOK_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Notifications sent at the same time.
pub const MAX_WEBHOOK_IN_FLIGHT: usize = 4;
/// Notifications waiting or in flight; beyond this new ones are dropped (and logged) rather
/// than queued without bound when the receiver is down.
pub const MAX_WEBHOOK_QUEUED: usize = 256;
/// Most response bytes read looking for the status line.
const MAX_RESPONSE_HEAD: usize = 8 * 1024;

/// Why a notification failed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook URL {0:?}: only http:// is supported (https is not yet)")]
    UnsupportedScheme(String),
    #[error("webhook URL {0:?} is not http://HOST[:PORT][/PATH]")]
    BadUrl(String),
    #[error("webhook: {0}")]
    Io(#[from] std::io::Error),
    #[error("webhook answered HTTP {0}")]
    Status(u16),
    #[error("webhook answered something that is not HTTP")]
    BadResponse,
    #[error("webhook did not answer within {0:?}")]
    Timeout(Duration),
    #[error("webhook body: {0}")]
    Json(#[from] serde_json::Error),
}

impl WebhookError {
    /// Whether another attempt might succeed (server errors, throttling, network trouble).
    fn retryable(&self) -> bool {
        match self {
            WebhookError::Status(code) => *code >= 500 || *code == 429 || *code == 408,
            WebhookError::Io(_) | WebhookError::Timeout(_) | WebhookError::BadResponse => true,
            WebhookError::UnsupportedScheme(_)
            | WebhookError::BadUrl(_)
            | WebhookError::Json(_) => false,
        }
    }
}

/// The JSON body: the request's public fields and `text` for Slack incoming webhooks.
#[derive(serde::Serialize)]
struct Body {
    /// One line for chat.
    text: String,
    /// The request.
    #[serde(flatten)]
    request: RequestView,
}

/// The webhook body for a request.
pub fn webhook_body(held: &HeldCommand) -> Result<Vec<u8>, serde_json::Error> {
    let text = format!(
        "gatehouse: {} wants to run `{}` on {} (held by rule {}: {}). Request {} needs {} approval(s) from group {}.",
        slack_escape(&held.requester),
        slack_escape(&held.command_text()),
        slack_escape(&held.target),
        slack_escape(&held.rule),
        slack_escape(&held.reason),
        held.id,
        held.approvals_required,
        slack_escape(&held.reviewers),
    );
    serde_json::to_vec(&Body {
        text,
        request: RequestView::from(held),
    })
}

/// Slack's three control characters, escaped as Slack asks, so that a command cannot write
/// `<!channel>` or a disguised link into the reviewers' chat.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// POSTs the request to `url`, retrying failures that may pass ([`WEBHOOK_ATTEMPTS`] in all,
/// backoff from [`WEBHOOK_BACKOFF`], doubling).
pub async fn notify_webhook(url: &str, held: &HeldCommand) -> Result<(), WebhookError> {
    let endpoint = Endpoint::parse(url)?;
    let body = webhook_body(held)?;
    let mut backoff = WEBHOOK_BACKOFF;
    let mut attempt = 1;
    loop {
        let result =
            match tokio::time::timeout(WEBHOOK_ATTEMPT_TIMEOUT, post(&endpoint, &body)).await {
                Ok(result) => result,
                Err(_) => Err(WebhookError::Timeout(WEBHOOK_ATTEMPT_TIMEOUT)),
            };
        match result {
            Ok(()) => return Ok(()),
            Err(e) if attempt < WEBHOOK_ATTEMPTS && e.retryable() => {
                tracing::debug!(id = %held.id, attempt, error = %e, "webhook failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Spawns notifications with bounded concurrency and a bounded backlog.
pub(super) struct WebhookSender {
    /// One permit per notification waiting or in flight; when none is left, new notifications
    /// are dropped instead of piling up while the receiver is down.
    queued: Arc<Semaphore>,
    /// One permit per notification in flight.
    in_flight: Arc<Semaphore>,
}

impl WebhookSender {
    pub(super) fn new() -> WebhookSender {
        WebhookSender {
            queued: Arc::new(Semaphore::new(MAX_WEBHOOK_QUEUED)),
            in_flight: Arc::new(Semaphore::new(MAX_WEBHOOK_IN_FLIGHT)),
        }
    }

    /// Sends in the background; never waits. Needs a tokio runtime (logged and skipped without).
    pub(super) fn send(&self, url: String, held: HeldCommand) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(id = %held.id, "no async runtime; webhook not sent");
            return;
        };
        let Ok(slot) = Arc::clone(&self.queued).try_acquire_owned() else {
            tracing::warn!(id = %held.id, "webhook backlog full; notification dropped");
            return;
        };
        let in_flight = Arc::clone(&self.in_flight);
        runtime.spawn(async move {
            let _slot = slot;
            let Ok(_permit) = in_flight.acquire_owned().await else {
                return;
            };
            if let Err(e) = notify_webhook(&url, &held).await {
                tracing::warn!(id = %held.id, error = %e, "webhook notification failed");
            }
        });
    }
}

/// A parsed `http://` URL.
#[derive(Debug, PartialEq, Eq)]
struct Endpoint {
    /// Host name or address, without IPv6 brackets (for connecting).
    host: String,
    /// Port (80 unless given).
    port: u16,
    /// `host[:port]` as written (the Host header).
    authority: String,
    /// Path and query, at least `/`.
    path: String,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint, WebhookError> {
        let bad = || WebhookError::BadUrl(url.to_string());
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("https://") {
            return Err(WebhookError::UnsupportedScheme(url.to_string()));
        }
        let rest = url
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
            .and_then(|_| url.get(7..))
            .ok_or_else(|| WebhookError::UnsupportedScheme(url.to_string()))?;
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.is_empty()
            || authority.contains('@')
            || path
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(bad());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(bad)?;
            match after.strip_prefix(':') {
                Some(port) => (host, port.parse().map_err(|_| bad())?),
                None if after.is_empty() => (host, 80),
                None => return Err(bad()),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, port.parse().map_err(|_| bad())?),
                None => (authority, 80),
            }
        };
        if host.is_empty() {
            return Err(bad());
        }
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        Ok(Endpoint {
            host: host.to_string(),
            port,
            authority: authority.to_string(),
            path,
        })
    }
}

/// One POST; Ok on any 2xx status.
async fn post(endpoint: &Endpoint, body: &[u8]) -> Result<(), WebhookError> {
    let mut stream = TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: gatehouse/{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        endpoint.path,
        endpoint.authority,
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    let mut response = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    while !response.windows(2).any(|w| w == b"\r\n") && response.len() < MAX_RESPONSE_HEAD {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        response.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    let status_line = response.split(|b| *b == b'\n').next().unwrap_or_default();
    let status_line = String::from_utf8_lossy(status_line);
    let mut parts = status_line.split_whitespace();
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(WebhookError::BadResponse);
    };
    if !version.starts_with("HTTP/1.") {
        return Err(WebhookError::BadResponse);
    }
    let code: u16 = code.parse().map_err(|_| WebhookError::BadResponse)?;
    if (200..300).contains(&code) {
        Ok(())
    } else {
        Err(WebhookError::Status(code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approvals::tests::sample_held;
    use std::sync::Mutex;
    use tokio::net::TcpListener;

    #[test]
    fn parses_urls() {
        let e = Endpoint::parse("http://127.0.0.1:8080/hook?x=1").unwrap();
        assert_eq!(
            e,
            Endpoint {
                host: "127.0.0.1".into(),
                port: 8080,
                authority: "127.0.0.1:8080".into(),
                path: "/hook?x=1".into()
            }
        );
        let e = Endpoint::parse("HTTP://hooks.example").unwrap();
        assert_eq!((e.port, e.path.as_str()), (80, "/"));
        let e = Endpoint::parse("http://[::1]:9/a").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 9));
        assert!(matches!(
            Endpoint::parse("https://hooks.slack.com/x"),
            Err(WebhookError::UnsupportedScheme(_))
        ));
        for bad in [
            "ftp://x",
            "http://",
            "http://u:p@h/",
            "http://h:99999/",
            "http://h/a b",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    /// A tiny HTTP server: records each request body; answers 500 to the first `failures`
    /// requests, 200 afterwards.
    async fn recording_server(failures: usize) -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&bodies);
        tokio::spawn(async move {
            let mut served = 0;
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body = loop {
                    let n = conn.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "client closed early");
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    assert!(head.starts_with("post /hook http/1.1\r\n"), "{head}");
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .unwrap()
                        .trim()
                        .parse()
                        .unwrap();
                    if buf.len() >= end + 4 + len {
                        break buf[end + 4..end + 4 + len].to_vec();
                    }
                };
                seen.lock().unwrap().push(body);
                let status = if served < failures {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                served += 1;
                let reply = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                conn.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        (url, bodies)
    }

    #[tokio::test]
    async fn delivers_with_retry_after_500() {
        let (url, bodies) = recording_server(1).await;
        let held = sample_held();
        notify_webhook(&url, &held).await.unwrap();
        let bodies = bodies.lock().unwrap().clone();
        assert_eq!(bodies.len(), 2, "one failed attempt, one delivered");
        let json: serde_json::Value = serde_json::from_slice(&bodies[1]).unwrap();
        assert_eq!(json["id"], held.id.to_string());
        assert_eq!(json["identity"], "agent-1");
        assert_eq!(json["command"], "systemctl restart nginx");
        assert_eq!(json["state"], "pending");
        let text = json["text"].as_str().unwrap();
        assert!(text.contains(held.id.as_str()) && text.contains("systemctl restart nginx"));
    }

    #[test]
    fn text_cannot_ping_the_channel() {
        let mut held = sample_held();
        held.command = b"echo '<!channel>' > /tmp/x && true".to_vec();
        let json: serde_json::Value =
            serde_json::from_slice(&webhook_body(&held).unwrap()).unwrap();
        let text = json["text"].as_str().unwrap();
        assert!(
            text.contains("echo '&lt;!channel&gt;' &gt; /tmp/x &amp;&amp; true"),
            "{text}"
        );
        // The structured field keeps the exact command.
        assert_eq!(json["command"], "echo '<!channel>' > /tmp/x && true");
    }

    #[tokio::test]
    async fn gives_up_after_three_attempts() {
        let (url, bodies) = recording_server(usize::MAX).await;
        let err = notify_webhook(&url, &sample_held()).await.unwrap_err();
        assert!(matches!(err, WebhookError::Status(500)), "{err}");
        assert_eq!(bodies.lock().unwrap().len(), WEBHOOK_ATTEMPTS as usize);
    }
}
