//! The WebSocket actor pair every transport uses, like the sound-card peers of
//! `liveagent-audio`:
//!
//! - [`RemoteRecorder`] owns the connection: it reads the socket, decodes each message with
//!   the transport's [`Decoder`], publishes microphone audio as `RecordedAudio` (resampled to
//!   the session's input rate), turns text and DTMF into `UserText`, starts the
//!   conversation when the remote side is ready and ends everything when the remote side
//!   leaves, misbehaves or idles.
//! - [`RemotePlayer`] consumes `SynthesizedAudio` / `Interrupted` (and whatever events the
//!   [`Encoder`] forwards), writes them with the encoder, and publishes
//!   `AudioPlaybackStarted` when the remote side first reports hearing an item and
//!   `PlaybackStopped` with the milliseconds the remote listener actually heard, from the
//!   remote side's own reports (the page's played-sample counts, Twilio's mark echoes).
//!
//! Both write through one bounded queue that the connection's response body drains
//! (frames queued together leave in one socket write).
//! A remote side that stops reading fills the queue and is disconnected; nothing grows
//! without bound.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_http::ws::{OpCode, Parser};
use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::HttpResponse;
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError};
use bytes::Bytes;
use bytes::BytesMut;
use liveagent_audio::convert::{f32_to_pcm16, MonoResampler};
use liveagent_core::events::Id;
use liveagent_core::{
    AudioChunk, AudioPlaybackStarted, ConversationContext, ErrorEvent, ErrorKind, EventFilter,
    Interrupted, LiveError, LiveEvent, PlaybackStopped, RecordedAudio, ResponseDone, SessionClosed,
    Subscribe, SubscriberId, SynthesizedAudio, UserText,
};
use tokio::sync::mpsc;

use liveagent::{LiveAgent, RunOptions};
use liveagent_store::{resume, ConversationId, ResumeToken};

use crate::codec::{
    CallStart, Decoder, Encoder, FrameError, Inbound, OutFrame, PlayState, ResumeRequest, WireIn,
};
use crate::hub::{CloseConnection, Hub};
use crate::limits::Permit;

mod player;
mod recorder;

pub use player::RemotePlayer;
use player::{MarkEcho, Played, SetRates, StopPlayer};
pub(crate) use recorder::PeerSetup;
pub use recorder::RemoteRecorder;

/// What a DTMF digit does in the conversation.
pub(crate) type DtmfHook = std::sync::Arc<dyn Fn(&str, &ConversationContext) + Send + Sync>;

/// How long the player waits for the remote side's final played position after an
/// interruption before it reports the last position it knew.
const CUT_REPORT_TIMEOUT: Duration = Duration::from_millis(500);

/// Items whose playback the player remembers.
const MAX_TRACKS: usize = 32;

// ------------------------------------------------------------------ writer

enum WsOut {
    Frame(OutFrame),
    Pong(Bytes),
    Close(CloseReason),
}

/// How long a closing connection's writer may still take to get its close frame out before
/// it is dropped, with whatever it still queues (a remote side that does not read would
/// otherwise hold the queue and the socket forever).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Encoded bytes handed to the HTTP dispatcher in one chunk at most (then it writes them
/// and asks again).
const MAX_CHUNK: usize = 64 * 1024;

/// The sending side of a connection: a bounded queue that the connection's response body
/// ([`OutBody`]) drains. Frames queued between two polls of the connection go out in one
/// chunk (one socket write), with no task or channel in between.
#[derive(Clone)]
pub(crate) struct WsTx {
    tx: mpsc::Sender<WsOut>,
    abort: std::sync::Arc<Abort>,
}

/// Ends a connection's body now (its close frame did not get out within [`CLOSE_GRACE`]).
#[derive(Default)]
struct Abort {
    set: std::sync::atomic::AtomicBool,
    waker: futures_util::task::AtomicWaker,
}

/// Why a frame could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SendError {
    /// The remote side does not read: the queue is full.
    Full,
    /// The connection is gone.
    Closed,
}

impl WsTx {
    /// Takes over the sending side of an upgraded connection: `response` (from
    /// `actix_ws::handle`) gets a body that writes what this queue holds, with room for
    /// `capacity` frames. `actix_ws`'s own body (and its `Session`) are not used for writing;
    /// the body is kept, unpolled, inside the new one, so that its drop still tells the
    /// connection's `MessageStream` that the connection is gone.
    pub(crate) fn attach(response: HttpResponse, capacity: usize) -> (WsTx, HttpResponse) {
        let (tx, rx) = mpsc::channel::<WsOut>(capacity.max(8));
        let abort = std::sync::Arc::new(Abort::default());
        let body_abort = abort.clone();
        let response = response
            .map_body(move |_, inner| OutBody {
                rx,
                buf: BytesMut::new(),
                scratch: Vec::new(),
                closing: false,
                abort: body_abort,
                _inner: inner,
            })
            .map_into_boxed_body();
        (WsTx { tx, abort }, response)
    }

