//! [`RunOptions`]: per-conversation overrides for [`LiveAgent::run_with`](crate::LiveAgent::run_with)
//! (AG2 `agent.run(dependencies=..., variables=..., prompt=..., config=..., tools=...,
//! middleware=..., observers=..., hitl_hook=...)`).

use std::collections::BTreeMap;
use std::sync::Arc;

use liveagent_core::{
    ConversationContext, EventFilter, LiveEvent, Observer as LiveObserver, RealtimeConfig,
};
use liveagent_tools::{HitlHook, HumanInputHook, Tool, ToolMiddleware, Toolbox};
use serde_json::Value;

use liveagent_store::{ConversationId, ConversationState, ConversationStore, ResumeToken};

use crate::agent::Observer;
use crate::prompt::PromptPart;

type ToolboxEdit = Box<dyn FnOnce(Toolbox) -> Toolbox + Send>;

/// What one conversation changes from its agent. Everything is optional; what is given is
/// added to the agent's (tools, middleware, observers, dependencies, variables: the run's
/// value wins) or replaces it (prompt, config, hooks).
///
/// ```no_run
/// use liveagent::{openai, LiveAgent, RunOptions, Tool, ToolError, NoArgs};
/// # fn demo(agent: LiveAgent) -> Result<(), liveagent::LiveError> {
/// let conversation = agent.run_with(
///     RunOptions::new()
///         .variable("user", "Grace")
///         .prompt("Speak French.")
///         .config(openai::RealtimeConfig::new("gpt-realtime-mini"))
///         .tool(Tool::new("now", "The time.", |_: NoArgs| async { Ok::<_, ToolError>("noon") })),
/// )?;
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct RunOptions {
    pub(crate) variables: BTreeMap<String, Value>,
    pub(crate) prompt: Option<Vec<PromptPart>>,
    pub(crate) config: Option<Arc<dyn RealtimeConfig>>,
    pub(crate) tools: Vec<Tool>,
    pub(crate) toolbox_edits: Vec<ToolboxEdit>,
    pub(crate) observers: Vec<Observer>,
    pub(crate) live_observers: Vec<Arc<dyn LiveObserver>>,
    pub(crate) human_input: Option<Arc<dyn HumanInputHook>>,
    pub(crate) hitl: Option<Arc<dyn HitlHook>>,
    pub(crate) store: Option<Arc<dyn ConversationStore>>,
    pub(crate) conversation_id: Option<ConversationId>,
    pub(crate) resume_token: Option<ResumeToken>,
    pub(crate) resume: Option<ConversationState>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("variables", &self.variables.keys().collect::<Vec<_>>())
            .field("prompt", &self.prompt)
            .field("config", &self.config)
            .field(
                "tools",
                &self.tools.iter().map(|t| t.name()).collect::<Vec<_>>(),
            )
            .field(
                "observers",
                &(self.observers.len() + self.live_observers.len()),
            )
            .finish_non_exhaustive()
    }
}

impl RunOptions {
    /// No overrides.
    pub fn new() -> Self {
        RunOptions::default()
    }

    /// Sets a variable for this conversation (wins over the agent's). Values that cannot
    /// be JSON are skipped with a warning.
    pub fn variable(mut self, name: impl Into<String>, value: impl serde::Serialize) -> Self {
        let name = name.into();
        match serde_json::to_value(value) {
            Ok(v) => {
                self.variables.insert(name, v);
            }
            Err(e) => {
                tracing::warn!(variable = %name, error = %e, "run variable skipped: not serializable")
            }
        }
        self
    }

    /// Replaces the agent's prompt for this conversation with these parts (call again to
    /// add more parts), as AG2's `run(prompt=[...])` does.
    pub fn prompt(mut self, part: impl Into<PromptPart>) -> Self {
        self.prompt.get_or_insert_with(Vec::new).push(part.into());
        self
    }

    /// Uses this provider configuration instead of the agent's.
    pub fn config(mut self, config: impl RealtimeConfig) -> Self {
        self.config = Some(Arc::new(config));
        self
    }

    /// Adds a tool for this conversation (a name the agent already has is an error).
    pub fn tool(mut self, tool: Tool) -> Self {
        self.tools.push(tool);
        self
    }

    /// Adds tool middleware for this conversation (inside the agent's).
    pub fn middleware(mut self, middleware: impl ToolMiddleware) -> Self {
        self.toolbox_edits
            .push(Box::new(move |t| t.middleware(middleware)));
        self
    }

    /// Adds a dependency for this conversation (replaces the agent's of the same type).
    pub fn dependency<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.toolbox_edits
            .push(Box::new(move |t| t.dependency(value)));
        self
    }

    /// Adds an observer (closure, built-in or your own) for this conversation.
    pub fn watch(mut self, observer: impl LiveObserver) -> Self {
        self.live_observers.push(Arc::new(observer));
        self
    }

    /// Adds an observer actor for this conversation (see
    /// [`LiveAgentBuilder::observer`](crate::LiveAgentBuilder::observer)).
    pub fn observer<F>(mut self, filter: EventFilter, factory: F) -> Self
    where
        F: Fn(&ConversationContext) -> actix::Recipient<LiveEvent> + Send + Sync + 'static,
    {
        self.observers.push(Observer {
            filter,
            factory: Arc::new(factory),
        });
        self
    }

    /// Uses this approval hook instead of the agent's.
    pub fn hitl_hook(mut self, hook: impl HitlHook) -> Self {
        self.hitl = Some(Arc::new(hook));
        self
    }

    /// Uses this human input hook instead of the agent's.
    pub fn human_input(mut self, hook: impl HumanInputHook) -> Self {
        self.human_input = Some(Arc::new(hook));
        self
    }

    /// Records this conversation in `store` (instead of the agent's
    /// [`store`](crate::LiveAgentBuilder::store), or where the agent has none).
    pub fn store(mut self, store: Arc<dyn ConversationStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// With a store: the id this new conversation is stored under (default: a random one).
    pub fn conversation_id(mut self, id: ConversationId) -> Self {
        self.conversation_id = Some(id);
        self
    }

    /// With a store: the token a client shows to resume this conversation elsewhere
    /// (default: a random one), stored with it.
    pub fn resume_token(mut self, token: ResumeToken) -> Self {
        self.resume_token = Some(token);
        self
    }

    /// Picks up `state`, a conversation loaded from the store (another instance held it):
    /// the new provider session is restored from it (its history replayed, or Gemini's
    /// resumption handle used), its variables are set, the store recorder takes the
    /// conversation's lease over and goes on writing it, and the tool calls the lost
    /// instance left in flight run once here (see `liveagent_store`'s "Tool results across
    /// instances"). Needs a store (the agent's or [`store`](Self::store)). Load `state`
    /// with [`liveagent_store::resume::load_for_resume`] to check the client's token.
    pub fn resume(mut self, state: ConversationState) -> Self {
        self.resume = Some(state);
        self
    }
}
