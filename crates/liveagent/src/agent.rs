//! [`LiveAgent`] and its builder.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use liveagent_core::{
    ConversationContext, EventBus, EventFilter, EventMiddleware, LiveError, LiveEvent,
    RealtimeConfig, SessionSetup,
};
use liveagent_session::SessionOptions;
use liveagent_tools::{HitlHook, Plugin, Tool, ToolMiddleware, Toolbox};

use crate::conversation::Conversation;
use crate::prompt::render_prompt;

/// Why a [`LiveAgent`] could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The name is empty or blank.
    #[error("the agent needs a non-empty name")]
    EmptyName,
    /// No provider configuration was given.
    #[error("the agent needs a provider configuration: call .config(openai::RealtimeConfig::new(..)) or gemini")]
    MissingConfig,
    /// The prompt uses a `{variable}` that was not given.
    #[error("the prompt uses {{{0}}} but no variable of that name was given")]
    MissingVariable(String),
    /// The prompt has a stray brace.
    #[error("malformed prompt: {0}")]
    MalformedPrompt(String),
    /// Two tools share a name.
    #[error("two tools are named `{0}`")]
    DuplicateTool(String),
    /// A tool name providers would reject (they allow `^[a-zA-Z0-9_-]{{1,64}}$`).
    #[error("tool name `{0}` is invalid: use 1 to 64 letters, digits, `_` or `-`")]
    InvalidToolName(String),
}

impl From<BuildError> for LiveError {
    fn from(e: BuildError) -> Self {
        LiveError::config(e.to_string())
    }
}

type ObserverFactory = Arc<dyn Fn(&ConversationContext) -> Recipient<LiveEvent> + Send + Sync>;

/// An observer: an actor made for each conversation and subscribed to some event kinds.
#[derive(Clone)]
pub(crate) struct Observer {
    pub(crate) filter: EventFilter,
    pub(crate) factory: ObserverFactory,
}

impl Observer {
    pub(crate) fn attach(&self, context: &ConversationContext) {
        let recipient = (self.factory)(context);
        context.subscribe_filtered(self.filter, recipient);
    }
}

/// A full-duplex voice agent: a provider configuration, a prompt, tools and everything
/// around them. Build one with [`LiveAgent::builder`], then [`run`](LiveAgent::run) it (or
/// run it through a [`LiveAgentSystem`](crate::LiveAgentSystem)) to get a
/// [`Conversation`].
///
/// An agent is a description: cheap to clone, and every `run()` starts a new, independent
/// conversation from it.
///
/// ```no_run
/// use liveagent::{openai, LiveAgent, Tool, ToolError};
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct SumArgs { a: i64, b: i64 }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let agent = LiveAgent::builder("assistant")
///     .prompt("You are a helpful voice assistant for {user}.")
///     .variable("user", "Ada")
///     .config(openai::RealtimeConfig::new("gpt-realtime-2"))
///     .tool(Tool::new("sum_numbers", "Sum two numbers.", |a: SumArgs| async move {
///         Ok::<_, ToolError>(a.a + a.b)
///     }))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LiveAgent {
    pub(crate) name: Arc<str>,
    pub(crate) instructions: String,
    pub(crate) config: Arc<dyn RealtimeConfig>,
    pub(crate) toolbox: Toolbox,
    pub(crate) observers: Vec<Observer>,
    pub(crate) session_options: SessionOptions,
}

impl std::fmt::Debug for LiveAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveAgent")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("toolbox", &self.toolbox)
            .field("observers", &self.observers.len())
            .finish()
    }
}

