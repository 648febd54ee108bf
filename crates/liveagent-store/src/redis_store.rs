//! [`RedisConversationStore`] (feature `redis`): conversations shared by every instance
//! through Redis, on the maintained `redis` crate's tokio connection manager (it reconnects
//! by itself after Redis restarts; we write no client of our own).
//!
//! # Layout in Redis
//!
//! One conversation is four keys sharing the hash tag `{id}` (so a Redis Cluster keeps them
//! on one node, and one script can touch them all):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<prefix>:{id}:meta` | hash | `provider`, `rev` (revision), `handle` (resumption handle), `token` (resume token) |
//! | `<prefix>:{id}:log` | list | the history, one JSON entry per push (a record, a heard-ms patch or a cancellation), trimmed to the history limit |
//! | `<prefix>:{id}:vars` | hash | variables |
//! | `<prefix>:{id}:tools` | hash | tool calls in flight, call id → JSON [`ToolCallRecord`] |
//! | `<prefix>:{id}:lease` | string | the owner holding the conversation's lease (`SET NX PX`, renewed by compare-and-`PEXPIRE`) |
//!
//! An [`update`](ConversationStore::update) is one Lua script: it checks that `meta`
//! exists, applies every change of the batch (`RPUSH`, `HSET`, `HDEL`), trims the log and
//! sets the expiry of all four keys, atomically. A batch is a few hundred bytes: history is
//! appended, never rewritten. The leased variants check the `lease` key in the same script,
//! so a write of an instance that lost the lease never lands.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};

use crate::error::{DeleteError, LoadError, SaveError, UpdateError};
use crate::id::{ConversationId, ResumeToken};
use crate::state::{ConversationState, HistoryRecord, StoreOp, ToolCallRecord};
use crate::store::ConversationStore;

/// One entry of the `log` list.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "e", rename_all = "snake_case")]
enum LogEntry {
    /// A history record.
    Record { r: HistoryRecord },
    /// Playback of an assistant item was cut.
    Heard { item_id: String, heard_ms: u64 },
    /// Calls withdrawn: drop them from the history.
    Cancelled { call_ids: Vec<String> },
}

const META: usize = 1;
const LOG: usize = 2;
const VARS: usize = 3;
const TOOLS: usize = 4;

/// Applies a batch: ARGV = ttl_ms, log limit, first revision, lease owner (empty: no lease
/// check), then per op: the number of changes n, then n (command, key index, field, value)
/// quadruples. Ops at or below the stored revision (`meta.rev`) are skipped. Returns 0 when
/// the conversation does not exist, -1 when the owner does not hold the lease (KEYS[5]);
/// nothing is written then.
const UPDATE_SCRIPT: &str = r#"
if ARGV[4] ~= '' then
  local cur = redis.call('GET', KEYS[5])
  if cur ~= ARGV[4] then
    if cur == false and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
    return -1
  end
end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local stored = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
local rev = tonumber(ARGV[3]) - 1
local i = 5
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  i = i + 1
  rev = rev + 1
  for q = 1, n do
    if rev > stored then
      local cmd, k, f, v = ARGV[i], KEYS[tonumber(ARGV[i+1])], ARGV[i+2], ARGV[i+3]
      if cmd == 'rpush' then redis.call('RPUSH', k, v)
      elseif cmd == 'hset' then redis.call('HSET', k, f, v)
      elseif cmd == 'hdel' then redis.call('HDEL', k, f)
      end
    end
    i = i + 4
  end
end
if rev > stored then redis.call('HSET', KEYS[1], 'rev', rev) end
local limit = tonumber(ARGV[2])
if limit > 0 then redis.call('LTRIM', KEYS[2], -limit, -1) end
for j = 1, 4 do redis.call('PEXPIRE', KEYS[j], ARGV[1]) end
return 1
"#;

/// Resets the expiry of the four keys; 0 when the conversation does not exist.
const TOUCH_SCRIPT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for j = 1, 4 do redis.call('PEXPIRE', KEYS[j], ARGV[1]) end
return 1
"#;

/// A whole state, written only while ARGV[1] holds the lease (KEYS[5]); a lease that
/// vanished with the conversation is taken again for ARGV[3] ms. ARGV[2] = ttl_ms, then
/// counted lists: meta pairs, log entries, variable pairs, tool pairs. -1: lease lost.
const SAVE_LEASED_SCRIPT: &str = r#"
local owner = ARGV[1]
local cur = redis.call('GET', KEYS[5])
if cur ~= owner then
  if cur == false and redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('SET', KEYS[5], owner, 'PX', ARGV[3])
  else
    return -1
  end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
