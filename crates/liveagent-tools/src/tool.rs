//! [`Tool`]: a typed async function the model can call, and [`ToolContext`], what a call
//! can see besides its arguments.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{self, LocalBoxFuture};
use futures_util::FutureExt;
use liveagent_core::{ConversationContext, Id, ToolProgress, ToolSchema, Variables};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::deps::Dependencies;
use crate::error::ToolError;
use crate::human::{HumanInput, SharedClock};
use crate::schema::{exact_schema_for, provider_friendly, schema_for};

/// The outcome of a tool call: the value the model receives, or an error text it reads.
/// The same shape as [`ToolResult::output`](liveagent_core::ToolResult::output).
pub type ToolOutcome = Result<Value, String>;

type Handler = dyn Fn(Value, ToolContext) -> LocalBoxFuture<'static, ToolOutcome> + Send + Sync;

/// What a tool call can see besides its arguments: its call id, the injected
/// [`Dependencies`], and the conversation it runs in.
#[derive(Clone)]
pub struct ToolContext {
    call_id: Id,
    tool_name: Arc<str>,
    deps: Dependencies,
    conversation: Option<ConversationContext>,
    variables: Variables,
    human: Option<HumanInput>,
    clock: SharedClock,
    inputs: Arc<std::sync::atomic::AtomicU32>,
}

impl fmt::Debug for ToolContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolContext")
            .field("call_id", &self.call_id)
            .field("tool_name", &self.tool_name)
            .field("deps", &self.deps)
            .field("conversation", &self.conversation.is_some())
            .finish()
    }
}

impl ToolContext {
    /// A context for call `call_id` of tool `tool_name`, with no dependencies and no
    /// conversation (the executor fills both in; this is for tests and custom runners).
    pub fn new(call_id: impl Into<Id>, tool_name: impl Into<Arc<str>>) -> Self {
        ToolContext {
            call_id: call_id.into(),
            tool_name: tool_name.into(),
            deps: Dependencies::new(),
            conversation: None,
            variables: Variables::new(),
            human: None,
            clock: SharedClock::default(),
            inputs: Arc::default(),
        }
    }

    /// The same context for the tool `tool_name` (middleware may reroute a call).
    pub(crate) fn for_tool(&self, tool_name: Arc<str>) -> Self {
        ToolContext {
            tool_name,
            ..self.clone()
        }
    }

    pub(crate) fn with_human(mut self, human: HumanInput) -> Self {
        self.human = Some(human);
        self
    }

    pub(crate) fn human(&self) -> Option<&HumanInput> {
        self.human.as_ref()
    }

    pub(crate) fn clock(&self) -> &SharedClock {
        &self.clock
    }

    pub(crate) fn next_input_number(&self) -> u32 {
        self.inputs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }

    /// Asks a human `question` and waits for the answer (AG2 `context.input(...)`): a
    /// [`HumanInputRequest`](liveagent_core::HumanInputRequest) goes on the conversation
    /// and the answer comes from the toolbox's
    /// [`human_input`](crate::Toolbox::human_input) hook, a
    /// [`HumanMessage`](liveagent_core::HumanMessage) published by the app, or (voice mode)
    /// the user's next utterance. See [`human`](crate::human). The wait does not count
    /// against the tool's timeout.
    ///
    /// ```
    /// use liveagent_tools::{NoArgs, Tool, ToolContext, ToolError, Toolbox};
    /// let book = Tool::with_context("book", "Book the table.", |_: NoArgs, cx: ToolContext| async move {
    ///     let time = cx.input("What time?").await?;
    ///     Ok::<_, ToolError>(format!("booked at {time}"))
    /// });
    /// let toolbox = Toolbox::new().tool(book).human_input(|_req: liveagent_core::HumanInputRequest| async { "8 pm".to_string() });
    /// # actix::System::new().block_on(async {
    /// let call = liveagent_core::ToolCall { call_id: "c1".into(), name: "book".into(),
    ///     arguments: serde_json::json!({}), response_id: None };
    /// assert_eq!(toolbox.run(call, None).await, Ok(serde_json::json!("booked at 8 pm")));
    /// # });
    /// ```
    pub async fn input(&self, question: impl AsRef<str>) -> Result<String, ToolError> {
        crate::human::ask(self, question.as_ref()).await
    }

