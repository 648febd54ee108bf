//! [`Toolbox`]: the tools of an agent and everything around their calls (timeouts,
//! approval, dependencies, middleware, plugins), and [`Plugin`].

use std::collections::HashMap;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use liveagent_core::{ConversationContext, ToolCall, ToolSchema};

use crate::deps::Dependencies;
use crate::hitl::{Approval, HitlHook};
use crate::human::{timeout_excluding_humans, HumanInput, HumanInputHook};
use crate::middleware::{Next, ToolMiddleware};
use crate::tool::{panic_message, Tool, ToolContext, ToolOutcome};

/// The default time a tool may run before its call fails with a timeout (30 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The default time a [`HitlHook`] may take to decide before the call is denied (5 min).
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(300);
/// The default number of tool calls of one conversation running at once (16); the rest
/// wait their turn.
pub const DEFAULT_MAX_CONCURRENT_CALLS: usize = 16;
/// The default number of calls run from one model response (64); the excess is answered
/// with an error output without running.
pub const DEFAULT_MAX_CALLS_PER_RESPONSE: usize = 64;

/// A bundle of tools and middleware added in one call (and a hook to start observers).
///
/// ```
/// use std::sync::Arc;
/// use liveagent_tools::{NoArgs, Plugin, Tool, ToolError, ToolMiddleware, Toolbox};
///
/// struct Clock;
/// impl Plugin for Clock {
///     fn name(&self) -> &str { "clock" }
///     fn tools(&self) -> Vec<Tool> {
///         vec![Tool::new("now", "The UNIX time.", |_: NoArgs| async {
///             Ok::<_, ToolError>(std::time::SystemTime::now()
///                 .duration_since(std::time::UNIX_EPOCH).unwrap().as_secs())
///         })]
///     }
/// }
/// let toolbox = Toolbox::new().plugin(Clock);
/// assert_eq!(toolbox.schemas()[0].name, "now");
/// ```
pub trait Plugin: Send + Sync + 'static {
    /// The plugin's name, for logs.
    fn name(&self) -> &str;

    /// The tools it adds.
    fn tools(&self) -> Vec<Tool> {
        Vec::new()
    }

    /// The middleware it adds (after the middleware registered before the plugin).
    fn middleware(&self) -> Vec<Arc<dyn ToolMiddleware>> {
        Vec::new()
    }

    /// Dependencies its tools need.
    fn dependencies(&self) -> Dependencies {
        Dependencies::new()
    }

    /// Prompt parts it adds after the agent's own (templates, like the agent's prompt).
    fn prompt(&self) -> Vec<String> {
        Vec::new()
    }

    /// A prompt part computed when each conversation opens, from its context (variables,
    /// ...); `None` adds nothing.
    fn prompt_hook(&self, conversation: &ConversationContext) -> Option<String> {
        let _ = conversation;
        None
    }

    /// A hook answering the tools' [`input`](ToolContext::input) questions (used when the
    /// agent sets none itself).
    fn human_input_hook(&self) -> Option<Arc<dyn HumanInputHook>> {
        None
    }

    /// Observers it adds to every conversation.
    fn observers(&self) -> Vec<Arc<dyn liveagent_core::Observer>> {
        Vec::new()
    }

    /// Variables it sets on every conversation (the agent's and the run's own win).
    fn variables(&self) -> Vec<(String, serde_json::Value)> {
        Vec::new()
    }

    /// Called once per conversation when the [`ToolExecutor`](crate::ToolExecutor) starts
    /// on it: the place to subscribe observer actors to the conversation's events.
    fn on_start(&self, conversation: &ConversationContext) {
        let _ = conversation;
    }
}

#[derive(Clone)]
pub(crate) struct Inner {
    pub(crate) tools: Vec<Tool>,
    pub(crate) index: HashMap<Arc<str>, usize>,
    pub(crate) middleware: Vec<Arc<dyn ToolMiddleware>>,
    pub(crate) hitl: Option<Arc<dyn HitlHook>>,
    pub(crate) deps: Dependencies,
    pub(crate) timeout: Duration,
    pub(crate) approval_timeout: Duration,
    pub(crate) plugins: Vec<Arc<dyn Plugin>>,
    pub(crate) human_hook: Option<Arc<dyn HumanInputHook>>,
    pub(crate) human_voice: bool,
    pub(crate) human_timeout: Duration,
    pub(crate) max_concurrent_calls: usize,
    pub(crate) max_calls_per_response: usize,
}