local i = 4
local n = tonumber(ARGV[i]); i = i + 1
for q = 1, n do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i+1]); i = i + 2 end
n = tonumber(ARGV[i]); i = i + 1
for q = 1, n do redis.call('RPUSH', KEYS[2], ARGV[i]); i = i + 1 end
n = tonumber(ARGV[i]); i = i + 1
for q = 1, n do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i+1]); i = i + 2 end
n = tonumber(ARGV[i]); i = i + 1
for q = 1, n do redis.call('HSET', KEYS[4], ARGV[i], ARGV[i+1]); i = i + 2 end
for j = 1, 4 do redis.call('PEXPIRE', KEYS[j], ARGV[2]) end
return 1
"#;

/// Takes the lease KEYS[1] for ARGV[1] for ARGV[2] ms: `SET NX PX`, or unconditionally
/// when ARGV[3] is `1` (takeover); an owner re-acquiring its own lease extends it.
const ACQUIRE_SCRIPT: &str = r#"
if ARGV[3] == '1' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// Renews ARGV[1]'s lease KEYS[1] to ARGV[2] ms; takes it again if it vanished together
/// with the conversation (KEYS[2], its meta key). 0: lost.
const RENEW_SCRIPT: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if cur == false and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"#;

/// Deletes the lease KEYS[1] if ARGV[1] holds it.
const RELEASE_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"#;

/// Builds a [`RedisConversationStore`].
#[derive(Debug)]
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    history_limit: usize,
    response_timeout: Duration,
    connection_timeout: Duration,
}

impl RedisStoreBuilder {
    /// Keys start with `prefix` (default `liveagent`): several applications can share a
    /// Redis.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Keep at most `limit` history log entries per conversation (0: all; default
    /// [`DEFAULT_HISTORY_LIMIT`](crate::DEFAULT_HISTORY_LIMIT)).
    pub fn history_limit(mut self, limit: usize) -> Self {
        self.history_limit = limit;
        self
    }

    /// How long one command may wait for Redis (default 2 s). A conversation never waits
    /// on Redis (its recorder writes in the background), so this bounds how soon an
    /// outage is noticed.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How long connecting may take (default 2 s).
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// The store. It connects lazily, on the first command, and reconnects by itself: it
    /// can be built while Redis is down. Must be called inside a tokio runtime (an actix
    /// system is one). Fails only on a malformed URL.
    pub fn build(self) -> Result<RedisConversationStore, anyhow::Error> {
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| anyhow::anyhow!("invalid Redis URL: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(self.response_timeout))
            .set_connection_timeout(Some(self.connection_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| anyhow::anyhow!("cannot set up the Redis connection: {e}"))?;
        Ok(RedisConversationStore {
            conn,
            prefix: self.prefix,
            history_limit: self.history_limit,
            update: redis::Script::new(UPDATE_SCRIPT),
            touch: redis::Script::new(TOUCH_SCRIPT),
            save_leased: redis::Script::new(SAVE_LEASED_SCRIPT),
            acquire: redis::Script::new(ACQUIRE_SCRIPT),
            renew: redis::Script::new(RENEW_SCRIPT),
            release: redis::Script::new(RELEASE_SCRIPT),
        })
    }
}

/// Conversations in Redis, shared by every instance that points at it.
///
/// ```no_run
/// # async fn demo() -> anyhow::Result<()> {
/// use liveagent_store::{ConversationStore, RedisConversationStore};
/// let store = RedisConversationStore::builder("redis://127.0.0.1:6379")
///     .key_prefix("myapp")
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisConversationStore {
    conn: ConnectionManager,
    prefix: String,
    history_limit: usize,
    update: redis::Script,
    touch: redis::Script,
    save_leased: redis::Script,
    acquire: redis::Script,
    renew: redis::Script,
    release: redis::Script,
}

impl std::fmt::Debug for RedisConversationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: not printed.
        f.debug_struct("RedisConversationStore")
            .field("prefix", &self.prefix)
            .field("history_limit", &self.history_limit)
            .finish_non_exhaustive()
    }
}

