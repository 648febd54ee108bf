//! [`ToolExecutor`]: the actor that runs the model's tool calls of a conversation.

use std::collections::{HashMap, HashSet, VecDeque};

use actix::prelude::*;
use liveagent_core::{
    ConversationContext, ErrorEvent, ErrorKind, Id, LiveError, ToolCall, ToolCallCancelled,
    ToolCallRequested, ToolResult,
};

use crate::toolbox::Toolbox;

/// How many finished call ids the executor remembers for de-duplication.
const REMEMBERED_CALLS: usize = 4096;

struct Running {
    batch: u64,
    /// `None` while the call waits for a free slot.
    handle: Option<SpawnHandle>,
}

/// The tool executor actor of one conversation.
///
/// It subscribes to [`ToolCallRequested`] and [`ToolCallCancelled`] on the conversation's
/// bus and publishes one [`ToolResult`] per call.
///
/// ## Semantics
///
/// - **Concurrency**: the calls of one request (one model response) run concurrently, each
///   through the [`Toolbox`] pipeline (middleware → approval → tool under its timeout),
///   each tool on a thread of its own (so a tool that blocks is still answered at its
///   timeout). At most [`Toolbox::max_concurrent_calls`] run at once per conversation; the
///   others wait in order. Results are published as each call finishes, in completion order.
/// - **Floods**: at most [`Toolbox::max_calls_per_response`] calls of one request run; each
///   call past it is answered at once with an error output (never dropped), and one
///   [`ErrorEvent`] says how many were refused. Lookups are hash-based: a request of tens of
///   thousands of calls costs linear time.
/// - **`request_response`**: true on the last result of a request's batch only, so the
///   session asks the model to go on once, when all results of that response are in.
/// - **Exactly once**: each `call_id` gets exactly one result. A request for a call id that
///   was already answered is ignored (providers may re-send calls after a reconnect); so is
///   a repeat within one request. A call that is still running when it is requested again
///   keeps running (it is not started twice) and moves to the new request's batch, so that
///   batch's last result is the one that asks the model to go on.
/// - **Failures** (`Err`, panic, timeout, bad arguments, unknown tool, denial) are results
///   too: `output = Err(text)` for the model, plus a non-fatal [`ErrorEvent`] (source
///   `tool:<name>`, kind [`ErrorKind::Tool`], code = the call id) and a log line.
/// - **Provider cancellation** ([`ToolCallCancelled`], e.g. Gemini `toolCallCancellation`):
///   the running call is aborted (its future is dropped) and produces **no** result; the
///   provider withdrew it and would reject an answer. A call id cancelled before its
///   request arrives is never run. If a cancelled call was the last one outstanding in its
///   batch, no result of that batch carries `request_response` (Gemini, the only provider
///   that cancels, goes on by itself).
/// - **Barge-in** ([`Interrupted`](liveagent_core::Interrupted)) does **not** cancel running
///   tools: they finish and report, so the model learns what was done (a booking made
///   while the user spoke over the model is still made).
/// - When the executor stops (the conversation ends), calls still running are dropped.
///
/// ```
/// use liveagent_core::*;
/// use liveagent_tools::{Tool, ToolError, Toolbox, ToolExecutor};
/// use futures_util::StreamExt;
/// # #[derive(serde::Deserialize, schemars::JsonSchema)] struct SumArgs { a: i64, b: i64 }
///
/// # actix::System::new().block_on(async {
/// let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
/// let toolbox = Toolbox::new().tool(Tool::new("sum", "Sum two numbers.", |a: SumArgs| async move {
///     Ok::<_, ToolError>(a.a + a.b)
/// }));
/// let mut results = ctx.stream().only::<ToolResult>();
/// ToolExecutor::start(toolbox, ctx.clone());
/// ctx.publish(ToolCallRequested { calls: vec![ToolCall {
///     call_id: "c1".into(), name: "sum".into(),
///     arguments: serde_json::json!({"a": 2, "b": 2}), response_id: None,
/// }]});
/// let result = results.next().await.unwrap();
/// assert_eq!(result.output, Ok(serde_json::json!(4)));
/// assert!(result.request_response);
/// # });
/// ```
pub struct ToolExecutor {
    toolbox: Toolbox,
    context: ConversationContext,
    running: HashMap<Id, Running>,
    batches: HashMap<u64, usize>,
    next_batch: u64,
    done: HashSet<Id>,
    done_order: VecDeque<Id>,
    /// Calls waiting for a free slot, oldest first (entries cancelled meanwhile are skipped).
    queue: VecDeque<ToolCall>,
    /// Calls running now.
    active: usize,
    /// Refused calls (past the per-response cap) still to answer, with their batch.
    refusals: VecDeque<(ToolCall, u64, std::sync::Arc<str>)>,
}

