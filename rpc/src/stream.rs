//! The byte stream under every connection: plain TCP, or TCP wrapped in TLS when the node
//! has a [`TlsConfig`]. Chosen once per connection here; everything above (the secret
//! handshake, frames) only sees `AsyncRead + AsyncWrite`.
//!
//! A server with TLS also answers a client that opened without it (its first byte is the
//! secret handshake's magic, not a TLS record) with [`TLS_REQUIRED_MAGIC`], so that client
//! reports "requires TLS" instead of a bare reset.

use crate::auth::{HANDSHAKE_MAGIC, TLS_REQUIRED_LEN, TLS_REQUIRED_MAGIC};
use crate::error::{AuthError, RpcError};
use crate::tls::TlsConfig;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

type TlsStream = Box<tokio_rustls::TlsStream<TcpStream>>;

/// A connection's stream, plain or TLS.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    /// Boxed: a TLS session is a few KiB, a TCP stream a few words.
    Tls(TlsStream),
}

/// The half a connection's reader task owns.
#[derive(Debug)]
pub(crate) enum ReadHalf {
    Plain(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<TlsStream>),
}

/// The half a connection's writer task owns.
#[derive(Debug)]
pub(crate) enum WriteHalf {
    Plain(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<TlsStream>),
}

impl Stream {
    /// Splits for a reader and a writer task. TCP splits without a lock, as before TLS
    /// existed; a TLS session is one state machine, so its halves share one.
    pub(crate) fn split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Plain(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Plain(r), WriteHalf::Plain(w))
            }
            Stream::Tls(s) => {
                let (r, w) = tokio::io::split(s);
                (ReadHalf::Tls(r), WriteHalf::Tls(w))
            }
        }
    }
}

/// First byte of every TLS record that opens a connection (a handshake record).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Client side: wraps `tcp` in TLS when `tls` is set, verifying the server's certificate.
/// A refusal (a certificate, an alert) is an `Auth` error, final; an I/O failure on the way
/// (the server died mid-handshake) is `ConnectionClosed`, which callers retry elsewhere.
pub(crate) async fn client(
    tcp: TcpStream,
    tls: Option<&TlsConfig>,
    peer: &str,
) -> Result<Stream, RpcError> {
    let Some(tls) = tls else {
        return Ok(Stream::Plain(tcp));
    };
    let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
    match connector.connect(tls.server_name.clone(), tcp).await {
        Ok(s) => Ok(Stream::Tls(Box::new(s.into()))),
        Err(e) if is_refusal(&e) => Err(tls_error(peer, &e).into()),
        Err(e) => Err(RpcError::ConnectionClosed {
            peer: peer.into(),
            reason: format!("during the TLS handshake: {e}"),
        }),
    }
}

/// Whether a failed TLS handshake was refused by TLS itself (rustls' errors and the peer's
/// alerts come as `InvalidData`), not cut by the network.
fn is_refusal(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidData
        || e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
}

