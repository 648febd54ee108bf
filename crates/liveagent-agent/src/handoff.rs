//! Handoff: an [`Agent`] as a [`Tool`] a live voice agent can call (AG2 `Agent.as_tool`).
//!
//! The tool is named `task_<agent name>` and takes `objective` (what to do) and `context`
//! (what the sub-agent needs to know; optional), as AG2's subagent tool does; the
//! sub-agent is asked `"{objective}\n\n## Context\n{context}"`. While it works the tool
//! publishes, on the conversation it runs in, [`TaskStarted`], a [`ToolProgress`] per
//! step (each completion, each of the sub-agent's own tool calls starting and ending),
//! then [`TaskCompleted`] or [`TaskFailed`]. The sub-agent's tools run in the same
//! conversation, so their own `cx.progress(..)` and `cx.input(..)` reach it too.
//!
//! A stateful handoff ([`Handoff::stateful`]) keeps the sub-agent's conversation across
//! calls, per live conversation: the history is a conversation variable (so it lives as
//! long as the conversation, reconnects included), and two concurrent calls each append
//! their own exchange.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use liveagent_core::{TaskCompleted, TaskFailed, TaskStarted, ToolProgress, Usage, Variables};
use liveagent_tools::{Tool, ToolContext, ToolError, ToolMiddleware};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use crate::agent::{Agent, Step};
use crate::wire::{ChatMessage, ChatUsage};

/// The arguments of a handoff tool (AG2's `objective` and `context`).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
pub struct HandoffRequest {
    /// What the agent should do, in full: it does not hear the conversation.
    pub objective: String,
    /// Anything else it needs to know (facts from the conversation, constraints).
    #[serde(default)]
    pub context: String,
}

impl HandoffRequest {
    /// The message the sub-agent receives: the objective, then the context under a
    /// `## Context` heading when there is one (AG2's layout).
    pub fn prompt(&self) -> String {
        if self.context.trim().is_empty() {
            self.objective.clone()
        } else {
            format!("{}\n\n## Context\n{}", self.objective, self.context)
        }
    }
}

/// Builds the tool of a handoff: [`Agent::handoff`]. `Into<Tool>`, so it can be given to
/// anything that takes a tool with `.into()`, or finished with [`tool`](Self::tool).
///
/// ```
/// use liveagent_agent::Agent;
/// let billing = Agent::new("billing", "You answer billing questions.", "gpt-4o-mini");
/// let tool = billing
///     .handoff("Ask the billing specialist.")
///     .stateful()
///     .tool();
/// assert_eq!(tool.name().as_ref(), "task_billing");
/// assert_eq!(tool.parameters()["required"], serde_json::json!(["objective"]));
/// ```
pub struct Handoff {
    agent: Agent,
    name: Option<Arc<str>>,
    description: Arc<str>,
    stateful: bool,
    middleware: Vec<Box<dyn FnOnce(Tool) -> Tool>>,
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff")
            .field("agent", &self.agent)
            .field("name", &self.name)
            .field("stateful", &self.stateful)
            .field("middleware", &self.middleware.len())
            .finish()
    }
}

static TASKS: AtomicU64 = AtomicU64::new(0);

impl Handoff {
    pub(crate) fn new(agent: Agent, description: Arc<str>) -> Self {
        Handoff {
            agent,
            name: None,
            description,
            stateful: false,
            middleware: Vec::new(),
        }
    }

    /// The tool name (default `task_<agent name>`, characters other than ASCII letters,
    /// digits, `_` and `-` replaced by `_`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Keeps the sub-agent's conversation across calls (per live conversation) instead of
    /// starting afresh each time.
    pub fn stateful(mut self) -> Self {
        self.stateful = true;
        self
    }

    /// Adds middleware around this tool only (AG2 `as_tool(middleware=[...])`); first
    /// added = outermost.
    pub fn middleware(mut self, middleware: impl ToolMiddleware) -> Self {
        self.middleware
            .push(Box::new(move |tool: Tool| tool.middleware(middleware)));
        self
    }

    /// The default tool name for an agent called `agent`: `task_<agent>`.
    pub fn default_name(agent: &str) -> String {
        let clean: String = agent
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("task_{clean}")
    }

    /// The tool.
    pub fn tool(self) -> Tool {
        let tool = self.build();
        self.middleware
            .into_iter()
            .fold(tool, |tool, add| add(tool))
    }

    fn build(&self) -> Tool {
        let agent = self.agent.clone();
        let name: Arc<str> = match &self.name {
            Some(n) => n.clone(),
            None => Self::default_name(agent.name()).into(),
        };
        let limit = agent
            .timeout
            .saturating_mul(agent.max_rounds.saturating_add(1));
        let stateful = self.stateful;
        // Without a live conversation (a turn-based caller), a stateful handoff keeps its
        // history here.
        let own = Variables::new();
        Tool::with_context(
            name,
            self.description.clone(),
            move |args: HandoffRequest, cx: ToolContext| {
                let agent = agent.clone();
                let own = own.clone();
                async move { run(&agent, args, cx, stateful.then_some(&own)).await }
            },
        )
        .timeout(limit)
    }
}

impl From<Handoff> for Tool {
    fn from(h: Handoff) -> Tool {
        h.tool()
    }
}