/// Error results of refused calls published per 5 ms (about 50,000 a second).
const REFUSALS_PER_TICK: usize = 256;

impl ToolExecutor {
    /// Starts an executor for `toolbox` on `context`'s bus, on the current arbiter (call
    /// inside a running actix System). It is subscribed before this returns, so calls
    /// published afterwards are not missed. Each plugin's
    /// [`Plugin::on_start`](crate::Plugin::on_start) runs here.
    ///
    /// Tools run on the executor's arbiter: a tool that blocks its thread (CPU-heavy work,
    /// blocking I/O) blocks everything else on that arbiter. Use
    /// `tokio::task::spawn_blocking` inside such tools, or start the executor on an arbiter
    /// of its own with [`start_on`](Self::start_on).
    pub fn start(toolbox: Toolbox, context: ConversationContext) -> Addr<ToolExecutor> {
        for plugin in toolbox.plugins() {
            plugin.on_start(&context);
        }
        ToolExecutor::create(move |ctx| {
            Self::subscribe(&context, &ctx.address());
            ToolExecutor::new(toolbox, context)
        })
    }

    /// Like [`start`](Self::start), but the executor (and so every tool call) runs on
    /// `arbiter`, a thread of its own: tools that block cannot stall the session, the audio
    /// or the bus. Also subscribed before this returns.
    ///
    /// ```
    /// # actix::System::new().block_on(async {
    /// let ctx = liveagent_core::ConversationContext::new(liveagent_core::EventBus::start_default(), 24_000, 24_000);
    /// let tools_thread = actix::Arbiter::new();
    /// liveagent_tools::ToolExecutor::start_on(&tools_thread.handle(), liveagent_tools::Toolbox::new(), ctx);
    /// # });
    /// ```
    pub fn start_on(
        arbiter: &actix::ArbiterHandle,
        toolbox: Toolbox,
        context: ConversationContext,
    ) -> Addr<ToolExecutor> {
        for plugin in toolbox.plugins() {
            plugin.on_start(&context);
        }
        let for_actor = context.clone();
        let addr =
            ToolExecutor::start_in_arbiter(arbiter, move |_| ToolExecutor::new(toolbox, for_actor));
        Self::subscribe(&context, &addr);
        addr
    }

    fn new(toolbox: Toolbox, context: ConversationContext) -> Self {
        ToolExecutor {
            toolbox,
            context,
            running: HashMap::new(),
            batches: HashMap::new(),
            next_batch: 0,
            done: HashSet::new(),
            done_order: VecDeque::new(),
            queue: VecDeque::new(),
            active: 0,
            refusals: VecDeque::new(),
        }
    }

