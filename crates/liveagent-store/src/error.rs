//! One error enum per store operation (the shape of actix-session's `LoadError`,
//! `SaveError`, `UpdateError`): callers match on what they can act on (a conversation that
//! is gone, data that cannot be decoded) and log or retry the rest.

/// [`ConversationStore::load`](crate::ConversationStore::load) failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The stored state could not be decoded (written by an incompatible version, or
    /// tampered with).
    #[error("stored conversation cannot be decoded: {0}")]
    Deserialization(#[source] anyhow::Error),
    /// The backend failed (connection refused, timeout...).
    #[error("conversation store unavailable: {0}")]
    Other(#[source] anyhow::Error),
}

/// [`ConversationStore::save`](crate::ConversationStore::save) failed.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// The state could not be encoded.
    #[error("conversation cannot be encoded: {0}")]
    Serialization(#[source] anyhow::Error),
    /// A leased write ([`save_leased`](crate::ConversationStore::save_leased)) by an
    /// instance that no longer holds the conversation's lease: nothing was written.
    #[error("the conversation's lease is held by another instance")]
    LeaseLost,
    /// The backend failed.
    #[error("conversation store unavailable: {0}")]
    Other(#[source] anyhow::Error),
}

/// [`ConversationStore::update`](crate::ConversationStore::update) failed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// No such conversation: it expired, was deleted, or the backend lost it (a Redis
    /// restart without persistence). The writer should [`save`](crate::ConversationStore::save)
    /// the whole state again.
    #[error("conversation not found in the store")]
    NotFound,
    /// A change could not be encoded.
    #[error("change cannot be encoded: {0}")]
    Serialization(#[source] anyhow::Error),
    /// A leased write ([`update_leased`](crate::ConversationStore::update_leased)) by an
    /// instance that no longer holds the conversation's lease: nothing was written.
    #[error("the conversation's lease is held by another instance")]
    LeaseLost,
    /// The backend failed.
    #[error("conversation store unavailable: {0}")]
    Other(#[source] anyhow::Error),
}

/// [`ConversationStore::delete`](crate::ConversationStore::delete) failed.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// The backend failed.
    #[error("conversation store unavailable: {0}")]
    Other(#[source] anyhow::Error),
}
