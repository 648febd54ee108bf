//! The tool executor over a real event bus: every call gets exactly one result, failures
//! become readable error results, and the hooks run where the docs say.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{FutureExt, LocalBoxFuture};
use futures_util::StreamExt;
use liveagent_core::{
    ConversationContext, ErrorEvent, EventBus, EventStream, Interrupted, ToolCall,
    ToolCallCancelled, ToolCallRequested, ToolResult,
};
use liveagent_tools::{
    middleware_fn, Approval, Next, NoArgs, Plugin, Tool, ToolContext, ToolError, ToolExecutor,
    ToolMiddleware, ToolOutcome, Toolbox,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{Barrier, Notify};

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

fn call(id: &str, name: &str, arguments: serde_json::Value) -> ToolCall {
    ToolCall {
        call_id: id.into(),
        name: name.into(),
        arguments,
        response_id: None,
    }
}

fn request(calls: Vec<ToolCall>) -> ToolCallRequested {
    ToolCallRequested { calls }
}

struct Harness {
    ctx: ConversationContext,
    results: EventStream<ToolResult>,
}

impl Harness {
    fn start(toolbox: Toolbox) -> Harness {
        let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
        let results = ctx.stream().capacity(256).only::<ToolResult>();
        ToolExecutor::start(toolbox, ctx.clone());
        Harness { ctx, results }
    }

    /// The next result; fails (instead of hanging) if none comes within 20 s.
    async fn next(&mut self) -> ToolResult {
        tokio::time::timeout(Duration::from_secs(20), self.results.next())
            .await
            .expect("no tool result within 20 s")
            .expect("result stream ended")
    }

    /// Every result up to and including the one for `sentinel`.
    async fn until(&mut self, sentinel: &str) -> Vec<ToolResult> {
        let mut seen = Vec::new();
        loop {
            let r = self.next().await;
            let done = &*r.call_id == sentinel;
            seen.push(r);
            if done {
                return seen;
            }
        }
    }
}

#[actix_rt::test]
async fn runs_a_typed_tool_and_requests_a_response() {
    let mut h = Harness::start(Toolbox::new().tool(sum_tool()));
    h.ctx.publish(request(vec![call(
        "c1",
        "sum_numbers",
        json!({"a": 40, "b": 2}),
    )]));
    let r = h.next().await;
    assert_eq!(&*r.call_id, "c1");
    assert_eq!(&*r.name, "sum_numbers");
    assert_eq!(r.output, Ok(json!(42)));
    assert!(r.request_response);
}

#[actix_rt::test]
async fn calls_of_one_request_run_concurrently() {
    // Each tool waits on a barrier that only the *other* call can release: if the calls
    // ran one after the other, the first would wait until its timeout and fail.
    let barrier = Arc::new(Barrier::new(2));
    let make = |name: &'static str, barrier: Arc<Barrier>| {
        Tool::new(name, "waits for its twin", move |_: NoArgs| {
            let barrier = barrier.clone();
            async move {
                barrier.wait().await;
                Ok::<_, ToolError>(name)
            }
        })
        .timeout(Duration::from_secs(10))
    };
    let toolbox = Toolbox::new()
        .tool(make("left", barrier.clone()))
        .tool(make("right", barrier));
    let mut h = Harness::start(toolbox);
    h.ctx.publish(request(vec![
        call("l", "left", json!({})),
        call("r", "right", json!({})),
    ]));
    let a = h.next().await;
    let b = h.next().await;
    let mut outs = vec![a.output.clone(), b.output.clone()];
    outs.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(outs, vec![Ok(json!("left")), Ok(json!("right"))]);
    // Exactly one of the two asks the model to go on: the last one.
    assert!(!a.request_response);
    assert!(b.request_response);
}

#[actix_rt::test]
async fn a_tool_that_runs_too_long_times_out_with_an_error_result() {
    let slow = Tool::new("slow", "never finishes in time", |_: NoArgs| async {
        std::future::pending::<()>().await;
        Ok::<_, ToolError>("unreachable")
    });
    let per_tool = slow
        .clone()
        .rename("slow_own")
        .timeout(Duration::from_millis(50));
    let toolbox = Toolbox::new()
        .timeout(Duration::from_millis(80))
        .tool(slow)
        .tool(per_tool);
    let mut h = Harness::start(toolbox);
    h.ctx
        .publish(request(vec![call("t1", "slow", json!(null))]));
    let r = h.next().await;
    let err = r.output.unwrap_err();
    assert!(err.contains("timed out after 0.08 s"), "{err}");
    h.ctx
        .publish(request(vec![call("t2", "slow_own", json!({}))]));
    let err = h.next().await.output.unwrap_err();
    assert!(err.contains("timed out after 0.05 s"), "{err}");
}

