//! What an agent's connection goes through before its session starts: the russh server
//! configuration, and the SSH identification exchange (RFC 4253 §4.2), which gatehouse does
//! itself so that the algorithms it offers can depend on the client's software.
//!
//! Why the exchange is not left to russh: russh sends its key-exchange proposal from one fixed
//! configuration. paramiko takes AES-CTR with HMAC-SHA2-256 whenever a server offers it (its
//! own list puts CTR first and AES-GCM last), and in that mode it needs a whole core for about
//! 400 MB/s. On a bastion with two cores that leaves one core for the target's sshd and all of
//! gatehouse, and paramiko agents got 0.43–0.52× of their direct throughput. paramiko speaks
//! AES-GCM since 3.5.0, at a fraction of the cost. So, as OpenSSH's `compat.c` narrows its
//! proposals for client versions it knows, a client that announces paramiko 3.5 or later is
//! offered only the AES-GCM ciphers of the configured list (when it has any). The offer is only
//! ever narrowed: a client that misstates its version can fail to agree on a cipher, never get
//! a weaker one.
//!
//! Not here: which algorithms may be configured (`config::algorithms`), authentication
//! (`server`).

use std::borrow::Cow;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures::task::AtomicWaker;
use russh::keys::PrivateKey;
use russh::{MethodKind, MethodSet, SshId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::config::ServerConfig;

/// Longest identification line a client may send, CR LF included (RFC 4253 §4.2). A client
/// that sends more without a line end is handed to russh as it is, which refuses it.
pub const MAX_ID_LINE: usize = 255;

/// The first paramiko release with AES-GCM (`aes128-gcm@openssh.com`, `aes256-gcm@openssh.com`).
const PARAMIKO_WITH_GCM: (u32, u32) = (3, 5);

/// The server side of every agent connection's handshake.
pub struct Handshake {
    /// The configuration offered to most clients.
    standard: Arc<russh::server::Config>,
    /// The same with only the configured AES-GCM ciphers, for clients that prefer AES-CTR but
    /// run much faster with AES-GCM; `None` when the configured list has no AES-GCM cipher.
    gcm_only: Option<Arc<russh::server::Config>>,
    /// gatehouse's identification line as sent, CR LF included (russh's `server_id`).
    server_id: Bytes,
    /// How long a connection may take from accept to a successful authentication.
    pub login_grace: Duration,
}

impl Handshake {
    /// The handshake for this host key and `[server]` table.
    pub fn new(host_key: &PrivateKey, server: &ServerConfig) -> Handshake {
        let standard = russh_config(host_key, server, &server.ciphers);
        let gcm: Vec<String> = server
            .ciphers
            .iter()
            .filter(|name| name.ends_with("-gcm@openssh.com"))
            .cloned()
            .collect();
        let gcm_only = (!gcm.is_empty()).then(|| Arc::new(russh_config(host_key, server, &gcm)));
        let server_id = match &standard.server_id {
            SshId::Standard(id) => Bytes::from(format!("{id}\r\n")),
            SshId::Raw(id) => Bytes::copy_from_slice(id.as_bytes()),
        };
        Handshake {
            standard: Arc::new(standard),
            gcm_only,
            server_id,
            login_grace: server.login_grace,
        }
    }

    /// Sends gatehouse's identification on `socket` and reads the client's. Returns everything
    /// read, for [`Greeted`] to hand to russh: the client's line and whatever followed it.
    pub async fn exchange(&self, socket: &mut TcpStream) -> io::Result<Vec<u8>> {
        socket.write_all(&self.server_id).await?;
        let mut read = Vec::with_capacity(2 * MAX_ID_LINE);
        let mut chunk = [0u8; MAX_ID_LINE];
        while !read.contains(&b'\n') && read.len() < MAX_ID_LINE {
            let n = socket.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            read.extend(chunk.iter().take(n));
        }
        Ok(read)
    }

    /// The configuration to run a connection with, given what [`Handshake::exchange`] read.
    pub fn config_for(&self, read: &[u8]) -> Arc<russh::server::Config> {
        let software = client_software(read);
        match &self.gcm_only {
            Some(gcm_only) if paramiko_with_gcm(software) => {
                tracing::debug!(client = ?software, "offering only the AES-GCM ciphers");
                gcm_only.clone()
            }
            _ => self.standard.clone(),
        }
    }

    /// `stream` for russh, after the exchange: russh reads `read` first, and its own copy of
    /// the identification, already sent, is dropped.
    pub fn greeted<S>(&self, stream: S, read: Vec<u8>) -> Greeted<S> {
        Greeted {
            inner: stream,
            unread: read.into(),
            sent_id: self.server_id.clone(),
            cut: Arc::new(Cut::default()),
        }
    }
}

/// The russh server configuration gatehouse runs with, offering `ciphers`.
fn russh_config(
    host_key: &PrivateKey,
    server: &ServerConfig,
    ciphers: &[String],
) -> russh::server::Config {
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    // The names were checked against `config::algorithms` when the config was loaded; a name
    // russh did not know would only narrow what is offered.
    let ciphers = ciphers
        .iter()
        .filter_map(|name| russh::cipher::Name::try_from(name.as_str()).ok())
        .collect::<Vec<_>>();
    let macs = server
        .macs
        .iter()
        .filter_map(|name| russh::mac::Name::try_from(name.as_str()).ok())
        .collect::<Vec<_>>();
    russh::server::Config {
        methods,
        preferred: russh::Preferred {
            cipher: Cow::Owned(ciphers),
            mac: Cow::Owned(macs),
            ..russh::Preferred::DEFAULT
        },
        keys: vec![host_key.clone()],
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::from_millis(0)),
        max_auth_attempts: 6,
        inactivity_timeout: Some(Duration::from_secs(3600)),
        keepalive_interval: Some(Duration::from_secs(60)),
        window_size: 2 * 1024 * 1024,
        maximum_packet_size: 32768,
        channel_buffer_size: 64,
        limits: crate::rekey::limits(),
        ..Default::default()
    }
}

