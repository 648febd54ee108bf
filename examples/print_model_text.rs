//! The seed's second example: print what the model says while it talks, with
//! `stream().only::<ModelMessageChunk>()`, the Rust form of
//! `context.stream.where(ModelMessageChunk).join()`. With audio output the chunks are the
//! transcript of the model's speech (`source: Transcript`); with text output its written text.

mod common;

use futures_util::StreamExt;
use liveagent::{LiveAgent, ModelMessageChunk};

#[actix::main]
async fn main() -> anyhow::Result<()> {
    let agent = LiveAgent::builder("assistant")
        .prompt("You are a helpful voice assistant.")
        .config(common::openai_config("gpt-realtime-2", None).await)
        .build()?;
    let conversation = agent.run()?;
    let audio = common::attach_audio(conversation.context(), true)?;
    println!("Starting...");

    let mut words = conversation.stream().only::<ModelMessageChunk>();
    let printer = actix::spawn(async move {
        let mut printed = 0;
        while let Some(chunk) = words.next().await {
            println!("{chunk:?}");
            printed += 1;
        }
        printed
    });
    common::run_until_done(conversation.context(), audio).await?;
    conversation.stop().await; // ends the stream, so the printer finishes
    let printed = printer.await?;
    anyhow::ensure!(printed > 0, "the model said nothing");
    Ok(())
}
