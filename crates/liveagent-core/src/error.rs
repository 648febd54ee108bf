//! [`LiveError`]: the one error type components put on the event stream and return from
//! fallible calls.

use serde::Serialize;

/// What went wrong, coarsely: decides whether a retry can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The key or token was refused. Retrying cannot help.
    Auth,
    /// The model, deployment or endpoint does not exist. Retrying cannot help.
    NotFound,
    /// A quota or billing limit. Retrying soon cannot help.
    Quota,
    /// The provider rejected a request as invalid (usually non-fatal for the session).
    InvalidRequest,
    /// The provider reported an error of its own (server error, rate limit, ...).
    Provider,
    /// The connection could not be made or was lost.
    Connection,
    /// A frame could not be decoded or broke the protocol.
    Protocol,
    /// A tool failed, timed out, or was denied.
    Tool,
    /// An audio device failed or is missing.
    Audio,
    /// The configuration is invalid (empty name, bad option, ...).
    Config,
    /// A bug or an unexpected state inside liveagent.
    Internal,
    /// Another instance took the conversation over (a conversation store's lease): this
    /// one must stop. Retrying cannot help.
    Conflict,
}

impl ErrorKind {
    /// True for errors that reconnecting or retrying cannot fix.
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            ErrorKind::Auth
                | ErrorKind::NotFound
                | ErrorKind::Quota
                | ErrorKind::Config
                | ErrorKind::Conflict
        )
    }
}

/// A typed error with a human-readable message and, where the provider gave one, its code.
///
/// Messages never contain API keys: providers redact them before building the error.
///
/// ```
/// use liveagent_core::{ErrorKind, LiveError};
/// let err = LiveError::new(ErrorKind::Auth, "invalid api key").with_code("invalid_api_key");
/// assert!(err.is_permanent());
/// assert_eq!(err.to_string(), "auth error: invalid api key (invalid_api_key)");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{} error: {message}{}", kind_name(*kind), code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
pub struct LiveError {
    /// The class of error.
    pub kind: ErrorKind,
    /// What happened, for people.
    pub message: String,
    /// The provider's or component's error code, if any (`invalid_api_key`, `UNAVAILABLE`, ...).
    pub code: Option<String>,
}

fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Auth => "auth",
        ErrorKind::NotFound => "not found",
        ErrorKind::Quota => "quota",
        ErrorKind::InvalidRequest => "invalid request",
        ErrorKind::Provider => "provider",
        ErrorKind::Connection => "connection",
        ErrorKind::Protocol => "protocol",
        ErrorKind::Tool => "tool",
        ErrorKind::Audio => "audio",
        ErrorKind::Config => "config",
        ErrorKind::Internal => "internal",
        ErrorKind::Conflict => "conflict",
    }
}

impl LiveError {
    /// A new error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        LiveError {
            kind,
            message: message.into(),
            code: None,
        }
    }

    /// Adds the provider's error code.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// A configuration error.
    pub fn config(message: impl Into<String>) -> Self {
        LiveError::new(ErrorKind::Config, message)
    }

    /// A protocol (decoding) error.
    pub fn protocol(message: impl Into<String>) -> Self {
        LiveError::new(ErrorKind::Protocol, message)
    }

    /// A connection error.
    pub fn connection(message: impl Into<String>) -> Self {
        LiveError::new(ErrorKind::Connection, message)
    }

    /// True when retrying cannot fix it (see [`ErrorKind::is_permanent`]).
    pub fn is_permanent(&self) -> bool {
        self.kind.is_permanent()
    }
}