impl LiveAgent {
    /// Starts building an agent called `name`.
    pub fn builder(name: impl Into<String>) -> LiveAgentBuilder {
        LiveAgentBuilder::new(name)
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The system prompt with the variables substituted.
    pub fn instructions(&self) -> &str {
        &self.instructions
    }

    /// The provider configuration.
    pub fn config(&self) -> &dyn RealtimeConfig {
        &*self.config
    }

    /// The agent's tools, middleware, hook and dependencies.
    pub fn toolbox(&self) -> &Toolbox {
        &self.toolbox
    }

    /// Starts a conversation on the current actix system: an event bus, the provider
    /// session (supervised), the tool executor and the observers. Peers such as the
    /// recorder and the player attach to the returned conversation's context.
    ///
    /// Must be called from inside a running actix system (`#[actix::main]`,
    /// `actix_web::main`, `System::new().block_on(..)`).
    pub fn run(&self) -> Result<Conversation, LiveError> {
        self.run_with_observers(&[])
    }

    pub(crate) fn run_with_observers(&self, extra: &[Observer]) -> Result<Conversation, LiveError> {
        let setup = SessionSetup {
            instructions: self.instructions.clone(),
            tools: self.toolbox.schemas(),
        };
        let protocol = self.config.build_protocol(setup)?;
        let bus = EventBus::start_default();
        let context = ConversationContext::new(
            bus.clone(),
            self.config.input_sample_rate(),
            self.config.output_sample_rate(),
        );
        // Observers first, so they see the session open.
        for observer in self.observers.iter().chain(extra) {
            observer.attach(&context);
        }
        let executor = liveagent_tools::ToolExecutor::start(self.toolbox.clone(), context.clone());
        let session = liveagent_session::start_session(
            protocol,
            context.clone(),
            self.session_options.clone(),
        );
        tracing::info!(agent = %self.name, provider = self.config.provider(), "conversation started");
        Ok(Conversation::new(
            self.name.clone(),
            context,
            bus,
            session,
            executor,
        ))
    }
}

/// Builds a [`LiveAgent`]; mirrors the Python `LiveAgent(...)` constructor: name, prompt,
/// config, tools, middleware, observers, dependencies, variables, plugins, hitl_hook.
pub struct LiveAgentBuilder {
    name: String,
    prompt: String,
    config: Option<Arc<dyn RealtimeConfig>>,
    tools: Vec<Tool>,
    toolbox: Toolbox,
    variables: BTreeMap<String, String>,
    observers: Vec<Observer>,
    session_options: SessionOptions,
}

impl LiveAgentBuilder {
    fn new(name: impl Into<String>) -> Self {
        LiveAgentBuilder {
            name: name.into(),
            prompt: String::new(),
            config: None,
            tools: Vec::new(),
            toolbox: Toolbox::new(),
            variables: BTreeMap::new(),
            observers: Vec::new(),
            session_options: SessionOptions::default(),
        }
    }

    /// The system prompt. `{name}` placeholders are filled from [`variable`](Self::variable).
    pub fn prompt(mut self, prompt: impl Into<String>) -> Self {
        self.prompt = prompt.into();
        self
    }

    /// The provider configuration: `openai::RealtimeConfig` or `gemini::RealtimeConfig`.
    pub fn config(mut self, config: impl RealtimeConfig) -> Self {
        self.config = Some(Arc::new(config));
        self
    }

    /// The provider configuration, shared.
    pub fn config_arc(mut self, config: Arc<dyn RealtimeConfig>) -> Self {
        self.config = Some(config);
        self
    }

    /// Adds a tool the model may call.
    pub fn tool(mut self, tool: Tool) -> Self {
        self.tools.push(tool);
        self
    }

    /// Adds several tools.
    pub fn tools(mut self, tools: impl IntoIterator<Item = Tool>) -> Self {
        self.tools.extend(tools);
        self
    }

    /// Adds tool-call middleware (first added = outermost).
    pub fn middleware(mut self, middleware: impl ToolMiddleware) -> Self {
        self.toolbox = self.toolbox.middleware(middleware);
        self
    }

    /// Adds event middleware: sees every provider event before it is published and every
    /// command before the provider gets it, in the order added.
    pub fn event_middleware(mut self, middleware: impl EventMiddleware) -> Self {
        self.session_options.middleware.push(Arc::new(middleware));
        self
    }

