//! # liveagent-tools
//!
//! Tools are how a voice agent does things. This crate has:
//!
//! - [`Tool`]: a typed async function the model can call. Its arguments are a
//!   `serde::Deserialize + schemars::JsonSchema` struct whose provider-friendly JSON schema
//!   ([`schema_for`]) the provider receives; it returns anything `Serialize`.
//! - [`Toolbox`]: the tools of an agent and what surrounds their calls: timeouts (default
//!   and per tool), a human-in-the-loop approval hook ([`HitlHook`] → [`Approval`]), typed
//!   [`Dependencies`] injected through [`ToolContext`], [`ToolMiddleware`] and
//!   [`Plugin`]s.
//! - [`ToolExecutor`]: the actor that runs a conversation's tool calls from the event bus
//!   and publishes exactly one [`ToolResult`](liveagent_core::ToolResult) per call (see its
//!   docs for concurrency, `request_response` and cancellation semantics).
//!
//! The turn-based `Agent` used for handoff lives in `liveagent-agent`; its `as_tool` gives a
//! [`Tool`]. See `docs/tools.md` for a guide.
//!
//! ```
//! use liveagent_tools::{Tool, ToolError, Toolbox};
//! use schemars::JsonSchema;
//! use serde::Deserialize;
//!
//! /// Where to get the weather.
//! #[derive(Deserialize, JsonSchema)]
//! struct WeatherArgs {
//!     /// The city, e.g. "Lisbon".
//!     city: String,
//! }
//!
//! let toolbox = Toolbox::new().tool(Tool::new(
//!     "get_weather",
//!     "The current weather in a city.",
//!     |args: WeatherArgs| async move { Ok::<_, ToolError>(format!("sunny in {}", args.city)) },
//! ));
//! // What the session announces to the provider:
//! let schemas = toolbox.schemas();
//! assert_eq!(schemas[0].parameters["properties"]["city"]["type"], "string");
//! ```

#![warn(missing_docs)]

pub mod deps;
pub mod error;
pub mod executor;
pub mod hitl;
pub mod human;
pub mod middleware;
pub mod schema;
pub mod tool;
pub mod toolbox;

pub use deps::Dependencies;
pub use error::ToolError;
pub use executor::ToolExecutor;
pub use hitl::{Approval, HitlHook};
pub use human::HumanInputHook;
pub use middleware::{middleware_fn, FnMiddleware, Next, ToolMiddleware};
pub use schema::{provider_friendly, schema_for};
pub use tool::{NoArgs, Tool, ToolContext, ToolOutcome};
pub use toolbox::{
    Plugin, Toolbox, DEFAULT_APPROVAL_TIMEOUT, DEFAULT_MAX_CALLS_PER_RESPONSE,
    DEFAULT_MAX_CONCURRENT_CALLS, DEFAULT_TIMEOUT,
};

/// Turns a documented `async fn` into a function returning a [`Tool`] (the form of the
/// Python seed's `@agent.tool`).
///
/// ```
/// use liveagent_tools::{tool, Tool, ToolContext, ToolError};
///
/// /// Sum two numbers.
/// ///
/// /// # Arguments
/// /// * `a` - The first number.
/// /// * `b` - The second number.
/// #[tool]
/// async fn sum_numbers(a: i64, b: i64) -> Result<i64, ToolError> {
///     Ok(a + b)
/// }
///
/// let t: Tool = sum_numbers();
/// assert_eq!(t.description(), "Sum two numbers.");
/// assert_eq!(t.parameters()["properties"]["a"]["description"], "The first number.");
/// assert_eq!(t.parameters()["required"], serde_json::json!(["a", "b"]));
/// ```
///
/// The text before an `# Arguments` heading is the description; the list under it
/// (`` * `name` - text ``) documents the parameters. A `ToolContext` parameter receives the
/// call's context and is not in the schema; `Option<T>` parameters are optional. The
/// function may return `Result<T, E>` (`E: Into<ToolError>`) or a plain `T: Serialize`.
/// Options: `#[tool(name = "other", timeout_ms = 5000, crate = path::to::liveagent_tools)]`
/// (`crate` when the crate is re-exported under another path, e.g. by the `liveagent` facade).
pub use liveagent_macros::tool;

#[doc(hidden)]
pub mod __private {
    pub use schemars;
    pub use serde;
    pub use serde_json;
}
