//! A raw WebSocket client for the server's tests (awc), independent of the provider crates.
#![allow(dead_code)]

use std::time::Duration;

use actix_codec::Framed;
use awc::ws::{Codec, Frame, Message};
use awc::BoxedSocket;
use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;

pub const TIMEOUT: Duration = Duration::from_secs(20);

pub struct Ws {
    pub framed: Framed<BoxedSocket, Codec>,
    /// Every JSON frame received, in order.
    pub seen: Vec<Value>,
}

/// How a connection attempt ended.
pub enum Connect {
    Ok(Ws),
    Status(u16),
}

/// A local server that answers as fast as it can (no real-time pacing), and one OpenAI
/// connection to it, past its `session.created`.
pub async fn fast_openai() -> (liveagent_server::LocalServer, Ws) {
    openai_on(liveagent_server::ServerConfig {
        pacing: liveagent_server::Pacing::AsFastAsPossible,
        ..liveagent_server::ServerConfig::default()
    })
    .await
}

/// A local server started with `config`, and one OpenAI connection to it, past its
/// `session.created`.
#[allow(dead_code)]
pub async fn openai_on(
    config: liveagent_server::ServerConfig,
) -> (liveagent_server::LocalServer, Ws) {
    let server = liveagent_server::LocalServer::start(config).await.unwrap();
    let mut ws = connect(
        &format!("{}/realtime?model=gpt-realtime", server.openai_url()),
        &[],
    )
    .await;
    ws.until("session.created").await;
    (server, ws)
}

/// The `item_id` of the first `input_audio_buffer.committed` among `events`.
pub fn committed_item(events: &[Value]) -> String {
    events
        .iter()
        .find(|e| e["type"] == "input_audio_buffer.committed")
        .expect("no input_audio_buffer.committed")["item_id"]
        .as_str()
        .expect("committed without an item_id")
        .to_owned()
}

/// awc is built with rustls; pick its crypto provider once per test process.
pub fn crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

pub async fn try_connect(url: &str, headers: &[(&str, &str)]) -> Connect {
    crypto();
    let client = awc::Client::builder()
        .max_http_version(awc::http::Version::HTTP_11)
        .finish();
    let mut req = client.ws(url).max_frame_size(64 * 1024 * 1024);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    match req.connect().await {
        Ok((_resp, framed)) => Connect::Ok(Ws {
            framed,
            seen: Vec::new(),
        }),
        Err(awc::error::WsClientError::InvalidResponseStatus(s)) => Connect::Status(s.as_u16()),
        Err(e) => panic!("connect {url}: {e}"),
    }
}

pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Ws {
    match try_connect(url, headers).await {
        Connect::Ok(ws) => ws,
        Connect::Status(s) => panic!("connect {url}: HTTP {s}"),
    }
}

impl std::fmt::Debug for Ws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ws({} frames seen)", self.seen.len())
    }
}

impl std::fmt::Debug for Connect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Connect::Ok(_) => write!(f, "Connect::Ok"),
            Connect::Status(s) => write!(f, "Connect::Status({s})"),
        }
    }
}

/// What the next frame was.
#[derive(Debug)]
pub enum Got {
    Json(Value),
    Text(String),
    Close(Option<(u16, String)>),
    /// The connection ended without a close frame.
    Eof,
}

impl Ws {
    pub async fn send(&mut self, v: &Value) {
        self.send_text(&v.to_string()).await;
    }

    pub async fn send_text(&mut self, s: &str) {
        self.framed
            .send(Message::Text(s.to_owned().into()))
            .await
            .expect("send");
    }

    pub async fn send_binary(&mut self, b: Vec<u8>) {
        self.framed
            .send(Message::Binary(b.into()))
            .await
            .expect("send");
    }

    /// The next data frame (pings answered, timeouts panic).
    pub async fn next(&mut self) -> Got {
        loop {
            let item = tokio::time::timeout(TIMEOUT, self.framed.next())
                .await
                .expect("timed out waiting for a frame");
            match item {
                None => return Got::Eof,
                Some(Err(_)) => return Got::Eof,
                Some(Ok(Frame::Text(b))) | Some(Ok(Frame::Binary(b))) => {
                    let s = String::from_utf8_lossy(&b).into_owned();
                    return match serde_json::from_str::<Value>(&s) {
                        Ok(v) => {
                            self.seen.push(v.clone());
                            Got::Json(v)
                        }
                        Err(_) => Got::Text(s),
                    };
                }
                Some(Ok(Frame::Close(r))) => {
                    return Got::Close(
                        r.map(|r| (u16::from(r.code), r.description.unwrap_or_default())),
                    )
                }
                Some(Ok(Frame::Ping(p))) => {
                    let _ = self.framed.send(Message::Pong(p)).await;
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next JSON frame; panics on anything else.
    pub async fn json(&mut self) -> Value {
        match self.next().await {
            Got::Json(v) => v,
            other => panic!("expected a JSON frame, got {other:?}"),
        }
    }

    /// Reads OpenAI events until one of type `ty`; returns every event read (the last is `ty`).
    pub async fn until(&mut self, ty: &str) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let v = self.json().await;
            let done = v["type"] == ty;
            out.push(v);
            if done {
                return out;
            }
        }
    }

    /// Reads Gemini messages until one with top-level key path satisfying `pred`.
    pub async fn until_pred(&mut self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let v = self.json().await;
            let done = pred(&v);
            out.push(v);
            if done {
                return out;
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.framed.send(Message::Close(None)).await;
    }
}

pub fn b64(samples: &[i16]) -> String {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unb64(s: &str) -> Vec<i16> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64");
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// `silence_ms` of silence, `tone_ms` of a 440 Hz tone, `tail_ms` of silence, at `rate`.
pub fn utterance(silence_ms: u32, tone_ms: u32, tail_ms: u32, rate: u32) -> Vec<i16> {
    let mut v = liveagent_testkit::silence_pcm(silence_ms, rate);
    v.extend(liveagent_testkit::tone_pcm(440.0, tone_ms, rate, 8000));
    v.extend(liveagent_testkit::silence_pcm(tail_ms, rate));
    v
}

/// Sends OpenAI `input_audio_buffer.append` events of 40 ms each (not paced).
pub async fn append_audio(ws: &mut Ws, samples: &[i16]) {
    for chunk in samples.chunks(960) {
        ws.send(&serde_json::json!({"type": "input_audio_buffer.append", "audio": b64(chunk)}))
            .await;
    }
}

pub fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// Concatenated audio of every `response.output_audio.delta`.
pub fn output_audio(events: &[Value]) -> Vec<i16> {
    events
        .iter()
        .filter(|e| e["type"] == "response.output_audio.delta")
        .flat_map(|e| unb64(e["delta"].as_str().unwrap()))
        .collect()
}

pub fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("liveagent-server-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}