    /// The conversation's variables (AG2 `ctx.variables`): read and write typed values that
    /// outlive this call (and reconnects). Without a conversation (a turn-based agent), the
    /// call's own store.
    pub fn variables(&self) -> &Variables {
        match &self.conversation {
            Some(c) => c.variables(),
            None => &self.variables,
        }
    }

    /// Reports progress of this call on the conversation as a [`ToolProgress`] event (no-op
    /// without a conversation).
    pub fn progress(&self, message: impl Into<Arc<str>>, data: Option<Value>) {
        if let Some(c) = &self.conversation {
            c.publish(ToolProgress {
                call_id: self.call_id.clone(),
                tool: self.tool_name.clone(),
                message: message.into(),
                data,
            });
        }
    }

    /// Sets the dependencies.
    pub fn with_dependencies(mut self, deps: Dependencies) -> Self {
        self.deps = deps;
        self
    }

    /// Sets the conversation.
    pub fn with_conversation(mut self, conversation: ConversationContext) -> Self {
        self.conversation = Some(conversation);
        self
    }

    /// The provider's id of this call.
    pub fn call_id(&self) -> &Id {
        &self.call_id
    }

    /// The name of the tool being called.
    pub fn tool_name(&self) -> &Arc<str> {
        &self.tool_name
    }

    /// The injected dependencies.
    pub fn deps(&self) -> &Dependencies {
        &self.deps
    }

    /// The dependency of type `T`, or an error naming the missing type (which becomes the
    /// call's error result, so `cx.dep::<Db>()?` is all a tool needs).
    pub fn dep<T: Send + Sync + 'static>(&self) -> Result<Arc<T>, ToolError> {
        self.deps.get::<T>().ok_or_else(|| {
            ToolError::msg(format!(
                "tool `{}` needs a dependency of type `{}` that was not provided",
                self.tool_name,
                std::any::type_name::<T>()
            ))
        })
    }

    /// The conversation the call runs in: `Some` under the
    /// [`ToolExecutor`](crate::ToolExecutor), `None` when a turn-based agent runs the tool.
    pub fn conversation(&self) -> Option<&ConversationContext> {
        self.conversation.as_ref()
    }
}

/// Empty arguments, for tools that take none.
///
/// ```
/// use liveagent_tools::{NoArgs, Tool, ToolError};
/// let tool = Tool::new("get_time", "The current UNIX time in seconds.", |_: NoArgs| async {
///     Ok::<_, ToolError>(std::time::SystemTime::now()
///         .duration_since(std::time::UNIX_EPOCH).unwrap().as_secs())
/// });
/// assert_eq!(tool.parameters()["type"], "object");
/// ```
#[derive(Clone, Copy, Debug, Default, serde::Deserialize, JsonSchema)]
pub struct NoArgs {}

/// A function the model can call: a name, a description, a JSON schema of its arguments
/// and an async handler. Cheap to clone.
///
/// The handler's future does not have to be `Send` (tools run on the actix arbiter, so
/// they may hold `awc` clients, `Rc`s...), but the closure itself must be `Send + Sync`.
///
/// Failures never crash anything: an `Err`, a panic (in the closure or its future),
/// arguments that do not match the schema, or a result that cannot be serialized all
/// become an error result the model can read. A panic's own text is logged, never sent to
/// the model.
///
/// ## Argument validation
///
/// Before the function runs, the arguments are checked against the tool's JSON schema
/// (with the `jsonschema` crate, draft 2020-12): ranges, lengths, patterns, enums,
/// required fields. Arguments must be a JSON object (a JSON-encoded string holding an
/// object is accepted; `null` counts as `{}`); an array is never spread into fields. For
/// tools made with [`Tool::new`] / [`Tool::with_context`] (derived schemas), fields the
/// schema does not declare are rejected too, unless the tool opts out with
/// [`allow_unknown_fields`](Tool::allow_unknown_fields). [`Tool::raw`] tools are validated
/// against the schema they declare, as declared. The model gets an error output listing
/// the violations (at most 10, values not echoed).
///
/// ```
/// use liveagent_tools::{Tool, ToolContext, ToolError};
/// use schemars::JsonSchema;
/// use serde::Deserialize;
///
/// /// Two numbers to add.
/// #[derive(Deserialize, JsonSchema)]
/// struct SumArgs {
///     /// The first number.
///     a: i64,
///     /// The second number.
///     b: i64,
/// }
///
/// let tool = Tool::new("sum_numbers", "Sum two numbers.", |args: SumArgs| async move {
///     Ok::<_, ToolError>(args.a + args.b)
/// });
/// let schema = tool.schema();
/// assert_eq!(schema.name, "sum_numbers");
/// assert_eq!(schema.parameters["required"], serde_json::json!(["a", "b"]));
///
/// # actix::System::new().block_on(async {
/// let out = tool.call(serde_json::json!({"a": 2, "b": 3}), ToolContext::new("c1", "sum_numbers")).await;
/// assert_eq!(out, Ok(serde_json::json!(5)));
/// let bad = tool.call(serde_json::json!({"a": "two"}), ToolContext::new("c2", "sum_numbers")).await;
/// assert!(bad.unwrap_err().contains("invalid arguments"));
/// # });
/// ```
#[derive(Clone)]
pub struct Tool {
    name: Arc<str>,
    description: Arc<str>,
    parameters: Arc<Value>,
    timeout: Option<Duration>,
    handler: Arc<Handler>,
    middleware: Vec<Arc<dyn crate::middleware::ToolMiddleware>>,
    /// The schema arguments are checked against.
    validation_schema: Arc<Value>,
    /// True for derived schemas (unknown fields rejected unless opted out).
    derived: bool,
    validator: Arc<ArgsValidator>,
}

