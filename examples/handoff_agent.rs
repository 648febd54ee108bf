//! The seed's last section: a realtime voice front-end that hands work off to a turn-based
//! `Agent` through a tool made with `Agent::as_tool()`.
//!
//! Offline, the local server plays both parts: its realtime scenario asks the voice agent to
//! call `task_expert`, and its `/v1/chat/completions` endpoint answers the turn-based agent.

mod common;

use futures_util::StreamExt;
use liveagent::{LiveAgent, Secret, ToolResult};
use liveagent_agent::Agent;

const OFFLINE_SCENARIO: &str = r#"
[[turn]]
call = "task_expert"
args = { objective = "Which bread is best for sandwiches?" }
then_say = "The expert says: {output}"
"#;

#[actix::main]
async fn main() -> anyhow::Result<()> {
    let config = common::openai_config("gpt-realtime-2", Some(OFFLINE_SCENARIO)).await;
    // The turn-based agent talks Chat Completions: to the real API with a key, else to the
    // local server beside the realtime endpoint.
    let mut expert = Agent::new(
        "expert",
        "You are a master baker. Answer in one sentence.",
        "gpt-5-mini",
    );
    if Secret::from_env("OPENAI_API_KEY").is_none() {
        let http = common::local_http_url().expect("offline examples run the local server");
        // The chat endpoint answers with the echo brain (`/s/echo`), not the realtime scenario.
        expert = expert
            .base_url(format!("{http}/s/echo/v1"))
            .api_key("local");
    }
    let agent = LiveAgent::builder("assistant")
        .prompt("You are a voice assistant for a bakery. Delegate baking questions to the expert.")
        .config(config)
        .tool(expert.as_tool("Ask the master baker a question.")) // `task_expert`
        .build()?;
    let conversation = agent.run()?;
    let mut results = conversation.stream().only::<ToolResult>();
    let audio = common::attach_audio(conversation.context(), true)?;
    common::run_until_done(conversation.context(), audio).await?;
    conversation.stop().await;
    let result = results.next().await;
    println!("expert's answer, as the tool result: {result:?}");
    anyhow::ensure!(
        matches!(result, Some(ToolResult { output: Ok(_), .. })),
        "the handoff did not complete"
    );
    Ok(())
}
