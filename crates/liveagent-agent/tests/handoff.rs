//! Handoff with AG2's semantics (`Agent::as_tool` / `Agent::handoff`), against the local
//! server's `POST /v1/chat/completions` over real HTTP, run by a live conversation's tool
//! executor: the `task_<agent>` name, `objective` / `context`, the progress events on the
//! conversation bus, stateful mode (per conversation) and per-tool middleware.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use liveagent_agent::Agent;
use liveagent_core::{
    ConversationContext, EventBus, LiveEvent, TaskCompleted, TaskFailed, TaskStarted, ToolCall,
    ToolCallRequested, ToolProgress, ToolResult,
};
use liveagent_server::{LocalServer, Scenario, ServerConfig};
use liveagent_tools::{middleware_fn, Tool, ToolError, ToolExecutor, Toolbox};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

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

async fn server() -> LocalServer {
    let config = ServerConfig::default().recording_in_memory().with_scenario(
        "sum",
        Scenario::from_toml(
            r#"
            [[turn]]
            call = "sum_numbers"
            args = { a = 2, b = 3 }
            then_say = "The sum is {output}."
            "#,
        )
        .expect("scenario"),
    );
    LocalServer::start(config).await.expect("local server")
}

fn chat_requests(server: &LocalServer) -> Vec<Value> {
    server
        .recording()
        .iter()
        .filter_map(|l| l.strip_prefix("# chat request: "))
        .map(|l| serde_json::from_str(l.trim()).expect("recorded request is JSON"))
        .collect()
}

fn specialist(base: String) -> Agent {
    Agent::new("math", "You do math.", "gpt-4o-mini")
        .base_url(format!("{base}/v1"))
        .without_api_key()
        .timeout(Duration::from_secs(10))
}

fn conversation(toolbox: Toolbox) -> ConversationContext {
    let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
    ToolExecutor::start(toolbox, ctx.clone());
    ctx
}

fn call(id: &str, name: &str, arguments: Value) -> ToolCallRequested {
    ToolCallRequested {
        calls: vec![ToolCall {
            call_id: id.into(),
            name: name.into(),
            arguments,
            response_id: None,
        }],
    }
}

/// Publishes `request` and collects every event up to its `ToolResult`.
async fn run_call(ctx: &ConversationContext, request: ToolCallRequested) -> Vec<LiveEvent> {
    let mut events = ctx.stream().all();
    let id = request.calls[0].call_id.clone();
    ctx.publish(request);
    let mut seen = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .expect("the handoff finishes")
            .expect("bus open");
        let done = matches!(&event, LiveEvent::ToolResult(r) if r.call_id == id);
        seen.push(event);
        if done {
            return seen;
        }
    }
}

fn result(events: &[LiveEvent]) -> &ToolResult {
    events
        .iter()
        .find_map(|e| match e {
            LiveEvent::ToolResult(r) => Some(r),
            _ => None,
        })
        .expect("a result")
}

#[actix_rt::test]
async fn as_tool_has_ag2s_name_and_arguments() {
    let tool = Agent::new("orders desk", "p", "m").as_tool("Ask the orders desk.");
    assert_eq!(tool.name().as_ref(), "task_orders_desk");
    assert_eq!(tool.description(), "Ask the orders desk.");
    let p = tool.parameters();
    assert_eq!(p["properties"]["objective"]["type"], "string");
    assert_eq!(p["properties"]["context"]["type"], "string");
    assert_eq!(p["required"], json!(["objective"]));
    let named = Agent::new("orders", "p", "m")
        .handoff("d")
        .name("ask_orders")
        .tool();
    assert_eq!(named.name().as_ref(), "ask_orders");
}

#[actix_rt::test]
async fn the_sub_agents_progress_streams_on_the_conversation() {
    let server = server().await;
    let tool = specialist(server.http_url_for("sum"))
        .tool(sum_tool())
        .as_tool("Ask the math specialist.");
    let ctx = conversation(Toolbox::new().tool(tool));
    let events = run_call(
        &ctx,
        call(
            "h1",
            "task_math",
            json!({"objective": "Add the numbers.", "context": "The numbers are 2 and 3."}),
        ),
    )
    .await;
    assert_eq!(result(&events).output, Ok(json!("The sum is 5.")));

    // The objective and the context reach the sub-agent in AG2's layout.
    let first = &chat_requests(&server)[0];
    assert_eq!(
        first["messages"][1]["content"],
        "Add the numbers.\n\n## Context\nThe numbers are 2 and 3."
    );

    // TaskStarted, then progress (completion, the sub-agent's own tool call, its result,
    // the second completion), then TaskCompleted, then the result; all tied to the call.
    let kinds: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            LiveEvent::TaskStarted(_) => Some("started".to_owned()),
            LiveEvent::ToolProgress(p) if p.call_id.as_ref() == "h1" => Some(
                p.data.as_ref().unwrap()["step"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ),
            LiveEvent::TaskCompleted(_) => Some("completed".to_owned()),
            LiveEvent::ToolResult(_) => Some("result".to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "started",
            "completion",
            "tool_call",
            "tool_result",
            "completion",
            "completed",
            "result"
        ],
        "{events:#?}"
    );
    let started: &TaskStarted = events
        .iter()
        .find_map(|e| match e {
            LiveEvent::TaskStarted(s) => Some(s),
            _ => None,
        })
        .unwrap();
    assert_eq!(started.agent.as_ref(), "math");
    assert_eq!(started.tool.as_ref(), "task_math");
    assert_eq!(started.call_id.as_ref(), "h1");
    assert_eq!(started.objective.as_ref(), "Add the numbers.");
    let completed: &TaskCompleted = events
        .iter()
        .find_map(|e| match e {
            LiveEvent::TaskCompleted(c) => Some(c),
            _ => None,
        })
        .unwrap();
    assert_eq!(completed.task_id, started.task_id);
    assert_eq!(completed.result.as_ref(), "The sum is 5.");
    assert!(completed.usage.total_tokens > 0);
    let progress: Vec<&ToolProgress> = events
        .iter()
        .filter_map(|e| match e {
            LiveEvent::ToolProgress(p) => Some(p),
            _ => None,
        })
        .collect();
    let tool_call = progress
        .iter()
        .find(|p| p.data.as_ref().unwrap()["step"] == "tool_call")
        .unwrap();
    assert_eq!(tool_call.data.as_ref().unwrap()["tool"], "sum_numbers");
    assert_eq!(
        tool_call.data.as_ref().unwrap()["arguments"],
        json!({"a": 2, "b": 3})
    );
    assert_eq!(
        tool_call.data.as_ref().unwrap()["task_id"],
        json!(started.task_id.as_ref())
    );
    server.stop().await;
}