impl fmt::Debug for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tool")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Tool {
    /// A tool from an async function of its typed arguments. `A`'s JSON schema (doc
    /// comments become descriptions) is what the provider receives; the function may
    /// return any `Serialize` value, or an error convertible to [`ToolError`].
    pub fn new<A, R, E, F, Fut>(
        name: impl Into<Arc<str>>,
        description: impl Into<Arc<str>>,
        function: F,
    ) -> Tool
    where
        A: DeserializeOwned + JsonSchema + 'static,
        R: Serialize + 'static,
        E: Into<ToolError> + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + 'static,
    {
        Tool::with_context(name, description, move |args: A, _cx: ToolContext| {
            function(args)
        })
    }

    /// A tool whose function also takes the call's [`ToolContext`] (dependencies, call id,
    /// conversation).
    ///
    /// ```
    /// use liveagent_tools::{Tool, ToolContext, ToolError};
    /// # #[derive(serde::Deserialize, schemars::JsonSchema)] struct LookupArgs { key: String }
    /// struct Db(std::collections::HashMap<String, String>);
    ///
    /// let lookup = Tool::with_context("lookup", "Look a key up.", |args: LookupArgs, cx: ToolContext| async move {
    ///     let db = cx.dep::<Db>()?;
    ///     db.0.get(&args.key).cloned().ok_or_else(|| ToolError::msg("no such key"))
    /// });
    /// # let _ = lookup;
    /// ```
    pub fn with_context<A, R, E, F, Fut>(
        name: impl Into<Arc<str>>,
        description: impl Into<Arc<str>>,
        function: F,
    ) -> Tool
    where
        A: DeserializeOwned + JsonSchema + 'static,
        R: Serialize + 'static,
        E: Into<ToolError> + 'static,
        F: Fn(A, ToolContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + 'static,
    {
        let name = name.into();
        let tool_name = name.clone();
        let handler =
            move |arguments: Value, cx: ToolContext| -> LocalBoxFuture<'static, ToolOutcome> {
                let args = match decode_arguments::<A>(&tool_name, arguments) {
                    Ok(args) => args,
                    Err(e) => return future::ready(Err(e)).boxed_local(),
                };
                let fut = function(args, cx);
                let tool_name = tool_name.clone();
                async move {
                    match fut.await {
                        Ok(value) => serde_json::to_value(value).map_err(|e| {
                            format!(
                            "tool `{tool_name}` returned a value that cannot be serialized: {e}"
                        )
                        }),
                        Err(e) => Err(e.into().into_message()),
                    }
                }
                .boxed_local()
            };
        let exact = Arc::new(exact_schema_for::<A>());
        let validator = Arc::new(ArgsValidator::new(&name, &exact, true));
        Tool {
            name,
            description: description.into(),
            parameters: Arc::new(schema_for::<A>()),
            timeout: None,
            handler: Arc::new(handler),
            middleware: Vec::new(),
            validation_schema: exact,
            derived: true,
            validator,
        }
    }

    /// Adds middleware to this tool only (AG2 `tool(..., middleware=[...])`): it runs inside
    /// the toolbox's middleware and approval, around this tool's function; first added =
    /// outermost. Its `on_result` and `on_human_input` run for this tool's calls too.
    pub fn middleware(mut self, middleware: impl crate::middleware::ToolMiddleware) -> Self {
        self.middleware.push(Arc::new(middleware));
        self
    }

    /// The tool's own middleware.
    pub(crate) fn own_middleware(&self) -> &[Arc<dyn crate::middleware::ToolMiddleware>] {
        &self.middleware
    }

    /// This tool without its own middleware.
    pub(crate) fn bare(&self) -> Tool {
        Tool {
            middleware: Vec::new(),
            ..self.clone()
        }
    }

    /// A tool with a hand-written JSON schema and a handler over raw JSON arguments (for
    /// tools defined at run time). The schema is made [provider-friendly](crate::schema).
    pub fn raw<F, Fut>(
        name: impl Into<Arc<str>>,
        description: impl Into<Arc<str>>,
        mut parameters: Value,
        function: F,
    ) -> Tool
    where
        F: Fn(Value, ToolContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ToolOutcome> + 'static,
    {
        provider_friendly(&mut parameters);
        let name = name.into();
        let validator = Arc::new(ArgsValidator::new(&name, &parameters, false));
        let parameters = Arc::new(parameters);
        Tool {
            name,
            description: description.into(),
            parameters: parameters.clone(),
            timeout: None,
            handler: Arc::new(move |args, cx| function(args, cx).boxed_local()),
            middleware: Vec::new(),
            validation_schema: parameters.clone(),
            derived: false,
            validator,
        }
    }

    /// Lets the model pass fields the derived schema does not declare (they are ignored),
    /// instead of the call failing. Only meaningful for [`Tool::new`] /
    /// [`Tool::with_context`]; [`Tool::raw`] schemas are validated as declared.
    pub fn allow_unknown_fields(mut self) -> Self {
        if self.derived {
            self.validator = Arc::new(ArgsValidator::new(
                &self.name,
                &self.validation_schema,
                false,
            ));
        }
        self
    }

    /// Overrides the executor's default timeout for this tool.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Replaces the description.
    pub fn describe(mut self, description: impl Into<Arc<str>>) -> Self {
        self.description = description.into();
        self
    }

    /// Renames the tool.
    pub fn rename(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The tool's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The tool's description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The JSON schema of the arguments.
    pub fn parameters(&self) -> &Value {
        &self.parameters
    }

    /// This tool's own timeout, if it overrides the executor's default.
    pub fn timeout_override(&self) -> Option<Duration> {
        self.timeout
    }

    /// The declaration the provider receives.
    pub fn schema(&self) -> ToolSchema {
        ToolSchema {
            name: self.name.to_string(),
            description: self.description.to_string(),
            parameters: (*self.parameters).clone(),
        }
    }

    /// Runs the function on `arguments` (no timeout, middleware or approval: the
    /// [`Toolbox`](crate::Toolbox) adds those), after checking them against the schema
    /// (see [argument validation](Tool#argument-validation)). Panics become an error
    /// outcome.
    pub async fn call(&self, arguments: Value, cx: ToolContext) -> ToolOutcome {
        let arguments = object_arguments(&self.name, arguments)?;
        self.validator.check(&self.name, &arguments)?;
        let handler = self.handler.clone();
        let started = std::panic::catch_unwind(AssertUnwindSafe(move || handler(arguments, cx)));
        let fut = match started {
            Ok(fut) => fut,
            Err(panic) => return Err(panic_message(&self.name, panic)),
        };
        match AssertUnwindSafe(fut).catch_unwind().await {
            Ok(outcome) => outcome,
            Err(panic) => Err(panic_message(&self.name, panic)),
        }
    }
}

/// The error text for a caught panic.
pub(crate) fn panic_message(name: &str, panic: Box<dyn Any + Send>) -> String {
    let what = if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    };
    tracing::error!(tool = %name, panic = %what, "tool panicked");
    // The panic text may hold internals (paths, SQL, secrets): it stays in the logs.
    format!("tool `{name}` failed unexpectedly (an internal error; the details are in the application's logs)")
}