#[actix_rt::test]
async fn panics_become_error_results_and_error_events() {
    let in_future = Tool::new("boom", "panics while running", |_: NoArgs| async {
        if true {
            panic!("the database exploded");
        }
        Ok::<_, ToolError>(())
    });
    let in_closure = Tool::new(
        "boom_early",
        "panics before returning a future",
        |_: NoArgs| -> std::future::Ready<Result<(), ToolError>> { panic!("no future for you") },
    );
    let mut h = Harness::start(
        Toolbox::new()
            .tool(in_future)
            .tool(in_closure)
            .tool(sum_tool()),
    );
    let mut errors = h.ctx.stream().only::<ErrorEvent>();
    h.ctx.publish(request(vec![call("p1", "boom", json!({}))]));
    let r = h.next().await;
    assert!(r.request_response);
    let err = r.output.unwrap_err();
    // The panic text stays in the logs (issue 13): the model gets a generic message.
    assert!(
        err.contains("failed unexpectedly") && !err.contains("the database exploded"),
        "{err}"
    );
    let ev = errors.next().await.unwrap();
    assert_eq!(&*ev.source, "tool:boom");
    assert!(!ev.fatal);

    h.ctx
        .publish(request(vec![call("p2", "boom_early", json!({}))]));
    let err = h.next().await.output.unwrap_err();
    assert!(
        err.contains("failed unexpectedly") && !err.contains("no future for you"),
        "{err}"
    );

    // The executor is still alive and well.
    h.ctx.publish(request(vec![call(
        "p3",
        "sum_numbers",
        json!({"a": 1, "b": 1}),
    )]));
    assert_eq!(h.next().await.output, Ok(json!(2)));
}

#[actix_rt::test]
async fn bad_arguments_and_unknown_tools_become_error_results() {
    let mut h = Harness::start(Toolbox::new().tool(sum_tool()));
    h.ctx.publish(request(vec![
        call("b1", "sum_numbers", json!({"a": "one", "b": 2})),
        call("b2", "sum_numbers", json!({"a": 1})),
        // What the session publishes when the model's arguments were not JSON at all.
        call("b3", "sum_numbers", json!("{\"a\": 1, \"b\"")),
        // Arguments sent as a JSON-encoded string are accepted.
        call("b4", "sum_numbers", json!("{\"a\": 1, \"b\": 2}")),
        call("b5", "get_weather", json!({"city": "Paris"})),
    ]));
    let mut by_id = std::collections::HashMap::new();
    for _ in 0..5 {
        let r = h.next().await;
        by_id.insert(r.call_id.to_string(), r.output);
    }
    let err = |id: &str| by_id[id].clone().unwrap_err();
    assert!(
        err("b1").contains("invalid arguments for tool `sum_numbers`"),
        "{}",
        err("b1")
    );
    // Checked against the JSON schema before the function runs (issue 13).
    assert!(err("b1").contains("not of type"), "{}", err("b1"));
    assert!(
        err("b2").contains("\"b\" is a required property"),
        "{}",
        err("b2")
    );
    assert!(
        err("b3").contains("expected a JSON object"),
        "{}",
        err("b3")
    );
    assert_eq!(by_id["b4"], Ok(json!(3)));
    assert!(
        err("b5").contains("unknown tool `get_weather`"),
        "{}",
        err("b5")
    );
    assert!(err("b5").contains("sum_numbers"), "{}", err("b5"));
}