    pub(crate) fn send(&self, frame: OutFrame) -> Result<(), SendError> {
        self.tx.try_send(WsOut::Frame(frame)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::Full,
            mpsc::error::TrySendError::Closed(_) => SendError::Closed,
        })
    }

    fn pong(&self, payload: Bytes) {
        let _ = self.tx.try_send(WsOut::Pong(payload));
    }

    /// Queues the close frame, waiting for room (the last thing a connection sends); after
    /// [`CLOSE_GRACE`] the body ends with whatever it still queues, whether or not the
    /// remote side read it all.
    fn close(&self, code: u16, reason: &str) {
        let (tx, abort) = (self.tx.clone(), self.abort.clone());
        let reason = CloseReason {
            code: CloseCode::from(code),
            description: Some(truncate(reason, 120)),
        };
        actix::spawn(async move {
            let deadline = tokio::time::Instant::now() + CLOSE_GRACE;
            let _ = tokio::time::timeout_at(deadline, tx.send(WsOut::Close(reason))).await;
            drop(tx);
            tokio::time::sleep_until(deadline).await;
            abort.set.store(true, std::sync::atomic::Ordering::Release);
            abort.waker.wake();
        });
    }
}

/// The response body of an upgraded connection: the frames [`WsTx`] queued, encoded
/// (server frames are not masked) into one buffer per poll.
struct OutBody {
    rx: mpsc::Receiver<WsOut>,
    buf: BytesMut,
    /// [`OutFrame::Pcm16`] samples as bytes, before they are framed into `buf`.
    scratch: Vec<u8>,
    /// The close frame was encoded (or every sender is gone): end once `buf` is out.
    closing: bool,
    abort: std::sync::Arc<Abort>,
    _inner: BoxBody,
}

impl OutBody {
    fn encode(&mut self, out: WsOut) {
        match out {
            WsOut::Frame(OutFrame::Text(t)) => {
                Parser::write_message(&mut self.buf, t.as_bytes(), OpCode::Text, true, false)
            }
            WsOut::Frame(OutFrame::Binary(b)) => {
                Parser::write_message(&mut self.buf, &b[..], OpCode::Binary, true, false)
            }
            WsOut::Frame(OutFrame::Pcm16(samples)) => {
                // Encoded in the body's scratch buffer (no allocation once it has grown).
                self.scratch.clear();
                liveagent_core::audio::extend_le_bytes(&samples, &mut self.scratch);
                Parser::write_message(&mut self.buf, &self.scratch, OpCode::Binary, true, false)
            }
            // Control frames carry at most 125 bytes (RFC 6455 5.5).
            WsOut::Pong(p) => Parser::write_message(
                &mut self.buf,
                &p[..p.len().min(125)],
                OpCode::Pong,
                true,
                false,
            ),
            WsOut::Close(reason) => {
                Parser::write_close(&mut self.buf, Some(reason), false);
                self.closing = true;
                self.rx.close();
            }
        }
    }
}

