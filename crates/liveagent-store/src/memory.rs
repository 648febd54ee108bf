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
    leases: Mutex<HashMap<ConversationId, (String, Instant)>>,
    history_limit: usize,
}

/// Where `owner` stands with a lease (and the conversation it guards).
enum Standing {
    /// `owner` holds it.
    Holds,
    /// Free, and the conversation is not stored either: nobody can hold it.
    Vacant,
    /// Someone else holds it, or it expired while the conversation is stored.
    Lost,
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
            leases: Mutex::new(HashMap::new()),
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

    fn lock_leases(&self) -> std::sync::MutexGuard<'_, HashMap<ConversationId, (String, Instant)>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a batch to a stored conversation (entries lock held).
    fn apply(
        &self,
        entries: &mut HashMap<ConversationId, Entry>,
        id: &ConversationId,
        first_revision: u64,
        ops: &[StoreOp],
        ttl: Duration,
    ) -> Result<(), UpdateError> {
        let now = Instant::now();
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

    /// `owner`'s standing on `id` (call with both locks held: entries first, then leases).
    fn standing(
        entries: &HashMap<ConversationId, Entry>,
        leases: &HashMap<ConversationId, (String, Instant)>,
        id: &ConversationId,
        owner: &str,
    ) -> Standing {
        let now = Instant::now();
        match leases.get(id) {
            Some((o, exp)) if *exp > now && o == owner => Standing::Holds,
            Some((_, exp)) if *exp > now => Standing::Lost,
            _ if entries.get(id).is_some_and(|e| e.expires > now) => Standing::Lost,
            _ => Standing::Vacant,
        }
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
        let mut entries = self.lock();
        self.apply(&mut entries, id, first_revision, ops, ttl)
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
        self.lock_leases().remove(id);
        Ok(())
    }

    async fn acquire_lease(
        &self,
        id: &ConversationId,
        owner: &str,
        ttl: Duration,
        takeover: bool,
    ) -> Result<bool, UpdateError> {
        let now = Instant::now();
        let mut leases = self.lock_leases();
        let free = match leases.get(id) {
            Some((o, exp)) => *exp <= now || o == owner,
            None => true,
        };
        if free || takeover {
            leases.insert(id.clone(), (owner.to_owned(), now + ttl));
            return Ok(true);
        }
        Ok(false)
    }

    async fn renew_lease(
        &self,
        id: &ConversationId,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, UpdateError> {
        let entries = self.lock();
        let mut leases = self.lock_leases();
        match Self::standing(&entries, &leases, id, owner) {
            Standing::Lost => Ok(false),
            Standing::Holds | Standing::Vacant => {
                leases.insert(id.clone(), (owner.to_owned(), Instant::now() + ttl));
                Ok(true)
            }
        }
    }

    async fn release_lease(&self, id: &ConversationId, owner: &str) -> Result<(), DeleteError> {
        let mut leases = self.lock_leases();
        if leases.get(id).is_some_and(|(o, _)| o == owner) {
            leases.remove(id);
        }
        Ok(())
    }

    async fn lease_owner(&self, id: &ConversationId) -> Result<Option<String>, LoadError> {
        let now = Instant::now();
        Ok(self
            .lock_leases()
            .get(id)
            .filter(|(_, exp)| *exp > now)
            .map(|(o, _)| o.clone()))
    }

    async fn update_leased(
        &self,
        id: &ConversationId,
        owner: &str,
        first_revision: u64,
        ops: &[StoreOp],
        ttl: Duration,
    ) -> Result<(), UpdateError> {
        // Both locks for the check and the write: one atomic step.
        let mut entries = self.lock();
        let leases = self.lock_leases();
        match Self::standing(&entries, &leases, id, owner) {
            Standing::Lost => Err(UpdateError::LeaseLost),
            Standing::Vacant => Err(UpdateError::NotFound),
            Standing::Holds => self.apply(&mut entries, id, first_revision, ops, ttl),
        }
    }

    async fn save_leased(
        &self,
        state: &ConversationState,
        owner: &str,
        ttl: Duration,
    ) -> Result<(), SaveError> {
        let now = Instant::now();
        let mut entries = self.lock();
        let mut leases = self.lock_leases();
        match Self::standing(&entries, &leases, &state.id, owner) {
            Standing::Lost => return Err(SaveError::LeaseLost),
            Standing::Vacant => {
                // The store lost the conversation and its lease: take it again (the
                // owner renews it to its own time-to-live next).
                leases.insert(
                    state.id.clone(),
                    (owner.to_owned(), now + crate::RETAKEN_LEASE_TTL),
                );
            }
            Standing::Holds => {}
        }
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
}
