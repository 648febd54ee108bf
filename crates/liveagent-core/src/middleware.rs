//! [`EventMiddleware`]: hooks on the event flow between the provider and the application.
//!
//! The session runtime runs every event the provider produces through the middleware list
//! before publishing it, and every command the application sends before it reaches the
//! provider. The order is the order of registration for both directions (the first
//! middleware sees an event first). Tool-call middleware (around each tool call) lives in
//! `liveagent-tools`.

use crate::events::LiveEvent;
use crate::protocol::SessionCommand;

/// Observes, rewrites or drops events and commands (logging, metrics, redaction).
///
/// ```
/// use liveagent_core::{EventMiddleware, LiveEvent, SessionCommand};
///
/// /// Drops the user's transcripts before anyone sees them.
/// struct NoUserTranscripts;
/// impl EventMiddleware for NoUserTranscripts {
///     fn on_event(&self, event: LiveEvent) -> Option<LiveEvent> {
///         match event {
///             LiveEvent::InputTranscriptChunk(_) => None,
///             other => Some(other),
///         }
///     }
/// }
/// ```
pub trait EventMiddleware: Send + Sync + 'static {
    /// An event from the provider, before it is published. Return `None` to drop it.
    fn on_event(&self, event: LiveEvent) -> Option<LiveEvent> {
        Some(event)
    }

    /// A command from the application, before the provider sees it. Return `None` to drop it.
    fn on_command(&self, command: SessionCommand) -> Option<SessionCommand> {
        Some(command)
    }
}
