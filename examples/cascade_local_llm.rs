//! Cascade mode with a local LLM: any server speaking OpenAI Chat Completions with
//! streaming (Ollama, vLLM, llama.cpp's server) by base URL, no key.
//!
//! ```sh
//! LIVEAGENT_LLM_BASE_URL=http://127.0.0.1:11434/v1 LIVEAGENT_LLM_MODEL=llama3.2 \
//!   cargo run --example cascade_local_llm
//! ```
//!
//! Without `LIVEAGENT_LLM_BASE_URL` the bundled local server plays the LLM (and, without
//! `OPENAI_API_KEY`, the speech stages too).

mod common;

use futures_util::StreamExt;
use liveagent::cascade::openai::{OpenAiStt, OpenAiTts};
use liveagent::cascade::{CascadeConfig, ChatLlm};
use liveagent::{LiveAgent, ModelMessageChunk, Secret};

#[actix::main]
async fn main() -> anyhow::Result<()> {
    let model = std::env::var("LIVEAGENT_LLM_MODEL").unwrap_or_else(|_| "llama3.2".into());
    let llm_base = match std::env::var("LIVEAGENT_LLM_BASE_URL") {
        Ok(url) => url,
        Err(_) => format!("{}/v1", common::local_cascade_url(None).await),
    };
    eprintln!("(LLM: {model} at {llm_base})");
    let llm = ChatLlm::new(model)
        .base_url(&llm_base)
        .without_api_key()
        .temperature(0.3);
    let (mut stt, mut tts) = (
        OpenAiStt::new("gpt-4o-mini-transcribe"),
        OpenAiTts::new("gpt-4o-mini-tts", "coral"),
    );
    if Secret::from_env("OPENAI_API_KEY").is_none() {
        let base = format!("{}/v1", common::local_cascade_url(None).await);
        stt = stt.base_url(&base).api_key("local");
        tts = tts.base_url(&base).api_key("local");
    }
    let agent = LiveAgent::builder("local")
        .prompt("You are a concise assistant.")
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
