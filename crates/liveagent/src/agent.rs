//! [`LiveAgent`] and its builder.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use futures_util::FutureExt;
use liveagent_core::{
    ConversationContext, EventBus, EventFilter, EventMiddleware, LiveError, LiveEvent,
    Observer as LiveObserver, RealtimeConfig, SessionSetup, Usage, Variables,
};
use liveagent_session::SessionOptions;
use liveagent_tools::{HitlHook, HumanInputHook, Plugin, Tool, ToolMiddleware, Toolbox};
use serde_json::Value;

use liveagent_store::{
    ConversationId, ConversationState, ConversationStore, RecorderOptions, ResumeToken,
    StoreRecorder,
};

use crate::conversation::{Conversation, ConversationExtras};
use crate::prompt::{render_prompt, resolve, PromptPart};
use crate::run::RunOptions;

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
    #[error("the prompt uses {{{0}}} but no variable of that name was given: set it with .variable(\"{0}\", ..), or write {{{{{0}}}}} for the literal text {{{0}}}")]
    MissingVariable(String),
    /// A variable value cannot be stored as JSON.
    #[error("variable `{0}` cannot be stored: {1}")]
    InvalidVariable(String, String),
    /// The prompt is malformed (no longer produced: stray braces are literal now; kept so
    /// matches on this enum keep compiling).
    #[error("malformed prompt: {0}")]
    MalformedPrompt(String),
    /// Two tools share a name.
    #[error("two tools are named `{0}`")]
    DuplicateTool(String),
    /// A tool name providers would reject (they allow `^[a-zA-Z0-9_-]{{1,64}}$`).
    #[error("tool name `{0}` is invalid: use 1 to 64 letters, digits, `_` or `-`")]
    InvalidToolName(String),
    /// The provider URL is cleartext (`ws://`, `http://`) to a host that is not loopback
    /// while an API key is set: the key would travel as a plain header. Use `wss://`, or
    /// opt in with the configuration's `allow_insecure_transport()`.
    #[error("refusing to send the API key in cleartext to {0}: use wss:// (or a loopback host), or opt in with allow_insecure_transport()")]
    InsecureTransport(String),
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
    pub(crate) prompt: Vec<PromptPart>,
    pub(crate) variables: BTreeMap<String, Value>,
    pub(crate) config: Arc<dyn RealtimeConfig>,
    pub(crate) toolbox: Toolbox,
    pub(crate) observers: Vec<Observer>,
    pub(crate) live_observers: Vec<Arc<dyn LiveObserver>>,
    pub(crate) session_options: SessionOptions,
    pub(crate) usage: Arc<Mutex<Usage>>,
    pub(crate) recording: Option<crate::record::RecordingOptions>,
    pub(crate) store: Option<Arc<dyn ConversationStore>>,
    pub(crate) store_options: RecorderOptions,
    pub(crate) history: crate::conversation::HistoryBounds,
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

    /// The system prompt's template parts with the agent's variables substituted (hooks are
    /// resolved per conversation, so they are not in here).
    pub fn instructions(&self) -> &str {
        &self.instructions
    }

    /// The provider configuration.
    pub fn config(&self) -> &dyn RealtimeConfig {
        &*self.config
    }

    /// The conversation store its conversations are recorded in, if any (see
    /// [`LiveAgentBuilder::store`]).
    pub fn store(&self) -> Option<&Arc<dyn ConversationStore>> {
        self.store.as_ref()
    }

    /// The agent's tools, middleware, hook and dependencies.
    pub fn toolbox(&self) -> &Toolbox {
        &self.toolbox
    }

    /// Every token this agent's conversations used so far, added up (AG2 usage per agent).
    pub fn usage_report(&self) -> Usage {
        self.usage.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Starts a conversation on the current actix system: an event bus, the provider
    /// session (supervised), the tool executor and the observers. Peers such as the
    /// recorder and the player attach to the returned conversation's context.
    ///
    /// Must be called from inside a running actix system (`#[actix::main]`,
    /// `actix_web::main`, `System::new().block_on(..)`). Async prompt hooks that do not
    /// finish at once need [`start`](Self::start) instead (this returns an error naming it).
    pub fn run(&self) -> Result<Conversation, LiveError> {
        self.run_with(RunOptions::new())
    }

    /// Like [`run`](Self::run), with the conversation's actors (bus, session, tool executor,
    /// observers) on `arbiter` instead of the current one. Use several arbiters when one
    /// thread is the limit (many sessions in one process); [`LiveAgentSystem::arbiters`]
    /// spreads conversations over a pool this way. Blocks the calling thread until the other
    /// arbiter has started the conversation (microseconds); do not call it for the current
    /// arbiter.
    ///
    /// ```no_run
    /// # use liveagent::LiveAgent;
    /// # fn demo(agent: LiveAgent) -> Result<(), liveagent::LiveError> {
    /// let worker = actix::Arbiter::new();
    /// let conversation = agent.run_on(&worker.handle())?;
    /// # Ok(()) }
    /// ```
    ///
    /// [`LiveAgentSystem::arbiters`]: crate::LiveAgentSystem::arbiters
    pub fn run_on(&self, arbiter: &actix::ArbiterHandle) -> Result<Conversation, LiveError> {
        self.run_on_with_observers(arbiter, RunOptions::new(), &[])
    }

    pub(crate) fn run_on_with_observers(
        &self,
        arbiter: &actix::ArbiterHandle,
        options: RunOptions,
        extra: &[Observer],
    ) -> Result<Conversation, LiveError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let agent = self.clone();
        let extra = extra.to_vec();
        let sent = arbiter.spawn_fn(move || {
            let _ = tx.send(agent.run_with_observers(options, &extra));
        });
        if !sent {
            return Err(LiveError::config(
                "the arbiter to run the conversation on has stopped",
            ));
        }
        rx.recv().unwrap_or_else(|_| {
            Err(LiveError::config(
                "the arbiter stopped before it started the conversation",
            ))
        })
    }

    /// [`run`](Self::run) with per-conversation overrides (AG2 `run(dependencies=...,
    /// variables=..., prompt=..., config=..., tools=..., middleware=..., observers=...,
    /// hitl_hook=...)`).
    ///
    /// ```no_run
    /// # use liveagent::{openai, LiveAgent, RunOptions};
    /// # fn demo(agent: LiveAgent) -> Result<(), liveagent::LiveError> {
    /// let conversation = agent.run_with(
    ///     RunOptions::new().variable("user", "Grace").dependency(42u32),
    /// )?;
    /// # Ok(()) }
    /// ```
    pub fn run_with(&self, options: RunOptions) -> Result<Conversation, LiveError> {
        let prepared = self.prepare(options, &[])?;
        match self.resolve_prompt(&prepared).now_or_never() {
            Some(instructions) => self.launch(prepared, instructions?),
            None => Err(LiveError::config(format!(
                "agent `{}` has an async prompt hook that did not finish at once: start it with `agent.start().await` (or `start_with`)",
                self.name
            ))),
        }
    }

    /// Like [`run`](Self::run), awaiting async prompt hooks.
    pub async fn start(&self) -> Result<Conversation, LiveError> {
        self.start_with(RunOptions::new()).await
    }

    /// Like [`run_with`](Self::run_with), awaiting async prompt hooks.
    pub async fn start_with(&self, options: RunOptions) -> Result<Conversation, LiveError> {
        let prepared = self.prepare(options, &[])?;
        let instructions = self.resolve_prompt(&prepared).await?;
        self.launch(prepared, instructions)
    }

    pub(crate) fn run_with_observers(
        &self,
        options: RunOptions,
        extra: &[Observer],
    ) -> Result<Conversation, LiveError> {
        let prepared = self.prepare(options, extra)?;
        match self.resolve_prompt(&prepared).now_or_never() {
            Some(instructions) => self.launch(prepared, instructions?),
            None => Err(LiveError::config(format!(
                "agent `{}` has an async prompt hook that did not finish at once: start it with `agent.start().await`",
                self.name
            ))),
        }
    }

    fn prepare(&self, options: RunOptions, extra: &[Observer]) -> Result<Prepared, LiveError> {
        let RunOptions {
            variables,
            prompt,
            config,
            tools,
            toolbox_edits,
            observers,
            live_observers,
            human_input,
            hitl,
            store,
            conversation_id,
            resume_token,
            resume,
        } = options;
        let mut config = config.unwrap_or_else(|| self.config.clone());
        let store = store.or_else(|| self.store.clone());
        let stored = match (store, resume) {
            (None, Some(_)) => {
                return Err(LiveError::config(
                    "RunOptions::resume needs a conversation store (LiveAgentBuilder::store or RunOptions::store)",
                ))
            }
            (None, None) => None,
            (Some(store), Some(state)) => {
                if state.provider != config.provider() {
                    return Err(LiveError::config(format!(
                        "the stored conversation ran on `{}`; this agent's provider is `{}`",
                        state.provider,
                        config.provider()
                    )));
                }
                config = Arc::new(liveagent_store::resume::RestoringConfig::new(
                    config, &state,
                ));
                Some((store, state, true))
            }
            (Some(store), None) => {
                let mut state = ConversationState::new(
                    conversation_id.unwrap_or_else(ConversationId::generate),
                    config.provider(),
                );
                state.resume_token = Some(resume_token.unwrap_or_else(ResumeToken::generate));
                Some((store, state, false))
            }
        };
        let mut toolbox = self.toolbox.clone();
        for edit in toolbox_edits {
            toolbox = edit(toolbox);
        }
        if let Some(hitl) = hitl {
            toolbox = toolbox.hitl_arc(hitl);
        }
        if let Some(hook) = human_input {
            toolbox = toolbox.human_input_arc(hook);
        }
        for tool in tools {
            if toolbox.get(tool.name()).is_some() {
                return Err(BuildError::DuplicateTool(tool.name().to_string()).into());
            }
            toolbox.add_tool(tool);
        }
        // Variables: plugins', then the agent's, then the run's.
        let mut values = BTreeMap::new();
        for plugin in self.toolbox.plugins() {
            values.extend(plugin.variables());
        }
        values.extend(self.variables.clone());
        if let Some((_, state, true)) = &stored {
            // The resumed conversation's own variables, as it stored them.
            values.extend(
                state
                    .variables
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone()))),
            );
        }
        values.extend(variables);
        let bus = EventBus::start_default();
        let context = ConversationContext::new(
            bus.clone(),
            config.input_sample_rate(),
            config.output_sample_rate(),
        )
        .with_variables(Variables::from_map(values));
        let mut actor_observers: Vec<Observer> = self.observers.clone();
        actor_observers.extend(observers);
        actor_observers.extend(extra.iter().cloned());
        let mut all_live: Vec<Arc<dyn LiveObserver>> = self.live_observers.clone();
        for plugin in toolbox.plugins() {
            all_live.extend(plugin.observers());
        }
        all_live.extend(live_observers);
        let prompt = match prompt {
            Some(parts) => parts,
            None => {
                let mut parts = self.prompt.clone();
                for plugin in toolbox.plugins() {
                    parts.extend(plugin.prompt().into_iter().map(PromptPart::Text));
                    let plugin = plugin.clone();
                    parts.push(PromptPart::hook_sync(move |ctx| {
                        plugin.prompt_hook(ctx).unwrap_or_default()
                    }));
                }
                parts
            }
        };
        Ok(Prepared {
            bus,
            context,
            config,
            toolbox,
            actor_observers,
            live_observers: all_live,
            prompt,
            stored,
        })
    }

    async fn resolve_prompt(&self, prepared: &Prepared) -> Result<String, LiveError> {
        let texts: BTreeMap<String, String> = prepared
            .context
            .variables()
            .names()
            .into_iter()
            .filter_map(|n| prepared.context.variables().text(&n).map(|t| (n, t)))
            .collect();
        Ok(resolve(&prepared.prompt, &texts, &prepared.context).await?)
    }

    fn launch(&self, prepared: Prepared, instructions: String) -> Result<Conversation, LiveError> {
        let Prepared {
            bus,
            context,
            config,
            toolbox,
            actor_observers,
            live_observers,
            prompt: _,
            stored,
        } = prepared;
        let setup = SessionSetup {
            instructions,
            tools: toolbox.schemas(),
        };
        let protocol = match config.build_protocol(setup) {
            Ok(p) => p,
            Err(e) => {
                bus.do_send(liveagent_core::Shutdown);
                return Err(e);
            }
        };
        // Observers first, so they see the session open.
        for observer in &actor_observers {
            observer.attach(&context);
        }
        let extras = ConversationExtras::attach(&context, self.usage.clone(), self.history);
        let mut names = Vec::new();
        for observer in &live_observers {
            names.push(Arc::<str>::from(observer.name()));
            liveagent_core::start_observer(observer.clone(), &context);
        }
        if let Some(recording) = &self.recording {
            let observer = recording.observer(&self.name)?;
            names.push(Arc::<str>::from(observer.name()));
            liveagent_core::start_observer(observer, &context);
        }
        // The store recorder before the session, so it sees everything; it stops the
        // session if another instance takes the conversation over.
        let session_slot: Arc<Mutex<Option<liveagent_session::SessionHandle>>> = Arc::default();
        let store_info = stored.map(|(store, state, resumed)| {
            let slot = session_slot.clone();
            let hook: liveagent_store::LeaseLostHook = Box::new(move || {
                if let Some(session) = slot.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                    session.stop();
                }
            });
            let recorder = StoreRecorder::start_with_hook(
                context.clone(),
                store,
                state.clone(),
                resumed,
                self.store_options.clone(),
                Some(hook),
            );
            (recorder, state, resumed)
        });
        let executor = liveagent_tools::ToolExecutor::start(toolbox, context.clone());
        let session = liveagent_session::start_session(
            protocol,
            context.clone(),
            self.session_options.clone(),
        );
        *session_slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(session.clone());
        let stored = store_info.map(|(recorder, state, resumed)| {
            if resumed {
                liveagent_store::resume::rerun_pending_calls(&context, &state);
            }
            crate::conversation::StoredConversation {
                id: state.id.clone(),
                resume_token: state.resume_token.clone(),
                resumed,
                recorder,
            }
        });
        tracing::info!(agent = %self.name, provider = config.provider(), "conversation started");
        Ok(Conversation::new(
            self.name.clone(),
            context,
            bus,
            session,
            executor,
            extras.with_observers(names),
        )
        .with_store(stored))
    }
}

