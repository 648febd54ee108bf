//! What every WebSocket stage shares: opening the socket (awc, rustls) with the key in a
//! header, a connection ([`WsConn`]) that sends what is queued while it waits for the next
//! JSON message (so a stage streams audio out and reads partial transcripts in one task,
//! without a writer task), answers pings, joins continuation frames and bounds every wait,
//! and [`ws_stream`], which turns a socket and a per-message handler into a stage's stream
//! ([`ws_live_stt`] for one fed as the user speaks; [`SttSocket`] runs a realtime STT
//! stage's two paths over them).
//!
//! Errors are typed and carry the stage's source; the key never appears in them.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_codec::Framed;
use actix_http::ws::Item;
use awc::http::StatusCode;
use awc::ws::{CloseCode, CloseReason, Codec, Frame, Message};
use awc::BoxedSocket;
use base64::Engine;
use futures_util::future::LocalBoxFuture;
use futures_util::stream::{self, LocalBoxStream, StreamExt};
use futures_util::{Sink, Stream};
use liveagent_core::{ErrorKind, LiveError};
use serde_json::Value;

use crate::http::Endpoint;
use crate::streams::{json_event, opened};

/// The largest message accepted from a provider (16 MiB).
const MAX_MESSAGE: usize = 16 << 20;

/// One open provider WebSocket. See the [module docs](self).
pub(crate) struct WsConn {
    framed: Framed<BoxedSocket, Codec>,
    out: VecDeque<Message>,
    /// A text message arriving in continuation frames.
    partial: Option<Vec<u8>>,
    /// Why sending failed: the queue is dropped, reading goes on (the provider's error
    /// event or close frame may still be there to read).
    write_error: Option<String>,
    ep: Endpoint,
}

/// Percent-encodes `s` for a URL path segment or query value.
pub(crate) fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string from (name, value) pairs, values percent-encoded.
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", path_segment(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Endpoint {
    /// Opens the WebSocket at `url`, the key in the provider's auth header.
    pub(crate) async fn ws_connect(&self, url: &str) -> Result<WsConn, LiveError> {
        // HTTP/1.1 only (the TLS configuration's ALPN).
        let tls = self.tls_roots.client_config();
        let client = awc::Client::builder()
            .connector(
                awc::Connector::new()
                    .connector(crate::cut::tcp_nodelay())
                    .rustls_0_23(tls)
                    .timeout(self.timeout),
            )
            .timeout(self.timeout)
            .finish();
        let mut req = client.ws(url).max_frame_size(MAX_MESSAGE);
        if let Some((name, value)) = self.auth_header() {
            req = req.set_header(name, value);
        }
        let shown = self.redact(url);
        let framed = match tokio::time::timeout(self.timeout, req.connect()).await {
            Err(_) => {
                return Err(self
                    .err(ErrorKind::Connection, format!("no answer from {shown}"))
                    .with_code("timeout"))
            }
            Ok(Err(awc::error::WsClientError::InvalidResponseStatus(status))) => {
                return Err(self.upgrade_refused(status, &shown))
            }
            Ok(Err(e)) => {
                return Err(self.err(
                    ErrorKind::Connection,
                    format!("connecting to {shown} failed: {e}"),
                ))
            }
            Ok(Ok((_, framed))) => framed,
        };
        Ok(WsConn {
            framed,
            out: VecDeque::new(),
            partial: None,
            write_error: None,
            ep: self.clone(),
        })
    }

    fn upgrade_refused(&self, status: StatusCode, url: &str) -> LiveError {
        let kind = match status.as_u16() {
            401 | 403 => ErrorKind::Auth,
            404 => ErrorKind::NotFound,
            400 | 422 => ErrorKind::InvalidRequest,
            _ => ErrorKind::Provider,
        };
        self.err(kind, format!("{url} refused the WebSocket: HTTP {status}"))
            .with_code(status.as_u16().to_string())
    }
}

