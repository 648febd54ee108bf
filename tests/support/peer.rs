//! A small scripted WebSocket peer for the end-to-end tests that need a provider the local
//! server cannot imitate (a flood, a frame the server would never send, exact control of
//! when each frame goes out): actix-web + actix-ws on 127.0.0.1, real sockets, real frames.
//!
//! The peer answers every connection with [`PeerBuilder::on_open`]'s frames and each text
//! frame the client sends with [`PeerBuilder::on_text`]'s; the test can also send frames on
//! any connection itself ([`ScriptedPeer::send`]) or close it. It records, per connection,
//! the frames received and sent (for the protocol validator), the pings, and how the
//! connection ended: with the client's Close frame (and its code) or at a bare EOF.
//!
//! ```no_run
//! # async fn demo() {
//! use liveagent_e2e::peer::ScriptedPeer;
//! let peer = ScriptedPeer::builder()
//!     .on_open(|_conn| vec![r#"{"setupComplete":{}}"#.to_owned()])
//!     .start()
//!     .await;
//! // point a Gemini config at peer.url(), then:
//! peer.send(0, r#"{"serverContent":{"turnComplete":true}}"#).await;
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures_util::StreamExt;

use crate::FAILSAFE;

/// Frames to send in answer, in order.
pub type Replies = Vec<String>;

type OnOpen = dyn Fn(usize) -> Replies + Send + Sync;
type OnText = dyn Fn(usize, &str) -> Replies + Send + Sync;

/// What one connection saw.
#[derive(Clone, Debug, Default)]
pub struct ConnRecord {
    /// The request path and query the client connected to.
    pub path: String,
    /// Text frames received from the client (binary frames as lossy UTF-8), in order.
    pub received: Vec<String>,
    /// Frames the peer sent, in order.
    pub sent: Vec<String>,
    /// WebSocket pings received.
    pub pings: u32,
    /// `Some(code)` once the client's Close frame arrived (`code` is `None` for a Close
    /// without a status code).
    pub close: Option<Option<u16>>,
    /// The connection is over (the Close handshake done, or the client dropped it).
    pub ended: bool,
}

impl ConnRecord {
    /// True when the connection ended without a Close frame from the client (a bare EOF or
    /// a reset).
    pub fn eof_without_close(&self) -> bool {
        self.ended && self.close.is_none()
    }

    /// The received frames that parse as JSON.
    pub fn received_json(&self) -> Vec<serde_json::Value> {
        self.received
            .iter()
            .filter_map(|f| serde_json::from_str(f).ok())
            .collect()
    }

    /// The frames of both directions as `> ` (client) and `< ` (peer) lines, for
    /// [`validate_lines`](crate::validate_lines).
    pub fn wire_lines(&self) -> Vec<String> {
        self.received
            .iter()
            .map(|f| format!("> {f}"))
            .chain(self.sent.iter().map(|f| format!("< {f}")))
            .collect()
    }
}

struct Conn {
    record: ConnRecord,
    session: Option<actix_ws::Session>,
}

struct Inner {
    conns: Mutex<Vec<Conn>>,
    on_open: Box<OnOpen>,
    on_text: Box<OnText>,
    answer_close: bool,
    record_received: bool,
}

/// Configures a [`ScriptedPeer`]; from [`ScriptedPeer::builder`].
pub struct PeerBuilder {
    on_open: Box<OnOpen>,
    on_text: Box<OnText>,
    answer_close: bool,
    record_received: bool,
}

impl PeerBuilder {
    /// Frames to send as soon as connection `n` (0, 1, ...) is upgraded (default: none).
    pub fn on_open(mut self, f: impl Fn(usize) -> Replies + Send + Sync + 'static) -> Self {
        self.on_open = Box::new(f);
        self
    }

    /// Frames to send in answer to each text frame the client sends on connection `n`
    /// (default: none).
    pub fn on_text(mut self, f: impl Fn(usize, &str) -> Replies + Send + Sync + 'static) -> Self {
        self.on_text = Box::new(f);
        self
    }