impl Inner {
    pub(crate) fn human_input(&self) -> HumanInput {
        HumanInput {
            hook: self.human_hook.clone(),
            voice: self.human_voice,
            timeout: self.human_timeout,
            middleware: self.middleware.clone(),
        }
    }

    fn get(&self, name: &str) -> Option<&Tool> {
        self.index.get(name).map(|&i| &self.tools[i])
    }

    /// The innermost step of the chain: look the tool up, ask for approval, run it under
    /// its timeout.
    pub(crate) async fn terminal(&self, mut call: ToolCall, cx: ToolContext) -> ToolOutcome {
        let Some(tool) = self.get(&call.name) else {
            let names: Vec<&str> = self.tools.iter().map(|t| t.name().as_ref()).collect();
            return Err(format!(
                "unknown tool `{}`; the available tools are: {}",
                call.name,
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ));
        };
        let cx = if cx.tool_name() != tool.name() {
            cx.for_tool(tool.name().clone())
        } else {
            cx
        };
        if let Some(hook) = &self.hitl {
            match tokio::time::timeout(self.approval_timeout, hook.review(&call, &cx)).await {
                Ok(Approval::Approve) => {}
                Ok(Approval::Deny { reason }) => {
                    tracing::info!(tool = %call.name, call_id = %call.call_id, %reason, "tool call denied");
                    return Err(format!("the call was denied: {reason}"));
                }
                Ok(Approval::Edit { arguments }) => {
                    tracing::info!(tool = %call.name, call_id = %call.call_id, "tool call arguments edited before approval");
                    call.arguments = arguments;
                }
                Err(_) => {
                    return Err(format!(
                        "the call was not approved within {} s and was not run",
                        self.approval_timeout.as_secs_f32()
                    ))
                }
            }
        }
        let limit = tool.timeout_override().unwrap_or(self.timeout);
        let clock = cx.clock().clone();
        // Time spent asking a human (`cx.input(..)`) is not the tool's time.
        let run = async {
            if tool.own_middleware().is_empty() {
                run_off_thread(tool.clone(), call.arguments.clone(), cx).await
            } else {
                // The tool's own middleware: a toolbox of just this tool, inside the limit.
                let mut own = Toolbox::new()
                    .tool(tool.bare())
                    .timeout(limit + limit)
                    .human_input_timeout(self.human_timeout);
                for m in tool.own_middleware() {
                    own = own.middleware_arc(m.clone());
                }
                let boxed: futures_util::future::LocalBoxFuture<'_, ToolOutcome> =
                    Box::pin(own.run_in(call.clone(), cx));
                boxed.await
            }
        };
        match timeout_excluding_humans(limit, &clock, run).await {
            Ok(outcome) => outcome,
            Err(_) => {
                tracing::warn!(tool = %call.name, call_id = %call.call_id, ?limit, "tool call timed out");
                Err(format!(
                    "tool `{}` timed out after {} s",
                    call.name,
                    limit.as_secs_f32()
                ))
            }
        }
    }
}

