//! Connection hardening of the session actor against a misbehaving peer (issue 13): a small
//! WebSocket server in this file (actix-web + actix-ws, real sockets on 127.0.0.1) that
//! records what the client sends, and can go silent without closing (half-open), refuse to
//! read, or close with a reason that echoes the API key. The session is driven through its
//! public API (`start_session` with a minimal `RealtimeProtocol`).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures_util::StreamExt;
use liveagent_core::{
    ConnectRequest, ConversationContext, ErrorEvent, EventBus, LiveError, LiveEvent, Outbox,
    ProtocolSignal, RealtimeProtocol, Secret, SessionClosed, SessionCommand, SessionReconnected,
    SessionReconnecting, UserText, WireFrame,
};
use liveagent_session::{start_session, ReconnectPolicy, SessionOptions};

const KEY: &str = "sk-test-SECRET-4242";
const FAILSAFE: Duration = Duration::from_secs(30);

/// What the peer should do on each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    /// Answer pings, echo text, answer Close.
    Normal,
    /// The first connection goes silent after the first text frame: stops reading and
    /// answering, without closing. Later connections are normal.
    WedgeFirst,
    /// The first connection closes with a reason holding the API key.
    CloseWithKeyFirst,
    /// The first connection stops reading after the first text frame but keeps sending
    /// (so it is not silent): only the stalled-write deadline can notice.
    DeafFirst,
}

#[derive(Default)]
struct Record {
    /// Per connection: (close frames received from the client, EOF seen before a Close).
    closes: Vec<(u32, bool)>,
    pings: u32,
    texts: Vec<String>,
}

#[derive(Clone)]
struct Peer {
    behaviour: Behaviour,
    connections: Arc<AtomicU32>,
    record: Arc<Mutex<Record>>,
    stop_wedge: Arc<AtomicBool>,
}