fn other(e: redis::RedisError) -> anyhow::Error {
    anyhow::anyhow!("redis: {e}")
}

fn ttl_ms(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

impl RedisConversationStore {
    /// A builder for a store at `url` (`redis://[:password@]host:port[/db]`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            prefix: "liveagent".into(),
            history_limit: crate::DEFAULT_HISTORY_LIMIT,
            response_timeout: Duration::from_secs(2),
            connection_timeout: Duration::from_secs(2),
        }
    }

    fn keys(&self, id: &ConversationId) -> [String; 4] {
        let base = format!("{}:{{{}}}", self.prefix, id.as_str());
        [
            format!("{base}:meta"),
            format!("{base}:log"),
            format!("{base}:vars"),
            format!("{base}:tools"),
        ]
    }

    fn lease_key(&self, id: &ConversationId) -> String {
        format!("{}:{{{}}}:lease", self.prefix, id.as_str())
    }

    async fn run_update(
        &self,
        id: &ConversationId,
        owner: &str,
        first_revision: u64,
        ops: &[StoreOp],
        ttl: Duration,
    ) -> Result<(), UpdateError> {
        let keys = self.keys(id);
        let mut invocation = self.update.prepare_invoke();
        for k in &keys {
            invocation.key(k);
        }
        invocation.key(self.lease_key(id));
        invocation
            .arg(ttl_ms(ttl))
            .arg(self.history_limit)
            .arg(first_revision)
            .arg(owner);
        for op in ops {
            let quads = quads(op).map_err(UpdateError::Serialization)?;
            invocation.arg(quads.len());
            for (cmd, key, field, value) in quads {
                invocation.arg(cmd).arg(key).arg(field).arg(value);
            }
        }
        let mut conn = self.conn.clone();
        let found: i64 = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| UpdateError::Other(other(e)))?;
        match found {
            0 => Err(UpdateError::NotFound),
            -1 => Err(UpdateError::LeaseLost),
            _ => Ok(()),
        }
    }
}

