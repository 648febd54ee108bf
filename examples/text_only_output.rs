//! The seed's text-only example: keep the realtime session for its low-latency turn
//! detection, but have the model answer in text (`TextOutput`): no audio is synthesized and
//! no player is needed.

mod common;

use futures_util::StreamExt;
use liveagent::{openai, LiveAgent, ModelMessageChunk, SynthesizedAudio};

#[actix::main]
async fn main() -> anyhow::Result<()> {
    let agent = LiveAgent::builder("assistant")
        .prompt("You are a helpful voice assistant.")
        .config(
            common::openai_config("gpt-realtime-2", None)
                .await
                .output(openai::TextOutput),
        )
        .build()?;
    let conversation = agent.run()?;
    let audio = common::attach_audio(conversation.context(), false)?;
    println!("Starting...");

    let mut text = conversation.stream().only::<ModelMessageChunk>();
    let mut audio_events = conversation.stream().only::<SynthesizedAudio>();
    let printer = actix::spawn(async move {
        let mut chunks = 0;
        while let Some(chunk) = text.next().await {
            println!("{chunk:?}");
            chunks += 1;
        }
        chunks
    });
    common::run_until_done(conversation.context(), audio).await?;
    conversation.stop().await;
    let chunks = printer.await?;
    anyhow::ensure!(chunks > 0, "no text arrived");
    anyhow::ensure!(
        audio_events.next().await.is_none(),
        "text output must not synthesize audio"
    );
    Ok(())
}
