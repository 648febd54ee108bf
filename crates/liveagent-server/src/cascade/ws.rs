//! What the fake cascade WebSockets share: the upgrade (frame limits from the server
//! config), reading client text messages as JSON (pings answered, binary frames and bad JSON
//! reported), sending JSON, closing with a code, and the recorder.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use futures_util::StreamExt;
use serde_json::Value;

use crate::server::Shared;

/// One fake provider socket.
pub(crate) struct FakeWs {
    /// `None` once cut.
    session: Option<Session>,
    stream: AggregatedMessageStream,
    pub shared: Arc<Shared>,
    open: bool,
    /// A duplicate of the TCP socket, to drain what the client sends after the close.
    sock: Option<Arc<std::net::TcpStream>>,
}

/// What the client sent.
pub(crate) enum Incoming {
    /// A JSON text message.
    Json(Value),
    /// A frame the API does not accept (binary, bad UTF-8 or JSON): its description.
    Bad(String),
    /// Nothing for this long.
    Idle,
    /// The client closed or went away.
    Gone,
}

/// Upgrades the request; `run` then serves the socket on the server's runtime.
pub(crate) fn upgrade<F, Fut>(
    req: &HttpRequest,
    body: web::Payload,
    shared: web::Data<Shared>,
    run: F,
) -> Result<HttpResponse, actix_web::Error>
where
    F: FnOnce(FakeWs) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let shared: Arc<Shared> = shared.into_inner();
    let sock = crate::guard::socket_of(req);
    let (response, session, stream) = actix_ws::handle(req, body)?;
    let stream = stream
        .max_frame_size(shared.cfg.max_frame_bytes)
        .aggregate_continuations()
        .max_continuation_size(shared.cfg.max_frame_bytes);
    actix_rt::spawn(run(FakeWs {
        session: Some(session),
        stream,
        shared,
        open: true,
        sock,
    }));
    Ok(response)
}

impl FakeWs {
    /// The next client message, waiting at most `idle`.
    pub async fn recv(&mut self, idle: Duration) -> Incoming {
        loop {
            let next = match tokio::time::timeout(idle, self.stream.next()).await {
                Err(_) => return Incoming::Idle,
                Ok(n) => n,
            };
            match next {
                None | Some(Err(_)) | Some(Ok(AggregatedMessage::Close(_))) => {
                    self.open = false;
                    return Incoming::Gone;
                }
                Some(Ok(AggregatedMessage::Ping(p))) => {
                    if let Some(s) = &mut self.session {
                        let _ = s.pong(&p).await;
                    }
                }
                Some(Ok(AggregatedMessage::Pong(_))) => {}
                Some(Ok(AggregatedMessage::Binary(_))) => {
                    return Incoming::Bad("binary frames are not accepted: send JSON text".into())
                }
                Some(Ok(AggregatedMessage::Text(t))) => {
                    return match serde_json::from_str::<Value>(&t) {
                        Ok(v) if v.is_object() => {
                            self.shared
                                .recorder
                                .note(&format!("cascade ws <- {}", shorten(&v)));
                            Incoming::Json(v)
                        }
                        Ok(_) => Incoming::Bad("a message must be a JSON object".into()),
                        Err(e) => Incoming::Bad(format!("invalid JSON: {e}")),
                    };
                }
            }
        }
    }

    /// Sends a JSON message; false once the client is gone.
    pub async fn send(&mut self, v: Value) -> bool {
        let Some(session) = self.session.as_mut().filter(|_| self.open) else {
            return false;
        };
        self.shared
            .recorder
            .note(&format!("cascade ws -> {}", shorten(&v)));
        let text = v.to_string();
        if session.text(text).await.is_err() {
            self.open = false;
        }
        self.open
    }

    /// Closes with `code` and `reason`, then drains what the client still sends.
    pub async fn close(self, code: u16, reason: &str) {
        let FakeWs {
            session,
            stream,
            shared,
            sock,
            ..
        } = self;
        drop(stream);
        let Some(session) = session else { return };
        let _ = session
            .close(Some(CloseReason {
                code: CloseCode::from(code),
                description: (!reason.is_empty()).then(|| reason.to_owned()),
            }))
            .await;
        if let Some(sock) = sock {
            crate::conn::drain_after_close(sock, shared.cfg.close_timeout).await;
        }
    }

    /// Drops the connection without a close frame (a fault).
    pub fn cut(&mut self) {
        self.open = false;
        self.session = None;
    }

    /// Notes a line in the server's recording.
    pub fn note(&self, text: &str) {
        self.shared.recorder.note(text);
    }
}

/// The message for the recording: strings over 120 characters (audio) shown by length, so
/// that the line stays short and still parses as JSON.
fn shorten(v: &Value) -> Value {
    match v {
        Value::String(s) if s.len() > 120 => Value::String(format!("<{} chars>", s.len())),
        Value::Array(a) => Value::Array(a.iter().map(shorten).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), shorten(v))).collect()),
        other => other.clone(),
    }
}