/// Most violations listed in one error output.
const MAX_VIOLATIONS: usize = 10;

/// A tool's compiled argument schema.
struct ArgsValidator(Result<jsonschema::Validator, String>);

impl ArgsValidator {
    /// Compiles `schema` (with `additionalProperties: false` on its objects when `strict`).
    fn new(tool: &str, schema: &Value, strict: bool) -> ArgsValidator {
        let mut schema = schema.clone();
        if strict {
            reject_unknown_fields(&mut schema);
        }
        ArgsValidator(jsonschema::draft202012::new(&schema).map_err(|e| {
            tracing::error!(%tool, error = %e, "the tool's argument schema is not a valid JSON schema; its calls will fail");
            format!("tool `{tool}` has an invalid argument schema ({e}); it cannot be called")
        }))
    }

    /// `Ok` when `arguments` satisfy the schema; else the violations, for the model.
    fn check(&self, tool: &str, arguments: &Value) -> Result<(), String> {
        let validator = self.0.as_ref().map_err(Clone::clone)?;
        let errors: Vec<String> = validator
            .iter_errors(arguments)
            .take(MAX_VIOLATIONS + 1)
            .map(|e| {
                let path = e.instance_path().to_string();
                let path = if path.is_empty() {
                    "/".to_owned()
                } else {
                    path
                };
                let text: String = e.masked().to_string().chars().take(200).collect();
                format!("{path}: {text}")
            })
            .collect();
        if errors.is_empty() {
            return Ok(());
        }
        let more = if errors.len() > MAX_VIOLATIONS {
            " (and more)"
        } else {
            ""
        };
        let listed: Vec<&str> = errors
            .iter()
            .take(MAX_VIOLATIONS)
            .map(String::as_str)
            .collect();
        Err(format!(
            "invalid arguments for tool `{tool}`: {}{more}",
            listed.join("; ")
        ))
    }
}

