//! What every example shares: pick the real provider when its API key is set, else the bundled
//! local realtime server; attach the microphone and speaker, or WAV files when there is no
//! sound card (or when `LIVEAGENT_INPUT_WAV` / `LIVEAGENT_OUTPUT_WAV` are set, as in CI); and
//! run until Ctrl-C, or, with WAV input, until the question was answered.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::StreamExt;
use liveagent::audio::{
    CloseSink, GetSourceStats, SoundDevicePlayer, SoundDeviceRecorder, WavSink, WavSource,
};
use liveagent::{gemini, openai, ConversationContext, LiveEvent, Secret};
use liveagent_server::{LocalServer, Scenario, ServerConfig};

async fn local_server(scenario: Option<&str>) -> &'static LocalServer {
    let config = match scenario {
        Some(toml) => ServerConfig::scripted(Scenario::from_toml(toml).expect("example scenario")),
        None => ServerConfig::default(),
    };
    let server = LocalServer::start(config)
        .await
        .expect("start the local server");
    // Examples keep their server for the life of the process.
    let server: &'static LocalServer = Box::leak(Box::new(server));
    let _ = LOCAL.set(server);
    server
}

static LOCAL: std::sync::OnceLock<&'static LocalServer> = std::sync::OnceLock::new();

/// The HTTP base URL of the local server, when the example runs offline (it also serves
/// `POST /v1/chat/completions`, for turn-based agents).
pub fn local_http_url() -> Option<String> {
    LOCAL.get().map(|s| s.http_url())
}

/// An OpenAI configuration: the real service with `OPENAI_API_KEY`, else the local server
/// (running `offline_scenario`, a TOML scenario, when given; the echo brain otherwise).
pub async fn openai_config(model: &str, offline_scenario: Option<&str>) -> openai::RealtimeConfig {
    let config = openai::RealtimeConfig::new(model);
    match Secret::from_env("OPENAI_API_KEY") {
        Some(key) => config.api_key(key),
        None => {
            let server = local_server(offline_scenario).await;
            eprintln!(
                "(no OPENAI_API_KEY: using the bundled local realtime server at {})",
                server.openai_url()
            );
            config.base_url(server.openai_url()).api_key("local")
        }
    }
}

/// A Gemini configuration: the real service with `GEMINI_API_KEY`, else the local server.
pub async fn gemini_config(model: &str, offline_scenario: Option<&str>) -> gemini::RealtimeConfig {
    let config = gemini::RealtimeConfig::new(model);
    match Secret::from_env("GEMINI_API_KEY").or_else(|| Secret::from_env("GOOGLE_API_KEY")) {
        Some(key) => config.api_key(key),
        None => {
            let server = local_server(offline_scenario).await;
            eprintln!(
                "(no GEMINI_API_KEY: using the bundled local realtime server at {})",
                server.gemini_url()
            );
            config.base_url(server.gemini_url()).api_key("local")
        }
    }
}

/// The audio peers of an example.
pub struct Audio {
    source: Option<Addr<WavSource>>,
    sink: Option<(Addr<WavSink>, PathBuf)>,
}

/// Attaches the microphone (or `LIVEAGENT_INPUT_WAV`, or a spoken question when there is no
/// microphone) and, when `play`, the speaker (or `LIVEAGENT_OUTPUT_WAV`, or `answer.wav`).
pub fn attach_audio(context: &ConversationContext, play: bool) -> anyhow::Result<Audio> {
    let mut audio = Audio {
        source: None,
        sink: None,
    };
    let input = std::env::var_os("LIVEAGENT_INPUT_WAV").map(PathBuf::from);
    let input = match input {
        Some(path) => Some(path),
        None => match SoundDeviceRecorder::new(context.clone()).start() {
            Ok(_) => None,
            Err(e) => {
                eprintln!("(no microphone: {e}; speaking a question from a WAV file)");
                Some(spoken_question()?)
            }
        },
    };
    if let Some(path) = input {
        audio.source = Some(
            WavSource::new(context.clone(), &path)
                .pad_silence_ms(1500)
                .start()?,
        );
    }
    if play {
        let output = std::env::var_os("LIVEAGENT_OUTPUT_WAV").map(PathBuf::from);
        let output = match output {
            Some(path) => Some(path),
            None => match SoundDevicePlayer::new(context.clone()).start() {
                Ok(_) => None,
                Err(e) => {
                    eprintln!("(no speaker: {e}; writing the answer to answer.wav)");
                    Some(PathBuf::from("answer.wav"))
                }
            },
        };
        if let Some(path) = output {
            audio.sink = Some((WavSink::new(context.clone(), &path).start()?, path));
        }
    }
    Ok(audio)
}

fn spoken_question() -> anyhow::Result<PathBuf> {
    let path = std::env::temp_dir().join(format!("liveagent-question-{}.wav", std::process::id()));
    let ok = std::process::Command::new("espeak-ng")
        .args(["-v", "en-us", "-w"])
        .arg(&path)
        .arg("What is two plus three?")
        .status()?
        .success();
    anyhow::ensure!(ok, "espeak-ng failed");
    Ok(path)
}

/// Runs until Ctrl-C, or with WAV input until the question was answered (or
/// `LIVEAGENT_EXAMPLE_TIMEOUT_SECS`, default 60, passed: then it fails). Returns the number of
/// responses the agent completed.
pub async fn run_until_done(context: &ConversationContext, audio: Audio) -> anyhow::Result<u32> {
    let mut events = context.stream().union::<(
        liveagent::ResponseDone,
        liveagent::SpeechStopped,
        liveagent::ErrorEvent,
    )>();
    let timeout = std::env::var("LIVEAGENT_EXAMPLE_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut responses = 0;
    let mut answered_at: Option<Instant> = None;
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            event = events.next() => match event {
                Some(LiveEvent::ResponseDone(_)) => { responses += 1; answered_at = Some(Instant::now()); }
                Some(LiveEvent::SpeechStopped(_)) => answered_at = None,
                Some(LiveEvent::ErrorEvent(e)) if e.fatal => anyhow::bail!("fatal error: {}", e.error),
                Some(_) => {}
                None => break,
            },
            _ = ticker.tick() => {
                if Instant::now() > deadline {
                    anyhow::bail!("no answer within {timeout} s");
                }
                if let Some(source) = &audio.source {
                    let finished = source.send(GetSourceStats).await.map(|s| s.sent_ms >= s.total_ms && s.total_ms > 0).unwrap_or(true);
                    if finished && answered_at.is_some_and(|t| t.elapsed() > Duration::from_millis(1000)) {
                        break;
                    }
                }
            }
        }
    }
    if let Some((sink, path)) = audio.sink {
        if let Ok(Ok(samples)) = sink.send(CloseSink).await {
            eprintln!(
                "(wrote {samples} samples of the agent's audio to {})",
                path.display()
            );
        }
    }
    Ok(responses)
}

/// The HTTP base URL (`http://127.0.0.1:PORT`) of a local server running
/// `offline_scenario`, for cascade stages that have no key; the same server for the whole
/// process.
pub async fn local_cascade_url(offline_scenario: Option<&str>) -> String {
    match LOCAL.get() {
        Some(server) => server.http_url(),
        None => local_server(offline_scenario).await.http_url(),
    }
}
