//! One WebSocket connection's sending side: records and counts every frame, and sends it
//! straight into the WebSocket when that takes it without waiting and nothing is queued
//! before it; otherwise it hands it to a writer task, so that the session keeps reading while
//! a slow client drains its socket.
//!
//! Without the writer task a client that stops reading while it is blocked sending (both TCP
//! buffers full) would deadlock the session. A client that lets more than
//! `ServerConfig::max_backlog_bytes` pile up (frames and pongs alike) is treated as gone: the
//! connection is dropped.
//!
//! Closing follows RFC 6455 §7.1.1, the server closing TCP first and at once. A close frame
//! ends the response body (actix-ws), and the server is configured with no client-disconnect
//! linger, so the server's FIN follows its close frame straight away, whoever started the
//! close. What the client still sends afterwards (its own close frame, audio in flight) is
//! read and dropped by [`Conn::finish`] on a duplicate of the socket, until the client closes
//! its side or `ServerConfig::close_timeout` passes: without it the kernel would answer that
//! data with a reset, which some clients report as an abnormal closure.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_ws::{CloseCode, CloseReason};
use bytes::Bytes;
use bytestring::ByteString;
use futures_util::FutureExt as _;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::record::Direction;
use crate::server::Shared;
use crate::stats::AnswerClock;
use std::time::Instant;

/// Bytes a pong costs in the backlog besides its payload (frame header).
const PONG_OVERHEAD: usize = 2;

/// Why a session loop ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The peer went away or we closed.
    Closed,
}

enum Cmd {
    /// A text frame, and the microseconds of answer audio it carries (0 for other frames).
    Text(ByteString, u32),
    /// The answer whose audio deltas were timed ended (completed or cut short).
    AnswerEnd,
    Pong(Bytes),
    Close(u16, String),
    Drop,
}

pub(crate) struct Conn {
    tx: Option<mpsc::UnboundedSender<Cmd>>,
    open: Arc<AtomicBool>,
    queued: Arc<AtomicUsize>,
    writer: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
    /// A duplicate of the TCP socket, to drain what the client sends after the close.
    sock: Option<Arc<std::net::TcpStream>>,
    /// Frames sent so far on this connection.
    pub sent: u64,
    /// Audio (µs) of the next text frame, set by [`Conn::mark_audio`].
    next_audio_us: u32,
    /// The current answer's audio deltas, timed as they are queued.
    paced: AnswerClock,
    /// The session's own handle on the WebSocket, to send a frame straight away while the
    /// writer task has nothing queued (dropped when the connection closes or drops).
    direct: Option<actix_ws::Session>,
    /// Commands handed to the writer task and not finished yet.
    inflight: Arc<AtomicUsize>,
    /// The current answer's audio deltas, timed as they are handed to the WebSocket
    /// (straight away or by the writer task).
    written: Arc<Mutex<AnswerClock>>,
}

async fn writer(
    mut session: actix_ws::Session,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    open: Arc<AtomicBool>,
    queued: Arc<AtomicUsize>,
    shared: Arc<Shared>,
    inflight: Arc<AtomicUsize>,
    written: Arc<Mutex<AnswerClock>>,
) {
    while let Some(cmd) = rx.recv().await {
        // Finished once this iteration ends (whatever way it ends).
        let _done = Finished(&inflight);
        match cmd {
            Cmd::Text(text, audio_us) => {
                let n = text.len();
                let r = session.text(text).await;
                queued.fetch_sub(n, Ordering::Relaxed);
                if r.is_err() {
                    break;
                }
                if audio_us > 0 {
                    lock(&written).delta(Instant::now(), audio_us as u64);
                }
            }
            Cmd::AnswerEnd => lock(&written).end(&shared.stats.answer_rate_written),
            Cmd::Pong(p) => {
                let r = session.pong(&p).await;
                queued.fetch_sub(p.len() + PONG_OVERHEAD, Ordering::Relaxed);
                if r.is_err() {
                    break;
                }
            }
            Cmd::Close(code, reason) => {
                open.store(false, Ordering::SeqCst);
                let _ = session
                    .close(Some(CloseReason {
                        code: CloseCode::from(code),
                        description: (!reason.is_empty()).then_some(reason),
                    }))
                    .await;
                return;
            }
            Cmd::Drop => break,
        }
    }
    open.store(false, Ordering::SeqCst);
    // Dropping the session ends the response body: the connection closes without a close frame.
}

