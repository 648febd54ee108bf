//! The seed's second example: print what the model says while it talks, with
//! `stream().union::<(..)>()`, the Rust form of `stream.where(A | B).join()`.
//! With audio output the words arrive as output transcripts; with text output as
//! `ModelMessageChunk`s: this prints both.

mod common;

use futures_util::StreamExt;
use liveagent::{LiveAgent, LiveEvent, ModelMessageChunk, OutputTranscriptChunk};

#[actix::main]
async fn main() -> anyhow::Result<()> {
    let agent = LiveAgent::builder("assistant")
        .prompt("You are a helpful voice assistant.")
        .config(common::openai_config("gpt-realtime-2", None).await)
        .build()?;
    let conversation = agent.run()?;
    let audio = common::attach_audio(conversation.context(), true)?;
    println!("Starting...");

    let mut words = conversation
        .stream()
        .union::<(ModelMessageChunk, OutputTranscriptChunk)>();
    let printer = actix::spawn(async move {
        let mut printed = 0;
        while let Some(event) = words.next().await {
            match event {
                LiveEvent::ModelMessageChunk(chunk) => println!("{chunk:?}"),
                LiveEvent::OutputTranscriptChunk(chunk) if !chunk.is_final => println!("{chunk:?}"),
                _ => continue,
            }
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
