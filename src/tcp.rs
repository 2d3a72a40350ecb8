//! TCP socket behaviour that neither tokio nor russh offers. Used on agent connections.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP stream that, after every write, asks the kernel to acknowledge the peer's next packet
/// at once (`TCP_QUICKACK`).
///
/// Why: once a connection sends soon after it receives, Linux treats it as interactive and
/// delays its ACKs (up to 40 ms) hoping to carry them on a reply. A client with Nagle's
/// algorithm on, paramiko's default and so most agents', holds each small packet until the
/// previous one is acknowledged. After an exec ends, the client's channel close gets no reply
/// that could carry the ACK, so its next request (the next exec's channel open) waited ~40 ms:
/// straight to OpenSSH's sshd as much as through gatehouse. The option is not sticky (the
/// kernel goes back to delaying once it sees the reply pattern again), hence after every write:
/// one `setsockopt` per write, which bulk transfers batch into few.
pub struct QuickAck {
    inner: TcpStream,
}

impl QuickAck {
    /// Wraps a connected stream.
    pub fn new(inner: TcpStream) -> QuickAck {
        QuickAck { inner }
    }

    fn ack_next_at_once(&self) {
        // Best effort: a socket that refuses the option only keeps the kernel's default timing.
        let _ = socket2::SockRef::from(&self.inner).set_tcp_quickack(true);
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            if n > 0 {
                self.ack_next_at_once();
            }
        }
        written
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

    /// Serves `exchanges` one-byte requests with one-byte replies on `server`, the client
    /// writing each request only after the previous reply (as an SSH client does between execs).
    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
        listener: &tokio::net::TcpListener,
        wrap: impl FnOnce(TcpStream) -> S,
        exchanges: usize,
    ) -> (S, TcpStream) {
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.set_nodelay(true).unwrap();
            let mut reply = [0u8; 1];
            for _ in 0..exchanges {
                c.write_all(b"q").await.unwrap();
                c.read_exact(&mut reply).await.unwrap();
            }
            c
        });
        let (socket, _) = listener.accept().await.unwrap();
        socket.set_nodelay(true).unwrap();
        let mut server = wrap(socket);
        let mut request = [0u8; 1];
        for _ in 0..exchanges {
            server.read_exact(&mut request).await.unwrap();
            server.write_all(b"r").await.unwrap();
        }
        // The client stays connected: its FIN would put the socket back into delayed-ACK mode.
        (server, client.await.unwrap())
    }

    /// Request/reply exchanges put a plain socket in the kernel's delayed-ACK (ping-pong)
    /// mode; the wrapped one leaves each reply ready to acknowledge the next packet at once.
    #[tokio::test]
    async fn after_a_reply_the_next_packet_is_acknowledged_at_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (plain, _client) = exchange(&listener, |s| s, 8).await;
        let (wrapped, _client) = exchange(&listener, QuickAck::new, 8).await;
        let quick = |s: &TcpStream| socket2::SockRef::from(s).tcp_quickack().unwrap();
        // Without this the test would prove nothing: the exchanges must have put a socket
        // that is left alone into delayed-ACK mode.
        assert!(
            !quick(&plain),
            "the plain socket never entered delayed-ACK mode"
        );
        assert!(quick(&wrapped.inner));
    }
}
