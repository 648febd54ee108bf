//! The seed's Gemini example: Gemini Live with input and output transcription, printing the
//! model's words (`ModelMessageChunk`: the transcript of its speech) and the user's transcript,
//! like the seed's `stream.where(ModelMessageChunk | TranscriptionChunkEvent)`. Gemini takes 16 kHz microphone audio; the recorder
//! resamples to the session's input rate by itself.
//!
//! ```sh
//! cargo run --example gemini_transcription            # offline, local server
//! GEMINI_API_KEY=... cargo run --example gemini_transcription
//! ```

mod common;

use futures_util::StreamExt;
use liveagent::{gemini, InputTranscriptChunk, LiveAgent, ModelMessageChunk};

#[actix::main]
async fn main() -> anyhow::Result<()> {
    let agent = LiveAgent::builder("assistant")
        .prompt("You are a helpful voice assistant. Always respond in English.")
        .config(
            common::gemini_config("gemini-3.1-flash-live-preview", None)
                .await
                .output(gemini::AudioOutput::new("Puck").language_code("en-US"))
                .input(gemini::InputConfig::new(true)),
        )
        .build()?;
    let conversation = agent.run()?;
    assert_eq!(conversation.input_sample_rate(), 16_000);
    let audio = common::attach_audio(conversation.context(), true)?;
    println!("Starting...");

    let mut events = conversation
        .stream()
        .union::<(ModelMessageChunk, InputTranscriptChunk)>();
    let printer = actix::spawn(async move {
        let mut n = 0;
        while let Some(event) = events.next().await {
            println!("{event:?}");
            n += 1;
        }
        n
    });
    common::run_until_done(conversation.context(), audio).await?;
    conversation.stop().await;
    anyhow::ensure!(printer.await? > 0, "no transcript or text arrived");
    Ok(())
}
