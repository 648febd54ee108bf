//! [`LeanFramed`]: the provider socket after the handshake, framed with awc's WebSocket
//! [`Codec`] but holding no buffer while the connection is idle.
//!
//! awc hands back an `actix_codec::Framed`, which keeps an 8 KiB read buffer and an 8 KiB
//! write buffer for the life of the connection (it re-reserves 8 KiB whenever less than
//! 1 KiB is free, so shrinking them does not last). A realtime session is idle between
//! frames almost all the time: those 16 KiB were the largest per-session cost of the
//! client after the conversation history (docs/performance.md, "The anonymous part, by
//! owner"). `LeanFramed` takes the socket, the codec and any bytes already read out of
//! awc's `Framed` ([`Framed::into_parts`]) and:
//!
//! - **reads** into an 8 KiB buffer allocated for the read and released as soon as every
//!   byte in it was decoded. Decoded payloads keep pointing into it (no copy), as with
//!   `Framed`, so it is freed when the last frame of the read is dropped. Only a partial
//!   frame keeps a buffer between reads, and it grows to that frame's size;
//! - **writes** each frame into a buffer of the frame's size, released once the socket
//!   took all of it (frames queued together still go out in one write);
//! - refuses a frame whose declared payload is larger than the codec's maximum as soon
//!   as more than that many bytes are buffered, instead of buffering the whole frame before
//!   the codec refuses it (a hostile peer could otherwise make the client buffer a
//!   declared 2^62-byte frame for as long as it keeps sending).
//!
//! Everything else is `Framed`'s behaviour, with the same codec: the same frames, the same
//! errors (control frame limits, continuation frames, masking, the size limit), the same
//! end of stream, and `poll_close` flushes and shuts the socket down without writing
//! frames still buffered, as `Framed::close` does (the session flushes before closing).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use actix_codec::{AsyncRead, AsyncWrite, Decoder, Encoder, Framed};
use awc::error::WsProtocolError;
use awc::ws::{Codec, Frame, Message};
use bytes::{Buf, BytesMut};
use futures_util::{Sink, Stream};

/// How much one read asks the socket for (awc's `Framed` uses the same).
const READ_SIZE: usize = 8 * 1024;
/// A partial frame's buffer grows when less than this is free (as in `Framed`).
const LOW_WATER: usize = 1024;
/// `poll_ready` flushes first once this much is waiting to be written (as in `Framed`).
const WRITE_HIGH_WATER: usize = 8 * 1024;
/// The longest WebSocket frame header: 2 bytes, a 64-bit length, a 4-byte mask.
const MAX_HEADER: usize = 14;

/// A WebSocket over `T` that holds buffers only while a frame is in flight (see the
/// module docs).
pub(crate) struct LeanFramed<T> {
    io: T,
    codec: Codec,
    /// The largest payload the codec accepts.
    max_size: usize,
    /// Bytes read and not decoded yet; no allocation between frames.
    read_buf: BytesMut,
    /// Encoded bytes not written yet; no allocation once written.
    write_buf: BytesMut,
    /// The socket reported end of stream.
    eof: bool,
    /// `read_buf` may hold a whole frame (new bytes since the last `decode` said no).
    readable: bool,
    /// An oversized frame was refused before it all arrived: the stream is over.
    refused: bool,
}

thread_local! {
    /// One read buffer per thread, kept between reads that found nothing to read: the
    /// poll that ends in `Pending` would otherwise free a fresh buffer every time.
    static SPARE: std::cell::Cell<Option<BytesMut>> = const { std::cell::Cell::new(None) };
}

/// An empty read buffer of [`READ_SIZE`] bytes: the thread's spare, or a new one.
fn read_buffer() -> BytesMut {
    SPARE
        .with(|spare| spare.take())
        .unwrap_or_else(|| BytesMut::with_capacity(READ_SIZE))
}

impl<T> LeanFramed<T> {
    /// Takes the socket, the codec and any bytes already read out of awc's `Framed`;
    /// `max_size` is the largest payload the codec was told to accept.
    pub(crate) fn from_framed(framed: Framed<T, Codec>, max_size: usize) -> Self {
        let parts = framed.into_parts();
        let mut read_buf = BytesMut::new();
        if !parts.read_buf.is_empty() {
            // What arrived with the handshake response (the provider's first event, say).
            read_buf.extend_from_slice(&parts.read_buf);
        }
        let mut write_buf = BytesMut::new();
        if !parts.write_buf.is_empty() {
            write_buf.extend_from_slice(&parts.write_buf);
        }
        LeanFramed {
            io: parts.io,
            codec: parts.codec,
            max_size,
            readable: !read_buf.is_empty(),
            read_buf,
            write_buf,
            eof: false,
            refused: false,
        }
    }

