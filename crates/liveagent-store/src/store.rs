//! The [`ConversationStore`] trait: where conversations live between instances.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::{DeleteError, LoadError, SaveError, UpdateError};
use crate::id::ConversationId;
use crate::state::{ConversationState, StoreOp};

/// Storage for conversation state, shared by every instance of an application.
///
/// Every write takes the time-to-live: a conversation nobody writes to or
/// [`touch`](Self::touch)es for that long expires (its idle timeout). A running
/// conversation writes [`StoreOp`] batches with [`update`](Self::update) (one small batch
/// per event, never the whole state); [`save`](Self::save) writes a whole state, at creation
/// and to re-seed a conversation the backend lost.
///
/// Implementations must apply one `update` batch atomically and in order, so that a tool
/// result never lands without leaving the in-flight set (see
/// [`StoreOp::ToolFinished`]). Run `acceptance::store_acceptance_suite` (feature `acceptance`) against a
/// new backend (feature `acceptance`).
#[async_trait]
pub trait ConversationStore: Send + Sync + 'static {
    /// The state of `id`, or `None` if there is none (never stored, expired, deleted).
    async fn load(&self, id: &ConversationId) -> Result<Option<ConversationState>, LoadError>;

    /// Writes the whole `state` (replacing any stored one) to live `ttl` from now.
    async fn save(&self, state: &ConversationState, ttl: Duration) -> Result<(), SaveError>;

    /// Applies `ops` in order, atomically, and resets the idle time to `ttl`.
    /// `ops[i]` has revision `first_revision + i`; ops at or below the stored
    /// [`revision`](ConversationState::revision) were applied already and are skipped (a
    /// retried batch is never applied twice), and the stored revision becomes the last one.
    /// [`UpdateError::NotFound`] if the conversation is not stored.
    async fn update(
        &self,
        id: &ConversationId,
        first_revision: u64,
        ops: &[StoreOp],
        ttl: Duration,
    ) -> Result<(), UpdateError>;

    /// Resets the idle time of `id` to `ttl`. [`UpdateError::NotFound`] if it is not stored.
    async fn touch(&self, id: &ConversationId, ttl: Duration) -> Result<(), UpdateError>;

    /// Removes `id` (no error if it was not stored).
    async fn delete(&self, id: &ConversationId) -> Result<(), DeleteError>;
}
