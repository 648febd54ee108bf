//! The Agent against the local server's `POST /v1/chat/completions`, over real HTTP:
//! plain answers, its own tool-call loop, history, auth, provider errors, and handoff
//! (`as_tool`) through a live conversation's tool executor.

use std::time::Duration;

use futures_util::StreamExt;
use liveagent_agent::{Agent, ToolRun};
use liveagent_core::{
    ConversationContext, ErrorKind, EventBus, ToolCall, ToolCallRequested, ToolResult,
};
use liveagent_server::{LocalServer, Scenario, ServerConfig};
use liveagent_tools::{Tool, ToolError, ToolExecutor, Toolbox};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

/// Two numbers.
#[derive(Deserialize, JsonSchema)]
struct SumArgs {
    /// The first.
    a: i64,
    /// The second.
    b: i64,
}

fn sum_tool() -> Tool {
    Tool::new(
        "sum_numbers",
        "Sum two numbers.",
        |args: SumArgs| async move { Ok::<_, ToolError>(args.a + args.b) },
    )
}

fn scenario(toml: &str) -> Scenario {
    Scenario::from_toml(toml).expect("scenario")
}

async fn server() -> LocalServer {
    let config = ServerConfig::default()
        .recording_in_memory()
        .with_scenario(
            "sum",
            scenario(
                r#"
                [[turn]]
                call = "sum_numbers"
                args = { a = 2, b = 3 }
                then_say = "The sum is {output}."
                "#,
            ),
        )
        .with_scenario(
            "unknown",
            scenario(
                r#"
                [[turn]]
                call = "get_weather"
                args = { city = "Paris" }
                then_say = "Tool said {output}"
                "#,
            ),
        )
        .with_scenario(
            "two_turns",
            scenario(
                r#"
                [[turn]]
                say = "first answer"
                [[turn]]
                say = "second: {input}"
                "#,
            ),
        )
        .with_scenario(
            "broken",
            scenario(
                r#"
                [[turn]]
                steps = [{ error = "the model is overloaded", code = "overloaded" }]
                "#,
            ),
        );
    LocalServer::start(config).await.expect("local server")
}

/// The chat requests the server received (recorded as `# chat request: {json}` notes).
fn chat_requests(server: &LocalServer) -> Vec<serde_json::Value> {
    server
        .recording()
        .iter()
        .filter_map(|l| l.strip_prefix("# chat request: "))
        .map(|l| serde_json::from_str(l.trim()).expect("recorded request is JSON"))
        .collect()
}

fn agent(base: String) -> Agent {
    Agent::new("helper", "You are a helpful assistant.", "gpt-4o-mini")
        .base_url(format!("{base}/v1"))
        .without_api_key()
        .timeout(Duration::from_secs(10))
}

#[actix_rt::test]
async fn ask_gets_the_echo_brains_answer() {
    let server = server().await;
    let reply = agent(server.http_url()).ask("hello there").await.unwrap();
    assert_eq!(reply.text, "echo: hello there");
    assert_eq!(reply.requests, 1);
    assert!(reply.tool_runs.is_empty());
    assert!(reply.usage.total_tokens > 0);
    // What went over the wire: the system prompt, then the user message.
    let requests = chat_requests(&server);
    assert_eq!(requests.len(), 1);
    let body = &requests[0];
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "You are a helpful assistant."})
    );
    assert_eq!(
        body["messages"][1],
        json!({"role": "user", "content": "hello there"})
    );
    assert!(body.get("tools").is_none());
    server.stop().await;
}

#[actix_rt::test]
async fn ask_runs_its_own_tool_call_loop() {
    let server = server().await;
    let agent = agent(server.http_url_for("sum")).tool(sum_tool());
    let reply = agent.ask("what is 2 + 3?").await.unwrap();
    assert_eq!(reply.text, "The sum is 5.");
    assert_eq!(reply.requests, 2);
    assert_eq!(
        reply.tool_runs,
        vec![ToolRun {
            name: "sum_numbers".into(),
            arguments: json!({"a": 2, "b": 3}),
            output: Ok(json!(5)),
        }]
    );
    // The second request carried the declaration, the assistant's call and the tool output.
    let requests = chat_requests(&server);
    assert_eq!(requests.len(), 2);
    let second = &requests[1];
    assert_eq!(second["tools"][0]["function"]["name"], "sum_numbers");
    assert_eq!(
        second["tools"][0]["function"]["parameters"]["required"],
        json!(["a", "b"])
    );
    let msgs = second["messages"].as_array().unwrap();
    assert_eq!(msgs[2]["role"], "assistant");
    let call_id = msgs[2]["tool_calls"][0]["id"].clone();
    assert_eq!(
        msgs[3],
        json!({"role": "tool", "tool_call_id": call_id, "content": "5"})
    );
    server.stop().await;
}

