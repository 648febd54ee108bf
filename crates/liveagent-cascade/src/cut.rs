//! Telling a response body that was cut short from one that ended.
//!
//! awc (actix-http's HTTP/1 client codec) ends a body stream normally when the server
//! closes the connection between two chunks of a `Transfer-Encoding: chunked` body, or
//! before a `Content-Length` body is complete: the codec's decoder is simply asked for the
//! next item at end of file and has none. Only bytes left over in a half-read chunk make it
//! an error. So a streamed TTS answer whose connection dies after some flushed chunks would
//! look complete, and the user would hear a truncated answer with no error anywhere.
//!
//! The stages' HTTP client therefore connects through [`watched`]: the TCP stream notes
//! when the peer closed it (a read that returns no bytes). The HTTP/1 decoder only reads
//! the socket when it needs more of the body, and reading stops once the terminating chunk
//! (or the last `Content-Length` byte) is decoded, so a body that ends after the socket
//! saw the close ended *because* of it. [`CutBody`] turns that end into
//! `PayloadError::Incomplete`, which the stages report as a connection error. Bodies
//! delimited by the close itself (HTTP/1.0 style: neither chunked nor a length) and HTTP/2
//! (whose streams end with their own flag) are left alone. Over TLS a close without
//! `close_notify` is already an error from rustls; this covers plain HTTP (local servers,
//! proxies, OpenAI-compatible servers on a LAN). Not covered: a TLS server that sends
//! `close_notify` mid-body (rustls then reports a clean end, and the TCP close may not
//! have been read yet).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use actix_rt::net::{ActixStream, TcpStream};
use actix_service::{Service, ServiceExt};
use actix_tls::connect::{ConnectError, ConnectInfo, Connection, ConnectorService};
use awc::error::PayloadError;
use awc::http::Uri;
use bytes::Bytes;
use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, Ready};

/// A TCP stream that notes when the peer has closed it.
#[derive(Debug)]
pub(crate) struct EofWatch {
    io: TcpStream,
    eof: Arc<AtomicBool>,
}

impl AsyncRead for EofWatch {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let room = buf.remaining() > 0;
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if room && matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() == before {
            self.eof.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for EofWatch {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl ActixStream for EofWatch {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        ActixStream::poll_read_ready(&self.io, cx)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        ActixStream::poll_write_ready(&self.io, cx)
    }
}

/// awc's default TCP connector (default resolver) with Nagle's algorithm off
/// (`TCP_NODELAY`), as browsers and the providers' SDKs do: a realtime STT socket writes one
/// small audio frame every 20-100 ms, and with Nagle on a frame written while the previous one
/// is unacknowledged waits for the peer's delayed ACK (up to 40 ms on Linux), so audio and the
/// partials it produces arrive in bursts, late.
pub(crate) fn tcp_nodelay(
) -> impl Service<ConnectInfo<Uri>, Response = Connection<Uri, TcpStream>, Error = ConnectError>
       + Clone
       + 'static {
    ConnectorService::default().map(|conn: Connection<Uri, TcpStream>| {
        if let Err(e) = conn.io_ref().set_nodelay(true) {
            tracing::debug!(target: "liveagent::cascade", error = %e, "cannot set TCP_NODELAY");
        }
        conn
    })
}

/// [`tcp_nodelay`]'s connector, each stream watched: `eof` is set when
/// the peer closes. Meant for a client of one connection that serves one request at a
/// time (`crate::http::Lease`), so that the flag is that request's.
pub(crate) fn watched(
    eof: Arc<AtomicBool>,
) -> impl Service<ConnectInfo<Uri>, Response = Connection<Uri, EofWatch>, Error = ConnectError>
       + Clone
       + 'static {
    tcp_nodelay().map(move |conn: Connection<Uri, TcpStream>| {
        let (io, conn) = conn.replace_io(());
        conn.replace_io(EofWatch {
            io,
            eof: eof.clone(),
        })
        .1
    })
}

/// A response body that ends with `PayloadError::Incomplete` instead of silently when its
/// connection closed before the body's own end (see the [module docs](self)).
pub(crate) struct CutBody<S> {
    inner: S,
    eof: Arc<AtomicBool>,
    /// The body has its own end (chunked or `Content-Length`, HTTP/1).
    framed: bool,
    ended: bool,
}

impl<S> CutBody<S> {
    /// Watches `inner`; `framed` when the response is HTTP/1 with a chunked or
    /// `Content-Length` body.
    pub(crate) fn new(inner: S, eof: Arc<AtomicBool>, framed: bool) -> Self {
        CutBody {
            inner,
            eof,
            framed,
            ended: false,
        }
    }
}

impl<S> Stream for CutBody<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match ready!(Pin::new(&mut self.inner).poll_next(cx)) {
            None => {
                self.ended = true;
                if self.framed && self.eof.load(Ordering::Relaxed) {
                    Poll::Ready(Some(Err(PayloadError::Incomplete(Some(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection before the end of the body",
                    ))))))
                } else {
                    Poll::Ready(None)
                }
            }
            Some(Err(e)) => {
                self.ended = true;
                Poll::Ready(Some(Err(e)))
            }
            item => Poll::Ready(item),
        }
    }
}