impl WsConn {
    /// Queues a JSON message; it is sent while the connection waits for the next message.
    pub(crate) fn send_json(&mut self, v: &Value) {
        if self.write_error.is_none() {
            self.out.push_back(Message::Text(v.to_string().into()));
        }
    }

    /// Queues `audio` (PCM16 at `rate`) in 100 ms messages: `message` makes each from the
    /// base64 of its bytes.
    pub(crate) fn send_audio(
        &mut self,
        audio: &[i16],
        rate: u32,
        message: impl Fn(String) -> Value,
    ) {
        for chunk in audio.chunks((rate as usize / 10).max(1)) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
            self.send_json(&message(
                base64::engine::general_purpose::STANDARD.encode(bytes),
            ));
        }
    }

    /// Sends what is queued (at most bounded by the timeout), then a close frame, and drops
    /// the socket.
    pub(crate) async fn close(mut self) {
        self.out.push_back(Message::Close(Some(CloseReason {
            code: CloseCode::Normal,
            description: None,
        })));
        let flush = poll_fn(|cx| {
            let mut fr = Pin::new(&mut self.framed);
            while !self.out.is_empty() {
                match fr.as_mut().poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        let m = self.out.pop_front().expect("not empty");
                        if fr.as_mut().start_send(m).is_err() {
                            return Poll::Ready(());
                        }
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Pending => return Poll::Pending,
                }
            }
            fr.poll_flush(cx).map(|_| ())
        });
        let _ = tokio::time::timeout(Duration::from_secs(1), flush).await;
        // The closing handshake: wait (briefly) for the provider's close frame or the end
        // of the stream, so that what was sent is read before the socket goes.
        let drain = async {
            while let Some(Ok(f)) = self.framed.next().await {
                if matches!(f, Frame::Close(_)) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    }

    /// Sends what it can of the queue, then polls for the next frame.
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame, String>>> {
        let mut fr = Pin::new(&mut self.framed);
        let mut failed = None;
        while !self.out.is_empty() {
            match fr.as_mut().poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    let m = self.out.pop_front().expect("not empty");
                    if let Err(e) = fr.as_mut().start_send(m) {
                        failed = Some(e.to_string());
                        break;
                    }
                }
                Poll::Ready(Err(e)) => {
                    failed = Some(e.to_string());
                    break;
                }
                Poll::Pending => break,
            }
        }
        if failed.is_none() && self.write_error.is_none() {
            if let Poll::Ready(Err(e)) = fr.as_mut().poll_flush(cx) {
                failed = Some(e.to_string());
            }
        }
        if let Some(e) = failed {
            self.out.clear();
            self.write_error.get_or_insert(e);
        }
        fr.poll_next(cx)
            .map(|f| f.map(|r| r.map_err(|e| e.to_string())))
    }

    /// The next JSON message, sending what is queued meanwhile. `None` when the provider
    /// closed normally; an error for a stalled or broken socket, a close with an error
    /// code, a malformed message or an error event from the provider.
    pub(crate) async fn next_json(&mut self) -> Option<Result<Value, LiveError>> {
        loop {
            let frame = match tokio::time::timeout(
                self.ep.timeout,
                poll_fn(|cx| self.poll_frame(cx)),
            )
            .await
            {
                Err(_) => {
                    return Some(Err(self
                        .ep
                        .err(ErrorKind::Connection, "the WebSocket stalled")
                        .with_code("timeout")))
                }
                Ok(None) => {
                    let why = match &self.write_error {
                        Some(e) => format!("the WebSocket broke: {e}"),
                        None => "the WebSocket closed without a close frame".to_owned(),
                    };
                    return Some(Err(self.ep.err(ErrorKind::Connection, why)));
                }
                Ok(Some(Err(e))) => {
                    return Some(Err(self
                        .ep
                        .err(ErrorKind::Connection, format!("the WebSocket broke: {e}"))))
                }
                Ok(Some(Ok(f))) => f,
            };
            let text = match frame {
                Frame::Text(t) => t.to_vec(),
                Frame::Ping(p) => {
                    self.out.push_back(Message::Pong(p));
                    continue;
                }
                Frame::Pong(_) => continue,
                Frame::Binary(_) | Frame::Continuation(Item::FirstBinary(_)) => {
                    return Some(Err(self.ep.err(
                        ErrorKind::Protocol,
                        "unexpected binary message (the API sends JSON text)",
                    )))
                }
                Frame::Continuation(Item::FirstText(t)) => {
                    self.partial = Some(t.to_vec());
                    continue;
                }
                Frame::Continuation(Item::Continue(t)) => {
                    match &mut self.partial {
                        Some(p) if p.len() + t.len() <= MAX_MESSAGE => p.extend_from_slice(&t),
                        _ => {
                            return Some(Err(self.ep.err(
                                ErrorKind::Protocol,
                                "a continuation frame out of place or a message over 16 MiB",
                            )))
                        }
                    }
                    continue;
                }
                Frame::Continuation(Item::Last(t)) => match self.partial.take() {
                    Some(mut p) => {
                        p.extend_from_slice(&t);
                        p
                    }
                    None => {
                        return Some(Err(self
                            .ep
                            .err(ErrorKind::Protocol, "a continuation frame out of place")))
                    }
                },
                Frame::Close(reason) => return self.closed(reason),
            };
            let Ok(text) = std::str::from_utf8(&text) else {
                return Some(Err(self
                    .ep
                    .err(ErrorKind::Protocol, "a text message that is not UTF-8")));
            };
            return Some(json_event(&self.ep, text));
        }
    }

    fn closed(&mut self, reason: Option<CloseReason>) -> Option<Result<Value, LiveError>> {
        let code = reason.as_ref().map(|r| u16::from(r.code));
        if matches!(code, None | Some(1000)) {
            return None;
        }
        let why = reason
            .and_then(|r| r.description)
            .unwrap_or_else(|| "no reason given".into());
        let code = code.unwrap_or(0);
        let kind = match code {
            1008 => ErrorKind::Auth,
            1007 | 1003 => ErrorKind::InvalidRequest,
            _ => ErrorKind::Provider,
        };
        Some(Err(self
            .ep
            .err(
                kind,
                format!("the provider closed the WebSocket ({code}): {why}"),
            )
            .with_code(code.to_string())))
    }
}

