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
//! Both write through one bounded queue to a writer task that owns the socket's send half.
//! A remote side that stops reading fills the queue and is disconnected; nothing grows
//! without bound.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError, Session};
use bytes::Bytes;
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

/// The sending side of a connection: a bounded queue drained by a writer task.
#[derive(Clone)]
pub(crate) struct WsTx {
    tx: mpsc::Sender<WsOut>,
    writer: tokio::task::AbortHandle,
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
    /// Starts the writer task for `session` with room for `capacity` frames.
    pub(crate) fn spawn(mut session: Session, capacity: usize) -> WsTx {
        let (tx, mut rx) = mpsc::channel::<WsOut>(capacity.max(8));
        let writer = actix::spawn(async move {
            while let Some(out) = rx.recv().await {
                let sent = match out {
                    WsOut::Frame(OutFrame::Text(t)) => session.text(t).await,
                    WsOut::Frame(OutFrame::Binary(b)) => session.binary(b).await,
                    WsOut::Pong(p) => session.pong(&p).await,
                    WsOut::Close(reason) => {
                        let _ = session.close(Some(reason)).await;
                        return;
                    }
                };
                if sent.is_err() {
                    return;
                }
            }
        });
        WsTx {
            tx,
            writer: writer.abort_handle(),
        }
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
    /// [`CLOSE_GRACE`] the writer is dropped with its queue and the socket's send half,
    /// whether or not the remote side read it all.
    fn close(&self, code: u16, reason: &str) {
        let (tx, writer) = (self.tx.clone(), self.writer.clone());
        let reason = CloseReason {
            code: CloseCode::from(code),
            description: Some(truncate(reason, 120)),
        };
        actix::spawn(async move {
            let deadline = tokio::time::Instant::now() + CLOSE_GRACE;
            let _ = tokio::time::timeout_at(deadline, tx.send(WsOut::Close(reason))).await;
            drop(tx);
            tokio::time::sleep_until(deadline).await;
            writer.abort();
        });
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
