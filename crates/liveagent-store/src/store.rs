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
/// [`StoreOp::ToolFinished`]). Run `acceptance::store_acceptance_suite` (feature
/// `acceptance`) against a new backend.
///
/// # Leases
///
/// One instance at a time owns a running conversation: it holds the conversation's
/// **lease**, a short-lived record naming it (`owner`, an opaque string unique per
/// recorder) that it renews while it runs. An instance that resumes the conversation (the
/// client came back to it with the resume token) takes the lease over; the old owner, if it
/// still runs (paused, partitioned), finds out at its next renewal or leased write
/// ([`update_leased`](Self::update_leased), [`save_leased`](Self::save_leased): the lease
/// check and the write are one atomic step), stops writing and ends its side. A lease whose
/// owner stopped renewing expires after its time-to-live. Redis: `SET NX PX`, renewed with
/// a compare-and-`PEXPIRE` script; in memory: the same rules under a lock.
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

    /// Takes the lease of `id` for `owner`, for `ttl`. Without `takeover` it is taken only
    /// when free or already `owner`'s (`SET NX PX`); with `takeover` it is taken from
    /// whoever holds it (a client resumed the conversation here). Returns whether `owner`
    /// holds it now.
    async fn acquire_lease(
        &self,
        id: &ConversationId,
        owner: &str,
        ttl: Duration,
        takeover: bool,
    ) -> Result<bool, UpdateError>;

    /// Extends `owner`'s lease of `id` to `ttl` from now. False when `owner` lost it
    /// (another owner holds it, or it expired while the conversation is still stored). A
    /// lease that vanished together with the conversation (the backend lost everything,
    /// e.g. a Redis restart without persistence) is taken again: nobody else can hold it.
    async fn renew_lease(
        &self,
        id: &ConversationId,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, UpdateError>;

    /// Gives `owner`'s lease of `id` up (nothing happens if `owner` does not hold it).
    async fn release_lease(&self, id: &ConversationId, owner: &str) -> Result<(), DeleteError>;

    /// The current owner of `id`'s lease, if any.
    async fn lease_owner(&self, id: &ConversationId) -> Result<Option<String>, LoadError>;

    /// [`update`](Self::update), only while `owner` holds the lease of `id`, checked in
    /// the same atomic step: [`UpdateError::LeaseLost`] (nothing written) otherwise.
    async fn update_leased(
        &self,
        id: &ConversationId,
        owner: &str,
        first_revision: u64,
        ops: &[StoreOp],
        ttl: Duration,
    ) -> Result<(), UpdateError>;

    /// [`save`](Self::save), only while `owner` holds the lease of the state's
    /// conversation, checked in the same atomic step: [`SaveError::LeaseLost`] (nothing
    /// written) otherwise.
    async fn save_leased(
        &self,
        state: &ConversationState,
        owner: &str,
        ttl: Duration,
    ) -> Result<(), SaveError>;
}
