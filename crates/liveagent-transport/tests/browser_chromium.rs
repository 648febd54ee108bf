//! The bundled page in real headless Chromium (chromedriver + fantoccini), its microphone fed
//! from a WAV of espeak-ng speech, talking through the browser transport to an agent backed
//! by the local realtime server. Needs Debian's `chromium` and `chromium-driver`
//! (`scripts/setup.sh`); fails, never skips, without them.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use liveagent_server::Pacing;
use liveagent_transport::BrowserTransport;
use serde_json::{json, Value};
use support::*;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn chromedriver() -> Res<(std::process::Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = std::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("chromedriver: {e} (scripts/setup.sh installs chromium-driver)"))?;
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t0.elapsed() > Duration::from_secs(10) {
            return Err("chromedriver did not start".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((child, format!("http://127.0.0.1:{port}")))
}

fn chrome_caps(wav: &Path) -> serde_json::Map<String, Value> {
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1100,800",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!(
        "--use-file-for-fake-audio-capture={}",
        wav.display()
    ));
    json!({ "browserName": "chrome", "goog:chromeOptions": { "args": args } })
        .as_object()
        .unwrap()
        .clone()
}

const SCENARIO: &str = r#"
[[turn]]
call = "lookup_weather"
args = { city = "Paris" }
then_say = "It is {output} today, with a light breeze from the west and clear skies over the river until late in the evening, so take a walk along the quays."
"#;

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap_or(Value::Null)
}

/// What the test saw, gathered before the browser is closed.
struct Seen {
    voice: Value,
    transcript: String,
    tools: String,
}

async fn drive(c: &Client, url: &str, server: &liveagent_server::LocalServer) -> Res<Seen> {
    c.goto(url).await?;
    let t0 = Instant::now();
    loop {
        let s = js(c, "return window.voice && window.voice.status").await;
        match s.as_str() {
            Some("running") => break,
            Some(x) if x.starts_with("error") || x.starts_with("closed") => {
                return Err(format!("page: {x}").into())
            }
            _ if t0.elapsed() > FAILSAFE => return Err(format!("page stuck: {s}").into()),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    // The mic loops the question: its second playing barges into the long answer.
    let deadline = Instant::now() + FAILSAFE;
    loop {
        let truncated = client_frames(server)
            .iter()
            .any(|f| f["type"] == "conversation.item.truncate");
        let voice = js(c, "return window.voice").await;
        if truncated && voice["lastFlush"].is_object() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("no barge-in truncation; page state: {voice}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let voice = js(c, "return window.voice").await;
    let transcript = c.find(Locator::Css("#transcript")).await?.text().await?;
    let tools = c.find(Locator::Css("#tools")).await?.text().await?;
    let png = artifacts_dir().join("browser_transport.png");
    std::fs::write(&png, c.screenshot().await?)?;
    println!("screenshot: {}", png.display());
    Ok(Seen {
        voice,
        transcript,
        tools,
    })
}

/// The page speaks a question, the agent calls a tool and answers aloud, the looping mic
/// barges in: the DOM shows both transcripts and the tool call, the page played audio, and
/// the provider received a truncate at exactly the position the page reported as heard.
#[actix_rt::test]
async fn page_talks_sees_transcripts_and_barge_in_truncates_at_the_heard_position() {
    let server = local_server(Some(SCENARIO), Pacing::RealTime).await;
    let dir = std::env::temp_dir().join(format!("liveagent-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join("question.wav");
    let mut pcm = liveagent_testkit::speech_pcm("What is the weather in Paris?", 16_000);
    pcm.extend(std::iter::repeat_n(0i16, 16_000 * 2)); // 2 s of silence, then it loops
    write_wav(&wav, 16_000, &pcm);

    let agent = agent_builder(&server).build().unwrap();
    let transport = BrowserTransport::new(agent).path("/talk/");
    let mount = transport.clone();
    let (port, handle) = serve(move |cfg| mount.config(cfg));

    let (mut driver, driver_url) = chromedriver().expect("chromedriver");
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(chrome_caps(&wav))
        .connect(&driver_url)
        .await
        .expect("webdriver session");
    let url = format!("http://127.0.0.1:{port}/talk/?autostart=1");
    let outcome = drive(&client, &url, &server).await;
    client.close().await.ok();
    driver.kill().ok();
    driver.wait().ok();
    let clean = transport.shutdown().await;
    handle.stop(true).await;
    let frames = client_frames(&server);
    server.stop().await;
    std::fs::remove_dir_all(&dir).ok();
    let seen = outcome.unwrap();

    println!("voice = {}", seen.voice);
    println!(
        "transcript = {:?}\ntools = {:?}",
        seen.transcript, seen.tools
    );
    assert!(clean, "every conversation actor ended on shutdown");
    assert_eq!(seen.voice["contextState"], "running");
    assert!(
        seen.voice["framesSent"].as_u64().unwrap() > 50,
        "the mic streamed"
    );
    // Both sides' transcripts and the tool call reached the DOM.
    assert!(seen.transcript.contains("You"), "{}", seen.transcript);
    assert!(
        seen.transcript.contains("[speech"),
        "user transcript: {}",
        seen.transcript
    );
    assert!(
        seen.transcript.contains("sunny in Paris"),
        "assistant transcript: {}",
        seen.transcript
    );
    assert!(
        seen.tools.contains("lookup_weather"),
        "tools: {}",
        seen.tools
    );
    // Audio played, then a barge-in flushed it.
    assert!(
        seen.voice["playedMs"].as_u64().unwrap() > 0,
        "page played nothing"
    );
    assert!(seen.voice["interrupts"].as_u64().unwrap() >= 1);
    assert!(
        seen.voice["flushedSamples"].as_u64().unwrap() > 0,
        "nothing was flushed"
    );
    // The provider truncated the item at the page's own played position.
    let flush = &seen.voice["lastFlush"];
    let rate = seen.voice["contextRate"].as_u64().unwrap();
    let heard_ms = flush["samples"].as_u64().unwrap() * 1000 / rate;
    let truncate = frames
        .iter()
        .find(|f| f["type"] == "conversation.item.truncate")
        .expect("a truncate");
    assert_eq!(truncate["item_id"].as_str(), flush["item_id"].as_str());
    assert_eq!(
        truncate["audio_end_ms"].as_u64(),
        Some(heard_ms),
        "truncate {truncate}"
    );
    assert!(heard_ms > 0);
}
