//! A connection's byte stream: plain TCP, or TLS over it, switched in
//! place for STARTTLS. Bytes read before a TLS handshake that belong to it
//! (after a PROXY header) are replayed to the TLS layer first.

use futures_rustls::server::TlsStream;
use futures_rustls::TlsAcceptor;
use postern_core::smtp::TlsInfo;
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::net::TcpStream;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

/// TCP with bytes to replay before reading the socket.
#[derive(Debug)]
pub struct Prefixed {
    tcp: TcpStream,
    prefix: Vec<u8>,
    pos: usize,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if self.pos < self.prefix.len() {
            let n = buf.len().min(self.prefix.len() - self.pos);
            buf[..n].copy_from_slice(&self.prefix[self.pos..self.pos + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_close(cx)
    }
}

/// The stream a session reads and writes.
#[derive(Debug)]
pub enum Stream {
    /// Plain text.
    Plain(Prefixed),
    /// TLS.
    Tls(Box<TlsStream<Prefixed>>),
    /// Between the two, or after a failed handshake.
    Gone,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "stream gone")
}

impl Stream {
    /// A plain stream.
    pub fn new(tcp: TcpStream) -> Self {
        Stream::Plain(Prefixed {
            tcp,
            prefix: Vec::new(),
            pos: 0,
        })
    }

    /// Reads some bytes (0 at the end).
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(p) => p.read(buf).await,
            Stream::Tls(t) => t.read(buf).await,
            Stream::Gone => Err(gone()),
        }
    }

    /// Writes all bytes and flushes.
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(p) => p.write_all(bytes).await,
            Stream::Tls(t) => {
                t.write_all(bytes).await?;
                t.flush().await
            }
            Stream::Gone => Err(gone()),
        }
    }

    /// Closes the write side (sends TLS close_notify first).
    pub async fn close(&mut self) {
        let _ = match self {
            Stream::Plain(p) => p.close().await,
            Stream::Tls(t) => t.close().await,
            Stream::Gone => Ok(()),
        };
    }

    /// Runs the TLS handshake over the plain stream, replaying `early`.
    pub async fn start_tls(
        &mut self,
        acceptor: &TlsAcceptor,
        early: Vec<u8>,
    ) -> io::Result<TlsInfo> {
        let Stream::Plain(mut p) = std::mem::replace(self, Stream::Gone) else {
            return Err(io::Error::other("TLS already active"));
        };
        p.prefix = early;
        p.pos = 0;
        let tls = acceptor.accept(p).await?;
        let conn = tls.get_ref().1;
        let info = TlsInfo {
            version: conn
                .protocol_version()
                .map(|v| match v {
                    rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
                    rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default(),
            cipher: conn
                .negotiated_cipher_suite()
                .map(|c| format!("{:?}", c.suite()))
                .unwrap_or_default(),
        };
        *self = Stream::Tls(Box::new(tls));
        Ok(info)
    }
}
