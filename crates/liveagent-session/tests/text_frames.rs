//! Text frames as a hostile peer can send them: a peer on a raw TCP socket (127.0.0.1)
//! answers the WebSocket handshake by hand and then writes frames byte by byte, so it can
//! send what no WebSocket library would: a text frame that is not UTF-8, whole or split
//! over fragments, next to valid ones (one split in the middle of a character).
//!
//! The session keeps a text frame in the buffer it was read into and checks its UTF-8 once;
//! these tests pin what that must keep doing: a frame that is not UTF-8 is an error event
//! (and never reaches the protocol), the session stays up, and valid frames reach the
//! protocol intact and in order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use liveagent_core::{
    ConnectRequest, ConversationContext, ErrorEvent, EventBus, LiveError, LiveEvent, Outbox,
    ProtocolSignal, RealtimeProtocol, SessionCommand, WireFrame,
};
use liveagent_session::{start_session, SessionOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const FAILSAFE: Duration = Duration::from_secs(20);

/// A server frame (servers do not mask): `first` is FIN + opcode.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut f = vec![first, payload.len() as u8];
    f.extend_from_slice(payload);
    f
}

const TEXT: u8 = 0x81;
const TEXT_FIRST: u8 = 0x01;
const CONTINUATION_LAST: u8 = 0x80;

/// Accepts one connection, completes the handshake, writes `frames`, then holds the socket
/// open (reading and discarding what the client sends) until the client goes away.
async fn peer(frames: Vec<Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    actix_rt::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "client closed during the handshake");
            request.extend_from_slice(&buf[..n]);
        }
        let request = String::from_utf8(request).unwrap();
        let key = request
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim().to_owned())
            })
            .expect("no Sec-WebSocket-Key");
        let accept = actix_http::ws::hash_key(key.as_bytes());
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            std::str::from_utf8(&accept).unwrap()
        );
        socket.write_all(response.as_bytes()).await.unwrap();
        for f in frames {
            socket.write_all(&f).await.unwrap();
        }
        while let Ok(n) = socket.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    url
}

/// Ready at once; records the text of every frame it is given.
struct Recorder {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl RealtimeProtocol for Recorder {
    fn provider(&self) -> &'static str {
        "recorder"
    }
    fn connect_request(&self) -> Result<ConnectRequest, LiveError> {
        Ok(ConnectRequest {
            url: self.url.clone(),
            headers: Vec::new(),
            secret: None,
        })
    }
    fn on_open(&mut self, _reconnect: bool, out: &mut Outbox) {
        out.signal(ProtocolSignal::Ready { resumed: false });
    }
    fn on_frame(&mut self, frame: WireFrame, _out: &mut Outbox) {
        let text = match frame {
            WireFrame::Text(text) => text.to_string(),
            WireFrame::Binary(bytes) => format!("binary:{}", bytes.len()),
        };
        self.seen.lock().unwrap().push(text);
    }
    fn on_command(&mut self, _command: SessionCommand, _out: &mut Outbox) {}
    fn on_close(&mut self, _out: &mut Outbox) {}
    fn input_sample_rate(&self) -> u32 {
        24_000
    }
}

#[actix_rt::test]
async fn text_frames_that_are_not_utf8_are_errors_and_valid_ones_arrive_intact() {
    let euro = "€".as_bytes(); // three bytes: split between two fragments below
    let frames = vec![
        frame(TEXT, br#"{"n":1}"#),
        frame(TEXT, b"{\"bad\":\"\xff\xfe\"}"),
        frame(
            TEXT_FIRST,
            &[br#"{"price":"12 "#.as_slice(), &euro[..1]].concat(),
        ),
        frame(
            CONTINUATION_LAST,
            &[&euro[1..], br#""}"#.as_slice()].concat(),
        ),
        frame(TEXT_FIRST, b"{\"half\":\"\xe2\x82"),
        frame(CONTINUATION_LAST, b"\"}"),
        frame(TEXT, br#"{"n":2}"#),
    ];
    let url = peer(frames).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let context = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
    let mut events = context.stream().capacity(1000).all();
    let protocol = Recorder {
        url,
        seen: seen.clone(),
    };
    let session = start_session(
        Box::new(protocol),
        context.clone(),
        SessionOptions::default(),
    );

    let deadline = std::time::Instant::now() + FAILSAFE;
    while seen.lock().unwrap().len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "frames seen: {:?}",
            seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            r#"{"n":1}"#.to_owned(),
            r#"{"price":"12 €"}"#.to_owned(),
            r#"{"n":2}"#.to_owned()
        ]
    );

    let mut not_utf8 = 0;
    let collect = async {
        while let Some(event) = events.next().await {
            if let LiveEvent::ErrorEvent(ErrorEvent { error, fatal, .. }) = &event {
                assert!(!fatal, "a bad frame must not end the session: {error}");
                if error.message.contains("not UTF-8") {
                    not_utf8 += 1;
                    if not_utf8 == 2 {
                        break;
                    }
                }
            }
        }
    };
    tokio::time::timeout(FAILSAFE, collect)
        .await
        .expect("two 'not UTF-8' error events");
    assert_eq!(not_utf8, 2);
    let status = session.status().await.expect("session alive");
    assert_eq!(status.reconnects, 0, "the session stayed on its connection");
    session.stop();
}
