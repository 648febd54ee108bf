//! Cascade mode with ElevenLabs voices: Scribe speech-to-text, any Chat Completions LLM,
//! and ElevenLabs streaming text-to-speech with a chosen voice and voice settings, over the
//! multi-context WebSocket (`ElevenLabsMultiTts`: one socket for the conversation, a context
//! per answer, barge-in cancels just that context). `ElevenLabsTts` (HTTP, a request per
//! sentence) and `ElevenLabsStreamTts` (`stream-input`, a socket per sentence) take the
//! same settings.
//!
//! With `ELEVENLABS_API_KEY` (and `OPENAI_API_KEY` for the LLM) it uses the real services;
//! without, the bundled local server's fake endpoints in ElevenLabs' shape.
//!
//! ```sh
//! ELEVENLABS_VOICE_ID=JBFqnCBsd6RMkjVDRZzb cargo run --example cascade_elevenlabs
//! ```

mod common;

use futures_util::StreamExt;
use liveagent::cascade::elevenlabs::{ElevenLabsMultiTts, ElevenLabsStt, VoiceSettings};
use liveagent::cascade::{CascadeConfig, ChatLlm};
use liveagent::{LiveAgent, ModelMessageChunk, Secret};

#[actix::main]
async fn main() -> anyhow::Result<()> {
    let voice =
        std::env::var("ELEVENLABS_VOICE_ID").unwrap_or_else(|_| "JBFqnCBsd6RMkjVDRZzb".into());
    let settings = VoiceSettings {
        stability: 0.4,
        similarity_boost: 0.8,
        speed: 1.05,
    };
    let mut stt = ElevenLabsStt::new("scribe_v1").language("en");
    let mut tts = ElevenLabsMultiTts::new("eleven_flash_v2_5", voice).voice_settings(settings);
    let mut llm = ChatLlm::new("gpt-4o-mini");
    if Secret::from_env("ELEVENLABS_API_KEY").is_none()
        || Secret::from_env("OPENAI_API_KEY").is_none()
    {
        let base = common::local_cascade_url(None).await;
        eprintln!("(no ELEVENLABS_API_KEY / OPENAI_API_KEY: using the local server at {base})");
        stt = stt.base_url(&base).api_key("local");
        tts = tts.base_url(&base).api_key("local");
        llm = llm.base_url(format!("{base}/v1")).api_key("local");
    }
    let agent = LiveAgent::builder("storyteller")
        .prompt("You tell very short stories, one or two sentences.")
        .config(CascadeConfig::new(stt, llm, tts))
        .build()?;
    let conversation = agent.run()?;
    let audio = common::attach_audio(conversation.context(), true)?;
    let mut text = conversation.stream().only::<ModelMessageChunk>();
    actix::spawn(async move {
        while let Some(chunk) = text.next().await {
            print!("{}", chunk.text);
        }
    });
    let responses = common::run_until_done(conversation.context(), audio).await?;
    anyhow::ensure!(responses > 0, "no answer");
    println!();
    conversation.stop().await;
    Ok(())
}
