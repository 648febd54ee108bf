//! # liveagent-store
//!
//! Conversations that survive the instance holding them. A [`ConversationStore`] keeps what
//! a conversation needs to be restored on another instance ([`ConversationState`]): the
//! restore history (the same turns the session supervisor replays after a dropped
//! connection), variables, the Gemini resumption handle, tool calls in flight and the
//! client's [`ResumeToken`]. A [`StoreRecorder`] on the conversation's bus writes it as it
//! happens, one small batch of [`StoreOp`]s per event, never whole snapshots.
//!
//! # Layout
//!
//! - [`id`]: [`ConversationId`] and [`ResumeToken`], parsed and validated (they come from
//!   the network).
//! - [`state`]: [`ConversationState`], [`HistoryRecord`] and the changes, [`StoreOp`].
//! - [`store`]: the [`ConversationStore`] trait (`load`, `save`, `update`, `touch`,
//!   `delete`, each with its own error enum from [`error`]).
//! - [`memory`]: [`InMemoryConversationStore`], the default (one instance, today's
//!   behaviour).
//! - `redis_store` (feature `redis`): `RedisConversationStore`, shared by every instance.
//! - [`resume`]: picking a stored conversation up on this instance
//!   ([`resume::RestoringConfig`], [`resume::rerun_pending_calls`]).
//! - [`recorder`]: [`StoreRecorder`], the bus observer that writes a conversation, and keeps
//!   it going with a warning event when the store is down.
//! - `acceptance` (feature `acceptance`): `store_acceptance_suite`, the scenarios every
//!   backend passes.
//!
//! # Choosing a backend
//!
//! One instance: [`InMemoryConversationStore`] (a conversation lives as long as its
//! process). Several instances behind a load balancer: `RedisConversationStore` (feature `redis`), so that
//! any instance can pick a conversation up. Both expire a conversation after its idle
//! time-to-live (every write and the recorder's periodic touch reset it).
//!
//! # Tool results across instances
//!
//! The rule: **a call's result is either in the store, or the call is still in flight
//! there and is run again by the instance that restores the conversation; the provider
//! is sent exactly one output per call.**
//!
//! - A requested call is written as [`StoreOp::ToolStarted`]: it joins
//!   [`ConversationState::tools_in_flight`] and the history.
//! - Its result is written as [`StoreOp::ToolFinished`]: leaving the in-flight set and
//!   joining the history happen in one atomic write, so a stored call is either answered or
//!   in flight, never both and never neither.
//! - Restoring: answered calls are replayed with their stored result and **not run again**;
//!   calls still in flight ([`ConversationState::pending_calls`]) are run once by the new
//!   instance, with the same call id, and their result goes to the new session. The recorder
//!   ignores a second result for an answered call id, and every write carries revisions so
//!   that a batch retried after a timeout is applied once.
//! - So a tool whose instance died after running it but before its result reached the
//!   store runs a second time: execution is at least once, results are exactly once. Tools
//!   with side effects should use the call id as an idempotency key.
//!
//! ```
//! use std::time::Duration;
//! use liveagent_store::{ConversationId, ConversationState, ConversationStore,
//!     HistoryRecord, InMemoryConversationStore, StoreOp};
//!
//! # actix::System::new().block_on(async {
//! let store = InMemoryConversationStore::new();
//! let id = ConversationId::generate();
//! store.save(&ConversationState::new(id.clone(), "openai"), Duration::from_secs(60)).await.unwrap();
//! let hello = StoreOp::Append(HistoryRecord::User { text: "hello".into() });
//! store.update(&id, 1, &[hello], Duration::from_secs(60)).await.unwrap();
//! let state = store.load(&id).await.unwrap().unwrap();
//! assert_eq!(state.history, vec![HistoryRecord::User { text: "hello".into() }]);
//! assert_eq!(state.revision, 1);
//! # });
//! ```

#[cfg(feature = "acceptance")]
pub mod acceptance;
pub mod error;
pub mod id;
pub mod memory;
pub mod recorder;
#[cfg(feature = "redis")]
pub mod redis_store;
pub mod resume;
pub mod state;
pub mod store;

pub use error::{DeleteError, LoadError, SaveError, UpdateError};
pub use id::{ConversationId, InvalidId, ResumeToken};
pub use memory::InMemoryConversationStore;
pub use recorder::{
    GetRecorderStatus, LeaseLostHook, RecordOps, RecorderOptions, RecorderStatus, StoreRecorder,
};
#[cfg(feature = "redis")]
pub use redis_store::{RedisConversationStore, RedisStoreBuilder};
pub use state::{ConversationState, HistoryRecord, StoreOp, ToolCallRecord};
pub use store::ConversationStore;

/// History records kept per conversation unless configured otherwise (the same order of
/// magnitude as the supervisor's replay history).
pub const DEFAULT_HISTORY_LIMIT: usize = 500;

/// How long a lease taken again after the backend lost a conversation lasts before its
/// owner renews it ([`ConversationStore::save_leased`]).
pub const RETAKEN_LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(30);