/// Stops an arbiter when dropped (the call timed out, was cancelled or finished).
struct StopOnDrop(actix::ArbiterHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Runs one tool call on a thread of its own (a fresh actix arbiter), so that a tool that
/// blocks its thread (CPU work, blocking I/O) cannot stall the executor, the session, the
/// bus or the audio, and its call is still answered at its timeout: the caller only awaits
/// a channel. When the caller gives up (timeout, provider cancellation) the arbiter is
/// stopped: an async tool is dropped at its next await; a blocked one ends when its
/// blocking call returns, and its late result is discarded. Outside an actix system the
/// call runs in place.
async fn run_off_thread(tool: Tool, arguments: serde_json::Value, cx: ToolContext) -> ToolOutcome {
    if actix::System::try_current().is_none() {
        return tool.call(arguments, cx).await;
    }
    let name = tool.name().clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let arbiter = actix::Arbiter::new();
    let guard = StopOnDrop(arbiter.handle());
    let spawned = arbiter.spawn_fn(move || {
        actix::spawn(async move {
            let outcome = tool.call(arguments, cx).await;
            let _ = tx.send(outcome);
            actix::Arbiter::current().stop();
        });
    });
    if !spawned {
        return Err(format!("tool `{name}` could not be started"));
    }
    let outcome = rx
        .await
        .unwrap_or_else(|_| Err(format!("tool `{name}` ended without a result")));
    drop(guard);
    outcome
}

impl ToolContext {
    fn with_conversation_opt(self, conversation: Option<ConversationContext>) -> Self {
        match conversation {
            Some(c) => self.with_conversation(c),
            None => self,
        }
    }
}

/// The tools of an agent, with everything around their calls: a default timeout
/// (overridable per [`Tool::timeout`]), an optional approval hook, dependencies,
/// middleware and plugins. Cheap to clone, `Send + Sync`: build it anywhere, then hand it
/// to a [`ToolExecutor`](crate::ToolExecutor) (live sessions) or a turn-based agent.
///
/// A call goes through: middleware (first registered = outermost) → approval hook →
/// the tool under its timeout; then every middleware's `on_result` (innermost first).
///
/// ```
/// use std::time::Duration;
/// use liveagent_tools::{Tool, ToolError, Toolbox};
/// # #[derive(serde::Deserialize, schemars::JsonSchema)] struct SumArgs { a: i64, b: i64 }
///
/// let toolbox = Toolbox::new()
///     .timeout(Duration::from_secs(10))
///     .tool(Tool::new("sum_numbers", "Sum two numbers.", |a: SumArgs| async move {
///         Ok::<_, ToolError>(a.a + a.b)
///     }));
/// # actix::System::new().block_on(async {
/// let call = liveagent_core::ToolCall {
///     call_id: "c1".into(), name: "sum_numbers".into(),
///     arguments: serde_json::json!({"a": 1, "b": 2}), response_id: None,
/// };
/// assert_eq!(toolbox.run(call, None).await, Ok(serde_json::json!(3)));
/// # });
/// ```
#[derive(Clone)]
pub struct Toolbox {
    inner: Arc<Inner>,
}

impl Default for Toolbox {
    fn default() -> Self {
        Toolbox {
            inner: Arc::new(Inner {
                tools: Vec::new(),
                index: HashMap::new(),
                middleware: Vec::new(),
                hitl: None,
                deps: Dependencies::new(),
                timeout: DEFAULT_TIMEOUT,
                approval_timeout: DEFAULT_APPROVAL_TIMEOUT,
                plugins: Vec::new(),
                human_hook: None,
                human_voice: false,
                human_timeout: DEFAULT_APPROVAL_TIMEOUT,
                max_concurrent_calls: DEFAULT_MAX_CONCURRENT_CALLS,
                max_calls_per_response: DEFAULT_MAX_CALLS_PER_RESPONSE,
            }),
        }
    }
}

impl fmt::Debug for Toolbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Toolbox")
            .field(
                "tools",
                &self
                    .inner
                    .tools
                    .iter()
                    .map(|t| t.name())
                    .collect::<Vec<_>>(),
            )
            .field(
                "middleware",
                &self
                    .inner
                    .middleware
                    .iter()
                    .map(|m| m.name())
                    .collect::<Vec<_>>(),
            )
            .field("hitl", &self.inner.hitl.is_some())
            .field("deps", &self.inner.deps)
            .field("timeout", &self.inner.timeout)
            .field("approval_timeout", &self.inner.approval_timeout)
            .field(
                "plugins",
                &self
                    .inner
                    .plugins
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Toolbox {
    /// An empty toolbox with the default timeouts.
    pub fn new() -> Self {
        Self::default()
    }

    fn inner_mut(&mut self) -> &mut Inner {
        Arc::make_mut(&mut self.inner)
    }

    /// Adds a tool. A tool with the same name as an earlier one replaces it (with a warning).
    pub fn tool(mut self, tool: Tool) -> Self {
        self.add_tool(tool);
        self
    }

    /// Adds several tools.
    pub fn tools(mut self, tools: impl IntoIterator<Item = Tool>) -> Self {
        for tool in tools {
            self.add_tool(tool);
        }
        self
    }

    /// Adds a tool (in place).
    pub fn add_tool(&mut self, tool: Tool) {
        let inner = self.inner_mut();
        match inner.index.get(tool.name()) {
            Some(&i) => {
                tracing::warn!(tool = %tool.name(), "a tool with this name was already registered; replacing it");
                inner.tools[i] = tool;
            }
            None => {
                inner.index.insert(tool.name().clone(), inner.tools.len());
                inner.tools.push(tool);
            }
        }
    }

    /// Adds a middleware, inside the ones added before (first added = outermost).
    pub fn middleware(mut self, middleware: impl ToolMiddleware) -> Self {
        self.inner_mut().middleware.push(Arc::new(middleware));
        self
    }

    /// Adds a shared middleware, inside the ones added before.
    pub fn middleware_arc(mut self, middleware: Arc<dyn ToolMiddleware>) -> Self {
        self.inner_mut().middleware.push(middleware);
        self
    }

    /// Sets the approval hook run before every call (replacing any earlier one).
    pub fn hitl(mut self, hook: impl HitlHook) -> Self {
        self.inner_mut().hitl = Some(Arc::new(hook));
        self
    }

    /// Sets a shared approval hook.
    pub fn hitl_arc(mut self, hook: Arc<dyn HitlHook>) -> Self {
        self.inner_mut().hitl = Some(hook);
        self
    }

    /// Sets the hook that answers the tools' [`input`](ToolContext::input) questions (AG2
    /// `hitl_hook` for `HumanInputRequest`), replacing any earlier one. Without one, the
    /// app answers on the bus, or the user by voice (see
    /// [`human_input_voice`](Self::human_input_voice)).
    pub fn human_input(mut self, hook: impl HumanInputHook) -> Self {
        self.inner_mut().human_hook = Some(Arc::new(hook));
        self
    }

    /// Sets a shared human input hook.
    pub fn human_input_arc(mut self, hook: Arc<dyn HumanInputHook>) -> Self {
        self.inner_mut().human_hook = Some(hook);
        self
    }

    /// Voice mode for [`input`](ToolContext::input) questions no hook answers: the agent is
    /// asked to speak the question and the user's next completed utterance (its
    /// transcript) is the answer.
    pub fn human_input_voice(mut self, on: bool) -> Self {
        self.inner_mut().human_voice = on;
        self
    }

    /// How long [`input`](ToolContext::input) waits for an answer (default 5 minutes).
    pub fn human_input_timeout(mut self, timeout: Duration) -> Self {
        self.inner_mut().human_timeout = timeout;
        self
    }

    /// The human input hook, if any.
    pub fn human_input_hook(&self) -> Option<&Arc<dyn HumanInputHook>> {
        self.inner.human_hook.as_ref()
    }

    /// Adds a dependency value (one per type; replaces an earlier value of the same type).
    pub fn dependency<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.inner_mut().deps.insert(value);
        self
    }

    /// Adds every value of `deps`.
    pub fn dependencies(mut self, deps: &Dependencies) -> Self {
        self.inner_mut().deps.extend(deps);
        self
    }

    /// The time a tool may run unless it sets its own [`Tool::timeout`]
    /// (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.inner_mut().timeout = timeout;
        self
    }

    /// How many calls of one conversation the [`ToolExecutor`](crate::ToolExecutor) runs at
    /// once (default [`DEFAULT_MAX_CONCURRENT_CALLS`], at least 1); the rest wait in order.
    pub fn max_concurrent_calls(mut self, n: usize) -> Self {
        self.inner_mut().max_concurrent_calls = n.max(1);
        self
    }

    /// How many calls of one model response the [`ToolExecutor`](crate::ToolExecutor) runs
    /// (default [`DEFAULT_MAX_CALLS_PER_RESPONSE`]); each call past it is answered at once
    /// with an error output saying so (never dropped), so the model hears back about every
    /// call it made.
    pub fn max_calls_per_response(mut self, n: usize) -> Self {
        self.inner_mut().max_calls_per_response = n;
        self
    }

    /// The limit set with [`max_concurrent_calls`](Self::max_concurrent_calls).
    pub fn concurrent_call_limit(&self) -> usize {
        self.inner.max_concurrent_calls
    }

    /// The limit set with [`max_calls_per_response`](Self::max_calls_per_response).
    pub fn calls_per_response_limit(&self) -> usize {
        self.inner.max_calls_per_response
    }

    /// The time the approval hook may take before the call is denied
    /// (default [`DEFAULT_APPROVAL_TIMEOUT`]).
    pub fn approval_timeout(mut self, timeout: Duration) -> Self {
        self.inner_mut().approval_timeout = timeout;
        self
    }

    /// Adds a plugin: its tools, its middleware (after those already added) and its
    /// dependencies; its [`Plugin::on_start`] runs when an executor starts.
    pub fn plugin(self, plugin: impl Plugin) -> Self {
        self.plugin_arc(Arc::new(plugin))
    }

    /// Adds a shared plugin.
    pub fn plugin_arc(mut self, plugin: Arc<dyn Plugin>) -> Self {
        for tool in plugin.tools() {
            self.add_tool(tool);
        }
        let middleware = plugin.middleware();
        let deps = plugin.dependencies();
        let hook = plugin.human_input_hook();
        let inner = self.inner_mut();
        if inner.human_hook.is_none() {
            inner.human_hook = hook;
        }
        inner.middleware.extend(middleware);
        inner.deps.extend(&deps);
        inner.plugins.push(plugin);
        self
    }

    /// The declarations the provider receives, in registration order.
    pub fn schemas(&self) -> Vec<ToolSchema> {
        self.inner.tools.iter().map(Tool::schema).collect()
    }

    /// The tools, in registration order.
    pub fn list(&self) -> &[Tool] {
        &self.inner.tools
    }

    /// The tool called `name`.
    pub fn get(&self, name: &str) -> Option<&Tool> {
        self.inner.get(name)
    }

    /// How many tools there are.
    pub fn len(&self) -> usize {
        self.inner.tools.len()
    }

    /// True when there are no tools.
    pub fn is_empty(&self) -> bool {
        self.inner.tools.is_empty()
    }

    /// The dependencies.
    pub fn deps(&self) -> &Dependencies {
        &self.inner.deps
    }

    /// The plugins, in registration order.
    pub fn plugins(&self) -> &[Arc<dyn Plugin>] {
        &self.inner.plugins
    }

    /// Runs one call through the whole pipeline (middleware, approval, the tool under its
    /// timeout, `on_result`) and returns its outcome. Never panics: every failure is an
    /// `Err` text for the model. `conversation` is what [`ToolContext::conversation`]
    /// returns.
    pub async fn run(
        &self,
        call: ToolCall,
        conversation: Option<ConversationContext>,
    ) -> ToolOutcome {
        let cx = ToolContext::new(call.call_id.clone(), call.name.clone())
            .with_dependencies(self.inner.deps.clone())
            .with_conversation_opt(conversation)
            .with_human(self.inner.human_input());
        self.run_in(call, cx).await
    }

    /// [`run`](Self::run) with a prepared context.
    pub(crate) async fn run_in(&self, call: ToolCall, cx: ToolContext) -> ToolOutcome {
        let original = call.clone();
        let next = Next {
            inner: self.inner.clone(),
            index: 0,
            cx,
        };
        let mut outcome = match AssertUnwindSafe(next.run(call)).catch_unwind().await {
            Ok(outcome) => outcome,
            Err(panic) => Err(panic_message(&original.name, panic)),
        };
        for middleware in self.inner.middleware.iter().rev() {
            let hooked = std::panic::catch_unwind(AssertUnwindSafe(|| {
                middleware.on_result(&original, &mut outcome)
            }));
            if let Err(panic) = hooked {
                outcome = Err(panic_message(&original.name, panic));
            }
        }
        outcome
    }
}