#[actix_rt::test]
async fn hitl_approves_denies_and_edits() {
    let reviewed = Arc::new(Mutex::new(Vec::new()));
    let log = reviewed.clone();
    let toolbox = Toolbox::new().tool(sum_tool()).hitl(move |call: ToolCall| {
        log.lock().unwrap().push(call.call_id.to_string());
        async move {
            match &*call.call_id {
                "deny" => Approval::deny("the user said no"),
                "edit" => Approval::Edit {
                    arguments: json!({"a": 100, "b": 1}),
                },
                _ => Approval::Approve,
            }
        }
    });
    let mut h = Harness::start(toolbox);
    h.ctx.publish(request(vec![call(
        "ok",
        "sum_numbers",
        json!({"a": 1, "b": 2}),
    )]));
    assert_eq!(h.next().await.output, Ok(json!(3)));
    h.ctx.publish(request(vec![call(
        "deny",
        "sum_numbers",
        json!({"a": 1, "b": 2}),
    )]));
    let err = h.next().await.output.unwrap_err();
    assert!(
        err.contains("denied") && err.contains("the user said no"),
        "{err}"
    );
    h.ctx.publish(request(vec![call(
        "edit",
        "sum_numbers",
        json!({"a": 1, "b": 2}),
    )]));
    assert_eq!(h.next().await.output, Ok(json!(101)));
    assert_eq!(*reviewed.lock().unwrap(), vec!["ok", "deny", "edit"]);
}

#[actix_rt::test]
async fn a_hook_that_never_decides_denies_after_the_approval_timeout() {
    let toolbox = Toolbox::new()
        .tool(sum_tool())
        .approval_timeout(Duration::from_millis(50))
        .hitl(|_call: ToolCall| std::future::pending::<Approval>());
    let mut h = Harness::start(toolbox);
    h.ctx.publish(request(vec![call(
        "w",
        "sum_numbers",
        json!({"a": 1, "b": 2}),
    )]));
    let err = h.next().await.output.unwrap_err();
    assert!(err.contains("not approved"), "{err}");
}

struct Db {
    rows: Vec<(&'static str, &'static str)>,
}

/// A key to look up.
#[derive(Deserialize, JsonSchema)]
struct LookupArgs {
    /// The key.
    key: String,
}

#[actix_rt::test]
async fn dependencies_are_injected_and_a_missing_one_is_a_clear_error() {
    let lookup = Tool::with_context(
        "lookup",
        "Looks a key up.",
        |args: LookupArgs, cx: ToolContext| async move {
            let db = cx.dep::<Db>()?;
            assert!(cx.conversation().is_some());
            db.rows
                .iter()
                .find(|(k, _)| *k == args.key)
                .map(|(_, v)| json!({ "value": v, "call": cx.call_id().to_string() }))
                .ok_or_else(|| ToolError::msg(format!("no key {}", args.key)))
        },
    );
    let with_db = Toolbox::new().tool(lookup.clone()).dependency(Db {
        rows: vec![("color", "blue")],
    });
    let mut h = Harness::start(with_db);
    h.ctx
        .publish(request(vec![call("d1", "lookup", json!({"key": "color"}))]));
    assert_eq!(
        h.next().await.output,
        Ok(json!({"value": "blue", "call": "d1"}))
    );
    h.ctx
        .publish(request(vec![call("d2", "lookup", json!({"key": "size"}))]));
    assert_eq!(h.next().await.output, Err("no key size".to_owned()));

    let mut h = Harness::start(Toolbox::new().tool(lookup));
    h.ctx
        .publish(request(vec![call("d3", "lookup", json!({"key": "color"}))]));
    let err = h.next().await.output.unwrap_err();
    assert!(
        err.contains("needs a dependency of type") && err.contains("Db"),
        "{err}"
    );
}

/// Records where it is in the chain.
struct Trace {
    name: &'static str,
    log: Arc<Mutex<Vec<String>>>,
}

impl ToolMiddleware for Trace {
    fn call<'a>(&'a self, call: ToolCall, next: Next) -> LocalBoxFuture<'a, ToolOutcome> {
        async move {
            self.log.lock().unwrap().push(format!("{}>", self.name));
            let out = next.run(call).await;
            self.log.lock().unwrap().push(format!("<{}", self.name));
            out
        }
        .boxed_local()
    }

    fn on_result(&self, _call: &ToolCall, output: &mut ToolOutcome) {
        self.log
            .lock()
            .unwrap()
            .push(format!("{}.on_result", self.name));
        if let Ok(v) = output {
            *v = json!(format!("{}({})", self.name, v));
        }
    }
}

