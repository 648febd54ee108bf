//! Cascade mode (AG2's cascade example, ported): speech-to-text → a Chat Completions LLM →
//! text-to-speech behind the same `LiveAgent` API, with a tool. Speech starts on the first
//! sentence of the answer, and talking over the agent interrupts it.
//!
//! With `OPENAI_API_KEY` it uses OpenAI's transcription, chat and speech APIs; without, the
//! bundled local server's fake endpoints (its transcripts are `[speech 1.4 s]` labels and
//! its voice is tones: there is no ASR or TTS model offline).
//!
//! ```sh
//! cargo run --example cascade_agent
//! ```

mod common;

use futures_util::StreamExt;
use liveagent::cascade::openai::{OpenAiStt, OpenAiTts};
use liveagent::cascade::{CascadeConfig, ChatLlm};
use liveagent::tools::{tool, ToolError};
use liveagent::{LiveAgent, LiveEvent, Secret};

/// Gets the current weather for a city.
///
/// # Arguments
/// * `city` - The city.
#[tool(crate = liveagent::tools)]
async fn get_weather(city: String) -> Result<String, ToolError> {
    Ok(format!("sunny and 21 degrees in {city}"))
}

const OFFLINE: &str = r#"
[[turn]]
say = "Let me check the weather."
call = "get_weather"
args = { city = "Paris" }
then_say = "It is {output}."
"#;

#[actix::main]
async fn main() -> anyhow::Result<()> {
    let (stt, llm, tts) = match Secret::from_env("OPENAI_API_KEY") {
        Some(_) => (
            OpenAiStt::new("gpt-4o-mini-transcribe"),
            ChatLlm::new("gpt-4o-mini"),
            OpenAiTts::new("gpt-4o-mini-tts", "marin").instructions("Speak warmly and briefly."),
        ),
        None => {
            let base = format!("{}/v1", common::local_cascade_url(Some(OFFLINE)).await);
            eprintln!("(no OPENAI_API_KEY: cascade stages on the local server at {base})");
            (
                OpenAiStt::new("gpt-4o-mini-transcribe")
                    .base_url(&base)
                    .api_key("local"),
                ChatLlm::new("gpt-4o-mini").base_url(&base).api_key("local"),
                OpenAiTts::new("gpt-4o-mini-tts", "marin")
                    .base_url(&base)
                    .api_key("local"),
            )
        }
    };
    let agent = LiveAgent::builder("weather")
        .prompt("You are a helpful weather assistant. Answer in one or two short sentences.")
        .config(
            CascadeConfig::new(stt, llm, tts)
                .barge_in(true)
                .min_chars(20),
        )
        .tool(get_weather())
        .build()?;

    let conversation = agent.run()?;
    let audio = common::attach_audio(conversation.context(), true)?;
    let mut log = conversation.stream().all();
    actix::spawn(async move {
        while let Some(event) = log.next().await {
            match event {
                LiveEvent::InputTranscriptChunk(t) if t.is_final => println!("user: {}", t.text),
                LiveEvent::ModelMessageChunk(c) => print!("{}", c.text),
                LiveEvent::ToolCallRequested(r) => {
                    for c in r.calls {
                        println!("\n[tool {}({})]", c.name, c.arguments);
                    }
                }
                LiveEvent::ResponseDone(d) => {
                    println!();
                    if let Some(u) = d.usage {
                        for s in u.stages {
                            eprintln!(
                                "  {:?} {} {}: {} requests, {} ms audio, {} chars, {}+{} tokens",
                                s.stage,
                                s.provider,
                                s.model,
                                s.requests,
                                s.audio_ms,
                                s.characters,
                                s.input_tokens,
                                s.output_tokens
                            );
                        }
                    }
                }
                LiveEvent::ErrorEvent(e) => eprintln!("error from {}: {}", e.source, e.error),
                _ => {}
            }
        }
    });
    let responses = common::run_until_done(conversation.context(), audio).await?;
    anyhow::ensure!(responses > 0, "no answer");
    conversation.stop().await;
    Ok(())
}