    /// Whether the client's Close is answered with a Close at once (default true). When
    /// not, the connection stays open until the client drops it or the test answers with
    /// [`ScriptedPeer::close`], and [`ConnRecord::ended`] tells when the client gave up.
    pub fn answer_close(mut self, answer: bool) -> Self {
        self.answer_close = answer;
        self
    }

    /// Whether received frames are kept in [`ConnRecord::received`] (default true; a flood
    /// test that counts in its own handler can turn it off).
    pub fn record_received(mut self, on: bool) -> Self {
        self.record_received = on;
        self
    }

    /// Binds 127.0.0.1 on a free port and starts serving (every path is a WebSocket
    /// endpoint). Must be called inside a running actix system.
    pub async fn start(self) -> ScriptedPeer {
        let inner = Arc::new(Inner {
            conns: Mutex::new(Vec::new()),
            on_open: self.on_open,
            on_text: self.on_text,
            answer_close: self.answer_close,
            record_received: self.record_received,
        });
        let data = web::Data::new(inner.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::get().to(ws))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .expect("bind the scripted peer");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        ScriptedPeer {
            addr,
            inner,
            handle,
        }
    }
}

/// A scripted WebSocket peer on 127.0.0.1 (see the module docs).
pub struct ScriptedPeer {
    addr: SocketAddr,
    inner: Arc<Inner>,
    handle: actix_web::dev::ServerHandle,
}

impl ScriptedPeer {
    /// A builder (no frames sent unless configured; Close answered).
    pub fn builder() -> PeerBuilder {
        PeerBuilder {
            on_open: Box::new(|_| Vec::new()),
            on_text: Box::new(|_, _| Vec::new()),
            answer_close: true,
            record_received: true,
        }
    }

    /// A peer speaking the OpenAI Realtime GA handshake: `session.created` on every
    /// connection, `session.updated` for every `session.update`; every other client event
    /// (parsed) goes to `f`, whose frames are sent in answer.
    pub fn openai(
        f: impl Fn(usize, &serde_json::Value) -> Replies + Send + Sync + 'static,
    ) -> PeerBuilder {
        Self::builder()
            .on_open(|n| {
                vec![serde_json::json!({"type": "session.created", "event_id": format!("evt_created_{n}"),
                    "session": {"type": "realtime", "id": format!("sess_{n}"), "object": "realtime.session"}})
                .to_string()]
            })
            .on_text(move |n, text| {
                let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
                if v["type"] == "session.update" {
                    vec![serde_json::json!({"type": "session.updated", "event_id": "evt_updated",
                        "session": {"type": "realtime", "object": "realtime.session"}})
                    .to_string()]
                } else {
                    f(n, &v)
                }
            })
    }

    /// A peer speaking the Gemini Live handshake: `setupComplete` for every `setup`; every
    /// other client message (parsed) goes to `f`, whose frames are sent in answer.
    pub fn gemini(
        f: impl Fn(usize, &serde_json::Value) -> Replies + Send + Sync + 'static,
    ) -> PeerBuilder {
        Self::builder().on_text(move |n, text| {
            let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
            if v.get("setup").is_some() {
                vec![serde_json::json!({"setupComplete": {}}).to_string()]
            } else {
                f(n, &v)
            }
        })
    }

