//! One WebSocket connection's sending side: records and counts every frame.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_ws::{CloseCode, CloseReason};
use serde::Serialize;

use crate::record::Direction;
use crate::server::Shared;

/// Why a session loop ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The peer went away or we closed.
    Closed,
}

pub(crate) struct Conn {
    session: Option<actix_ws::Session>,
    shared: Arc<Shared>,
    /// Frames sent so far on this connection.
    pub sent: u64,
}

impl Conn {
    pub fn new(session: actix_ws::Session, shared: Arc<Shared>) -> Self {
        Conn {
            session: Some(session),
            shared,
            sent: 0,
        }
    }

    pub fn is_open(&self) -> bool {
        self.session.is_some()
    }

    /// Records a received frame.
    pub fn received(&self, text: &str) {
        self.shared.stats.frames_in.fetch_add(1, Ordering::Relaxed);
        self.shared
            .stats
            .bytes_in
            .fetch_add(text.len() as u64, Ordering::Relaxed);
        self.shared.recorder.record(Direction::In, text);
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: String) -> Result<(), End> {
        let Some(session) = self.session.as_mut() else {
            return Err(End::Closed);
        };
        self.shared.recorder.record(Direction::Out, &text);
        self.shared.stats.frames_out.fetch_add(1, Ordering::Relaxed);
        self.shared
            .stats
            .bytes_out
            .fetch_add(text.len() as u64, Ordering::Relaxed);
        self.sent += 1;
        if session.text(text).await.is_err() {
            self.session = None;
            return Err(End::Closed);
        }
        Ok(())
    }

    /// Serializes and sends one JSON frame.
    pub async fn send_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), End> {
        match serde_json::to_string(value) {
            Ok(text) => self.send_text(text).await,
            Err(e) => {
                tracing::error!("cannot serialize a server frame: {e}");
                Ok(())
            }
        }
    }

    /// Sends a close frame with `code` and `reason` and forgets the session.
    pub async fn close(&mut self, code: u16, reason: &str) {
        if let Some(session) = self.session.take() {
            self.shared
                .recorder
                .note(&format!("server closed the WebSocket: {code} {reason}"));
            let _ = session
                .close(Some(CloseReason {
                    code: CloseCode::from(code),
                    description: (!reason.is_empty()).then(|| reason.to_owned()),
                }))
                .await;
        }
    }

    /// Drops the connection without a close frame.
    pub fn drop_now(&mut self) {
        if self.session.take().is_some() {
            self.shared
                .recorder
                .note("server dropped the connection without a close frame");
        }
    }

    /// Forgets the session without a note (end of the session loop).
    pub fn drop_now_quiet(&mut self) {
        self.session = None;
    }

    /// Answers a ping.
    pub async fn pong(&mut self, payload: &[u8]) {
        if let Some(s) = self.session.as_mut() {
            if s.pong(payload).await.is_err() {
                self.session = None;
            }
        }
    }
}