/// The software part of a client's identification line (`paramiko_3.5.1` in
/// `SSH-2.0-paramiko_3.5.1 comment`), or "" when `read` does not start with one.
fn client_software(read: &[u8]) -> &str {
    let line = read.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = std::str::from_utf8(line).unwrap_or_default();
    line.strip_prefix("SSH-2.0-")
        .and_then(|rest| rest.trim_end_matches('\r').split(' ').next())
        .unwrap_or_default()
}

/// Whether `software` names a paramiko release that speaks AES-GCM.
fn paramiko_with_gcm(software: &str) -> bool {
    let Some(version) = software.strip_prefix("paramiko_") else {
        return false;
    };
    let mut numbers = version.split('.').map(|n| n.parse::<u32>().ok());
    match (numbers.next().flatten(), numbers.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= PARAMIKO_WITH_GCM,
        _ => false,
    }
}

/// Closes a [`Greeted`] stream from outside russh's session.
///
/// Why: russh reads no messages from its handle while a key exchange is under way, so a
/// connection that stops in the middle of one cannot be told to disconnect; cutting its stream
/// ends the session at its next read.
#[derive(Default)]
pub struct Cut {
    /// Set once: every read and write fails from then on.
    done: AtomicBool,
    /// The task reading the stream, woken by [`Cut::now`].
    reader: AtomicWaker,
}

impl Cut {
    /// Makes the stream's reads and writes fail, and wakes its reader to see it.
    pub fn now(&self) {
        self.done.store(true, Ordering::SeqCst);
        self.reader.wake();
    }

    fn check(&self) -> io::Result<()> {
        if self.done.load(Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection closed by gatehouse",
            ));
        }
        Ok(())
    }
}

/// An agent's stream after gatehouse did the identification exchange: russh first reads what
/// the exchange read, and the identification russh writes (the one already sent) is dropped.
pub struct Greeted<S> {
    /// The connection itself.
    inner: S,
    /// What the exchange read and russh has yet to see; shrinks as russh reads it.
    unread: Bytes,
    /// The part of gatehouse's identification (already on the wire) whose copy from russh is
    /// still to be dropped; shrinks as russh writes it.
    sent_id: Bytes,
    /// Set from outside to close the stream.
    cut: Arc<Cut>,
}

