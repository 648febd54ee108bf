//! The seed's tool example: an async function with typed arguments becomes a tool the model
//! can call; results go back to the session automatically.
//!
//! Offline, the local server runs a scenario that asks for `sum_numbers(2, 3)` on the first
//! turn and then speaks the result, so the whole round trip happens without a key.

mod common;

use futures_util::StreamExt;
use liveagent::{LiveAgent, Tool, ToolError, ToolResult};

/// Arguments of `sum_numbers`.
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct SumArgs {
    /// The first number.
    a: i64,
    /// The second number.
    b: i64,
}

const OFFLINE_SCENARIO: &str = r#"
[[turn]]
call = "sum_numbers"
args = { a = 2, b = 3 }
then_say = "The sum is {output}."
"#;

#[actix::main]
async fn main() -> anyhow::Result<()> {
    let agent = LiveAgent::builder("assistant")
        .prompt("You are a helpful voice assistant.")
        .config(common::openai_config("gpt-realtime-2", Some(OFFLINE_SCENARIO)).await)
        .tool(Tool::new(
            "sum_numbers",
            "You can use this tool to sum two numbers.",
            |args: SumArgs| async move {
                println!("Summing {} and {}", args.a, args.b);
                Ok::<_, ToolError>(args.a + args.b)
            },
        ))
        .build()?;
    let conversation = agent.run()?;
    let mut results = conversation.stream().only::<ToolResult>();
    let audio = common::attach_audio(conversation.context(), true)?;
    println!("Starting...");
    common::run_until_done(conversation.context(), audio).await?;
    conversation.stop().await;
    let first = results.next().await;
    println!("tool result: {first:?}");
    anyhow::ensure!(first.is_some(), "the tool was not called");
    Ok(())
}
