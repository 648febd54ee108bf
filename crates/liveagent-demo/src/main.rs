//! `liveagent-demo`: talk to a voice agent.
//!
//! Without an API key it starts the bundled local realtime server in-process (its echo brain
//! answers with your own words) and says so. With `OPENAI_API_KEY` (`--provider openai`) or
//! `GEMINI_API_KEY` (`--provider gemini`) it talks to the real service. `--cascade` runs a
//! cascade instead (speech-to-text → Chat Completions → text-to-speech): offline against
//! the local server's fake STT, chat and TTS endpoints, or OpenAI's with `OPENAI_API_KEY`.
//! Without a sound card it speaks a question from a WAV file and writes the answer to a WAV
//! file.

mod serve;
mod ui;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use actix::prelude::*;
use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use futures_util::StreamExt;
use liveagent::audio::{
    list_input_devices, list_output_devices, CloseSink, GetSourceStats, SoundDevicePlayer,
    SoundDeviceRecorder, WavSink, WavSource,
};
use liveagent::cascade::openai::{OpenAiStt, OpenAiTts};
use liveagent::cascade::{CascadeConfig, ChatLlm, VadSettings};
use liveagent::{gemini, openai, ConversationContext, LiveAgent, Secret, Tool, ToolError};
use liveagent_server::{LocalServer, ServerConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Provider {
    Openai,
    Gemini,
    /// Speech-to-text → any Chat Completions LLM → text-to-speech.
    Cascade,
}

/// Talk to a full-duplex voice agent (offline against the bundled local server unless an
/// API key is set).
#[derive(Parser, Debug)]
#[command(name = "liveagent-demo", version)]
struct Args {
    /// Which provider protocol to use.
    #[arg(long, value_enum, default_value = "openai")]
    provider: Provider,
    /// Cascade mode: the same as `--provider cascade`.
    #[arg(long)]
    cascade: bool,
    /// Model name (default: gpt-realtime-2 / gemini-3.1-flash-live-preview; for the
    /// cascade, the chat model: gpt-4o-mini).
    #[arg(long)]
    model: Option<String>,
    /// Voice (default: marin / Puck; the cascade's TTS voice: marin).
    #[arg(long)]
    voice: Option<String>,
    /// Cascade: the Chat Completions base URL of the LLM (a local Ollama, vLLM or
    /// llama.cpp server, say `http://127.0.0.1:11434/v1`; sent without a key).
    #[arg(long)]
    llm_base_url: Option<String>,
    /// Cascade: detect turns with the voice activity model instead of loudness.
    #[arg(long)]
    vad: bool,
    /// Text output instead of audio: the agent's words are printed, nothing is played.
    #[arg(long)]
    text: bool,
    /// Use the local server even if an API key is set.
    #[arg(long)]
    local: bool,
    /// Microphone device name (default: the system default).
    #[arg(long)]
    input_device: Option<String>,
    /// Speaker device name (default: the system default).
    #[arg(long)]
    output_device: Option<String>,
    /// Read the microphone from this WAV file instead of a device (then exit after the answer).
    #[arg(long)]
    input_wav: Option<PathBuf>,
    /// Write what would be played to this WAV file instead of a device.
    #[arg(long)]
    output_wav: Option<PathBuf>,
    /// List audio devices and exit.
    #[arg(long)]
    list_devices: bool,
    /// The system prompt.
    #[arg(
        long,
        default_value = "You are a helpful voice assistant. Keep your answers short."
    )]
    prompt: String,
    /// Stop after this many seconds (default: run until Ctrl-C; 60 s with WAV input).
    #[arg(long)]
    max_seconds: Option<u64>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the agent to a browser tab on 127.0.0.1 (prints the URL).
    Serve {
        /// TCP port (0 picks a free one).
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct SumArgs {
    /// The first number.
    a: f64,
    /// The second number.
    b: f64,
}

fn tools() -> Vec<Tool> {
    vec![
        Tool::new(
            "sum_numbers",
            "Sum two numbers.",
            |args: SumArgs| async move { Ok::<_, ToolError>(args.a + args.b) },
        ),
        Tool::new(
            "current_time",
            "The current time (UTC), as seconds since 1970.",
            |_: liveagent::NoArgs| async {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_err(ToolError::msg)?;
                Ok::<_, ToolError>(now.as_secs())
            },
        ),
    ]
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.list_devices {
        return list_devices();
    }
    actix::System::new().block_on(run(args))
}

fn list_devices() -> anyhow::Result<()> {
    println!("input devices:");
    for d in list_input_devices().unwrap_or_default() {
        println!("  {d:?}");
    }
    println!("output devices:");
    for d in list_output_devices().unwrap_or_default() {
        println!("  {d:?}");
    }
    Ok(())
}

async fn run(mut args: Args) -> anyhow::Result<()> {
    if args.cascade {
        args.provider = Provider::Cascade;
    }
    let key = match args.provider {
        Provider::Openai | Provider::Cascade => Secret::from_env("OPENAI_API_KEY"),
        Provider::Gemini => {
            Secret::from_env("GEMINI_API_KEY").or_else(|| Secret::from_env("GOOGLE_API_KEY"))
        }
    };
    let mut _server = None;
    let (base_url, key) = match key {
        Some(key) if !args.local => (None, key),
        _ => {
            let server = LocalServer::start(ServerConfig::default())
                .await
                .context("starting the local realtime server")?;
            let url = match args.provider {
                Provider::Openai => server.openai_url(),
                Provider::Gemini => server.gemini_url(),
                Provider::Cascade => format!("{}/v1", server.http_url()),
            };
            if args.provider == Provider::Cascade {
                println!(
                    "* no OPENAI_API_KEY set (or --local): the cascade uses the bundled local server's fake speech-to-text, chat and text-to-speech endpoints at {url}.\n  Its transcript is a label of your speech, its chat echoes it, its voice is tones: the whole loop, offline."
                );
            } else {
                println!(
                    "* no {} key set (or --local): using the bundled local realtime server at {url}.\n  Its echo brain answers with your own words, so you can hear the whole loop offline.",
                    match args.provider {
                        Provider::Gemini => "GEMINI_API_KEY",
                        _ => "OPENAI_API_KEY",
                    }
                );
            }
            _server = Some(server);
            (Some(url), Secret::new("local"))
        }
    };

    let config: Box<dyn Fn(liveagent::LiveAgentBuilder) -> liveagent::LiveAgentBuilder> = match args
        .provider
    {
        Provider::Openai => {
            let mut c = openai::RealtimeConfig::new(
                args.model
                    .clone()
                    .unwrap_or_else(|| "gpt-realtime-2".into()),
            )
            .api_key(key)
            .input(openai::InputConfig {
                transcription: Some(openai::Transcription::new("gpt-4o-mini-transcribe")),
                ..Default::default()
            });
            c = if args.text {
                c.output(openai::TextOutput)
            } else {
                c.output(openai::AudioOutput::new(
                    args.voice.clone().unwrap_or_else(|| "marin".into()),
                ))
            };
            if let Some(url) = base_url {
                c = c.base_url(url);
            }
            Box::new(move |b| b.config(c.clone()))
        }
        Provider::Gemini => {
            let mut c = gemini::RealtimeConfig::new(
                args.model
                    .clone()
                    .unwrap_or_else(|| "gemini-3.1-flash-live-preview".into()),
            )
            .api_key(key)
            .input(gemini::InputConfig::new(true));
            c = if args.text {
                c.output(gemini::TextOutput)
            } else {
                c.output(
                    gemini::AudioOutput::new(args.voice.clone().unwrap_or_else(|| "Puck".into()))
                        .language_code("en-US"),
                )
            };
            if let Some(url) = base_url {
                c = c.base_url(url);
            }
            Box::new(move |b| b.config(c.clone()))
        }
        Provider::Cascade => {
            let c = cascade_config(&args, base_url, key);
            Box::new(move |b| b.config(c.clone()))
        }
    };
    let agent = config(
        LiveAgent::builder("assistant")
            .prompt(&args.prompt)
            .tools(tools()),
    )
    .build()?;
    if let Some(Command::Serve { port }) = args.command {
        return serve::serve(agent, port).await;
    }
    let conversation = agent.run()?;
    let context = conversation.context().clone();
    let mut events = context.stream().all();
    let audio_out = agent.config().audio_output();

    // No sound card: say so once and keep alsa-lib's per-probe errors off the terminal.
    let card = liveagent::audio::sound_card_present();
    if !card {
        liveagent::audio::silence_alsa_errors();
        println!("* no sound card: speaking a question from a WAV file, writing the answer to a WAV file");
    }

    // Microphone: a device, or a WAV file.
    let mut source = None;
    let mut temp_dir = None;
    match &args.input_wav {
        Some(path) => source = Some(start_wav_source(&context, path)?),
        None if !card => {
            let dir = std::env::temp_dir().join(format!("liveagent-demo-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let wav = dir.join("question.wav");
            speak_question(&wav)?;
            source = Some(start_wav_source(&context, &wav)?);
            temp_dir = Some(dir);
        }
        None => match with_device(
            SoundDeviceRecorder::new(context.clone()),
            args.input_device.clone(),
            |b, d| b.device(d),
        )
        .start()
        {
            Ok(_recorder) => println!("* listening on the microphone (Ctrl-C to stop)"),
            Err(e) => {
                println!("* no microphone ({e}); speaking a question from a WAV file instead");
                let dir =
                    std::env::temp_dir().join(format!("liveagent-demo-{}", std::process::id()));
                std::fs::create_dir_all(&dir)?;
                let wav = dir.join("question.wav");
                speak_question(&wav)?;
                source = Some(start_wav_source(&context, &wav)?);
                temp_dir = Some(dir);
            }
        },
    }

    // Speaker: a device, or a WAV file.
    let mut sink = None;
    if audio_out {
        let wav_out = match &args.output_wav {
            Some(path) => Some(path.clone()),
            None if !card => Some(PathBuf::from("demo-answer.wav")),
            None => match with_device(
                SoundDevicePlayer::new(context.clone()),
                args.output_device.clone(),
                |b, d| b.device(d),
            )
            .start()
            {
                Ok(_player) => None,
                Err(e) => {
                    println!("* no speaker ({e}); writing the agent's audio to demo-answer.wav");
                    Some(PathBuf::from("demo-answer.wav"))
                }
            },
        };
        if let Some(path) = wav_out {
            sink = Some((WavSink::new(context.clone(), &path).start()?, path));
        }
    }

    let limit = args
        .max_seconds
        .map(Duration::from_secs)
        .or(source.as_ref().map(|_| Duration::from_secs(60)));
    let started = Instant::now();
    let mut ui = ui::Ui::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let outcome = loop {
        tokio::select! {
            _ = &mut ctrl_c => break "stopped (Ctrl-C)",
            event = events.next() => match event {
                Some(event) => {
                    ui.show(&event);
                    if let liveagent::LiveEvent::ErrorEvent(e) = &event {
                        if e.fatal { break "stopped by a fatal error"; }
                    }
                }
                None => break "the conversation ended",
            },
            _ = ticker.tick() => {
                if limit.is_some_and(|l| started.elapsed() > l) {
                    break "time limit reached";
                }
                // With WAV input, end once the question was sent and answered.
                if let Some(src) = &source {
                    // The source stops itself once the whole file (and padding) was sent.
                    let finished = match src.send(GetSourceStats).await {
                        Ok(stats) => stats.total_ms > 0 && stats.sent_ms >= stats.total_ms,
                        Err(_) => true,
                    };
                    // Answered: a response finished after the user last stopped speaking
                    // (Gemini reports no speech events: then any finished response counts).
                    let answered = match (ui.last_response_done, ui.last_speech_stopped) {
                        (Some(done), Some(stopped)) => done > stopped,
                        (Some(_), None) => true,
                        _ => false,
                    } && ui.last_response_done.is_some_and(|d| d.elapsed() > Duration::from_millis(1500));
                    if finished && answered {
                        break "the question was answered";
                    }
                }
            }
        }
    };
    println!("\n* {outcome}");
    if let Some((sink, path)) = sink {
        match sink.send(CloseSink).await {
            Ok(Ok(samples)) => println!(
                "* wrote {:.1} s of the agent's audio to {}",
                samples as f64 / context.output_sample_rate() as f64,
                path.display()
            ),
            Ok(Err(e)) => println!("! could not write {}: {e}", path.display()),
            Err(_) => {}
        }
    }
    if !ui.latencies.is_empty() {
        let mut ms: Vec<u128> = ui.latencies.iter().map(|d| d.as_millis()).collect();
        ms.sort();
        println!("* first-audio latency per turn (ms): {ms:?}");
    }
    conversation.stop().await;
    if let Some(dir) = temp_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    if ui.responses_done == 0 && source.is_some() {
        bail!("the agent did not answer");
    }
    Ok(())
}

/// The cascade: OpenAI's speech-to-text, chat and text-to-speech (or the local server's
/// fakes of them at `base_url`), the chat model by `--llm-base-url` if given.
fn cascade_config(args: &Args, base_url: Option<String>, key: Secret) -> CascadeConfig {
    let mut stt = OpenAiStt::new("gpt-4o-mini-transcribe").api_key(key.clone());
    let mut llm = ChatLlm::new(args.model.clone().unwrap_or_else(|| "gpt-4o-mini".into()))
        .api_key(key.clone());
    let mut tts = OpenAiTts::new(
        "gpt-4o-mini-tts",
        args.voice.clone().unwrap_or_else(|| "marin".into()),
    )
    .api_key(key);
    if let Some(url) = &base_url {
        stt = stt.base_url(url);
        llm = llm.base_url(url);
        tts = tts.base_url(url);
    }
    if let Some(url) = &args.llm_base_url {
        println!("* cascade LLM: {url}");
        llm = llm.base_url(url).without_api_key();
    }
    let mut config = CascadeConfig::new(stt, llm, tts).text_only(args.text);
    if args.vad {
        config = config.vad(VadSettings::default());
    }
    config
}

fn with_device<B>(builder: B, device: Option<String>, set: impl FnOnce(B, String) -> B) -> B {
    match device {
        Some(name) => set(builder, name),
        None => builder,
    }
}

fn start_wav_source(
    context: &ConversationContext,
    path: &std::path::Path,
) -> anyhow::Result<Addr<WavSource>> {
    println!("* speaking {} into the conversation", path.display());
    Ok(WavSource::new(context.clone(), path)
        .pad_silence_ms(1500)
        .start()?)
}

fn speak_question(path: &std::path::Path) -> anyhow::Result<()> {
    let status = std::process::Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(path)
        .arg("Hello! What is two plus three?")
        .status()
        .context("espeak-ng is needed to speak the demo question without a microphone (scripts/setup.sh installs it)")?;
    if !status.success() {
        bail!("espeak-ng failed");
    }
    Ok(())
}