#[actix_rt::test]
async fn a_failing_sub_agent_is_task_failed_and_an_error_result() {
    let tool = Agent::new("dead", "p", "m")
        .base_url("http://127.0.0.1:9/v1")
        .api_key("sk-SECRET-never-shown")
        .timeout(Duration::from_secs(5))
        .as_tool("unreachable");
    let ctx = conversation(Toolbox::new().tool(tool));
    let events = run_call(&ctx, call("d1", "task_dead", json!({"objective": "hi"}))).await;
    let failed: &TaskFailed = events
        .iter()
        .find_map(|e| match e {
            LiveEvent::TaskFailed(f) => Some(f),
            _ => None,
        })
        .expect("TaskFailed");
    assert!(failed.error.contains("agent `dead`"), "{failed:?}");
    assert!(!failed.error.contains("SECRET"));
    let out = result(&events).output.as_ref().unwrap_err();
    assert!(out.contains("agent `dead`"), "{out}");
    assert!(!events
        .iter()
        .any(|e| matches!(e, LiveEvent::TaskCompleted(_))));
}

#[actix_rt::test]
async fn stateful_keeps_the_sub_agents_chat_per_conversation() {
    let server = server().await;
    let base = server.http_url();
    let stateful = specialist(base.clone())
        .handoff("Ask the math specialist.")
        .stateful()
        .tool();
    let stateless = specialist(base)
        .as_tool("Ask the math specialist.")
        .rename("fresh_math");
    let toolbox = Toolbox::new().tool(stateful).tool(stateless);

    let a = conversation(toolbox.clone());
    let first = run_call(&a, call("s1", "task_math", json!({"objective": "one"}))).await;
    assert_eq!(result(&first).output, Ok(json!("echo: one")));
    let second = run_call(&a, call("s2", "task_math", json!({"objective": "two"}))).await;
    assert_eq!(result(&second).output, Ok(json!("echo: two")));
    let requests = chat_requests(&server);
    let msgs = requests[1]["messages"].as_array().unwrap();
    // system, the first exchange, the new question.
    assert_eq!(
        msgs.iter()
            .map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        [
            ("system", "You do math."),
            ("user", "one"),
            ("assistant", "echo: one"),
            ("user", "two"),
        ]
    );

    // Another conversation does not see conversation A's chat.
    let b = conversation(toolbox.clone());
    run_call(&b, call("s3", "task_math", json!({"objective": "three"}))).await;
    let requests = chat_requests(&server);
    assert_eq!(requests[2]["messages"].as_array().unwrap().len(), 2);

    // The stateless tool starts afresh each call, even in conversation A.
    run_call(&a, call("s4", "fresh_math", json!({"objective": "four"}))).await;
    let requests = chat_requests(&server);
    assert_eq!(requests[3]["messages"].as_array().unwrap().len(), 2);
    server.stop().await;
}

#[actix_rt::test]
async fn per_tool_middleware_wraps_the_handoff_only() {
    let server = server().await;
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let tool = specialist(server.http_url())
        .handoff("Ask the math specialist.")
        .middleware(middleware_fn(move |mut call: ToolCall, next| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(call.name.to_string());
                // Rewrite the objective before the sub-agent sees it.
                call.arguments["objective"] = json!("rewritten");
                next.run(call).await
            }
        }))
        .tool();
    let other = Tool::new("noop", "Nothing.", |_: liveagent_tools::NoArgs| async {
        Ok::<_, ToolError>("ok")
    });
    let ctx = conversation(Toolbox::new().tool(tool).tool(other));
    let events = run_call(&ctx, call("m1", "task_math", json!({"objective": "x"}))).await;
    assert_eq!(result(&events).output, Ok(json!("echo: rewritten")));
    run_call(&ctx, call("m2", "noop", json!({}))).await;
    assert_eq!(*seen.lock().unwrap(), ["task_math"]);
    server.stop().await;
}