/// A change as (command, key index, field, value).
type Quad = (&'static str, usize, String, String);

fn json<T: Serialize>(value: &T) -> Result<String, anyhow::Error> {
    serde_json::to_string(value).map_err(anyhow::Error::from)
}

fn quads(op: &StoreOp) -> Result<Vec<Quad>, anyhow::Error> {
    let log = |e: LogEntry| -> Result<Quad, anyhow::Error> {
        Ok(("rpush", LOG, String::new(), json(&e)?))
    };
    Ok(match op {
        StoreOp::Append(r) => vec![log(LogEntry::Record { r: r.clone() })?],
        StoreOp::AssistantHeard { item_id, heard_ms } => vec![log(LogEntry::Heard {
            item_id: item_id.clone(),
            heard_ms: *heard_ms,
        })?],
        StoreOp::SetVariable { name, value } => {
            vec![("hset", VARS, name.clone(), value.clone())]
        }
        StoreOp::RemoveVariable { name } => vec![("hdel", VARS, name.clone(), String::new())],
        StoreOp::SetResumptionHandle(Some(h)) => vec![("hset", META, "handle".into(), h.clone())],
        StoreOp::SetResumptionHandle(None) => vec![("hdel", META, "handle".into(), String::new())],
        StoreOp::SetResumeToken(t) => {
            vec![("hset", META, "token".into(), t.expose().to_owned())]
        }
        StoreOp::ToolStarted(call) => vec![
            ("hset", TOOLS, call.call_id.clone(), json(call)?),
            log(LogEntry::Record {
                r: HistoryRecord::ToolCall {
                    call_id: call.call_id.clone(),
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                },
            })?,
        ],
        StoreOp::ToolFinished {
            call_id,
            name,
            output,
        } => vec![
            ("hdel", TOOLS, call_id.clone(), String::new()),
            log(LogEntry::Record {
                r: HistoryRecord::ToolResult {
                    call_id: call_id.clone(),
                    name: name.clone(),
                    output: output.clone(),
                },
            })?,
        ],
        StoreOp::ToolCancelled { call_ids } => {
            let mut q: Vec<Quad> = call_ids
                .iter()
                .map(|id| ("hdel", TOOLS, id.clone(), String::new()))
                .collect();
            q.push(log(LogEntry::Cancelled {
                call_ids: call_ids.clone(),
            })?);
            q
        }
    })
}

#[async_trait]
impl ConversationStore for RedisConversationStore {
    async fn load(&self, id: &ConversationId) -> Result<Option<ConversationState>, LoadError> {
        let keys = self.keys(id);
        let mut conn = self.conn.clone();
        #[allow(clippy::type_complexity)]
        let (meta, log, vars, tools): (
            BTreeMap<String, String>,
            Vec<String>,
            BTreeMap<String, String>,
            BTreeMap<String, String>,
        ) = redis::pipe()
            .atomic()
            .hgetall(&keys[0])
            .lrange(&keys[1], 0, -1)
            .hgetall(&keys[2])
            .hgetall(&keys[3])
            .query_async(&mut conn)
            .await
            .map_err(|e| LoadError::Other(other(e)))?;
        let Some(provider) = meta.get("provider") else {
            return Ok(None);
        };
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            LoadError::Deserialization(anyhow::anyhow!("{what}: {e}"))
        };
        let mut state = ConversationState::new(id.clone(), provider.clone());
        state.resumption_handle = meta.get("handle").cloned();
        state.revision = match meta.get("rev") {
            Some(r) => r.parse().map_err(|e| bad("revision", &e))?,
            None => 0,
        };
        state.resume_token = match meta.get("token") {
            Some(t) => Some(ResumeToken::parse(t).map_err(|e| bad("resume token", &e))?),
            None => None,
        };
        state.variables = vars;
        for (call_id, text) in tools {
            let call: ToolCallRecord =
                serde_json::from_str(&text).map_err(|e| bad("tool call in flight", &e))?;
            state.tools_in_flight.insert(call_id, call);
        }
        for text in log {
            let entry: LogEntry =
                serde_json::from_str(&text).map_err(|e| bad("history entry", &e))?;
            // Fold without touching the in-flight set: it was read as stored.
            match entry {
                LogEntry::Record { r } => state.push_history(r, self.history_limit),
                LogEntry::Heard { item_id, heard_ms } => state.set_heard(&item_id, heard_ms),
                LogEntry::Cancelled { call_ids } => {
                    state.history.retain(|r| {
                        !matches!(r, HistoryRecord::ToolCall { call_id, .. } if call_ids.contains(call_id))
                    });
                }
            }
        }
        crate::state::drop_orphan_results(&mut state.history);
        Ok(Some(state))
    }

    async fn save(&self, state: &ConversationState, ttl: Duration) -> Result<(), SaveError> {
        let keys = self.keys(&state.id);
        let Encoded { meta, log, tools } =
            encode_state(state, self.history_limit).map_err(SaveError::Serialization)?;
        let ms = ttl_ms(ttl);
        let mut pipe = redis::pipe();
        pipe.atomic().del(&keys[..]).ignore();
        pipe.hset_multiple(&keys[0], &meta).ignore();
        if !log.is_empty() {
            pipe.rpush(&keys[1], &log).ignore();
        }
        if !state.variables.is_empty() {
            let vars: Vec<_> = state.variables.iter().collect();
            pipe.hset_multiple(&keys[2], &vars).ignore();
        }
        if !tools.is_empty() {
            pipe.hset_multiple(&keys[3], &tools).ignore();
        }
        for k in &keys {
            pipe.pexpire(k, ms as i64).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| SaveError::Other(other(e)))
    }

    async fn update(
        &self,
        id: &ConversationId,
        first_revision: u64,
        ops: &[StoreOp],
        ttl: Duration,
    ) -> Result<(), UpdateError> {
        self.run_update(id, "", first_revision, ops, ttl).await
    }

    async fn touch(&self, id: &ConversationId, ttl: Duration) -> Result<(), UpdateError> {
        let keys = self.keys(id);
        let mut invocation = self.touch.prepare_invoke();
        for k in &keys {
            invocation.key(k);
        }
        invocation.arg(ttl_ms(ttl));
        let mut conn = self.conn.clone();
        let found: i64 = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| UpdateError::Other(other(e)))?;
        if found == 0 {
            return Err(UpdateError::NotFound);
        }
        Ok(())
    }

    async fn delete(&self, id: &ConversationId) -> Result<(), DeleteError> {
        let keys = self.keys(id);
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(&keys[..])
            .arg(self.lease_key(id))
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| DeleteError::Other(other(e)))
    }

    async fn acquire_lease(
        &self,
        id: &ConversationId,
        owner: &str,
        ttl: Duration,
        takeover: bool,
    ) -> Result<bool, UpdateError> {
        let mut conn = self.conn.clone();
        let got: i64 = self
            .acquire
            .key(self.lease_key(id))
            .arg(owner)
            .arg(ttl_ms(ttl))
            .arg(if takeover { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await
            .map_err(|e| UpdateError::Other(other(e)))?;
        Ok(got == 1)
    }

    async fn renew_lease(
        &self,
        id: &ConversationId,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, UpdateError> {
        let mut conn = self.conn.clone();
        let held: i64 = self
            .renew
            .key(self.lease_key(id))
            .key(&self.keys(id)[0])
            .arg(owner)
            .arg(ttl_ms(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| UpdateError::Other(other(e)))?;
        Ok(held == 1)
    }

    async fn release_lease(&self, id: &ConversationId, owner: &str) -> Result<(), DeleteError> {
        let mut conn = self.conn.clone();
        self.release
            .key(self.lease_key(id))
            .arg(owner)
            .invoke_async::<i64>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| DeleteError::Other(other(e)))
    }

    async fn lease_owner(&self, id: &ConversationId) -> Result<Option<String>, LoadError> {
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(self.lease_key(id))
            .query_async::<Option<String>>(&mut conn)
            .await
            .map_err(|e| LoadError::Other(other(e)))
    }

    async fn update_leased(
        &self,
        id: &ConversationId,
        owner: &str,
        first_revision: u64,
        ops: &[StoreOp],
        ttl: Duration,
    ) -> Result<(), UpdateError> {
        if owner.is_empty() {
            return Err(UpdateError::LeaseLost);
        }
        self.run_update(id, owner, first_revision, ops, ttl).await
    }

    async fn save_leased(
        &self,
        state: &ConversationState,
        owner: &str,
        ttl: Duration,
    ) -> Result<(), SaveError> {
        if owner.is_empty() {
            return Err(SaveError::LeaseLost);
        }
        let ser = SaveError::Serialization;
        let parts = encode_state(state, self.history_limit).map_err(ser)?;
        let keys = self.keys(&state.id);
        let mut invocation = self.save_leased.prepare_invoke();
        for k in &keys {
            invocation.key(k);
        }
        invocation.key(self.lease_key(&state.id));
        invocation
            .arg(owner)
            .arg(ttl_ms(ttl))
            .arg(ttl_ms(crate::RETAKEN_LEASE_TTL));
        invocation.arg(parts.meta.len());
        for (k, v) in &parts.meta {
            invocation.arg(k).arg(v);
        }
        invocation.arg(parts.log.len());
        for e in &parts.log {
            invocation.arg(e);
        }
        invocation.arg(state.variables.len());
        for (k, v) in &state.variables {
            invocation.arg(k).arg(v);
        }
        invocation.arg(parts.tools.len());
        for (k, v) in &parts.tools {
            invocation.arg(k).arg(v);
        }
        let mut conn = self.conn.clone();
        let done: i64 = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| SaveError::Other(other(e)))?;
        if done == -1 {
            return Err(SaveError::LeaseLost);
        }
        Ok(())
    }
}

/// A state as the strings written to Redis.
struct Encoded {
    meta: Vec<(String, String)>,
    log: Vec<String>,
    tools: Vec<(String, String)>,
}

fn encode_state(state: &ConversationState, history_limit: usize) -> Result<Encoded, anyhow::Error> {
    let mut meta = vec![
        ("provider".to_owned(), state.provider.clone()),
        ("rev".to_owned(), state.revision.to_string()),
    ];
    if let Some(h) = &state.resumption_handle {
        meta.push(("handle".into(), h.clone()));
    }
    if let Some(t) = &state.resume_token {
        meta.push(("token".into(), t.expose().to_owned()));
    }
    let mut history = state.history.clone();
    crate::state::trim_history(&mut history, history_limit);
    let log = history
        .into_iter()
        .map(|r| json(&LogEntry::Record { r }))
        .collect::<Result<Vec<_>, _>>()?;
    let tools = state
        .tools_in_flight
        .iter()
        .map(|(id, c)| Ok((id.clone(), json(c)?)))
        .collect::<Result<Vec<_>, anyhow::Error>>()?;
    Ok(Encoded { meta, log, tools })
}