    /// Starts `call` (part of `batch`) now.
    fn start_call(&mut self, call: ToolCall, batch: u64, ctx: &mut Context<Self>) {
        let call_id = call.call_id.clone();
        let name = call.name.clone();
        tracing::debug!(tool = %name, %call_id, "tool call started");
        let toolbox = self.toolbox.clone();
        let conversation = self.context.clone();
        let id = call_id.clone();
        let handle = ctx.spawn(
            async move { toolbox.run(call, Some(conversation)).await }
                .into_actor(self)
                .map(move |output, act, ctx| act.finished(id, name, output, ctx)),
        );
        self.active += 1;
        self.running.insert(
            call_id,
            Running {
                batch,
                handle: Some(handle),
            },
        );
    }

    /// Publishes the error results of refused calls, [`REFUSALS_PER_TICK`] at a time, so a
    /// flood does not fill the bus queues of the session (which would then be unsubscribed
    /// as stuck).
    fn answer_refusals(&mut self, ctx: &mut Context<Self>) {
        for _ in 0..REFUSALS_PER_TICK {
            let Some((call, batch, text)) = self.refusals.pop_front() else {
                return;
            };
            let last = self.settle(batch);
            self.remember(call.call_id.clone());
            self.context.publish(ToolResult {
                call_id: call.call_id,
                name: call.name,
                output: Err(text.to_string()),
                request_response: last,
            });
        }
        if !self.refusals.is_empty() {
            ctx.run_later(std::time::Duration::from_millis(5), |act, ctx| {
                act.answer_refusals(ctx)
            });
        }
    }

    /// Starts waiting calls while there are free slots.
    fn start_queued(&mut self, ctx: &mut Context<Self>) {
        let limit = self.toolbox.concurrent_call_limit();
        while self.active < limit {
            let Some(call) = self.queue.pop_front() else {
                return;
            };
            let batch = match self.running.get(&call.call_id) {
                Some(Running {
                    batch,
                    handle: None,
                }) => *batch,
                _ => continue, // cancelled while waiting
            };
            self.start_call(call, batch, ctx);
        }
    }

    fn subscribe(context: &ConversationContext, addr: &Addr<ToolExecutor>) {
        context.subscribe_with(
            liveagent_core::Subscribe::recipient(addr.clone().recipient::<ToolCallRequested>())
                .label("tool-executor"),
        );
        context.subscribe_with(
            liveagent_core::Subscribe::recipient(addr.clone().recipient::<ToolCallCancelled>())
                .label("tool-executor"),
        );
    }

    fn remember(&mut self, call_id: Id) {
        if self.done.insert(call_id.clone()) {
            self.done_order.push_back(call_id);
            while self.done_order.len() > REMEMBERED_CALLS {
                if let Some(old) = self.done_order.pop_front() {
                    self.done.remove(&old);
                }
            }
        }
    }

    /// Counts one call of `batch` as settled; true when it was the last one.
    fn settle(&mut self, batch: u64) -> bool {
        match self.batches.get_mut(&batch) {
            Some(left) if *left > 1 => {
                *left -= 1;
                false
            }
            Some(_) => {
                self.batches.remove(&batch);
                true
            }
            None => false,
        }
    }

    fn finished(
        &mut self,
        call_id: Id,
        name: std::sync::Arc<str>,
        output: crate::ToolOutcome,
        ctx: &mut Context<Self>,
    ) {
        let Some(running) = self.running.remove(&call_id) else {
            // Cancelled meanwhile: the provider withdrew it, no result.
            return;
        };
        if running.handle.is_some() {
            self.active = self.active.saturating_sub(1);
        }
        self.start_queued(ctx);
        let last = self.settle(running.batch);
        self.remember(call_id.clone());
        match &output {
            Ok(_) => tracing::debug!(tool = %name, %call_id, "tool call done"),
            Err(text) => {
                tracing::warn!(tool = %name, %call_id, error = %text, "tool call failed");
                self.context.publish(ErrorEvent::new(
                    format!("tool:{name}"),
                    LiveError::new(ErrorKind::Tool, text.clone()).with_code(call_id.to_string()),
                ));
            }
        }
        self.context.publish(ToolResult {
            call_id,
            name,
            output,
            request_response: last,
        });
    }
}