/// Server side: with `tls`, refuses a client that opened without TLS (answering it so it
/// can say why) and runs the TLS handshake, which checks the client's certificate.
pub(crate) async fn server(
    mut tcp: TcpStream,
    tls: Option<&TlsConfig>,
    peer: &str,
) -> Result<Stream, AuthError> {
    let Some(tls) = tls else {
        return Ok(Stream::Plain(tcp));
    };
    let mut first = [0u8; 1];
    let n = tcp.peek(&mut first).await.map_err(|e| AuthError::Io {
        peer: peer.into(),
        reason: e.to_string(),
    })?;
    if n == 1 && first[0] == HANDSHAKE_MAGIC[0] {
        refuse_plain(&mut tcp).await;
        return Err(AuthError::Tls {
            peer: peer.into(),
            reason: "the client connected without TLS, which this server requires (it was \
                     told so; give it --tls-cert, --tls-key and --tls-ca)"
                .into(),
        });
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
    match acceptor.accept(tcp).await {
        Ok(s) => Ok(Stream::Tls(Box::new(s.into()))),
        Err(e) => Err(tls_error(peer, &e)),
    }
}

/// Tells a client that opened with the plain secret handshake that TLS is required: its
/// hello is read first (closing with unread bytes would reset the connection and lose the
/// answer), then an answer of a challenge's length with the magic `TSRT` is sent.
async fn refuse_plain(tcp: &mut TcpStream) {
    let mut hello = [0u8; crate::auth::HELLO_LEN];
    if tcp.read_exact(&mut hello).await.is_err() {
        return;
    }
    let mut answer = [0u8; TLS_REQUIRED_LEN];
    answer[..4].copy_from_slice(&TLS_REQUIRED_MAGIC);
    let _ = tcp.write_all(&answer).await;
    let _ = tcp.shutdown().await;
}

/// A failed TLS handshake, with what to check.
pub(crate) fn tls_error(peer: &str, e: &io::Error) -> AuthError {
    tls_failure(peer, e.to_string())
}

/// A TLS failure seen as `reason` (during the TLS handshake, or as the peer's alert that
/// arrives during the secret handshake after it: in TLS 1.3 a client learns that the
/// server refused its certificate only on its first read), with what to check.
pub(crate) fn tls_failure(peer: &str, reason: String) -> AuthError {
    let hint = hint(&reason);
    AuthError::Tls {
        peer: peer.into(),
        reason: format!("{reason}{hint}"),
    }
}

/// What the usual causes of a failed TLS handshake mean for the operator.
fn hint(cause: &str) -> &'static str {
    if cause.contains("UnknownIssuer") || cause.contains("BadSignature") {
        " (its certificate is not signed by the CA given with --tls-ca: every node needs a \
         certificate from the cluster's CA)"
    } else if cause.contains("UnknownCA")
        || cause.contains("BadCertificate")
        // A certificate from another CA with the same name as ours fails its signature
        // check rather than its issuer lookup; the peer then sends this alert.
        || cause.contains("DecryptError")
    {
        " (the peer does not trust this node's certificate: it is not signed by the CA the \
         peer was given with --tls-ca)"
    } else if cause.contains("CertificateRequired") || cause.contains("NoCertificatesPresented") {
        " (TLS here is mutual: the client must present a certificate, --tls-cert and --tls-key)"
    } else if cause.contains("NotValidForName") {
        " (the certificate lacks the name `tessera` in its subjectAltName; make it with \
         scripts/gen-tls.sh or add DNS:tessera)"
    } else if cause.contains("Expired") || cause.contains("NotValidYet") {
        " (a certificate is outside its validity dates: renew it, or check the clock)"
    } else if cause.contains("ProtocolVersion") || cause.contains("InvalidContentType") {
        " (the peer may run without TLS: every node needs the same --tls-* flags, or none)"
    } else {
        ""
    }
}

/// Whether bytes that should have opened a secret handshake are a TLS hello instead.
pub(crate) fn looks_like_tls(first: &[u8]) -> bool {
    first.len() >= 2 && first[0] == TLS_HANDSHAKE_RECORD && first[1] == 0x03
}

/// A server without TLS answers a TLS hello (whose first `got` bytes it read) with a fatal
/// `protocol_version` alert, which the client reports at once instead of retrying a reset.
/// The rest of the hello is read first: closing with unread bytes would reset the
/// connection and lose the alert.
pub(crate) async fn refuse_tls<S>(stream: &mut S, got: &[u8])
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    const HEADER: usize = 5;
    const ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 70];
    if got.len() < HEADER {
        return;
    }
    let record = usize::from(u16::from_be_bytes([got[3], got[4]]));
    let unread = (HEADER + record).saturating_sub(got.len());
    // A record is at most 16 KiB plus overhead; anything else is not a hello worth answering.
    if unread > 18 << 10 {
        return;
    }
    let mut rest = vec![0u8; unread];
    if stream.read_exact(&mut rest).await.is_err() {
        return;
    }
    let _ = stream.write_all(&ALERT).await;
    let _ = stream.shutdown().await;
}

/// `AsyncRead` for an enum whose two variants both implement it.
macro_rules! delegate_read {
    ($t:ty) => {
        impl AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
                    Self::Tls(s) => Pin::new(s).poll_read(cx, buf),
                }
            }
        }
    };
}

/// `AsyncWrite` for an enum whose two variants both implement it.
macro_rules! delegate_write {
    ($t:ty) => {
        impl AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
                    Self::Tls(s) => Pin::new(s).poll_write(cx, buf),
                }
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
                    Self::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
                }
            }

            fn is_write_vectored(&self) -> bool {
                match self {
                    Self::Plain(s) => s.is_write_vectored(),
                    Self::Tls(s) => s.is_write_vectored(),
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    Self::Plain(s) => Pin::new(s).poll_flush(cx),
                    Self::Tls(s) => Pin::new(s).poll_flush(cx),
                }
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
                    Self::Tls(s) => Pin::new(s).poll_shutdown(cx),
                }
            }
        }
    };
}

delegate_read!(Stream);
delegate_read!(ReadHalf);
delegate_write!(Stream);
delegate_write!(WriteHalf);