#[actix_rt::test]
async fn a_failing_tool_call_is_read_by_the_model_not_raised() {
    let server = server().await;
    let reply = agent(server.http_url_for("unknown"))
        .tool(sum_tool())
        .ask("weather?")
        .await
        .unwrap();
    assert!(
        reply.text.starts_with("Tool said {\"error\":"),
        "{}",
        reply.text
    );
    assert!(
        reply.text.contains("unknown tool `get_weather`"),
        "{}",
        reply.text
    );
    assert!(reply.tool_runs[0].output.is_err());
    server.stop().await;
}

#[actix_rt::test]
async fn too_many_tool_rounds_is_a_tool_error() {
    let server = server().await;
    let err = agent(server.http_url_for("sum"))
        .tool(sum_tool())
        .max_rounds(0)
        .ask("what is 2 + 3?")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Tool);
    assert!(err.message.contains("after 0 rounds"), "{err}");
    server.stop().await;
}

#[actix_rt::test]
async fn ask_with_continues_a_conversation() {
    let server = server().await;
    let agent = agent(server.http_url_for("two_turns"));
    let first = agent.ask("one").await.unwrap();
    assert_eq!(first.text, "first answer");
    let second = agent.ask_with(first.messages, "two").await.unwrap();
    assert_eq!(second.text, "second: two");
    assert_eq!(second.messages.len(), 4);
    server.stop().await;
}

#[actix_rt::test]
async fn a_provider_error_is_a_typed_error() {
    let server = server().await;
    let err = agent(server.http_url_for("broken"))
        .ask("hi")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Provider);
    assert_eq!(err.code.as_deref(), Some("overloaded"));
    assert!(
        err.message.contains("HTTP 500") && err.message.contains("overloaded"),
        "{err}"
    );
    server.stop().await;
}

#[actix_rt::test]
async fn the_key_is_sent_as_a_bearer_token_and_a_wrong_one_is_an_auth_error() {
    let server = LocalServer::start(ServerConfig::default().with_api_key("sk-local-GOOD"))
        .await
        .unwrap();
    let base = format!("{}/v1", server.http_url());
    let good = Agent::new("a", "p", "gpt-4o-mini")
        .base_url(&base)
        .api_key("sk-local-GOOD");
    assert_eq!(good.ask("hi").await.unwrap().text, "echo: hi");
    let bad = Agent::new("a", "p", "gpt-4o-mini")
        .base_url(&base)
        .api_key("sk-local-BAD");
    let err = bad.ask("hi").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth);
    assert!(err.is_permanent());
    assert_eq!(err.code.as_deref(), Some("invalid_api_key"));
    assert!(!err.to_string().contains("sk-local-BAD"));
    let missing = Agent::new("a", "p", "gpt-4o-mini")
        .base_url(&base)
        .without_api_key();
    assert_eq!(missing.ask("hi").await.unwrap_err().kind, ErrorKind::Auth);
    server.stop().await;
}

#[actix_rt::test]
async fn as_tool_hands_off_through_a_conversations_tool_executor() {
    let server = server().await;
    let specialist = agent(server.http_url_for("sum")).tool(sum_tool());
    let handoff = specialist.as_tool("Ask the math specialist.");
    assert_eq!(handoff.name().as_ref(), "task_helper");
    assert_eq!(
        handoff.parameters()["properties"]["objective"]["type"],
        "string"
    );

    let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
    let mut results = ctx.stream().only::<ToolResult>();
    ToolExecutor::start(Toolbox::new().tool(handoff), ctx.clone());
    ctx.publish(ToolCallRequested {
        calls: vec![
            ToolCall {
                call_id: "h1".into(),
                name: "task_helper".into(),
                arguments: json!({"objective": "what is 2 + 3?"}),
                response_id: None,
            },
            ToolCall {
                call_id: "h2".into(),
                name: "task_helper".into(),
                arguments: json!({"question": "wrong field"}),
                response_id: None,
            },
        ],
    });
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(
            tokio::time::timeout(Duration::from_secs(20), results.next())
                .await
                .expect("handoff result")
                .unwrap(),
        );
    }
    got.sort_by_key(|r| r.call_id.to_string());
    assert_eq!(got[0].output, Ok(json!("The sum is 5.")));
    assert!(got[1]
        .output
        .as_ref()
        .unwrap_err()
        .contains("\"objective\" is a required property"));
    assert_eq!(got.iter().filter(|r| r.request_response).count(), 1);

    // A specialist that cannot be reached is an error result, not a crash.
    let dead = Agent::new("dead", "p", "m")
        .base_url("http://127.0.0.1:9/v1")
        .without_api_key()
        .as_tool("unreachable");
    let out = dead
        .call(
            json!({"objective": "hi"}),
            liveagent_tools::ToolContext::new("d1", "task_dead"),
        )
        .await;
    assert!(out.unwrap_err().contains("agent `dead`"));
    server.stop().await;
}
