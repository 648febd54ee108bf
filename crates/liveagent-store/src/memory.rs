//! [`InMemoryConversationStore`]: the default, today's single-instance behaviour. State lives
//! in this process only (a conversation dies with its instance), with the same idle expiry
//! as a shared store. Time is tokio's clock, so tests can pause and advance it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::error::{DeleteError, LoadError, SaveError, UpdateError};
use crate::id::ConversationId;
use crate::state::{ConversationState, StoreOp};
use crate::store::ConversationStore;

/// Conversations in this process's memory.
#[derive(Debug)]
pub struct InMemoryConversationStore {
    entries: Mutex<HashMap<ConversationId, Entry>>,
    history_limit: usize,
}

#[derive(Debug)]
struct Entry {
    state: ConversationState,
    expires: Instant,
}

impl Default for InMemoryConversationStore {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryConversationStore {
    /// An empty store keeping at most [`DEFAULT_HISTORY_LIMIT`](crate::DEFAULT_HISTORY_LIMIT)
    /// history records per conversation.
    pub fn new() -> Self {
        Self::with_history_limit(crate::DEFAULT_HISTORY_LIMIT)
    }

    /// An empty store keeping at most `limit` history records per conversation (0: all).
    pub fn with_history_limit(limit: usize) -> Self {
        InMemoryConversationStore {
            entries: Mutex::new(HashMap::new()),
            history_limit: limit,
        }
    }

    /// Conversations stored and not expired.
    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.lock().values().filter(|e| e.expires > now).count()
    }

    /// True when no live conversation is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConversationId, Entry>> {
        // A panic while holding the lock cannot leave an entry half-written (every change
        // is computed first, then inserted), so a poisoned lock is still consistent.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl ConversationStore for InMemoryConversationStore {
    async fn load(&self, id: &ConversationId) -> Result<Option<ConversationState>, LoadError> {
        let mut entries = self.lock();
        match entries.get(id) {
            Some(e) if e.expires > Instant::now() => Ok(Some(e.state.clone())),
            Some(_) => {
                entries.remove(id);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn save(&self, state: &ConversationState, ttl: Duration) -> Result<(), SaveError> {
        let now = Instant::now();
        let mut entries = self.lock();
        entries.retain(|_, e| e.expires > now);
        let mut state = state.clone();
        crate::state::trim_history(&mut state.history, self.history_limit);
        entries.insert(
            state.id.clone(),
            Entry {
                state,
                expires: now + ttl,
            },
        );
        Ok(())
    }

    async fn update(
        &self,
        id: &ConversationId,
        first_revision: u64,
        ops: &[StoreOp],
        ttl: Duration,
    ) -> Result<(), UpdateError> {
        let now = Instant::now();
        let mut entries = self.lock();
        let entry = match entries.get_mut(id) {
            Some(e) if e.expires > now => e,
            _ => return Err(UpdateError::NotFound),
        };
        let mut state = entry.state.clone();
        for (i, op) in ops.iter().enumerate() {
            let revision = first_revision + i as u64;
            if revision > state.revision {
                state.apply(op, self.history_limit);
                state.revision = revision;
            }
        }
        entry.state = state;
        entry.expires = now + ttl;
        Ok(())
    }

    async fn touch(&self, id: &ConversationId, ttl: Duration) -> Result<(), UpdateError> {
        let now = Instant::now();
        match self.lock().get_mut(id) {
            Some(e) if e.expires > now => {
                e.expires = now + ttl;
                Ok(())
            }
            _ => Err(UpdateError::NotFound),
        }
    }

    async fn delete(&self, id: &ConversationId) -> Result<(), DeleteError> {
        self.lock().remove(id);
        Ok(())
    }
}