async fn ws(
    req: HttpRequest,
    body: web::Payload,
    peer: web::Data<Peer>,
) -> actix_web::Result<HttpResponse> {
    let (response, mut session, mut stream) = actix_ws::handle(&req, body)?;
    let n = peer.connections.fetch_add(1, Ordering::SeqCst);
    let idx = {
        let mut r = peer.record.lock().unwrap();
        r.closes.push((0, false));
        r.closes.len() - 1
    };
    let peer = peer.get_ref().clone();
    actix_web::rt::spawn(async move {
        if n == 0 && peer.behaviour == Behaviour::CloseWithKeyFirst {
            let _ = session
                .close(Some(actix_ws::CloseReason {
                    code: actix_ws::CloseCode::Policy,
                    description: Some(format!("invalid key {KEY} presented")),
                }))
                .await;
            return;
        }
        while let Some(msg) = stream.next().await {
            match msg {
                Ok(actix_ws::Message::Ping(b)) => {
                    peer.record.lock().unwrap().pings += 1;
                    let _ = session.pong(&b).await;
                }
                Ok(actix_ws::Message::Text(t)) => {
                    peer.record.lock().unwrap().texts.push(t.to_string());
                    if n == 0 && peer.behaviour == Behaviour::WedgeFirst {
                        // Half-open: hold the socket, read nothing, answer nothing.
                        while !peer.stop_wedge.load(Ordering::SeqCst) {
                            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
                        }
                        return;
                    }
                    if n == 0 && peer.behaviour == Behaviour::DeafFirst {
                        while !peer.stop_wedge.load(Ordering::SeqCst) {
                            if session.text("tick").await.is_err() {
                                break;
                            }
                            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
                        }
                        return;
                    }
                    let _ = session.text(format!("echo:{t}")).await;
                }
                Ok(actix_ws::Message::Close(_)) => {
                    peer.record.lock().unwrap().closes[idx].0 += 1;
                    let _ = session.close(None).await;
                    return;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        // The stream ended without a Close frame from the client.
        let mut r = peer.record.lock().unwrap();
        if r.closes[idx].0 == 0 {
            r.closes[idx].1 = true;
        }
    });
    Ok(response)
}

async fn start_peer(behaviour: Behaviour) -> (String, Peer) {
    let peer = Peer {
        behaviour,
        connections: Arc::new(AtomicU32::new(0)),
        record: Arc::new(Mutex::new(Record::default())),
        stop_wedge: Arc::new(AtomicBool::new(false)),
    };
    let data = web::Data::new(peer.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/ws", web::get().to(ws))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    (format!("ws://{addr}/ws"), peer)
}

/// A minimal provider: ready as soon as the socket opens; user text goes out as a text
/// frame; asks for a new connection on `SessionControl(Renew)`-like text "renew".
struct TinyProtocol {
    url: String,
}

impl RealtimeProtocol for TinyProtocol {
    fn provider(&self) -> &'static str {
        "tiny"
    }
    fn connect_request(&self) -> Result<ConnectRequest, LiveError> {
        Ok(ConnectRequest {
            url: self.url.clone(),
            headers: vec![("authorization".into(), format!("Bearer {KEY}"))],
            secret: Some(Secret::new(KEY)),
        })
    }
    fn on_open(&mut self, _reconnect: bool, out: &mut Outbox) {
        out.signal(ProtocolSignal::Ready { resumed: false });
    }
    fn on_frame(&mut self, _frame: WireFrame, _out: &mut Outbox) {}
    fn on_command(&mut self, command: SessionCommand, out: &mut Outbox) {
        if let SessionCommand::Text(t) = command {
            if &*t.text == "renew" {
                out.signal(ProtocolSignal::Reconnect {
                    reason: "test renewal".into(),
                });
            } else if &*t.text == "fatal" {
                out.signal(ProtocolSignal::Fatal(LiveError::config("test fatal")));
            } else {
                out.send_text(t.text.to_string());
            }
        }
    }
    fn on_close(&mut self, _out: &mut Outbox) {}
    fn input_sample_rate(&self) -> u32 {
        24_000
    }
}

fn options() -> SessionOptions {
    SessionOptions {
        reconnect: ReconnectPolicy {
            initial_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
            ..Default::default()
        },
        ping_interval: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(1200),
        close_timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

struct Harness {
    context: ConversationContext,
    events: Arc<Mutex<Vec<LiveEvent>>>,
}

impl Harness {
    fn new() -> Harness {
        let context = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
        let events = Arc::new(Mutex::new(Vec::new()));
        let mut stream = context.stream().capacity(100_000).all();
        let sink = events.clone();
        actix::spawn(async move {
            while let Some(e) = stream.next().await {
                sink.lock().unwrap().push(e);
            }
        });
        Harness { context, events }
    }

    async fn wait_for<T>(&self, what: &str, f: impl Fn(&LiveEvent) -> Option<T>) -> T {
        let deadline = std::time::Instant::now() + FAILSAFE;
        loop {
            if let Some(t) = self.events.lock().unwrap().iter().find_map(&f) {
                return t;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "waited too long for {what}: {:?}",
                self.events
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|e| e.kind())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn text(&self, text: &str) {
        self.context.publish(UserText {
            text: text.into(),
            respond: false,
        });
    }
}

async fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + FAILSAFE;
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "waited too long for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_rt::test]
async fn half_open_connection_is_detected_and_the_session_reconnects() {
    let (url, peer) = start_peer(Behaviour::WedgeFirst).await;
    let h = Harness::new();
    let session = start_session(Box::new(TinyProtocol { url }), h.context.clone(), options());
    h.text("hello"); // the peer goes silent on it, without closing
    let error = h
        .wait_for("an ErrorEvent about the dead connection", |e| match e {
            LiveEvent::ErrorEvent(ErrorEvent { error, .. })
                if error.message.contains("half-open") =>
            {
                Some(error.message.clone())
            }
            _ => None,
        })
        .await;
    assert!(error.contains("no data and no pong"), "{error}");
    let reason = h
        .wait_for("SessionReconnecting", |e| match e {
            LiveEvent::SessionReconnecting(SessionReconnecting { reason, .. }) => {
                Some(reason.clone())
            }
            _ => None,
        })
        .await;
    assert!(reason.contains("half-open"), "{reason}");
    h.wait_for("SessionReconnected", |e| match e {
        LiveEvent::SessionReconnected(SessionReconnected { .. }) => Some(()),
        _ => None,
    })
    .await;
    // The new connection works: text goes through it.
    h.text("after");
    wait_until("the text on the new connection", || {
        peer.record
            .lock()
            .unwrap()
            .texts
            .iter()
            .any(|t| t == "after")
    })
    .await;
    assert!(peer.connections.load(Ordering::SeqCst) >= 2);
    wait_until("a client ping on the new connection", || {
        peer.record.lock().unwrap().pings > 0
    })
    .await;
    peer.stop_wedge.store(true, Ordering::SeqCst);
    session.stop_and_wait().await;
}

#[actix_rt::test]
async fn stop_sends_close_and_waits_for_the_peer() {
    let (url, peer) = start_peer(Behaviour::Normal).await;
    let h = Harness::new();
    let session = start_session(Box::new(TinyProtocol { url }), h.context.clone(), options());
    h.text("hi");
    wait_until("the first text", || {
        !peer.record.lock().unwrap().texts.is_empty()
    })
    .await;
    session.stop_and_wait().await;
    // stop_and_wait returns once the handshake is done: the peer has seen our Close.
    let closes = peer.record.lock().unwrap().closes.clone();
    assert_eq!(closes, vec![(1, false)], "one Close, no bare EOF");
    h.wait_for("SessionClosed", |e| match e {
        LiveEvent::SessionClosed(SessionClosed { .. }) => Some(()),
        _ => None,
    })
    .await;
}

#[actix_rt::test]
async fn renewal_and_fatal_errors_close_cleanly() {
    let (url, peer) = start_peer(Behaviour::Normal).await;
    let h = Harness::new();
    let _session = start_session(Box::new(TinyProtocol { url }), h.context.clone(), options());
    h.text("renew");
    h.wait_for("SessionReconnected", |e| match e {
        LiveEvent::SessionReconnected(_) => Some(()),
        _ => None,
    })
    .await;
    h.text("fatal");
    h.wait_for("SessionClosed", |e| match e {
        LiveEvent::SessionClosed(_) => Some(()),
        _ => None,
    })
    .await;
    wait_until("both connections closed", || {
        let r = peer.record.lock().unwrap();
        r.closes.len() == 2 && r.closes.iter().all(|c| c.0 == 1 || c.1)
    })
    .await;
    let closes = peer.record.lock().unwrap().closes.clone();
    assert_eq!(
        closes,
        vec![(1, false), (1, false)],
        "renewal and fatal: a Close each"
    );
}

#[actix_rt::test]
async fn close_reason_echoing_the_key_is_redacted() {
    let (url, _peer) = start_peer(Behaviour::CloseWithKeyFirst).await;
    let h = Harness::new();
    let session = start_session(Box::new(TinyProtocol { url }), h.context.clone(), options());
    let reason = h
        .wait_for("SessionReconnecting", |e| match e {
            LiveEvent::SessionReconnecting(SessionReconnecting { reason, .. }) => {
                Some(reason.clone())
            }
            _ => None,
        })
        .await;
    assert!(reason.contains("invalid key *** presented"), "{reason}");
    session.stop_and_wait().await;
    let all = format!("{:?}", h.events.lock().unwrap());
    assert!(!all.contains(KEY), "the key leaked into an event: {all}");
}

#[actix_rt::test]
async fn a_peer_that_stops_reading_is_detected_by_the_write_deadline() {
    let (url, peer) = start_peer(Behaviour::DeafFirst).await;
    let h = Harness::new();
    let session = start_session(
        Box::new(TinyProtocol { url }),
        h.context.clone(),
        SessionOptions {
            idle_timeout: Duration::ZERO,
            write_timeout: Duration::from_millis(800),
            ..options()
        },
    );
    h.text("hello");
    wait_until("the first text", || {
        !peer.record.lock().unwrap().texts.is_empty()
    })
    .await;
    // 64 MB the peer never reads: the socket buffers fill and writes stall.
    let big = "x".repeat(256 * 1024);
    for _ in 0..256 {
        h.text(&big);
    }
    let error = h
        .wait_for("an ErrorEvent about the stalled writes", |e| match e {
            LiveEvent::ErrorEvent(ErrorEvent { error, .. })
                if error.message.contains("stopped reading") =>
            {
                Some(error.message.clone())
            }
            _ => None,
        })
        .await;
    assert!(error.contains("800 ms"), "{error}");
    h.wait_for("SessionReconnected", |e| match e {
        LiveEvent::SessionReconnected(_) => Some(()),
        _ => None,
    })
    .await;
    peer.stop_wedge.store(true, Ordering::SeqCst);
    session.stop_and_wait().await;
}