/// What one message means to a stage.
pub(crate) enum Step<T> {
    /// Nothing to yield (session events, alignment...).
    Skip,
    /// An event; more follow.
    Yield(T),
    /// The last event: the stage closes the socket after it.
    Last(T),
    /// An event and then the last one (a message that carries both).
    YieldThenLast(T, T),
}

/// Queues what one message means: its events into `ready`, and `last` once the stream
/// is to end (after [`Step::Last`] or an error).
fn queue<T>(
    step: Result<Step<T>, LiveError>,
    ready: &mut VecDeque<Result<T, LiveError>>,
    last: &mut bool,
) {
    match step {
        Ok(Step::Skip) => {}
        Ok(Step::Yield(t)) => ready.push_back(Ok(t)),
        Ok(Step::Last(t)) => {
            ready.push_back(Ok(t));
            *last = true;
        }
        Ok(Step::YieldThenLast(a, b)) => {
            ready.extend([Ok(a), Ok(b)]);
            *last = true;
        }
        Err(e) => {
            ready.push_back(Err(e));
            *last = true;
        }
    }
}

/// A stage's stream over one socket: `open` connects and queues the first messages,
/// `on_message` reads each JSON message (errors from the provider never reach it). The
/// stream ends after [`Step::Last`] (the socket then closed normally), an error, or the
/// provider closing the socket; dropping it drops the socket.
pub(crate) fn ws_stream<T: 'static>(
    open: impl Future<Output = Result<WsConn, LiveError>> + 'static,
    on_message: impl FnMut(Value) -> Result<Step<T>, LiveError> + 'static,
) -> LocalBoxStream<'static, Result<T, LiveError>> {
    struct State<T, H> {
        conn: WsConn,
        handle: H,
        /// Events to yield before reading on.
        ready: VecDeque<Result<T, LiveError>>,
        /// Close the socket once `ready` is empty.
        last: bool,
    }
    opened(async move {
        let conn = open.await?;
        let state = State {
            conn,
            handle: on_message,
            ready: VecDeque::new(),
            last: false,
        };
        Ok(stream::unfold(Some(state), |state| async move {
            let mut st = state?;
            loop {
                if let Some(item) = st.ready.pop_front() {
                    return Some((item, Some(st)));
                }
                if st.last {
                    st.conn.close().await;
                    return None;
                }
                let v = match st.conn.next_json().await? {
                    Ok(v) => v,
                    Err(e) => return Some((Err(e), None)),
                };
                queue((st.handle)(v), &mut st.ready, &mut st.last);
            }
        })
        .boxed_local())
    })
}