#[actix_rt::test]
async fn middleware_runs_first_registered_outermost() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let tool_log = log.clone();
    let hook_log = log.clone();
    let toolbox = Toolbox::new()
        .tool(Tool::new("echo", "echo", move |_: NoArgs| {
            tool_log.lock().unwrap().push("tool".to_owned());
            async { Ok::<_, ToolError>("x") }
        }))
        .hitl(move |_c: ToolCall| {
            hook_log.lock().unwrap().push("hitl".to_owned());
            async { Approval::Approve }
        })
        .middleware(Trace {
            name: "a",
            log: log.clone(),
        })
        .middleware(Trace {
            name: "b",
            log: log.clone(),
        });
    let mut h = Harness::start(toolbox);
    h.ctx.publish(request(vec![call("m1", "echo", json!({}))]));
    // on_result runs innermost first: b wraps the value, then a.
    assert_eq!(h.next().await.output, Ok(json!("a(\"b(\\\"x\\\")\")")));
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            "a>",
            "b>",
            "hitl",
            "tool",
            "<b",
            "<a",
            "b.on_result",
            "a.on_result"
        ]
    );
}

#[actix_rt::test]
async fn middleware_can_rewrite_arguments_and_short_circuit() {
    let ran = Arc::new(Mutex::new(0));
    let counter = ran.clone();
    let toolbox = Toolbox::new()
        .tool(Tool::new("sum_numbers", "Sum.", move |a: SumArgs| {
            *counter.lock().unwrap() += 1;
            async move { Ok::<_, ToolError>(a.a + a.b) }
        }))
        .middleware(middleware_fn(|call: ToolCall, next: Next| async move {
            if call.arguments.get("a") == Some(&json!(13)) {
                return Err("13 is not allowed".to_owned());
            }
            next.run(call).await
        }))
        .middleware(middleware_fn(|mut call: ToolCall, next: Next| async move {
            call.arguments["b"] = json!(1000);
            next.run(call).await
        }));
    let mut h = Harness::start(toolbox);
    h.ctx.publish(request(vec![call(
        "s1",
        "sum_numbers",
        json!({"a": 1, "b": 2}),
    )]));
    assert_eq!(h.next().await.output, Ok(json!(1001)));
    h.ctx.publish(request(vec![call(
        "s2",
        "sum_numbers",
        json!({"a": 13, "b": 2}),
    )]));
    assert_eq!(h.next().await.output, Err("13 is not allowed".to_owned()));
    assert_eq!(*ran.lock().unwrap(), 1);
}

/// Signals when dropped: proves a tool's future was aborted.
struct DropSignal(Option<tokio::sync::oneshot::Sender<()>>);
impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

#[actix_rt::test]
async fn provider_cancellation_aborts_the_call_and_it_gets_no_result() {
    let started = Arc::new(Notify::new());
    let (drop_tx, drop_rx) = tokio::sync::oneshot::channel();
    let drop_tx = Arc::new(Mutex::new(Some(drop_tx)));
    let started2 = started.clone();
    let hang = Tool::new("hang", "waits forever", move |_: NoArgs| {
        let guard = DropSignal(drop_tx.lock().unwrap().take());
        let started = started2.clone();
        async move {
            let _guard = guard;
            started.notify_one();
            std::future::pending::<()>().await;
            Ok::<_, ToolError>(())
        }
    })
    .timeout(Duration::from_secs(3600));
    let mut h = Harness::start(Toolbox::new().tool(hang).tool(sum_tool()));
    h.ctx.publish(request(vec![
        call("x1", "hang", json!({})),
        call("x2", "sum_numbers", json!({"a": 1, "b": 1})),
    ]));
    // x2 finishes; x1 is still outstanding, so x2 does not ask for a response.
    let r = h.next().await;
    assert_eq!(&*r.call_id, "x2");
    assert!(!r.request_response);
    started.notified().await;
    h.ctx.publish(ToolCallCancelled {
        call_ids: vec!["x1".into()],
    });
    tokio::time::timeout(Duration::from_secs(20), drop_rx)
        .await
        .expect("the cancelled call was not aborted")
        .unwrap();
    // A call cancelled before it was requested never runs either.
    h.ctx.publish(ToolCallCancelled {
        call_ids: vec!["x3".into()],
    });
    h.ctx.publish(request(vec![call(
        "x3",
        "sum_numbers",
        json!({"a": 5, "b": 5}),
    )]));
    h.ctx.publish(request(vec![call(
        "x1",
        "sum_numbers",
        json!({"a": 1, "b": 1}),
    )]));
    h.ctx.publish(request(vec![call(
        "sentinel",
        "sum_numbers",
        json!({"a": 0, "b": 0}),
    )]));
    let seen = h.until("sentinel").await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].request_response);
}

