//! Tool-call floods (issue 13, item 5), through the executor's public bus API: a response
//! with thousands of calls is answered call by call (the excess with an error output, never
//! dropped), at most `max_concurrent_calls` tools run at once, and the rest wait their turn.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use liveagent_core::{
    ConversationContext, ErrorEvent, EventBus, ToolCall, ToolCallRequested, ToolResult,
};
use liveagent_tools::{NoArgs, Tool, ToolError, ToolExecutor, Toolbox};

const FAILSAFE: Duration = Duration::from_secs(60);

fn calls(n: usize) -> ToolCallRequested {
    ToolCallRequested {
        calls: (0..n)
            .map(|i| ToolCall {
                call_id: format!("call_{i}").into(),
                name: "work".into(),
                arguments: serde_json::json!({}),
                response_id: None,
            })
            .collect(),
    }
}

/// A tool that records how many of its calls run at the same time.
fn work(running: Arc<AtomicUsize>, peak: Arc<AtomicUsize>, ran: Arc<AtomicUsize>) -> Tool {
    Tool::new("work", "Works a little.", move |_: NoArgs| {
        let (running, peak, ran) = (running.clone(), peak.clone(), ran.clone());
        async move {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            ran.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            running.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, ToolError>("done")
        }
    })
}

#[actix_rt::test]
async fn a_flood_of_calls_is_capped_queued_and_every_call_answered_once() {
    let (running, peak, ran) = Default::default();
    let running: Arc<AtomicUsize> = running;
    let toolbox = Toolbox::new()
        .tool(work(running.clone(), Arc::clone(&peak), Arc::clone(&ran)))
        .max_calls_per_response(12)
        .max_concurrent_calls(3);
    let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
    let mut results = ctx.stream().capacity(100_000).only::<ToolResult>();
    let mut errors = ctx.stream().only::<ErrorEvent>();
    ToolExecutor::start(toolbox, ctx.clone());
    const N: usize = 12_000;
    ctx.publish(calls(N));
    let mut seen: HashMap<String, ToolResult> = HashMap::new();
    while seen.len() < N {
        let r = tokio::time::timeout(FAILSAFE, results.next())
            .await
            .expect("every call is answered")
            .expect("stream open");
        assert!(
            seen.insert(r.call_id.to_string(), r).is_none(),
            "one result per call"
        );
    }
    let (ok, refused): (Vec<_>, Vec<_>) = seen.values().partition(|r| r.output.is_ok());
    assert_eq!(ok.len(), 12, "the first 12 calls ran");
    assert_eq!(refused.len(), N - 12);
    let text = refused[0].output.clone().unwrap_err();
    assert!(text.contains("at most 12"), "{text}");
    assert_eq!(ran.load(Ordering::SeqCst), 12);
    assert!(
        peak.load(Ordering::SeqCst) <= 3,
        "at most 3 at once, saw {}",
        peak.load(Ordering::SeqCst)
    );
    assert_eq!(
        seen.values().filter(|r| r.request_response).count(),
        1,
        "one response requested, after the last result"
    );
    let error = errors.next().await.expect("an error event about the flood");
    assert!(
        error.error.message.contains("12000 tool calls"),
        "{}",
        error.error
    );
}

/// Arguments with two fields.
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct PairArgs {
    /// A number.
    a: i64,
    /// A name.
    b: String,
}

#[actix_rt::test]
async fn arguments_must_be_an_object_never_spread_by_position() {
    let ran = Arc::new(AtomicUsize::new(0));
    let counter = ran.clone();
    let toolbox = Toolbox::new().tool(Tool::new("pair", "Takes a pair.", move |p: PairArgs| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, ToolError>(format!("{} {}", p.a, p.b)) }
    }));
    for (i, args) in [
        serde_json::json!([3, "abc"]),
        serde_json::json!("[3, \"abc\"]"),
        serde_json::json!(7),
    ]
    .into_iter()
    .enumerate()
    {
        let call = ToolCall {
            call_id: format!("c{i}").into(),
            name: "pair".into(),
            arguments: args,
            response_id: None,
        };
        let err = toolbox.run(call, None).await.unwrap_err();
        assert!(err.contains("expected a JSON object"), "{err}");
    }
    assert_eq!(ran.load(Ordering::SeqCst), 0, "never run on a non-object");
}