    /// True when the read or write buffer holds an allocation (for tests). A buffer
    /// advanced to its end reports no capacity but can reclaim what it still holds.
    #[cfg(test)]
    fn holds_buffers(&mut self) -> bool {
        self.read_buf.capacity() > 0
            || self.write_buf.capacity() > 0
            || self.read_buf.try_reclaim(1)
            || self.write_buf.try_reclaim(1)
    }
}

impl<T: AsyncRead + Unpin> Stream for LeanFramed<T> {
    type Item = Result<Frame, WsProtocolError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.refused {
            return Poll::Ready(None);
        }
        loop {
            if this.readable {
                if this.eof {
                    let frame = this.codec.decode_eof(&mut this.read_buf);
                    this.release_read_buf();
                    return match frame {
                        Ok(Some(frame)) => Poll::Ready(Some(Ok(frame))),
                        Ok(None) => Poll::Ready(None),
                        Err(e) => Poll::Ready(Some(Err(e))),
                    };
                }
                match this.codec.decode(&mut this.read_buf) {
                    Ok(Some(frame)) => {
                        this.release_read_buf();
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    Err(e) => {
                        this.release_read_buf();
                        return Poll::Ready(Some(Err(e)));
                    }
                    Ok(None) => {}
                }
                // An incomplete frame. The codec refuses a payload over `max_size` only once
                // all of it arrived; refuse it as soon as more than that is buffered.
                // The rest of that frame is never read: the stream ends after the error (the
                // session drops a connection on any protocol error anyway).
                if this.read_buf.len() > this.max_size.saturating_add(MAX_HEADER) {
                    this.read_buf = BytesMut::new();
                    this.refused = true;
                    return Poll::Ready(Some(Err(WsProtocolError::Overflow)));
                }
                this.readable = false;
            }
            let free = this.read_buf.capacity() - this.read_buf.len();
            if this.read_buf.is_empty() && free < READ_SIZE {
                // A fresh buffer for this read (the last one went with its frames).
                this.read_buf = read_buffer();
            } else if free < LOW_WATER {
                this.read_buf.reserve(READ_SIZE - free);
            }
            let n =
                match tokio_util::io::poll_read_buf(Pin::new(&mut this.io), cx, &mut this.read_buf)
                {
                    Poll::Pending => {
                        this.release_read_buf();
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(e)) => {
                        this.release_read_buf();
                        return Poll::Ready(Some(Err(e.into())));
                    }
                    Poll::Ready(Ok(n)) => n,
                };
            if n == 0 {
                this.eof = true;
            }
            this.readable = true;
        }
    }
}

impl<T> LeanFramed<T> {
    /// Drops the read buffer once nothing in it is waiting to be decoded (frames already
    /// decoded from it keep their part alive). A whole buffer nothing was decoded from (the
    /// read found nothing) becomes the thread's spare.
    fn release_read_buf(&mut self) {
        // Not `capacity() == 0`: a buffer read to its end has no capacity left but still
        // holds (a share of) its allocation.
        if !self.read_buf.is_empty() {
            return;
        }
        let buf = std::mem::take(&mut self.read_buf);
        if buf.capacity() == READ_SIZE {
            SPARE.with(|spare| spare.set(Some(buf)));
        }
    }
}