/// Counts a writer command as finished when dropped.
struct Finished<'a>(&'a AtomicUsize);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn lock(clock: &Mutex<AnswerClock>) -> std::sync::MutexGuard<'_, AnswerClock> {
    clock.lock().unwrap_or_else(|e| e.into_inner())
}

impl Conn {
    pub fn new(
        session: actix_ws::Session,
        shared: Arc<Shared>,
        sock: Option<Arc<std::net::TcpStream>>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let open = Arc::new(AtomicBool::new(true));
        let queued = Arc::new(AtomicUsize::new(0));
        let inflight = Arc::new(AtomicUsize::new(0));
        let written = Arc::new(Mutex::new(AnswerClock::default()));
        let direct = Some(session.clone());
        let writer = actix_rt::spawn(writer(
            session,
            rx,
            open.clone(),
            queued.clone(),
            shared.clone(),
            inflight.clone(),
            written.clone(),
        ));
        Conn {
            tx: Some(tx),
            open,
            queued,
            writer,
            shared,
            sock,
            sent: 0,
            next_audio_us: 0,
            paced: AnswerClock::default(),
            direct,
            inflight,
            written,
        }
    }

    /// Counts `n` more bytes waiting for the client; drops the connection when the backlog
    /// passes the limit.
    fn enqueue_bytes(&mut self, n: usize) -> Result<(), End> {
        let backlog = self.queued.fetch_add(n, Ordering::Relaxed) + n;
        if backlog > self.shared.cfg.max_backlog_bytes {
            tracing::warn!(
                "client is not reading ({backlog} bytes waiting); dropping the connection"
            );
            self.shared
                .recorder
                .note("client stopped reading; server dropped the connection");
            self.shared
                .stats
                .backlog_drops
                .fetch_add(1, Ordering::Relaxed);
            self.writer.abort();
            self.open.store(false, Ordering::SeqCst);
            self.tx = None;
            self.direct = None;
            return Err(End::Closed);
        }
        Ok(())
    }

    /// Ends the connection once the session loop is over: frames already queued still go
    /// out, then reads and drops whatever the client sends until it closes its side (at most
    /// the close timeout), so that the socket closes without a reset.
    pub async fn finish(&mut self) {
        self.tx = None;
        self.direct = None;
        if let Some(sock) = self.sock.take() {
            drain_after_close(sock, self.shared.cfg.close_timeout).await;
        }
    }

    pub fn is_open(&self) -> bool {
        self.tx.is_some() && self.open.load(Ordering::SeqCst)
    }

    fn push(&mut self, cmd: Cmd) -> Result<(), End> {
        if !self.is_open() {
            return Err(End::Closed);
        }
        self.inflight.fetch_add(1, Ordering::Relaxed);
        let ok = self.tx.as_ref().is_some_and(|tx| tx.send(cmd).is_ok());
        if !ok {
            self.inflight.fetch_sub(1, Ordering::Relaxed);
            self.tx = None;
            self.direct = None;
            return Err(End::Closed);
        }
        Ok(())
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

    /// Queues a text frame.
    pub async fn send_text(&mut self, text: String) -> Result<(), End> {
        if !self.is_open() {
            return Err(End::Closed);
        }
        self.shared.recorder.record(Direction::Out, &text);
        self.shared.stats.frames_out.fetch_add(1, Ordering::Relaxed);
        self.shared
            .stats
            .bytes_out
            .fetch_add(text.len() as u64, Ordering::Relaxed);
        self.sent += 1;
        let audio_us = std::mem::take(&mut self.next_audio_us);
        let now = Instant::now();
        if audio_us > 0 {
            self.paced.delta(now, audio_us as u64);
        }
        let text = ByteString::from(text);
        // Straight into the WebSocket when the writer task has nothing queued (frames stay
        // in order) and the WebSocket takes it without waiting: no second task wake-up per
        // frame. Otherwise the writer task queues it, so that the session keeps reading.
        if self.inflight.load(Ordering::Relaxed) == 0 {
            if let Some(ws) = self.direct.as_mut() {
                match ws.text(text.clone()).now_or_never() {
                    Some(Ok(())) => {
                        if audio_us > 0 {
                            lock(&self.written).delta(now, audio_us as u64);
                        }
                        return Ok(());
                    }
                    Some(Err(_)) => {
                        self.open.store(false, Ordering::SeqCst);
                        self.tx = None;
                        self.direct = None;
                        return Err(End::Closed);
                    }
                    None => {}
                }
            }
        }
        self.enqueue_bytes(text.len())?;
        self.push(Cmd::Text(text, audio_us))
    }

    /// Says that the next text frame carries `samples` of answer audio at `rate`: the
    /// answer-rate figures time it (`answer_rate_paced`/`_written` in `/debug/stats`).
    pub fn mark_audio(&mut self, samples: usize, rate: u32) {
        self.next_audio_us = (samples as u64 * 1_000_000 / rate.max(1) as u64) as u32;
    }

    /// Ends the timed answer (played to its end or cut short): recorded if at least 400 ms
    /// of its audio went out.
    pub fn answer_end(&mut self) {
        self.next_audio_us = 0;
        self.paced.end(&self.shared.stats.answer_rate_paced);
        if self.inflight.load(Ordering::Relaxed) == 0 {
            lock(&self.written).end(&self.shared.stats.answer_rate_written);
        } else if self.is_open() {
            let _ = self.push(Cmd::AnswerEnd);
        }
    }

    /// Serializes and queues one JSON frame.
    pub async fn send_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), End> {
        match serde_json::to_string(value) {
            Ok(text) => self.send_text(text).await,
            Err(e) => {
                tracing::error!("cannot serialize a server frame: {e}");
                Ok(())
            }
        }
    }

