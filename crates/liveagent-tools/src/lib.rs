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

pub mod deps;
pub mod error;
pub mod executor;
pub mod hitl;
pub mod middleware;
pub mod schema;
pub mod tool;
pub mod toolbox;

pub use deps::Dependencies;
pub use error::ToolError;
pub use executor::ToolExecutor;
pub use hitl::{Approval, HitlHook};
pub use middleware::{middleware_fn, FnMiddleware, Next, ToolMiddleware};
pub use schema::{provider_friendly, schema_for};
pub use tool::{NoArgs, Tool, ToolContext, ToolOutcome};
pub use toolbox::{Plugin, Toolbox, DEFAULT_APPROVAL_TIMEOUT, DEFAULT_TIMEOUT};

#[doc(hidden)]
pub mod __private {
    pub use schemars;
    pub use serde;
    pub use serde_json;
}