/// Adds `additionalProperties: false` to every object schema that lists its properties and
/// says nothing about other ones (and is not combined with `allOf`/`anyOf`/`oneOf`, where
/// it would reject the other branches' fields).
fn reject_unknown_fields(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let closable = map.contains_key("properties")
                && !map.contains_key("additionalProperties")
                && !map.contains_key("unevaluatedProperties")
                && !map.contains_key("patternProperties")
                && !["allOf", "anyOf", "oneOf"]
                    .iter()
                    .any(|k| map.contains_key(*k));
            if closable {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            map.values_mut().for_each(reject_unknown_fields);
        }
        Value::Array(items) => items.iter_mut().for_each(reject_unknown_fields),
        _ => {}
    }
}

/// The arguments as a JSON object: `null` is `{}`, a string must hold a JSON object;
/// anything else that is not an object is refused.
fn object_arguments(tool: &str, arguments: Value) -> Result<Value, String> {
    match arguments {
        Value::Object(_) => Ok(arguments),
        Value::Null => Ok(Value::Object(Default::default())),
        // Arguments that were not valid JSON arrive as the raw text; some providers also
        // send JSON-encoded strings.
        Value::String(text) if text.trim().is_empty() => Ok(Value::Object(Default::default())),
        Value::String(text) => match serde_json::from_str::<Value>(&text) {
            Ok(v @ Value::Object(_)) => Ok(v),
            _ => {
                let shown: String = text.chars().take(200).collect();
                Err(format!(
                    "invalid arguments for tool `{tool}`: expected a JSON object, got {shown:?}"
                ))
            }
        },
        other => Err(format!(
            "invalid arguments for tool `{tool}`: expected a JSON object, got {}",
            match other {
                Value::Array(_) => "an array",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                _ => "something else",
            }
        )),
    }
}

fn decode_arguments<A: DeserializeOwned>(tool: &str, arguments: Value) -> Result<A, String> {
    let arguments = match arguments {
        Value::Null => Value::Object(Default::default()),
        // Arguments that were not valid JSON arrive as the raw text; some providers also
        // send JSON-encoded strings.
        Value::String(text) => match serde_json::from_str::<Value>(&text) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                let shown: String = text.chars().take(200).collect();
                return Err(format!(
                    "invalid arguments for tool `{tool}`: expected a JSON object, got {shown:?}"
                ));
            }
        },
        other => other,
    };
    serde_json::from_value(arguments)
        .map_err(|e| format!("invalid arguments for tool `{tool}`: {e}"))
}