    /// Sends a close frame with `code` and `reason` (after the frames already queued).
    pub async fn close(&mut self, code: u16, reason: &str) {
        if self.is_open() {
            self.shared
                .recorder
                .note(&format!("server closed the WebSocket: {code} {reason}"));
            // A close frame's reason is at most 123 bytes (RFC 6455 5.5).
            let mut end = reason.len().min(123);
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            let _ = self.push(Cmd::Close(code, reason[..end].to_owned()));
        }
        self.tx = None;
        self.direct = None;
    }

    /// Drops the connection without a close frame (after the frames already queued).
    pub fn drop_now(&mut self) {
        if self.is_open() {
            self.shared
                .recorder
                .note("server dropped the connection without a close frame");
            let _ = self.push(Cmd::Drop);
        }
        self.tx = None;
        self.direct = None;
    }

    /// Forgets the connection without a note (end of the session loop); frames already
    /// queued are still delivered.
    pub fn drop_now_quiet(&mut self) {
        self.tx = None;
        self.direct = None;
    }

    /// Answers a ping. The pong counts in the backlog like any frame: a client that sends
    /// pings and never reads gets dropped instead of growing the queue.
    pub async fn pong(&mut self, payload: &[u8]) -> Result<(), End> {
        if !self.is_open() {
            return Err(End::Closed);
        }
        self.enqueue_bytes(payload.len() + PONG_OVERHEAD)?;
        self.push(Cmd::Pong(Bytes::copy_from_slice(payload)))
    }
}

impl Conn {
    /// Runs a scenario step that is the same for every protocol (send a frame as given, drop,
    /// stall or close the connection, refuse the next connections, wait); hands any other
    /// step back.
    /// `refuse` is the scenario's counter of connections to refuse.
    pub(crate) async fn transport_step(
        &mut self,
        refuse: &AtomicU32,
        step: crate::brain::Step,
    ) -> Result<Result<(), End>, crate::brain::Step> {
        use crate::brain::Step;
        Ok(match step {
            Step::Send(v) => self.send_json(&v).await,
            Step::SendText(t) => self.send_text(t).await,
            Step::Drop => {
                tracing::info!("scenario: dropping the connection");
                self.drop_now();
                Err(End::Closed)
            }
            Step::Stall(d) => {
                // The session loop is the only reader: sleeping here stops reads and pongs.
                tracing::info!("scenario: stalling the connection for {d:?}, then dropping it");
                tokio::time::sleep(d).await;
                self.drop_now();
                Err(End::Closed)
            }
            Step::Close { code, reason } => {
                self.close(code, &reason).await;
                Err(End::Closed)
            }
            Step::RefuseNext(n) => {
                refuse.fetch_add(n, Ordering::SeqCst);
                Ok(())
            }
            Step::Wait(d) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            other => return Err(other),
        })
    }
}

/// Reads and drops what the client still sends after the server's close frame, on a
/// duplicate of the socket, until the client closes its side or `timeout` passes: without
/// it the kernel would answer that data with a reset, which can destroy the close frame and
/// the last messages before the client reads them.
pub(crate) async fn drain_after_close(
    sock: Arc<std::net::TcpStream>,
    timeout: std::time::Duration,
) {
    let Ok(dup) = sock.try_clone() else { return };
    drop(sock);
    if dup.set_nonblocking(true).is_err() {
        return;
    }
    let Ok(mut s) = tokio::net::TcpStream::from_std(dup) else {
        return;
    };
    let drain = async {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(timeout, drain).await;
}