#[actix_rt::test]
async fn barge_in_does_not_cancel_running_tools() {
    let release = Arc::new(Notify::new());
    let started = Arc::new(Notify::new());
    let (r2, s2) = (release.clone(), started.clone());
    let book = Tool::new("book_table", "Books a table.", move |_: NoArgs| {
        let (release, started) = (r2.clone(), s2.clone());
        async move {
            started.notify_one();
            release.notified().await;
            Ok::<_, ToolError>("booked")
        }
    });
    let mut h = Harness::start(Toolbox::new().tool(book));
    h.ctx
        .publish(request(vec![call("i1", "book_table", json!({}))]));
    started.notified().await;
    h.ctx.publish(Interrupted::default());
    release.notify_one();
    let r = h.next().await;
    assert_eq!(&*r.call_id, "i1");
    assert_eq!(r.output, Ok(json!("booked")));
    assert!(r.request_response);
}

#[actix_rt::test]
async fn each_call_id_gets_exactly_one_result_across_repeated_requests() {
    let release = Arc::new(Notify::new());
    let started = Arc::new(Notify::new());
    let runs = Arc::new(Mutex::new(0));
    let (r2, s2, n2) = (release.clone(), started.clone(), runs.clone());
    let slow = Tool::new("slow_sum", "Sum, slowly.", move |a: SumArgs| {
        *n2.lock().unwrap() += 1;
        let (release, started) = (r2.clone(), s2.clone());
        async move {
            started.notify_one();
            release.notified().await;
            Ok::<_, ToolError>(a.a + a.b)
        }
    });
    let mut h = Harness::start(Toolbox::new().tool(slow).tool(sum_tool()));
    let c = call("e1", "slow_sum", json!({"a": 1, "b": 2}));
    // Repeated within one request, and again while it runs.
    h.ctx.publish(request(vec![c.clone(), c.clone()]));
    started.notified().await;
    h.ctx.publish(request(vec![c.clone()]));
    release.notify_one();
    let first = h.next().await;
    assert_eq!(&*first.call_id, "e1");
    assert_eq!(first.output, Ok(json!(3)));
    assert!(first.request_response);
    // Re-sent after it was answered (a reconnect replay), mixed with a new call.
    h.ctx.publish(request(vec![
        c,
        call("e2", "sum_numbers", json!({"a": 2, "b": 2})),
    ]));
    h.ctx.publish(request(vec![call(
        "sentinel",
        "sum_numbers",
        json!({"a": 0, "b": 0}),
    )]));
    let seen = h.until("sentinel").await;
    let ids: Vec<&str> = seen.iter().map(|r| &*r.call_id).collect();
    assert_eq!(ids, vec!["e2", "sentinel"]);
    // e2 was alone in its batch (the repeat of e1 is not part of it).
    assert!(seen[0].request_response);
    assert_eq!(*runs.lock().unwrap(), 1);
}

#[actix_rt::test]
async fn request_response_is_set_on_the_last_result_of_each_batch_only() {
    // Completion order is forced: c waits for b, b waits for a.
    let gates: Vec<Arc<Notify>> = (0..3).map(|_| Arc::new(Notify::new())).collect();
    let step = |name: &'static str, wait: Option<Arc<Notify>>, open: Arc<Notify>| {
        Tool::new(name, "a step", move |_: NoArgs| {
            let (wait, open) = (wait.clone(), open.clone());
            async move {
                if let Some(w) = wait {
                    w.notified().await;
                    // Each tool runs on a thread of its own: leave the previous result
                    // time to reach the executor first.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                open.notify_one();
                Ok::<_, ToolError>(name)
            }
        })
    };
    let toolbox = Toolbox::new()
        .tool(step("a", None, gates[0].clone()))
        .tool(step("b", Some(gates[0].clone()), gates[1].clone()))
        .tool(step("c", Some(gates[1].clone()), gates[2].clone()))
        .tool(sum_tool());
    let mut h = Harness::start(toolbox);
    h.ctx.publish(request(vec![
        call("c", "c", json!({})),
        call("a", "a", json!({})),
        call("b", "b", json!({})),
    ]));
    let batch: Vec<ToolResult> = vec![h.next().await, h.next().await, h.next().await];
    let order: Vec<&str> = batch.iter().map(|r| &*r.call_id).collect();
    assert_eq!(order, vec!["a", "b", "c"]);
    let flags: Vec<bool> = batch.iter().map(|r| r.request_response).collect();
    assert_eq!(flags, vec![false, false, true]);

    // A later batch has its own last result.
    h.ctx.publish(request(vec![
        call("d", "sum_numbers", json!({"a": 1, "b": 1})),
        call("e", "sum_numbers", json!({"a": 2, "b": 2})),
    ]));
    let flags = [
        h.next().await.request_response,
        h.next().await.request_response,
    ];
    assert_eq!(flags.iter().filter(|f| **f).count(), 1);
    assert!(flags[1]);
}

