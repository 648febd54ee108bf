//! The seed's turn-detection settings: semantic VAD with interruption is the default; this
//! example picks server VAD with its own threshold and silence duration instead.

mod common;

use liveagent::{openai, LiveAgent};

#[actix::main]
async fn main() -> anyhow::Result<()> {
    let config = common::openai_config("gpt-realtime-2", None)
        .await
        .output(openai::AudioOutput::new("ballad").speed(1.2))
        .turn_detection(openai::TurnDetection::ServerVad(openai::ServerVad {
            threshold: 0.5,
            prefix_padding_ms: 300,
            silence_duration_ms: 600,
            idle_timeout_ms: None,
            create_response: true,
            interrupt_response: true,
        }));
    let agent = LiveAgent::builder("assistant")
        .prompt("You are a helpful voice assistant.")
        .config(config)
        .build()?;
    let conversation = agent.run()?;
    let audio = common::attach_audio(conversation.context(), true)?;
    println!("Starting...");
    let answers = common::run_until_done(conversation.context(), audio).await?;
    conversation.stop().await;
    anyhow::ensure!(answers > 0, "the agent did not answer");
    Ok(())
}
