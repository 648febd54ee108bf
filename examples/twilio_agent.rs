//! An agent on the phone: the Twilio Media Streams transport answers your Twilio number's
//! voice webhook with `<Connect><Stream>` and talks over the media stream. With OpenAI the
//! caller's μ-law audio goes to the model and back without resampling (`audio/pcmu`).
//!
//! ```text
//! TWILIO_AUTH_TOKEN=... cargo run --example twilio_agent -- --port 8080 --public-url https://agent.example.com
//! twilio agent: voice webhook http://127.0.0.1:8080/twilio/voice
//! ```
//!
//! Expose the port over https (a TLS proxy or a tunnel; docs/transports.md), then set your
//! number's "A call comes in" webhook to `https://<public host>/twilio/voice`. The caller's
//! number reaches the prompt as the `{caller}` variable.
//!
//! Without `OPENAI_API_KEY` it talks to the bundled local realtime server. When
//! `LIVEAGENT_INPUT_WAV` is set (as `scripts/run-examples.sh` does) it also plays Twilio
//! itself: it calls its own webhook, streams that WAV as 20 ms μ-law frames, prints how much
//! of the answer came back and hangs up.

mod common;

use std::time::Duration;

use actix_web::HttpServer;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use liveagent::{openai, LiveAgent, LiveError};
use liveagent_transport::{AgentSource, TwilioTransport};
use serde_json::{json, Value};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[actix::main]
async fn main() -> anyhow::Result<()> {
    let port: u16 = arg("--port").and_then(|p| p.parse().ok()).unwrap_or(8080);
    let config = common::openai_config("gpt-realtime-2", None)
        .await
        .audio_formats(openai::AudioFormat::Pcmu, openai::AudioFormat::Pcmu);
    // One agent per call, with the caller's number in the prompt.
    let agent = AgentSource::factory(move |call| {
        LiveAgent::builder("receptionist")
            .prompt("You answer the phone for a small bakery. The caller's number is {caller}. Be brief.")
            .variable("caller", call.params.get("From").map(String::as_str).unwrap_or("unknown"))
            .config(config.clone())
            .build()
            .map_err(LiveError::from)
    });
    let mut transport = TwilioTransport::new(agent);
    if let Ok(token) = std::env::var("TWILIO_AUTH_TOKEN") {
        transport = transport.auth_token(token);
    } else {
        println!(
            "(no TWILIO_AUTH_TOKEN: webhook signatures are NOT checked; set it in production)"
        );
    }
    if let Some(url) = arg("--public-url") {
        transport = transport.public_url(url);
    }
    let mount = transport.clone();
    let server = HttpServer::new(move || actix_web::App::new().configure(mount.configure()))
        .workers(1)
        // Small audio frames every 20 ms: no Nagle delays (see docs/transports.md).
        .tcp_nodelay(true)
        .disable_signals()
        .bind(("127.0.0.1", port))?;
    let addr = server.addrs()[0];
    println!(
        "twilio agent: voice webhook http://{addr}{} (Ctrl-C to stop)",
        transport.webhook_path()
    );
    println!("  media stream: ws://{addr}{}", transport.media_path());

    if let Ok(wav) = std::env::var("LIVEAGENT_INPUT_WAV") {
        let server = server.run();
        let handle = server.handle();
        actix::spawn(server);
        let outcome = play_twilio(&addr.to_string(), &wav).await;
        transport.shutdown().await;
        handle.stop(true).await;
        return outcome;
    }
    liveagent_transport::serve(server.run(), [transport.shutdown_handle()]).await?;
    Ok(())
}

/// Twilio without Twilio: the webhook, then a call streaming the WAV.
async fn play_twilio(addr: &str, wav: &str) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = awc::Client::new();
    let mut resp = client
        .post(format!("http://{addr}/twilio/voice"))
        .send_form(&[
            ("CallSid", "CA00000000000000000000000000000001"),
            ("From", "+15550100"),
        ])
        .await
        .map_err(|e| anyhow::anyhow!("webhook: {e}"))?;
    let twiml = String::from_utf8_lossy(&resp.body().await?).into_owned();
    println!("webhook answered: {twiml}");
    let (_, mut ws) = client
        .ws(format!("ws://{addr}/twilio/media"))
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("media stream: {e}"))?;
    let sid = "MZ00000000000000000000000000000001";
    let text = |v: Value| awc::ws::Message::Text(v.to_string().into());
    ws.send(text(
        json!({"event":"connected","protocol":"Call","version":"1.0.0"}),
    ))
    .await?;
    ws.send(text(json!({"event":"start","sequenceNumber":"1","streamSid":sid,"start":{
        "streamSid":sid,"callSid":"CA00000000000000000000000000000001","accountSid":"AC0",
        "tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},
        "customParameters":{"From":"+15550100"}}})))
    .await?;
    let mut pcm = liveagent::audio::read_wav_mono(std::path::Path::new(wav), 8_000)?;
    pcm.extend(std::iter::repeat_n(0i16, 8_000 * 3)); // silence ends the turn, then waits
    let ulaw = liveagent_transport::g711::pcm16_to_ulaw(&pcm);
    let mut frames = ulaw.chunks(160).enumerate();
    let mut heard = 0usize;
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while heard < 8_000 {
        tokio::select! {
            _ = ticker.tick() => {
                anyhow::ensure!(tokio::time::Instant::now() < deadline, "no answer within 60 s");
                let (i, f) = frames.next().unwrap_or((0, &[0xFF; 160]));
                ws.send(text(json!({"event":"media","sequenceNumber":(i + 2).to_string(),"streamSid":sid,
                    "media":{"track":"inbound","chunk":(i + 1).to_string(),"timestamp":(i * 20).to_string(),
                    "payload":B64.encode(f)}}))).await?;
            }
            frame = ws.next() => match frame {
                Some(Ok(awc::ws::Frame::Text(t))) => {
                    let m: Value = serde_json::from_slice(&t)?;
                    match m["event"].as_str() {
                        Some("media") => heard += B64.decode(m["media"]["payload"].as_str().unwrap_or(""))?.len(),
                        // Echo marks at once, as if played.
                        Some("mark") => ws.send(text(json!({"event":"mark","streamSid":sid,"mark":m["mark"]}))).await?,
                        _ => {}
                    }
                }
                Some(Ok(_)) => {}
                other => anyhow::bail!("stream ended: {other:?}"),
            }
        }
    }
    println!(
        "the caller heard {:.1} s of the agent",
        heard as f64 / 8_000.0
    );
    ws.send(text(json!({"event":"stop","streamSid":sid,"stop":{}})))
        .await?;
    Ok(())
}