struct Prepared {
    bus: Addr<EventBus>,
    context: ConversationContext,
    config: Arc<dyn RealtimeConfig>,
    toolbox: Toolbox,
    actor_observers: Vec<Observer>,
    live_observers: Vec<Arc<dyn LiveObserver>>,
    prompt: Vec<PromptPart>,
    /// The store, the conversation's state, and whether it is resumed.
    stored: Option<(Arc<dyn ConversationStore>, ConversationState, bool)>,
}

/// Builds a [`LiveAgent`]; mirrors the Python `LiveAgent(...)` constructor: name, prompt,
/// config, tools, middleware, observers, dependencies, variables, plugins, hitl_hook.
pub struct LiveAgentBuilder {
    name: String,
    prompt: Vec<PromptPart>,
    config: Option<Arc<dyn RealtimeConfig>>,
    tools: Vec<Tool>,
    toolbox: Toolbox,
    variables: BTreeMap<String, Value>,
    bad_variable: Option<(String, String)>,
    observers: Vec<Observer>,
    live_observers: Vec<Arc<dyn LiveObserver>>,
    session_options: SessionOptions,
    recording: Option<crate::record::RecordingOptions>,
    store: Option<Arc<dyn ConversationStore>>,
    store_options: RecorderOptions,
    history: crate::conversation::HistoryBounds,
}