/// Queues a live session's commit message(s) given the samples sent; `false` when there
/// is too little audio to commit.
pub(crate) type CommitFn = Box<dyn FnOnce(&mut WsConn, u64) -> bool>;

/// How a streaming speech-to-text stage turns live input into messages
/// ([`ws_live_stt`]).
pub(crate) struct LiveFeed {
    /// The input: audio as it is spoken, then a commit.
    pub(crate) input: crate::stage::SttInputStream,
    /// The rate of the input audio.
    pub(crate) rate: u32,
    /// One append message from the base64 of some audio.
    pub(crate) append: Box<dyn Fn(String) -> Value>,
    /// Queues the commit message(s) given the samples sent; `false` when there is too
    /// little audio to commit (the stream then ends with an empty transcript).
    pub(crate) commit: CommitFn,
}

/// A live speech-to-text stream over one socket: like [`ws_stream`], but while `feed`'s
/// input is open it also sends each piece of audio as it arrives (so partials come back
/// while the user speaks), and the commit when the input commits. An input that ends
/// without a commit closes the socket (close frame) and ends with an error coded
/// `cancelled`; a provider error closes the socket too. Every wait is bounded by the
/// endpoint's timeout (reset by each piece of input).
pub(crate) fn ws_live_stt(
    open: impl Future<Output = Result<WsConn, LiveError>> + 'static,
    feed: LiveFeed,
    on_message: impl FnMut(Value) -> Result<Step<crate::stage::SttEvent>, LiveError> + 'static,
) -> LocalBoxStream<'static, Result<crate::stage::SttEvent, LiveError>> {
    use crate::stage::{SttEvent, SttInput};
    use futures_util::future::Either;

    struct State<H> {
        conn: WsConn,
        handle: H,
        ready: VecDeque<Result<SttEvent, LiveError>>,
        last: bool,
        input: Option<crate::stage::SttInputStream>,
        rate: u32,
        append: Box<dyn Fn(String) -> Value>,
        commit: Option<CommitFn>,
        samples: u64,
    }
    opened(async move {
        let conn = open.await?;
        let state = State {
            conn,
            handle: on_message,
            ready: VecDeque::new(),
            last: false,
            input: Some(feed.input),
            rate: feed.rate,
            append: feed.append,
            commit: Some(feed.commit),
            samples: 0,
        };
        Ok(stream::unfold(Some(state), |state| async move {
            let mut st = state?;
            loop {
                if let Some(item) = st.ready.pop_front() {
                    return Some((item, Some(st)));
                }
                if st.last {
                    st.conn.close().await;
                    return None;
                }
                let next = match st.input.as_mut() {
                    Some(input) => {
                        let msg = std::pin::pin!(st.conn.next_json());
                        match futures_util::future::select(input.next(), msg).await {
                            Either::Left((item, _)) => Either::Left(item),
                            Either::Right((msg, _)) => Either::Right(msg),
                        }
                    }
                    None => Either::Right(st.conn.next_json().await),
                };
                let v = match next {
                    Either::Left(Some(SttInput::Audio(audio))) => {
                        st.samples += audio.len() as u64;
                        let append = &st.append;
                        st.conn.send_audio(&audio, st.rate, append);
                        continue;
                    }
                    Either::Left(Some(SttInput::Commit)) => {
                        st.input = None;
                        if let Some(commit) = st.commit.take() {
                            if !commit(&mut st.conn, st.samples) {
                                st.ready.push_back(Ok(SttEvent::Final {
                                    text: String::new(),
                                    input_tokens: 0,
                                    output_tokens: 0,
                                }));
                                st.last = true;
                            }
                        }
                        continue;
                    }
                    Either::Left(None) => {
                        st.conn.close().await;
                        return Some((Err(crate::stage::cancelled()), None));
                    }
                    Either::Right(None) => return None,
                    Either::Right(Some(Err(e))) => {
                        st.conn.close().await;
                        return Some((Err(e), None));
                    }
                    Either::Right(Some(Ok(v))) => v,
                };
                queue((st.handle)(v), &mut st.ready, &mut st.last);
            }
        })
        .boxed_local())
    })
}