    /// `ws://127.0.0.1:<port>` (append the path a provider config expects, e.g. `/v1`).
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// What every connection saw so far, in the order they were opened.
    pub fn conns(&self) -> Vec<ConnRecord> {
        self.inner
            .conns
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.record.clone())
            .collect()
    }

    /// What connection `n` saw so far (panics if it was never opened).
    pub fn conn(&self, n: usize) -> ConnRecord {
        self.inner.conns.lock().unwrap()[n].record.clone()
    }

    /// Sends `frame` on connection `n` (ignored once that connection is over).
    pub async fn send(&self, n: usize, frame: impl Into<String>) {
        let frame = frame.into();
        let session = {
            let mut conns = self.inner.conns.lock().unwrap();
            let conn = &mut conns[n];
            conn.record.sent.push(frame.clone());
            conn.session.clone()
        };
        if let Some(mut session) = session {
            let _ = session.text(frame).await;
        }
    }

    /// Sends a Close with `code` on connection `n` (nothing more can be sent on it).
    pub async fn close(&self, n: usize, code: u16) {
        let session = self.inner.conns.lock().unwrap()[n].session.take();
        if let Some(session) = session {
            let _ = session
                .close(Some(actix_ws::CloseReason {
                    code: actix_ws::CloseCode::from(code),
                    description: None,
                }))
                .await;
        }
    }

    /// Waits until `f` holds for the connections' records (panics after [`FAILSAFE`], with
    /// the records, so a hang names what was missing).
    pub async fn wait_until(&self, what: &str, f: impl Fn(&[ConnRecord]) -> bool) {
        let deadline = std::time::Instant::now() + FAILSAFE;
        loop {
            let conns = self.conns();
            if f(&conns) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "waited too long for {what}; connections: {:?}",
                conns
                    .iter()
                    .map(|c| (c.received.len(), c.close, c.ended))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops serving (open connections are dropped).
    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

async fn ws(
    req: HttpRequest,
    body: web::Payload,
    inner: web::Data<Arc<Inner>>,
) -> actix_web::Result<HttpResponse> {
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let inner = inner.get_ref().clone();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let n = {
        let mut conns = inner.conns.lock().unwrap();
        conns.push(Conn {
            record: ConnRecord {
                path,
                ..Default::default()
            },
            session: Some(session.clone()),
        });
        conns.len() - 1
    };
    actix_web::rt::spawn(serve(inner, n, session, stream));
    Ok(response)
}

/// Sends `frames` on connection `n`, recording them.
async fn reply(inner: &Inner, n: usize, session: &mut actix_ws::Session, frames: Replies) {
    for frame in frames {
        inner.conns.lock().unwrap()[n]
            .record
            .sent
            .push(frame.clone());
        if session.text(frame).await.is_err() {
            return;
        }
    }
}

async fn serve(
    inner: Arc<Inner>,
    n: usize,
    mut session: actix_ws::Session,
    stream: actix_ws::MessageStream,
) {
    reply(&inner, n, &mut session, (inner.on_open)(n)).await;
    let mut stream = stream.max_frame_size(64 * 1024 * 1024);
    while let Some(msg) = stream.next().await {
        let text = match msg {
            Ok(actix_ws::Message::Text(t)) => t.to_string(),
            Ok(actix_ws::Message::Binary(b)) => String::from_utf8_lossy(&b).into_owned(),
            Ok(actix_ws::Message::Ping(b)) => {
                inner.conns.lock().unwrap()[n].record.pings += 1;
                let _ = session.pong(&b).await;
                continue;
            }
            Ok(actix_ws::Message::Close(reason)) => {
                let answer = {
                    let mut conns = inner.conns.lock().unwrap();
                    conns[n].record.close = Some(reason.map(|r| u16::from(r.code)));
                    if inner.answer_close {
                        conns[n].session.take()
                    } else {
                        None
                    }
                };
                if let Some(session) = answer {
                    let _ = session.close(None).await;
                    break;
                }
                // Not answered: the test may answer with `ScriptedPeer::close`; the
                // connection is over when the client drops it.
                continue;
            }
            Ok(_) => continue,
            Err(_) => break,
        };
        if inner.record_received {
            inner.conns.lock().unwrap()[n]
                .record
                .received
                .push(text.clone());
        }
        let frames = (inner.on_text)(n, &text);
        reply(&inner, n, &mut session, frames).await;
    }
    let mut conns = inner.conns.lock().unwrap();
    conns[n].record.ended = true;
    conns[n].session = None;
}