impl LiveAgentBuilder {
    fn new(name: impl Into<String>) -> Self {
        LiveAgentBuilder {
            name: name.into(),
            prompt: Vec::new(),
            config: None,
            tools: Vec::new(),
            toolbox: Toolbox::new(),
            variables: BTreeMap::new(),
            bad_variable: None,
            observers: Vec::new(),
            live_observers: Vec::new(),
            session_options: SessionOptions::default(),
            recording: None,
            store: None,
            store_options: RecorderOptions::default(),
            history: Default::default(),
        }
    }

    /// Records every conversation of this agent in `store`, so that another instance can
    /// pick it up ([`RunOptions::resume`]): a
    /// [`StoreRecorder`] per conversation writes its
    /// history, tool calls in flight, Gemini resumption handle and resume token as they
    /// happen, and holds the conversation's lease. The transports
    /// (`liveagent-transport`) resume a page's conversation from it.
    ///
    /// ```no_run
    /// use liveagent::{openai, store::InMemoryConversationStore, LiveAgent};
    /// # fn demo() -> Result<(), liveagent::BuildError> {
    /// let agent = LiveAgent::builder("assistant")
    ///     .config(openai::RealtimeConfig::new("gpt-realtime-2"))
    ///     .store(InMemoryConversationStore::new())
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn store(self, store: impl ConversationStore) -> Self {
        self.store_arc(Arc::new(store))
    }