/// How a realtime speech-to-text stage speaks its socket, for both of its paths: the whole
/// utterance at once ([`SttSocket::once`], `Stt::transcribe`) or fed as it is spoken
/// ([`SttSocket::live`], `Stt::transcribe_live`). The three realtime STT stages differ only
/// in what they put here.
pub(crate) struct SttSocket<H> {
    /// The stage's endpoint (errors, the final-transcript check).
    pub(crate) ep: Endpoint,
    /// Connects and queues the session's first messages.
    pub(crate) open: LocalBoxFuture<'static, Result<WsConn, LiveError>>,
    /// The rate of the audio sent.
    pub(crate) rate: u32,
    /// The least audio worth a commit (in samples); less is an empty transcript.
    pub(crate) min_samples: usize,
    /// One append message from the base64 of some audio.
    pub(crate) append: Rc<dyn Fn(String) -> Value>,
    /// Queues the message(s) that end the utterance.
    pub(crate) commit: Rc<dyn Fn(&mut WsConn)>,
    /// What each server message means.
    pub(crate) on_message: H,
}

impl<H> SttSocket<H>
where
    H: FnMut(Value) -> Result<Step<crate::stage::SttEvent>, LiveError> + 'static,
{
    /// Transcribes a finished utterance: the audio, the commit, then the transcript.
    pub(crate) fn once(
        self,
        audio: std::sync::Arc<[i16]>,
    ) -> LocalBoxStream<'static, Result<crate::stage::SttEvent, LiveError>> {
        use crate::streams::SttStreamExt;
        if audio.len() < self.min_samples.max(1) {
            return crate::streams::nothing_said();
        }
        let SttSocket {
            ep,
            open,
            rate,
            append,
            commit,
            on_message,
            ..
        } = self;
        let open = async move {
            let mut conn = open.await?;
            conn.send_audio(&audio, rate, |b64| append(b64));
            commit(&mut conn);
            Ok(conn)
        };
        ws_stream(open, on_message).ended_with_final(ep)
    }

    /// Transcribes an utterance fed while it is spoken ([`ws_live_stt`]).
    pub(crate) fn live(
        self,
        input: crate::stage::SttInputStream,
    ) -> LocalBoxStream<'static, Result<crate::stage::SttEvent, LiveError>> {
        use crate::streams::SttStreamExt;
        let SttSocket {
            ep,
            open,
            rate,
            min_samples,
            append,
            commit,
            on_message,
        } = self;
        let feed = LiveFeed {
            input,
            rate,
            append: Box::new(move |b64| append(b64)),
            commit: Box::new(move |conn, samples| {
                if samples < min_samples.max(1) as u64 {
                    return false;
                }
                commit(conn);
                true
            }),
        };
        ws_live_stt(open, feed, on_message).ended_with_final(ep)
    }
}