impl MessageBody for OutBody {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Bytes, Self::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        this.abort.waker.register(cx.waker());
        if this.abort.set.load(std::sync::atomic::Ordering::Acquire) {
            return Poll::Ready(None);
        }
        while !this.closing && this.buf.len() < MAX_CHUNK {
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(out)) => this.encode(out),
                Poll::Ready(None) => this.closing = true,
                Poll::Pending => break,
            }
        }
        if !this.buf.is_empty() {
            return Poll::Ready(Some(Ok(this.buf.split().freeze())));
        }
        if this.closing {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_codec::Decoder as _;
    use actix_http::ws::{Codec, Frame};
    use std::task::{Context, Poll};

    fn next(body: &mut BoxBody) -> Poll<Option<Bytes>> {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        std::pin::Pin::new(body)
            .poll_next(&mut cx)
            .map(|c| c.map(|r| r.expect("infallible")))
    }

    /// Decodes server frames the way a client does.
    fn frames(mut bytes: BytesMut) -> Vec<Frame> {
        let mut codec = Codec::new().client_mode();
        let mut out = Vec::new();
        while let Some(f) = codec.decode(&mut bytes).expect("valid frames") {
            out.push(f);
        }
        assert!(bytes.is_empty(), "a partial frame was left");
        out
    }

    #[test]
    fn queued_frames_leave_in_one_chunk_and_the_close_frame_ends_the_body() {
        let (tx, response) = WsTx::attach(HttpResponse::SwitchingProtocols().finish(), 16);
        let mut body = response.into_body();
        assert_eq!(next(&mut body), Poll::Pending);
        tx.send(OutFrame::Text(r#"{"type":"audio"}"#.into()))
            .unwrap();
        tx.send(OutFrame::Binary(Bytes::from(vec![7u8; 960])))
            .unwrap();
        tx.pong(Bytes::from(vec![1u8; 300]));
        let Poll::Ready(Some(chunk)) = next(&mut body) else {
            panic!("no chunk")
        };
        let got = frames(BytesMut::from(&chunk[..]));
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(
            got[0],
            Frame::Text(Bytes::from_static(br#"{"type":"audio"}"#))
        );
        assert_eq!(got[1], Frame::Binary(Bytes::from(vec![7u8; 960])));
        // Control frames are cut to 125 bytes.
        assert_eq!(got[2], Frame::Pong(Bytes::from(vec![1u8; 125])));
        assert_eq!(next(&mut body), Poll::Pending);

        tx.tx
            .try_send(WsOut::Close(CloseReason {
                code: CloseCode::Policy,
                description: Some("bye".into()),
            }))
            .unwrap();
        let Poll::Ready(Some(chunk)) = next(&mut body) else {
            panic!("no close frame")
        };
        match &frames(BytesMut::from(&chunk[..]))[..] {
            [Frame::Close(Some(r))] => {
                assert_eq!(r.code, CloseCode::Policy);
                assert_eq!(r.description.as_deref(), Some("bye"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(next(&mut body), Poll::Ready(None));
        // Nothing is queued after the close.
        assert_eq!(
            tx.send(OutFrame::Text("late".into())),
            Err(SendError::Closed)
        );
    }

    #[test]
    fn shared_samples_leave_as_little_endian_pcm16_frames() {
        let (tx, response) = WsTx::attach(HttpResponse::SwitchingProtocols().finish(), 16);
        let mut body = response.into_body();
        let long: std::sync::Arc<[i16]> = (0..480).map(|i| i as i16 - 240).collect();
        tx.send(OutFrame::Pcm16(std::sync::Arc::from([1i16, -1, 256])))
            .unwrap();
        tx.send(OutFrame::Pcm16(long.clone())).unwrap();
        tx.send(OutFrame::Pcm16(std::sync::Arc::from([7i16])))
            .unwrap();
        let Poll::Ready(Some(chunk)) = next(&mut body) else {
            panic!("no chunk")
        };
        let got = frames(BytesMut::from(&chunk[..]));
        let long_bytes: Vec<u8> = long.iter().flat_map(|s| s.to_le_bytes()).collect();
        assert_eq!(
            got,
            vec![
                Frame::Binary(Bytes::from_static(&[1, 0, 255, 255, 0, 1])),
                Frame::Binary(Bytes::from(long_bytes)),
                Frame::Binary(Bytes::from_static(&[7, 0])),
            ]
        );
    }

    #[test]
    fn a_full_queue_is_refused_and_an_abort_ends_the_body() {
        let (tx, response) = WsTx::attach(HttpResponse::SwitchingProtocols().finish(), 8);
        let mut body = response.into_body();
        for _ in 0..8 {
            tx.send(OutFrame::Binary(Bytes::from_static(&[0, 0])))
                .unwrap();
        }
        assert_eq!(
            tx.send(OutFrame::Binary(Bytes::from_static(&[0, 0]))),
            Err(SendError::Full)
        );
        tx.abort
            .set
            .store(true, std::sync::atomic::Ordering::Release);
        assert_eq!(next(&mut body), Poll::Ready(None));
    }

    #[test]
    fn the_body_ends_when_every_sender_is_gone() {
        let (tx, response) = WsTx::attach(HttpResponse::SwitchingProtocols().finish(), 8);
        let mut body = response.into_body();
        tx.send(OutFrame::Text("last".into())).unwrap();
        drop(tx);
        assert!(matches!(next(&mut body), Poll::Ready(Some(_))));
        assert_eq!(next(&mut body), Poll::Ready(None));
    }
}