    /// Adds an observer: for each conversation, `factory` makes (or returns) an actor, which
    /// is subscribed to the event kinds in `filter`.
    ///
    /// ```no_run
    /// use actix::prelude::*;
    /// use liveagent::{EventFilter, LiveAgent, LiveEvent, ToolCallRequested, ToolResult};
    ///
    /// struct AuditLog;
    /// impl Actor for AuditLog { type Context = Context<Self>; }
    /// impl Handler<LiveEvent> for AuditLog {
    ///     type Result = ();
    ///     fn handle(&mut self, event: LiveEvent, _: &mut Context<Self>) { println!("{event:?}"); }
    /// }
    ///
    /// let builder = LiveAgent::builder("assistant").observer(
    ///     EventFilter::of::<ToolCallRequested>().or::<ToolResult>(),
    ///     |_ctx| AuditLog.start().recipient(),
    /// );
    /// ```
    pub fn observer<F>(mut self, filter: EventFilter, factory: F) -> Self
    where
        F: Fn(&ConversationContext) -> Recipient<LiveEvent> + Send + Sync + 'static,
    {
        self.observers.push(Observer {
            filter,
            factory: Arc::new(factory),
        });
        self
    }

    /// Adds a typed dependency that tools can ask for (`ToolContext::dep::<T>()`); it is not
    /// part of any schema the model sees.
    pub fn dependency<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.toolbox = self.toolbox.dependency(value);
        self
    }

    /// Sets a prompt variable.
    pub fn variable(mut self, name: impl Into<String>, value: impl ToString) -> Self {
        self.variables.insert(name.into(), value.to_string());
        self
    }

    /// Adds a plugin: its tools, middleware and dependencies, and its observers (started
    /// through [`Plugin::on_start`] for every conversation).
    pub fn plugin(mut self, plugin: impl Plugin) -> Self {
        self.toolbox = self.toolbox.plugin(plugin);
        self
    }

    /// Sets the human-in-the-loop hook that approves, denies or edits each tool call before
    /// it runs.
    pub fn hitl_hook(mut self, hook: impl HitlHook) -> Self {
        self.toolbox = self.toolbox.hitl(hook);
        self
    }

    /// How long a tool may run before its call fails with a timeout (default 30 s).
    pub fn tool_timeout(mut self, timeout: Duration) -> Self {
        self.toolbox = self.toolbox.timeout(timeout);
        self
    }

    /// Reconnect, buffering and timeout settings of the provider session.
    pub fn session_options(mut self, options: SessionOptions) -> Self {
        let middleware = std::mem::take(&mut self.session_options.middleware);
        self.session_options = options;
        self.session_options.middleware.splice(0..0, middleware);
        self
    }

    /// Checks everything and builds the agent.
    pub fn build(self) -> Result<LiveAgent, BuildError> {
        let name = self.name.trim();
        if name.is_empty() {
            return Err(BuildError::EmptyName);
        }
        let config = self.config.ok_or(BuildError::MissingConfig)?;
        let instructions = render_prompt(&self.prompt, &self.variables)?;
        let mut seen = std::collections::HashSet::new();
        for tool in &self.tools {
            let tool_name: &str = tool.name();
            let valid = !tool_name.is_empty()
                && tool_name.len() <= 64
                && tool_name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return Err(BuildError::InvalidToolName(tool_name.to_owned()));
            }
            if !seen.insert(tool_name.to_owned()) {
                return Err(BuildError::DuplicateTool(tool_name.to_owned()));
            }
        }
        for plugin_tool in self.toolbox.list() {
            if !seen.insert(plugin_tool.name().to_string()) {
                return Err(BuildError::DuplicateTool(plugin_tool.name().to_string()));
            }
        }
        let toolbox = self.toolbox.tools(self.tools);
        Ok(LiveAgent {
            name: name.into(),
            instructions,
            config,
            toolbox,
            observers: self.observers,
            session_options: self.session_options,
        })
    }
}