impl Actor for ToolExecutor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        tracing::debug!(tools = self.toolbox.len(), "tool executor started");
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if !self.running.is_empty() {
            tracing::warn!(
                running = self.running.len(),
                "tool executor stopped with calls still running; they were dropped"
            );
        }
    }
}

impl Handler<ToolCallRequested> for ToolExecutor {
    type Result = ();

    fn handle(&mut self, msg: ToolCallRequested, ctx: &mut Context<Self>) {
        let mut seen = HashSet::new();
        let mut fresh = Vec::new();
        let mut adopted = Vec::new();
        for call in msg.calls {
            if !seen.insert(call.call_id.clone()) || self.done.contains(&call.call_id) {
                tracing::debug!(call_id = %call.call_id, tool = %call.name,
                    "ignoring a repeated request for a call that was answered (or repeated in one request)");
            } else if self.running.contains_key(&call.call_id) {
                tracing::debug!(call_id = %call.call_id, tool = %call.name,
                    "a running call was requested again; it keeps running and joins the new batch");
                adopted.push(call.call_id);
            } else {
                fresh.push(call);
            }
        }
        if fresh.is_empty() && adopted.is_empty() {
            return;
        }
        let batch = self.next_batch;
        self.next_batch += 1;
        self.batches.insert(batch, fresh.len() + adopted.len());
        let limit = self.toolbox.calls_per_response_limit();
        let refused = if fresh.len() > limit {
            fresh.split_off(limit)
        } else {
            Vec::new()
        };
        // A running call requested again belongs to the new batch from now on, so the new
        // batch's last result (and only it) asks the model to go on.
        for call_id in adopted {
            let old = match self.running.get(&call_id) {
                Some(running) => running.batch,
                None => continue,
            };
            self.settle(old);
            if let Some(running) = self.running.get_mut(&call_id) {
                running.batch = batch;
            }
        }
        if !refused.is_empty() {
            let total = limit + refused.len();
            tracing::warn!(
                calls = total,
                limit,
                "a model response asked for more tool calls than allowed; the excess is answered with an error"
            );
            self.context.publish(ErrorEvent::new(
                "tools",
                LiveError::new(
                    ErrorKind::Tool,
                    format!(
                        "a model response asked for {total} tool calls; {} past the limit of {limit} were answered with an error and not run",
                        refused.len()
                    ),
                ),
            ));
            let text: std::sync::Arc<str> = format!(
                "not run: the response asked for {total} tool calls and at most {limit} are run per response; ask again for fewer"
            )
            .into();
            let was_idle = self.refusals.is_empty();
            self.refusals
                .extend(refused.into_iter().map(|c| (c, batch, text.clone())));
            if was_idle {
                self.answer_refusals(ctx);
            }
        }
        let slots = self.toolbox.concurrent_call_limit();
        for call in fresh {
            if self.active < slots {
                self.start_call(call, batch, ctx);
            } else {
                self.running.insert(
                    call.call_id.clone(),
                    Running {
                        batch,
                        handle: None,
                    },
                );
                self.queue.push_back(call);
            }
        }
    }
}

impl Handler<ToolCallCancelled> for ToolExecutor {
    type Result = ();

    fn handle(&mut self, msg: ToolCallCancelled, ctx: &mut Context<Self>) {
        for call_id in msg.call_ids {
            if let Some(running) = self.running.remove(&call_id) {
                if let Some(handle) = running.handle {
                    ctx.cancel_future(handle);
                    self.active = self.active.saturating_sub(1);
                }
                self.settle(running.batch);
                tracing::info!(%call_id, "tool call cancelled by the provider; aborted, no result");
            } else if !self.done.contains(&call_id) {
                tracing::debug!(%call_id, "cancellation for a call not yet requested; it will not run");
            }
            self.remember(call_id);
        }
        self.start_queued(ctx);
    }
}
