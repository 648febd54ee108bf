//! An agent in a browser tab: the browser transport serves its page and WebSocket on
//! 127.0.0.1, one conversation per tab, with a tool the model can call.
//!
//! ```text
//! cargo run --example browser_agent -- --port 8080
//! browser agent: open http://127.0.0.1:8080/ in a browser (Ctrl-C to stop)
//! ```
//!
//! Without `OPENAI_API_KEY` it talks to the bundled local realtime server. When
//! `LIVEAGENT_INPUT_WAV` is set (as `scripts/run-examples.sh` does) it also plays a page
//! itself: it speaks that WAV over the WebSocket protocol, prints the answer and stops.

mod common;

use std::time::Duration;

use actix_web::HttpServer;
use futures_util::{SinkExt as _, StreamExt as _};
use liveagent::{LiveAgent, Tool, ToolError};
use liveagent_transport::BrowserTransport;
use serde_json::{json, Value};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct SumArgs {
    /// The first number.
    a: f64,
    /// The second number.
    b: f64,
}

fn port_arg(default: u16) -> u16 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--port")
        .and_then(|i| args.get(i + 1))
        .and_then(|p| p.parse().ok())
        .unwrap_or(default)
}

#[actix::main]
async fn main() -> anyhow::Result<()> {
    let agent = LiveAgent::builder("assistant")
        .prompt("You are a helpful voice assistant in a web page. Keep answers short.")
        .config(common::openai_config("gpt-realtime-2", None).await)
        .tool(Tool::new(
            "sum_numbers",
            "Sum two numbers.",
            |a: SumArgs| async move { Ok::<_, ToolError>(a.a + a.b) },
        ))
        .build()?;
    let transport = BrowserTransport::new(agent);
    let mount = transport.clone();
    let server = HttpServer::new(move || actix_web::App::new().configure(mount.configure()))
        .workers(1)
        // Small audio frames every 20 ms: no Nagle delays (see docs/transports.md).
        .tcp_nodelay(true)
        .disable_signals()
        .bind(("127.0.0.1", port_arg(8080)))?;
    let addr = server.addrs()[0];
    println!("browser agent: open http://{addr}/ in a browser (Ctrl-C to stop)");
    println!(
        "  WebSocket protocol (docs/transports.md): ws://{addr}{}",
        transport.ws_path()
    );

    if let Ok(wav) = std::env::var("LIVEAGENT_INPUT_WAV") {
        let server = server.run();
        let handle = server.handle();
        actix::spawn(server);
        let outcome = play_a_page(&format!("ws://{addr}/ws"), &wav).await;
        transport.shutdown().await;
        handle.stop(true).await;
        return outcome;
    }
    liveagent_transport::serve(server.run(), [transport.shutdown_handle()]).await?;
    Ok(())
}

/// A page without a browser: hello, the WAV as 20 ms PCM16 frames, then the answer.
async fn play_a_page(url: &str, wav: &str) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (_, mut ws) = awc::Client::new()
        .ws(url)
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("connect: {e}"))?;
    let send = |v: Value| awc::ws::Message::Text(v.to_string().into());
    ws.send(send(
        json!({"type":"hello","protocol":1,"input_rate":24000,"output_rate":24000}),
    ))
    .await?;
    let mut pcm = liveagent::audio::read_wav_mono(std::path::Path::new(wav), 24_000)?;
    pcm.extend(std::iter::repeat_n(0i16, 24_000)); // a second of silence ends the turn
    let mut frames = pcm.chunks(480);
    let mut audio_bytes = 0usize;
    let mut ticker = tokio::time::interval(Duration::from_millis(15));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if let Some(f) = frames.next() {
                    let bytes: Vec<u8> = f.iter().flat_map(|s| s.to_le_bytes()).collect();
                    ws.send(awc::ws::Message::Binary(bytes.into())).await?;
                }
                anyhow::ensure!(tokio::time::Instant::now() < deadline, "no answer within 60 s");
            }
            frame = ws.next() => match frame {
                Some(Ok(awc::ws::Frame::Binary(b))) => audio_bytes += b.len(),
                Some(Ok(awc::ws::Frame::Text(t))) => {
                    let m: Value = serde_json::from_slice(&t)?;
                    match m["type"].as_str() {
                        Some("transcript") if m["final"] == true => {
                            println!("{}: {}", m["role"].as_str().unwrap_or("?"), m["text"].as_str().unwrap_or(""));
                        }
                        Some("tool_call") => println!("tool call: {} {}", m["name"], m["arguments"]),
                        Some("response_done") if audio_bytes > 0 => break,
                        Some("error") => anyhow::bail!("error from the transport: {m}"),
                        _ => {}
                    }
                }
                Some(Ok(_)) => {}
                other => anyhow::bail!("connection ended: {other:?}"),
            }
        }
    }
    println!(
        "the page got {:.1} s of the agent's audio",
        audio_bytes as f64 / 48_000.0
    );
    ws.send(send(json!({"type":"end"}))).await?;
    Ok(())
}