impl<T: AsyncWrite + Unpin> LeanFramed<T> {
    /// Writes the buffered frames; `Framed::flush`, then drops the emptied buffer.
    fn flush_buf(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsProtocolError>> {
        while !self.write_buf.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.write_buf))?;
            if n == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "failed to write frame to transport",
                )
                .into()));
            }
            self.write_buf.advance(n);
        }
        // Written out: drop it (advanced to its end it reports no capacity, yet still
        // holds its allocation, which the next frame would reuse).
        self.write_buf = BytesMut::new();
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> Sink<Message> for LeanFramed<T> {
    type Error = WsProtocolError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        if this.write_buf.len() < WRITE_HIGH_WATER {
            Poll::Ready(Ok(()))
        } else {
            this.flush_buf(cx)
        }
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        let this = self.get_mut();
        // The codec reserves what the frame needs: an empty buffer becomes exactly one frame.
        this.codec.encode(item, &mut this.write_buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().flush_buf(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // As `Framed::close`: flush and shut the socket down (buffered frames are not written).
        let this = self.get_mut();
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use awc::ws::{CloseCode, CloseReason};
    use bytes::Bytes;
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// A client `LeanFramed` over one end of an in-memory pipe, and the other end.
    fn pair(max: usize) -> (LeanFramed<DuplexStream>, DuplexStream) {
        let (a, b) = tokio::io::duplex(1 << 20);
        let framed = Framed::new(a, Codec::new().max_size(max).client_mode());
        (LeanFramed::from_framed(framed, max), b)
    }

    /// Encodes `msg` as the server would (unmasked).
    fn server_frame(msg: Message) -> BytesMut {
        let mut out = BytesMut::new();
        Codec::new().encode(msg, &mut out).unwrap();
        out
    }

    #[actix_rt::test]
    async fn frames_in_one_read_and_across_reads_decode_and_buffers_are_released() {
        let (mut client, mut server) = pair(1 << 20);
        let mut bytes = server_frame(Message::Text("hello".into()));
        bytes.extend_from_slice(&server_frame(Message::Ping(Bytes::from_static(b"p"))));
        server.write_all(&bytes).await.unwrap();
        assert!(matches!(client.next().await, Some(Ok(Frame::Text(t))) if t == "hello"));
        assert!(matches!(client.next().await, Some(Ok(Frame::Ping(p))) if p == "p"));
        assert!(!client.holds_buffers(), "idle: no buffer kept");

        // A 100 KB frame in small pieces: one partial frame buffered, released once decoded.
        let big = "x".repeat(100_000);
        let bytes = server_frame(Message::Text(big.clone().into()));
        let reader = async {
            let frame = client.next().await;
            (frame, client.holds_buffers())
        };
        let writer = async {
            for piece in bytes.chunks(3000) {
                server.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
        };
        let ((frame, holds), ()) = futures_util::join!(reader, writer);
        assert!(matches!(frame, Some(Ok(Frame::Text(t))) if t == big.as_bytes()));
        assert!(!holds);
    }

    #[actix_rt::test]
    async fn bytes_read_with_the_handshake_are_decoded_first() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let parts_buf = server_frame(Message::Text("early".into()));
        let mut parts = actix_codec::FramedParts::new(a, Codec::new().client_mode());
        parts.read_buf = parts_buf;
        let mut client = LeanFramed::from_framed(Framed::from_parts(parts), 65_536);
        assert!(matches!(client.next().await, Some(Ok(Frame::Text(t))) if t == "early"));
        b.write_all(&server_frame(Message::Text("later".into())))
            .await
            .unwrap();
        assert!(matches!(client.next().await, Some(Ok(Frame::Text(t))) if t == "later"));
    }

    #[actix_rt::test]
    async fn writes_masked_frames_and_keeps_no_write_buffer() {
        let (mut client, server) = pair(1 << 20);
        client.send(Message::Text("one".into())).await.unwrap();
        // One frame alone: its buffer was exactly its size, written to its end.
        assert!(!client.holds_buffers(), "no write buffer once written");
        client.feed(Message::Text("two".into())).await.unwrap();
        client
            .feed(Message::Close(Some(CloseReason::from(CloseCode::Normal))))
            .await
            .unwrap();
        client.flush().await.unwrap();
        assert!(!client.holds_buffers(), "no write buffer once written");
        // The server side decodes what the client wrote (the codec checks the masks).
        let mut server = Framed::new(server, Codec::new());
        assert!(matches!(server.next().await, Some(Ok(Frame::Text(t))) if t == "one"));
        assert!(matches!(server.next().await, Some(Ok(Frame::Text(t))) if t == "two"));
        assert!(
            matches!(server.next().await, Some(Ok(Frame::Close(Some(r)))) if r.code == CloseCode::Normal)
        );
    }

    #[actix_rt::test]
    async fn an_oversized_declared_frame_is_refused_before_it_is_all_buffered() {
        let max = 64 * 1024;
        let (mut client, mut server) = pair(max);
        // Header: FIN + text, 127 => 64-bit length of 1 GiB, unmasked; then a trickle.
        let mut header = vec![0x81, 127];
        header.extend_from_slice(&(1u64 << 30).to_be_bytes());
        server.write_all(&header).await.unwrap();
        let writer = async move {
            let chunk = vec![b'a'; 16 * 1024];
            for _ in 0..16 {
                if server.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            server
        };
        // Without the early refusal the client would wait for the whole GiB: a timeout.
        let reader = tokio::time::timeout(std::time::Duration::from_secs(5), client.next());
        let (frame, _server) = futures_util::join!(reader, writer);
        let frame = frame.expect("the oversized frame was not refused early");
        assert!(
            matches!(frame, Some(Err(WsProtocolError::Overflow))),
            "{frame:?}"
        );
        assert!(
            client.next().await.is_none(),
            "the stream ends after the refusal"
        );
    }

    #[actix_rt::test]
    async fn end_of_stream_ends_the_stream_and_a_protocol_error_is_reported() {
        let (mut client, mut server) = pair(1 << 20);
        server
            .write_all(&server_frame(Message::Text("last".into())))
            .await
            .unwrap();
        server.shutdown().await.unwrap();
        assert!(matches!(client.next().await, Some(Ok(Frame::Text(t))) if t == "last"));
        assert!(client.next().await.is_none());

        // A masked frame from the server is a protocol error for a client.
        let (mut client, mut server) = pair(1 << 20);
        let mut masked = BytesMut::new();
        Codec::new()
            .client_mode()
            .encode(Message::Text("x".into()), &mut masked)
            .unwrap();
        server.write_all(&masked).await.unwrap();
        assert!(matches!(client.next().await, Some(Err(_))));
        let mut rest = Vec::new();
        drop(client);
        let _ = server.read_to_end(&mut rest).await;
    }
}