impl<S> Greeted<S> {
    /// What closes this stream from outside the session.
    pub fn cut(&self) -> Arc<Cut> {
        self.cut.clone()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Greeted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.cut.reader.register(cx.waker());
        if let Err(err) = this.cut.check() {
            return Poll::Ready(Err(err));
        }
        if !this.unread.is_empty() {
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Greeted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if let Err(err) = this.cut.check() {
            return Poll::Ready(Err(err));
        }
        if !this.sent_id.is_empty() {
            let n = this.sent_id.len().min(buf.len());
            if buf.get(..n) != this.sent_id.get(..n) {
                return Poll::Ready(Err(io::Error::other(
                    "the SSH library wrote an identification other than the one sent",
                )));
            }
            this.sent_id.advance(n);
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn greeted(inner: tokio::io::DuplexStream, unread: &[u8]) -> Greeted<tokio::io::DuplexStream> {
        Greeted {
            inner,
            unread: Bytes::copy_from_slice(unread),
            sent_id: Bytes::from_static(b"SSH-2.0-gatehouse\r\n"),
            cut: Arc::new(Cut::default()),
        }
    }

    #[tokio::test]
    async fn russh_reads_the_exchange_first_and_its_identification_is_not_sent_twice() {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut stream = greeted(near, b"SSH-2.0-client\r\nKEX");
        far.write_all(b"INIT").await.unwrap();
        let mut read = [0u8; 23];
        stream.read_exact(&mut read).await.unwrap();
        assert_eq!(&read, b"SSH-2.0-client\r\nKEXINIT");

        // russh's identification in two writes, then a packet in the same write as its end.
        stream.write_all(b"SSH-2.0-gate").await.unwrap();
        stream.write_all(b"house\r\npacket").await.unwrap();
        stream.flush().await.unwrap();
        let mut sent = [0u8; 6];
        far.read_exact(&mut sent).await.unwrap();
        assert_eq!(&sent, b"packet");
    }

    #[tokio::test]
    async fn a_different_identification_from_russh_is_an_error_not_sent() {
        let (near, _far) = tokio::io::duplex(1024);
        let mut stream = greeted(near, b"");
        let err = stream.write_all(b"SSH-2.0-russh\r\n").await.unwrap_err();
        assert!(err.to_string().contains("identification"), "{err}");
    }

    #[tokio::test]
    async fn cutting_wakes_a_waiting_reader_with_an_error() {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut stream = greeted(near, b"");
        let cut = stream.cut();
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            let read = stream.read(&mut buf).await;
            (read.map_err(|e| e.kind()), stream)
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!reader.is_finished(), "the read did not wait for data");
        cut.now();
        let (read, mut stream) = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read, Err(io::ErrorKind::ConnectionAborted));
        far.write_all(b"late").await.unwrap();
        assert!(stream.write_all(b"x").await.is_err());
        assert!(stream.read(&mut [0u8; 4]).await.is_err());
    }

    #[test]
    fn client_software_is_the_identification_without_protocol_and_comment() {
        assert_eq!(
            client_software(b"SSH-2.0-paramiko_3.5.1\r\n"),
            "paramiko_3.5.1"
        );
        assert_eq!(
            client_software(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n\0\0\x01"),
            "OpenSSH_9.2p1"
        );
        assert_eq!(
            client_software(b"SSH-2.0-paramiko_3.5.1\n"),
            "paramiko_3.5.1"
        );
        assert_eq!(client_software(b"SSH-1.5-paramiko_3.5.1\r\n"), "");
        assert_eq!(client_software(b"\xff\xfe\r\n"), "");
        assert_eq!(client_software(b""), "");
    }

    #[test]
    fn only_paramiko_releases_with_aes_gcm_are_steered() {
        for yes in [
            "paramiko_3.5.0",
            "paramiko_3.5.1",
            "paramiko_3.10",
            "paramiko_4.0.0",
        ] {
            assert!(paramiko_with_gcm(yes), "{yes}");
        }
        for no in [
            "paramiko_3.4.1",
            "paramiko_2.12.0",
            "paramiko_3",
            "paramiko_x.y",
            "paramiko_",
            "OpenSSH_9.6",
            "asyncssh_2.17",
            "Paramiko_3.5.1",
        ] {
            assert!(!paramiko_with_gcm(no), "{no}");
        }
    }
}