/// One call of a handoff tool.
async fn run(
    agent: &Agent,
    args: HandoffRequest,
    cx: ToolContext,
    own: Option<&Variables>,
) -> Result<String, ToolError> {
    let conversation = cx.conversation().cloned();
    let call_id = cx.call_id().clone();
    let tool = cx.tool_name().clone();
    let agent_name: Arc<str> = agent.name().into();
    let objective: Arc<str> = args.objective.as_str().into();
    let task_id: Arc<str> = format!(
        "task_{}_{}",
        TASKS.fetch_add(1, Ordering::Relaxed) + 1,
        call_id
    )
    .into();
    // Stateful: the history lives in the conversation's variables (or the tool's own
    // store without a conversation).
    let store = own.map(|own| match &conversation {
        Some(c) => c.variables().clone(),
        None => own.clone(),
    });
    let key = format!("__handoff.{tool}.history");
    let history: Vec<ChatMessage> = match &store {
        Some(vars) => vars.get(&key).ok().flatten().unwrap_or_default(),
        None => Vec::new(),
    };
    let kept = history.len();
    let publish = |event: liveagent_core::LiveEvent| {
        if let Some(c) = &conversation {
            c.publish(event);
        }
    };
    publish(
        TaskStarted {
            task_id: task_id.clone(),
            call_id: call_id.clone(),
            tool: tool.clone(),
            agent: agent_name.clone(),
            objective: objective.clone(),
        }
        .into(),
    );
    let on_step = |step: Step<'_>| {
        let (message, data) = match step {
            Step::Replied { request } => (
                format!("{agent_name}: completion {request} received"),
                json!({"task_id": &*task_id, "step": "completion", "request": request}),
            ),
            Step::ToolCalled { name, arguments } => (
                format!("{agent_name}: calling {name}"),
                json!({"task_id": &*task_id, "step": "tool_call", "tool": name, "arguments": arguments}),
            ),
            Step::ToolFinished { name, ok } => (
                format!(
                    "{agent_name}: {name} {}",
                    if ok { "done" } else { "failed" }
                ),
                json!({"task_id": &*task_id, "step": "tool_result", "tool": name, "ok": ok}),
            ),
        };
        publish(
            ToolProgress {
                call_id: call_id.clone(),
                tool: tool.clone(),
                message: message.into(),
                data: Some(data),
            }
            .into(),
        );
    };
    let outcome = agent
        .ask_observed(history, &args.prompt(), conversation.clone(), &on_step)
        .await;
    match outcome {
        Ok(reply) => {
            if let Some(vars) = &store {
                // Append this exchange to whatever is stored now (a concurrent call may
                // have added its own meanwhile).
                let new: Vec<ChatMessage> =
                    reply.messages[kept.min(reply.messages.len())..].to_vec();
                let _ = vars.update(&key, |old: Option<Vec<ChatMessage>>| {
                    let mut all = old.unwrap_or_default();
                    all.extend(new);
                    all
                });
            }
            publish(
                TaskCompleted {
                    task_id,
                    call_id,
                    tool,
                    agent: agent_name,
                    objective,
                    result: reply.text.as_str().into(),
                    usage: usage(&reply.usage),
                }
                .into(),
            );
            Ok(reply.text)
        }
        Err(e) => {
            let error = e.to_string();
            publish(
                TaskFailed {
                    task_id,
                    call_id,
                    tool,
                    agent: agent_name,
                    objective,
                    error: error.as_str().into(),
                }
                .into(),
            );
            Err(ToolError::msg(error))
        }
    }
}

fn usage(u: &ChatUsage) -> Usage {
    Usage {
        input_tokens: u.prompt_tokens,
        output_tokens: u.completion_tokens,
        total_tokens: u.total_tokens,
        ..Usage::default()
    }
}

impl Agent {
    /// This agent as a tool (AG2 `agent.as_tool(description=...)`): named
    /// `task_<agent name>`, taking `objective` and an optional `context`, returning the
    /// agent's text answer (a failure is the tool's error result). It reports its progress
    /// on the conversation as [`TaskStarted`], [`ToolProgress`] and [`TaskCompleted`] /
    /// [`TaskFailed`] events (see [`handoff`](crate::handoff)). Its timeout is the agent's
    /// request timeout times `max_rounds + 1` (change it with [`Tool::timeout`]); rename it
    /// with [`Tool::rename`], add middleware with [`Tool::middleware`], or use
    /// [`handoff`](Self::handoff) for a stateful tool.
    ///
    /// ```
    /// use liveagent_agent::Agent;
    /// let tool = Agent::new("billing", "You answer billing questions.", "gpt-4o-mini")
    ///     .as_tool("Ask the billing specialist a question.");
    /// assert_eq!(tool.name().as_ref(), "task_billing");
    /// assert_eq!(tool.parameters()["properties"]["context"]["type"], "string");
    /// ```
    pub fn as_tool(&self, description: impl Into<Arc<str>>) -> Tool {
        self.handoff(description).tool()
    }

    /// A handoff tool to configure: [`name`](Handoff::name),
    /// [`stateful`](Handoff::stateful), [`middleware`](Handoff::middleware).
    pub fn handoff(&self, description: impl Into<Arc<str>>) -> Handoff {
        Handoff::new(self.clone(), description.into())
    }
}