struct MathPlugin {
    started: Arc<Mutex<bool>>,
}

impl Plugin for MathPlugin {
    fn name(&self) -> &str {
        "math"
    }
    fn tools(&self) -> Vec<Tool> {
        vec![sum_tool()]
    }
    fn middleware(&self) -> Vec<Arc<dyn ToolMiddleware>> {
        vec![Arc::new(middleware_fn(
            |call: ToolCall, next: Next| async move {
                next.run(call).await.map(|v| json!({ "sum": v }))
            },
        ))]
    }
    fn on_start(&self, _conversation: &ConversationContext) {
        *self.started.lock().unwrap() = true;
    }
}

#[actix_rt::test]
async fn a_plugin_adds_tools_middleware_and_a_start_hook() {
    let started = Arc::new(Mutex::new(false));
    let toolbox = Toolbox::new().plugin(MathPlugin {
        started: started.clone(),
    });
    assert_eq!(toolbox.schemas()[0].name, "sum_numbers");
    let mut h = Harness::start(toolbox);
    assert!(*started.lock().unwrap());
    h.ctx.publish(request(vec![call(
        "g1",
        "sum_numbers",
        json!({"a": 2, "b": 3}),
    )]));
    assert_eq!(h.next().await.output, Ok(json!({"sum": 5})));
}

#[actix_rt::test]
async fn on_its_own_arbiter_a_blocking_tool_does_not_stall_the_callers_thread() {
    // The tool blocks its thread until this test (on the main arbiter) answers. Were the
    // executor on the main arbiter, the test could never answer and the tool would give
    // up after 20 s with an error.
    let (to_tool, from_test) = std::sync::mpsc::channel::<i64>();
    let from_test = Arc::new(Mutex::new(from_test));
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let started_tx = Arc::new(Mutex::new(Some(started_tx)));
    let blocking = Tool::new("blocking", "blocks its thread", move |_: NoArgs| {
        if let Some(tx) = started_tx.lock().unwrap().take() {
            let _ = tx.send(());
        }
        let got = from_test
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(20));
        async move { got.map_err(|_| ToolError::msg("the test never answered")) }
    })
    .timeout(Duration::from_secs(60));
    let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
    let mut results = ctx.stream().only::<ToolResult>();
    let arbiter = actix::Arbiter::new();
    ToolExecutor::start_on(
        &arbiter.handle(),
        Toolbox::new().tool(blocking),
        ctx.clone(),
    );
    ctx.publish(request(vec![call("b1", "blocking", json!({}))]));
    started_rx.await.unwrap();
    to_tool.send(7).unwrap();
    let r = tokio::time::timeout(Duration::from_secs(30), results.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.output, Ok(json!(7)));
    arbiter.stop();
}

#[actix_rt::test]
async fn a_running_call_requested_again_joins_the_new_batch() {
    let release = Arc::new(Notify::new());
    let started = Arc::new(Notify::new());
    let runs = Arc::new(Mutex::new(0));
    let (r2, s2, n2) = (release.clone(), started.clone(), runs.clone());
    let slow = Tool::new("slow", "waits to be released", move |_: NoArgs| {
        *n2.lock().unwrap() += 1;
        let (release, started) = (r2.clone(), s2.clone());
        async move {
            started.notify_one();
            release.notified().await;
            Ok::<_, ToolError>("slow done")
        }
    });
    let mut h = Harness::start(Toolbox::new().tool(slow).tool(sum_tool()));
    h.ctx.publish(request(vec![call("a", "slow", json!({}))]));
    started.notified().await;
    // The provider re-sends `a` together with a new call `c`.
    h.ctx.publish(request(vec![
        call("a", "slow", json!({})),
        call("c", "sum_numbers", json!({"a": 1, "b": 1})),
    ]));
    let first = h.next().await;
    assert_eq!(&*first.call_id, "c");
    assert!(
        !first.request_response,
        "`a` is still outstanding in c's batch"
    );
    release.notify_one();
    let second = h.next().await;
    assert_eq!(&*second.call_id, "a");
    assert!(second.request_response);
    assert_eq!(*runs.lock().unwrap(), 1);
}