    /// Like [`store`](Self::store), with a store shared elsewhere.
    pub fn store_arc(mut self, store: Arc<dyn ConversationStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// How conversations are written to the store (idle time-to-live, lease time-to-live,
    /// retries, history bound).
    pub fn store_options(mut self, options: RecorderOptions) -> Self {
        self.store_options = options;
        self
    }

    /// Adds a part to the system prompt (AG2 `prompt=`, a string or a list): a template
    /// whose `{name}` placeholders are filled from the conversation's variables (see
    /// [`prompt`](crate::prompt) for the syntax: JSON and other braces need no escaping).
    /// Parts are joined with a blank line.
    pub fn prompt(mut self, prompt: impl Into<String>) -> Self {
        self.prompt.push(PromptPart::Text(prompt.into()));
        self
    }

    /// Adds several prompt parts (strings or hooks), in order.
    pub fn prompts<P: Into<PromptPart>>(mut self, parts: impl IntoIterator<Item = P>) -> Self {
        self.prompt.extend(parts.into_iter().map(Into::into));
        self
    }

    /// Adds an async prompt hook (AG2 prompt hook): resolved when each conversation opens,
    /// given its context (variables, ...). Agents with async hooks that really wait start
    /// with [`LiveAgent::start`].
    ///
    /// ```no_run
    /// # use liveagent::{openai, LiveAgent};
    /// let agent = LiveAgent::builder("assistant")
    ///     .prompt("You are a helpful voice assistant.")
    ///     .prompt_hook(|ctx| async move {
    ///         format!("The caller is {}.", ctx.variables().text("user").unwrap_or_default())
    ///     });
    /// ```
    pub fn prompt_hook<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(ConversationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = String> + 'static,
    {
        self.prompt.push(PromptPart::hook(hook));
        self
    }

    /// Adds a sync prompt hook, given the conversation's context.
    pub fn prompt_fn<F>(mut self, hook: F) -> Self
    where
        F: Fn(&ConversationContext) -> String + Send + Sync + 'static,
    {
        self.prompt.push(PromptPart::hook_sync(hook));
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

    /// Adds an observer without actor boilerplate: a [`FnObserver`](crate::FnObserver)
    /// closure, a built-in [`LoopDetector`](crate::LoopDetector) or
    /// [`TokenMonitor`](crate::TokenMonitor), or your own [`Observer`](crate::Observer).
    /// Each is announced with `ObserverStarted` and, when the conversation stops,
    /// `ObserverCompleted`.
    pub fn watch(mut self, observer: impl LiveObserver) -> Self {
        self.live_observers.push(Arc::new(observer));
        self
    }

    /// Adds a shared observer (keep a clone to read it, e.g. `TokenMonitor::total_tokens`).
    pub fn watch_arc(mut self, observer: Arc<dyn LiveObserver>) -> Self {
        self.live_observers.push(observer);
        self
    }

    /// Calls the async closure `f` with every event of type `E` (a closure observer).
    ///
    /// ```no_run
    /// # use liveagent::{LiveAgent, ToolResult};
    /// let builder = LiveAgent::builder("assistant").on::<ToolResult, _, _>(|result, _ctx| async move {
    ///     println!("{} -> {:?}", result.name, result.output);
    /// });
    /// ```
    pub fn on<E, F, Fut>(self, f: F) -> Self
    where
        E: liveagent_core::Event,
        F: Fn(E, ConversationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let name = format!(
            "on<{}>",
            std::any::type_name::<E>()
                .rsplit("::")
                .next()
                .unwrap_or("?")
        );
        let f = Arc::new(f);
        self.watch(liveagent_core::FnObserver::new(
            name,
            liveagent_core::Condition::of::<E>(),
            move |event, ctx| {
                let f = f.clone();
                async move {
                    if let Some(e) = E::from_event(event) {
                        f(e, ctx).await;
                    }
                }
            },
        ))
    }

    /// Records the conversation (both sides to a stereo WAV, the words to a JSONL
    /// transcript with timestamps) into `dir`; see [`RecordingOptions`](crate::RecordingOptions).
    pub fn record_conversation(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.recording = Some(crate::record::RecordingOptions::new(dir));
        self
    }

    /// Records conversations with these options.
    pub fn recording(mut self, options: crate::record::RecordingOptions) -> Self {
        self.recording = Some(options);
        self
    }

    /// Adds a typed dependency that tools can ask for (`ToolContext::dep::<T>()`); it is not
    /// part of any schema the model sees.
    pub fn dependency<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.toolbox = self.toolbox.dependency(value);
        self
    }

    /// Sets a conversation variable (AG2 `variables=`): it fills `{name}` in the prompt and
    /// tools read and write it (`cx.variables()`). Any `Serialize` value; the prompt shows
    /// strings as they are and other values as JSON.
    pub fn variable(mut self, name: impl Into<String>, value: impl serde::Serialize) -> Self {
        let name = name.into();
        match serde_json::to_value(value) {
            Ok(v) => {
                self.variables.insert(name, v);
            }
            Err(e) => self.bad_variable = Some((name, e.to_string())),
        }
        self
    }

    /// Adds a plugin: its tools, middleware and dependencies, and its observers (started
    /// through [`Plugin::on_start`] for every conversation).
    pub fn plugin(mut self, plugin: impl Plugin) -> Self {
        self.toolbox = self.toolbox.plugin(plugin);
        self
    }

    /// Sets the hook that answers the tools' `cx.input("question")` (AG2 `hitl_hook` for
    /// `HumanInputRequest`). Without one, a UI answers with `conversation.answer(..)`, or
    /// the user by voice with [`human_input_voice`](Self::human_input_voice).
    pub fn human_input(mut self, hook: impl HumanInputHook) -> Self {
        self.toolbox = self.toolbox.human_input(hook);
        self
    }

    /// Voice mode for `cx.input(..)` questions no hook answers: the agent speaks the
    /// question and the user's next utterance answers it.
    pub fn human_input_voice(mut self, on: bool) -> Self {
        self.toolbox = self.toolbox.human_input_voice(on);
        self
    }

    /// How long `cx.input(..)` waits for an answer (default 5 minutes).
    pub fn human_input_timeout(mut self, timeout: Duration) -> Self {
        self.toolbox = self.toolbox.human_input_timeout(timeout);
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

    /// How much of each conversation's [`Conversation::history`](crate::Conversation::history)
    /// is kept in memory: at most `events` events and `bytes` bytes besides the text chunks,
    /// and the text chunks (transcript and text deltas, the bulk of a spoken conversation)
    /// up to a quarter of `bytes`; the oldest go first (defaults
    /// [`HISTORY_LIMIT`](crate::HISTORY_LIMIT) and
    /// [`HISTORY_MAX_BYTES`](crate::HISTORY_MAX_BYTES)). `0` keeps no history (a large
    /// deployment that never reads it saves the memory and the copies);
    /// [`Conversation::messages`](crate::Conversation::messages) and the usage reports are
    /// kept either way.
    ///
    /// ```
    /// use liveagent::{openai, LiveAgent};
    /// let agent = LiveAgent::builder("assistant")
    ///     .config(openai::RealtimeConfig::new("gpt-realtime"))
    ///     .history_limit(10_000, 1024 * 1024)
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn history_limit(mut self, events: usize, bytes: usize) -> Self {
        self.history.events = events;
        self.history.bytes = bytes;
        self
    }

    /// How many bytes of text each conversation's
    /// [`Conversation::messages`](crate::Conversation::messages) keeps: the oldest messages go
    /// first past it, the newest is always kept (default
    /// [`MESSAGES_MAX_BYTES`](crate::MESSAGES_MAX_BYTES), 128 KiB, about two hours of speech).
    /// A response's words collected before its `ResponseDone` are bounded by it too.
    ///
    /// ```
    /// use liveagent::{openai, LiveAgent};
    /// // Keep a whole day's transcript in memory.
    /// let agent = LiveAgent::builder("assistant")
    ///     .config(openai::RealtimeConfig::new("gpt-realtime"))
    ///     .messages_limit(4 * 1024 * 1024)
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn messages_limit(mut self, bytes: usize) -> Self {
        self.history.messages = bytes;
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
        if let Some(url) = config.insecure_transport() {
            return Err(BuildError::InsecureTransport(url));
        }
        if let Some((name, error)) = self.bad_variable {
            return Err(BuildError::InvalidVariable(name, error));
        }
        let texts: BTreeMap<String, String> = self
            .variables
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect();
        let mut rendered = Vec::new();
        for part in &self.prompt {
            if let PromptPart::Text(t) = part {
                let text = render_prompt(t, &texts)?;
                if !text.trim().is_empty() {
                    rendered.push(text);
                }
            }
        }
        let instructions = rendered.join("\n\n");
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
            prompt: self.prompt,
            variables: self.variables,
            config,
            toolbox,
            observers: self.observers,
            live_observers: self.live_observers,
            session_options: self.session_options,
            usage: Arc::default(),
            recording: self.recording,
            store: self.store,
            store_options: self.store_options,
            history: self.history,
        })
    }
}
