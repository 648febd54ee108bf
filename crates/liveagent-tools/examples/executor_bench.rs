//! Prints how long the executor takes to turn requests into results over a real bus
//! (a trivial tool, so the figures are the executor's and the bus's overhead).
//!
//! `cargo run -p liveagent-tools --example executor_bench [--release]`

use std::time::Instant;

use futures_util::StreamExt;
use liveagent_core::{ConversationContext, EventBus, ToolCall, ToolCallRequested, ToolResult};
use liveagent_tools::{Tool, ToolError, ToolExecutor, Toolbox};

/// Two numbers.
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct SumArgs {
    a: i64,
    b: i64,
}

fn main() {
    actix::System::new().block_on(async {
        let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
        let toolbox = Toolbox::new().tool(Tool::new("sum", "Sum.", |a: SumArgs| async move {
            Ok::<_, ToolError>(a.a + a.b)
        }));
        let mut results = ctx.stream().capacity(1024).only::<ToolResult>();
        ToolExecutor::start(toolbox, ctx.clone());

        for batch_size in [1usize, 4, 16] {
            let batches = 2000 / batch_size;
            let mut latencies = Vec::with_capacity(batches);
            let started = Instant::now();
            for b in 0..batches {
                let calls = (0..batch_size)
                    .map(|i| ToolCall {
                        call_id: format!("c{batch_size}_{b}_{i}").into(),
                        name: "sum".into(),
                        arguments: serde_json::json!({"a": b, "b": i}),
                        response_id: None,
                    })
                    .collect();
                let t0 = Instant::now();
                ctx.publish(ToolCallRequested { calls });
                for _ in 0..batch_size {
                    results.next().await.expect("result");
                }
                latencies.push(t0.elapsed());
            }
            let total = started.elapsed();
            latencies.sort();
            let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
            println!(
                "batch of {batch_size:>2}: {batches} batches, {:.0} calls/s, request→last result p50 {:?} p99 {:?}",
                (batches * batch_size) as f64 / total.as_secs_f64(),
                p(0.5),
                p(0.99),
            );
        }
    });
}
