//! Shared helpers of the transport tests: the local realtime server, an app with the
//! transports mounted on 127.0.0.1:0, WAV writing.
#![allow(dead_code)]

use std::time::Duration;

use actix_web::{App, HttpServer};
use liveagent::{openai, LiveAgent, Tool, ToolError};
use liveagent_server::{LocalServer, Pacing, Scenario, ServerConfig};

/// A failsafe against hangs, never a timing assertion.
pub const FAILSAFE: Duration = Duration::from_secs(30);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A local server with `scenario` (None: echo), recording in memory.
pub async fn local_server(scenario: Option<&str>, pacing: Pacing) -> LocalServer {
    init_tracing();
    let mut config = match scenario {
        Some(toml) => ServerConfig::scripted(Scenario::from_toml(toml).expect("scenario")),
        None => ServerConfig::default(),
    };
    config.pacing = pacing;
    config.record_in_memory = true;
    LocalServer::start(config).await.expect("local server")
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
pub struct City {
    pub city: String,
}

/// The test agent: OpenAI protocol against `server`, a weather tool.
pub fn agent_builder(server: &LocalServer) -> liveagent::LiveAgentBuilder {
    LiveAgent::builder("assistant")
        .prompt("You are a test agent.")
        .config(
            openai::RealtimeConfig::new("gpt-realtime")
                .base_url(server.openai_url())
                .api_key("local-key"),
        )
        .tool(Tool::new(
            "lookup_weather",
            "The weather in a city.",
            |a: City| async move { Ok::<_, ToolError>(format!("sunny in {}", a.city)) },
        ))
}

/// Client frames the local server received, parsed.
pub fn client_frames(server: &LocalServer) -> Vec<serde_json::Value> {
    server
        .recording()
        .iter()
        .filter_map(|l| l.strip_prefix("> "))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits until `f` holds (polling every 20 ms), panicking with `what` after [`FAILSAFE`].
pub async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + FAILSAFE;
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "waited too long for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs an app with `configure` on 127.0.0.1:0 (one worker); returns its port and handle.
pub fn serve<F>(configure: F) -> (u16, actix_web::dev::ServerHandle)
where
    F: Fn(&mut actix_web::web::ServiceConfig) + Send + Clone + 'static,
{
    let server = HttpServer::new(move || App::new().configure(configure.clone()))
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind");
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    (port, handle)
}

/// A 16-bit mono WAV file.
pub fn write_wav(path: &std::path::Path, rate: u32, pcm: &[i16]) {
    let data = (pcm.len() * 2) as u32;
    let mut b = Vec::with_capacity(44 + data as usize);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    for v in [16u32, 1 | (1 << 16), rate, rate * 2, 2 | (16 << 16)] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data.to_le_bytes());
    pcm.iter()
        .for_each(|s| b.extend_from_slice(&s.to_le_bytes()));
    std::fs::write(path, b).expect("write wav");
}

/// The artifacts folder (target/artifacts), created.
pub fn artifacts_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

// ------------------------------------------------------------------ a raw WebSocket client

use actix_codec::Framed;
use awc::ws::{Codec, Frame, Message};
use awc::BoxedSocket;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;

/// awc is built with rustls; pick its crypto provider once per test process.
pub fn crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A WebSocket client connection.
pub struct Ws {
    pub framed: Framed<BoxedSocket, Codec>,
}

/// A received frame.
#[derive(Debug)]
pub enum Got {
    Json(Value),
    Binary(bytes::Bytes),
    Close(Option<(u16, String)>),
    Eof,
}

/// Connects to `url` with `headers`; `Err(status)` when the upgrade was refused.
pub async fn ws_connect(url: &str, headers: &[(&str, &str)]) -> Result<Ws, u16> {
    crypto();
    let client = awc::Client::builder()
        .max_http_version(awc::http::Version::HTTP_11)
        .finish();
    let mut req = client.ws(url).max_frame_size(1 << 20);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    match req.connect().await {
        Ok((_, framed)) => Ok(Ws { framed }),
        Err(awc::error::WsClientError::InvalidResponseStatus(s)) => Err(s.as_u16()),
        Err(e) => panic!("connect {url}: {e}"),
    }
}

impl Ws {
    pub async fn send(&mut self, v: &Value) {
        self.send_text(&v.to_string()).await;
    }

    pub async fn send_text(&mut self, s: &str) {
        let _ = self.framed.send(Message::Text(s.to_owned().into())).await;
    }

    pub async fn send_binary(&mut self, b: Vec<u8>) {
        let _ = self.framed.send(Message::Binary(b.into())).await;
    }

    pub async fn close(&mut self) {
        let _ = self.framed.send(Message::Close(None)).await;
    }

    /// The next frame (pings ignored); panics after [`FAILSAFE`].
    pub async fn next(&mut self) -> Got {
        loop {
            let item = tokio::time::timeout(FAILSAFE, self.framed.next())
                .await
                .expect("timed out waiting for a frame");
            return match item {
                None | Some(Err(_)) => Got::Eof,
                Some(Ok(Frame::Text(b))) => match serde_json::from_slice::<Value>(&b) {
                    Ok(v) => Got::Json(v),
                    Err(_) => panic!("non-JSON text frame: {}", String::from_utf8_lossy(&b)),
                },
                Some(Ok(Frame::Binary(b))) => Got::Binary(b),
                Some(Ok(Frame::Close(r))) => {
                    Got::Close(r.map(|r| (u16::from(r.code), r.description.unwrap_or_default())))
                }
                Some(Ok(_)) => continue,
            };
        }
    }

    /// Reads until a JSON message of `kind` (`type` or Twilio `event`), returning it and
    /// everything before it.
    pub async fn until(&mut self, kind: &str) -> (Value, Vec<Got>) {
        let mut before = Vec::new();
        loop {
            match self.next().await {
                Got::Json(v) if v["type"] == kind || v["event"] == kind => return (v, before),
                Got::Close(c) => panic!("closed {c:?} while waiting for {kind}; saw {before:?}"),
                Got::Eof => panic!("connection ended while waiting for {kind}"),
                other => before.push(other),
            }
        }
    }

    /// Reads until the close frame; returns it and the JSON messages before it.
    pub async fn until_close(&mut self) -> (Option<(u16, String)>, Vec<Value>) {
        let mut before = Vec::new();
        loop {
            match self.next().await {
                Got::Close(c) => return (c, before),
                Got::Eof => return (None, before),
                Got::Json(v) => before.push(v),
                Got::Binary(_) => {}
            }
        }
    }
}
