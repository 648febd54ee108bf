//! The seed's first example: a voice assistant on the microphone and speakers.
//!
//! ```sh
//! cargo run --example basic_voice_agent            # offline, local server (echo brain)
//! OPENAI_API_KEY=sk-... cargo run --example basic_voice_agent
//! ```

mod common;

use liveagent::{openai, LiveAgent};

#[actix::main]
async fn main() -> anyhow::Result<()> {
    let agent = LiveAgent::builder("assistant")
        .prompt("You are a helpful voice assistant.")
        .config(
            common::openai_config("gpt-realtime-2", None)
                .await
                .output(openai::AudioOutput::new("ballad").speed(1.2)),
        )
        .build()?;

    // The recorder and the player share the conversation's context, so the recorder's
    // RecordedAudio reaches the session and the session's SynthesizedAudio reaches the player.
    let conversation = agent.run()?;
    let audio = common::attach_audio(conversation.context(), true)?;
    println!("Starting...");
    let answers = common::run_until_done(conversation.context(), audio).await?;
    conversation.stop().await;
    anyhow::ensure!(answers > 0, "the agent did not answer");
    Ok(())
}
