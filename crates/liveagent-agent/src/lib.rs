//! # liveagent-agent
//!
//! [`Agent`]: a turn-based text agent over OpenAI Chat Completions, with its own tools and
//! tool-call loop. Use it on its own ([`Agent::ask`]) or hand work off to it from a live
//! voice agent: [`Agent::as_tool`] makes it a [`Tool`](liveagent_tools::Tool) named
//! `task_<agent>` taking `{"objective": "...", "context": "..."}` (AG2's handoff; see
//! [`handoff`]), which streams the sub-agent's progress on the conversation.
//!
//! ```no_run
//! use liveagent_agent::Agent;
//! use liveagent_tools::{Tool, ToolError};
//! # #[derive(serde::Deserialize, schemars::JsonSchema)] struct OrderArgs { id: String }
//!
//! # async fn demo() -> Result<(), liveagent_core::LiveError> {
//! let orders = Agent::new("orders", "You look orders up. Be brief.", "gpt-4o-mini")
//!     .tool(Tool::new("get_order", "An order by id.", |a: OrderArgs| async move {
//!         Ok::<_, ToolError>(serde_json::json!({"id": a.id, "status": "shipped"}))
//!     }));
//! let reply = orders.ask("Where is order 42?").await?;
//! println!("{}", reply.text);
//! // In a live agent: the voice model can now delegate to it.
//! let handoff = orders.as_tool("Ask the orders specialist."); // `task_orders`
//! # let _ = handoff; Ok(()) }
//! ```

#![warn(missing_docs)]

mod agent;
pub mod handoff;
pub mod sse;
pub mod stream;
pub mod wire;

pub use agent::{Agent, AgentReply, ToolRun, DEFAULT_BASE_URL};
pub use handoff::{Handoff, HandoffRequest};
pub use stream::ChatStreamEvent;
