//! The scenarios every [`ConversationStore`] backend must pass (feature `acceptance`), in
//! the manner of actix-session's `acceptance_test_suite`: call
//! [`store_acceptance_suite`] from a test with a factory for your backend. Also
//! [`RedisServer`], a real `redis-server` on a random loopback port for tests.
//!
//! These helpers panic on failure: they are test code.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::{
    ConversationId, ConversationState, ConversationStore, HistoryRecord, ResumeToken, SaveError,
    StoreOp, ToolCallRecord, UpdateError,
};

const TTL: Duration = Duration::from_secs(60);

fn user(text: &str) -> StoreOp {
    StoreOp::Append(HistoryRecord::User { text: text.into() })
}

fn call(id: &str, seq: u64) -> ToolCallRecord {
    ToolCallRecord {
        call_id: id.into(),
        name: "get_weather".into(),
        arguments: json!({ "city": "Paris" }),
        seq,
    }
}

fn full_state() -> ConversationState {
    let mut s = ConversationState::new(ConversationId::generate(), "gemini");
    s.history = vec![
        HistoryRecord::User {
            text: "Weather in Paris?".into(),
        },
        HistoryRecord::ToolCall {
            call_id: "c1".into(),
            name: "get_weather".into(),
            arguments: json!({ "city": "Paris" }),
        },
        HistoryRecord::ToolResult {
            call_id: "c1".into(),
            name: "get_weather".into(),
            output: Ok(json!({ "temp_c": 21 })),
        },
        HistoryRecord::Assistant {
            item_id: "a1".into(),
            text: "It is twenty one degrees, sunny, in Paris".into(),
            audio_ms: 2400,
            heard_ms: Some(1200),
        },
        HistoryRecord::ToolCall {
            call_id: "c2".into(),
            name: "get_weather".into(),
            arguments: json!({ "city": "Rome" }),
        },
    ];
    s.tools_in_flight.insert("c2".into(), call("c2", 2));
    s.variables = BTreeMap::from([
        ("user".into(), "Ada".into()),
        ("tier".into(), "gold".into()),
    ]);
    s.resumption_handle = Some("handle-123".into());
    s.resume_token = Some(ResumeToken::generate());
    s.revision = 7;
    s
}

/// Runs every scenario against stores made by `make(history_limit)`. Each call must
/// return a store that does not share conversations with stores made before (e.g. a new
/// key prefix).
pub async fn store_acceptance_suite<S, F>(make: F)
where
    S: ConversationStore,
    F: Fn(usize) -> S,
{
    round_trip(&make(100)).await;
    missing_conversations(&make(100)).await;
    updates_apply_in_order(&make(100)).await;
    tool_results_are_atomic_and_once(&make(100)).await;
    retried_batches_apply_once(&make(100)).await;
    history_is_bounded(&make(5)).await;
    save_replaces(&make(100)).await;
    conversations_are_isolated(&make(100)).await;
    idle_conversations_expire(&make(100)).await;
    delete_removes(&make(100)).await;
}

/// A saved state loads back equal, every field.
pub async fn round_trip(store: &impl ConversationStore) {
    let state = full_state();
    store.save(&state, TTL).await.unwrap();
    let loaded = store
        .load(&state.id)
        .await
        .unwrap()
        .expect("saved state loads");
    assert_eq!(loaded, state);
    assert!(loaded
        .resume_token
        .as_ref()
        .unwrap()
        .matches(state.resume_token.as_ref().unwrap().expose()));
}

/// Unknown ids: `load` is `None`, `update` and `touch` are `NotFound`, `delete` is fine.
pub async fn missing_conversations(store: &impl ConversationStore) {
    let id = ConversationId::generate();
    assert!(store.load(&id).await.unwrap().is_none());
    assert!(matches!(
        store.update(&id, 1, &[user("x")], TTL).await,
        Err(UpdateError::NotFound)
    ));
    assert!(matches!(
        store.touch(&id, TTL).await,
        Err(UpdateError::NotFound)
    ));
    store.delete(&id).await.unwrap();
    // A failed update wrote nothing.
    assert!(store.load(&id).await.unwrap().is_none());
}

/// Every kind of op, in several batches, gives the same state as applying them in memory.
pub async fn updates_apply_in_order(store: &impl ConversationStore) {
    let mut expected = ConversationState::new(ConversationId::generate(), "openai");
    store.save(&expected, TTL).await.unwrap();
    let token = ResumeToken::generate();
    let batches = vec![
        vec![user("hello"), StoreOp::SetResumeToken(token.clone())],
        vec![StoreOp::Append(HistoryRecord::Assistant {
            item_id: "a1".into(),
            text: "Hi there, how can I help".into(),
            audio_ms: 1800,
            heard_ms: None,
        })],
        vec![StoreOp::AssistantHeard {
            item_id: "a1".into(),
            heard_ms: 700,
        }],
        vec![
            StoreOp::SetVariable {
                name: "name".into(),
                value: "Ada".into(),
            },
            StoreOp::SetVariable {
                name: "gone".into(),
                value: "x".into(),
            },
            StoreOp::RemoveVariable {
                name: "gone".into(),
            },
        ],
        vec![StoreOp::SetResumptionHandle(Some("h1".into()))],
        vec![
            StoreOp::SetResumptionHandle(Some("h2".into())),
            user("what's up"),
        ],
        vec![StoreOp::ToolStarted(call("c1", 1))],
        vec![StoreOp::ToolStarted(call("c2", 2))],
        vec![StoreOp::ToolCancelled {
            call_ids: vec!["c2".into()],
        }],
    ];
    for batch in batches {
        let first = expected.revision + 1;
        for op in &batch {
            expected.apply(op, 0);
            expected.revision += 1;
        }
        store
            .update(&expected.id, first, &batch, TTL)
            .await
            .unwrap();
        let loaded = store.load(&expected.id).await.unwrap().unwrap();
        assert_eq!(
            loaded, expected,
            "after a batch ending at {}",
            expected.revision
        );
    }
    let loaded = store.load(&expected.id).await.unwrap().unwrap();
    assert_eq!(loaded.resumption_handle.as_deref(), Some("h2"));
    assert_eq!(loaded.variables.len(), 1);
    assert_eq!(
        loaded
            .pending_calls()
            .iter()
            .map(|c| c.call_id.as_str())
            .collect::<Vec<_>>(),
        ["c1"]
    );
    match &loaded.history[1] {
        HistoryRecord::Assistant { heard_ms, .. } => assert_eq!(*heard_ms, Some(700)),
        other => panic!("expected the assistant turn, got {other:?}"),
    }
}

/// A finished call leaves the in-flight set and its result joins the history in the same
/// write.
pub async fn tool_results_are_atomic_and_once(store: &impl ConversationStore) {
    let id = ConversationId::generate();
    store
        .save(&ConversationState::new(id.clone(), "openai"), TTL)
        .await
        .unwrap();
    store
        .update(
            &id,
            1,
            &[
                StoreOp::ToolStarted(call("c1", 1)),
                StoreOp::ToolStarted(call("c2", 2)),
            ],
            TTL,
        )
        .await
        .unwrap();
    let s = store.load(&id).await.unwrap().unwrap();
    assert_eq!(s.tools_in_flight.len(), 2);
    assert_eq!(s.answered_call_ids().count(), 0);
    store
        .update(
            &id,
            3,
            &[StoreOp::ToolFinished {
                call_id: "c1".into(),
                name: "get_weather".into(),
                output: Err("city not found".into()),
            }],
            TTL,
        )
        .await
        .unwrap();
    let s = store.load(&id).await.unwrap().unwrap();
    assert_eq!(s.pending_calls().len(), 1);
    assert_eq!(s.pending_calls()[0].call_id, "c2");
    assert_eq!(s.answered_call_ids().collect::<Vec<_>>(), ["c1"]);
    assert_eq!(
        s.history.last(),
        Some(&HistoryRecord::ToolResult {
            call_id: "c1".into(),
            name: "get_weather".into(),
            output: Err("city not found".into()),
        })
    );
}

/// A batch sent again (its reply was lost) is not applied twice; a batch overlapping what
/// was applied applies only its new ops.
pub async fn retried_batches_apply_once(store: &impl ConversationStore) {
    let id = ConversationId::generate();
    store
        .save(&ConversationState::new(id.clone(), "openai"), TTL)
        .await
        .unwrap();
    let batch = [user("one"), user("two")];
    store.update(&id, 1, &batch, TTL).await.unwrap();
    store.update(&id, 1, &batch, TTL).await.unwrap();
    store
        .update(&id, 2, &[user("two"), user("three")], TTL)
        .await
        .unwrap();
    let s = store.load(&id).await.unwrap().unwrap();
    let texts: Vec<_> = s
        .history
        .iter()
        .map(|r| match r {
            HistoryRecord::User { text } => text.as_str(),
            _ => "?",
        })
        .collect();
    assert_eq!(texts, ["one", "two", "three"]);
    assert_eq!(s.revision, 3);
}

/// With a history limit of 5, the newest records are kept and no result outlives its call.
pub async fn history_is_bounded(store: &impl ConversationStore) {
    let id = ConversationId::generate();
    store
        .save(&ConversationState::new(id.clone(), "openai"), TTL)
        .await
        .unwrap();
    let mut rev = 0;
    let mut next = |ops: Vec<StoreOp>| {
        let first = rev + 1;
        rev += ops.len() as u64;
        (first, ops)
    };
    let (f, ops) = next(vec![StoreOp::ToolStarted(call("c1", 1))]);
    store.update(&id, f, &ops, TTL).await.unwrap();
    let (f, ops) = next(vec![StoreOp::ToolFinished {
        call_id: "c1".into(),
        name: "get_weather".into(),
        output: Ok(json!(1)),
    }]);
    store.update(&id, f, &ops, TTL).await.unwrap();
    for i in 0..4 {
        let (f, ops) = next(vec![user(&format!("u{i}"))]);
        store.update(&id, f, &ops, TTL).await.unwrap();
    }
    let s = store.load(&id).await.unwrap().unwrap();
    assert!(s.history.len() <= 5, "{:?}", s.history);
    assert_eq!(
        s.history.last(),
        Some(&HistoryRecord::User { text: "u3".into() })
    );
    // The call was dropped, so its result must be gone too.
    assert!(!s
        .history
        .iter()
        .any(|r| matches!(r, HistoryRecord::ToolResult { .. })));
    // A saved state longer than the limit is bounded as well.
    let mut long = ConversationState::new(ConversationId::generate(), "openai");
    for i in 0..20 {
        long.history.push(HistoryRecord::User {
            text: format!("m{i}"),
        });
    }
    store.save(&long, TTL).await.unwrap();
    let s = store.load(&long.id).await.unwrap().unwrap();
    assert_eq!(s.history.len(), 5);
    assert_eq!(s.history[0], HistoryRecord::User { text: "m15".into() });
}

/// `save` replaces a stored state entirely (nothing of the old one survives).
pub async fn save_replaces(store: &impl ConversationStore) {
    let state = full_state();
    store.save(&state, TTL).await.unwrap();
    let fresh = ConversationState::new(state.id.clone(), "openai");
    store.save(&fresh, TTL).await.unwrap();
    assert_eq!(store.load(&state.id).await.unwrap().unwrap(), fresh);
}

/// Writes to one conversation never show in another.
pub async fn conversations_are_isolated(store: &impl ConversationStore) {
    let a = full_state();
    let b = ConversationState::new(ConversationId::generate(), "openai");
    store.save(&a, TTL).await.unwrap();
    store.save(&b, TTL).await.unwrap();
    store
        .update(&b.id, 1, &[user("only b")], TTL)
        .await
        .unwrap();
    assert_eq!(store.load(&a.id).await.unwrap().unwrap(), a);
    assert_eq!(store.load(&b.id).await.unwrap().unwrap().history.len(), 1);
}

/// A conversation nobody writes to or touches for its time-to-live is gone; writes and
/// touches push the expiry back.
pub async fn idle_conversations_expire(store: &impl ConversationStore) {
    let short = Duration::from_millis(300);
    let state = full_state();
    store.save(&state, short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    store.touch(&state.id, short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // 350 ms after the save, but only 200 ms after the touch.
    assert!(store.load(&state.id).await.unwrap().is_some());
    store
        .update(&state.id, 8, &[user("still here")], short)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(store.load(&state.id).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(store.load(&state.id).await.unwrap().is_none(), "expired");
    assert!(matches!(
        store.update(&state.id, 9, &[user("late")], short).await,
        Err(UpdateError::NotFound)
    ));
}

/// `delete` removes every part of a conversation.
pub async fn delete_removes(store: &impl ConversationStore) {
    let state = full_state();
    store.save(&state, TTL).await.unwrap();
    store.delete(&state.id).await.unwrap();
    assert!(store.load(&state.id).await.unwrap().is_none());
    assert!(matches!(
        store.touch(&state.id, TTL).await,
        Err(UpdateError::NotFound)
    ));
}

/// Leases between two clients `a` and `b` of one backend (two connections to one Redis,
/// or two handles on one in-memory store): instance A owns a conversation; B takes it
/// over (a client resumed there) while A is paused; A, back, can neither renew nor write
/// (its leased writes are refused whole), and B's state is untouched by A. A free lease is
/// taken with `NX` semantics, and expires when its owner stops renewing.
pub async fn leases_fence_a_zombie_owner<S: ConversationStore>(a: &S, b: &S) {
    let lease_ttl = Duration::from_millis(400);
    let mut state = ConversationState::new(ConversationId::generate(), "openai");
    let id = state.id.clone();
    // A creates and owns the conversation.
    assert!(a.acquire_lease(&id, "A", lease_ttl, false).await.unwrap());
    a.save_leased(&state, "A", TTL).await.unwrap();
    a.update_leased(&id, "A", 1, &[user("one")], TTL)
        .await
        .unwrap();
    assert_eq!(a.lease_owner(&id).await.unwrap().as_deref(), Some("A"));
    // B cannot take a held lease without a takeover...
    assert!(!b.acquire_lease(&id, "B", lease_ttl, false).await.unwrap());
    assert!(matches!(
        b.update_leased(&id, "B", 2, &[user("b-not-owner")], TTL)
            .await,
        Err(UpdateError::LeaseLost)
    ));
    // ...and does take it over when the client resumes there.
    assert!(b.acquire_lease(&id, "B", lease_ttl, true).await.unwrap());
    assert_eq!(b.lease_owner(&id).await.unwrap().as_deref(), Some("B"));
    b.update_leased(&id, "B", 2, &[user("two, on B")], TTL)
        .await
        .unwrap();
    // A comes back: every write it had queued is refused, nothing of it lands.
    assert!(matches!(
        a.update_leased(&id, "A", 2, &[user("zombie"), user("zombie 2")], TTL)
            .await,
        Err(UpdateError::LeaseLost)
    ));
    state.history.push(HistoryRecord::User {
        text: "zombie snapshot".into(),
    });
    assert!(matches!(
        a.save_leased(&state, "A", TTL).await,
        Err(SaveError::LeaseLost)
    ));
    assert!(!a.renew_lease(&id, "A", lease_ttl).await.unwrap());
    assert!(!a.acquire_lease(&id, "A", lease_ttl, false).await.unwrap());
    // Releasing someone else's lease does nothing.
    a.release_lease(&id, "A").await.unwrap();
    assert_eq!(b.lease_owner(&id).await.unwrap().as_deref(), Some("B"));
    let stored = b.load(&id).await.unwrap().unwrap();
    assert_eq!(
        stored.history,
        vec![
            HistoryRecord::User { text: "one".into() },
            HistoryRecord::User {
                text: "two, on B".into()
            },
        ]
    );
    assert_eq!(stored.revision, 2);
    // B renews while it runs; once it stops renewing the lease expires, and a lease that
    // expired while the conversation is stored counts as lost for its old owner.
    assert!(b.renew_lease(&id, "B", lease_ttl).await.unwrap());
    tokio::time::sleep(lease_ttl + Duration::from_millis(200)).await;
    assert_eq!(b.lease_owner(&id).await.unwrap(), None);
    assert!(!b.renew_lease(&id, "B", lease_ttl).await.unwrap());
    assert!(matches!(
        b.update_leased(&id, "B", 3, &[user("late")], TTL).await,
        Err(UpdateError::LeaseLost)
    ));
    // A free lease is taken (NX); B releases its own.
    assert!(a.acquire_lease(&id, "C", lease_ttl, false).await.unwrap());
    a.release_lease(&id, "C").await.unwrap();
    assert_eq!(a.lease_owner(&id).await.unwrap(), None);
    // A lease that vanished with its conversation (the backend lost both) is taken again
    // by its owner's renewal or whole-state write: nobody else can hold it.
    b.delete(&id).await.unwrap();
    assert!(a.renew_lease(&id, "A", lease_ttl).await.unwrap());
    a.save_leased(&state, "A", TTL).await.unwrap();
    assert_eq!(b.lease_owner(&id).await.unwrap().as_deref(), Some("A"));
    b.delete(&id).await.unwrap();
    assert_eq!(
        a.lease_owner(&id).await.unwrap(),
        None,
        "delete drops the lease"
    );
}

/// A real `redis-server` on a random loopback port, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    /// Starts one. `None` (with the reason printed) when `redis-server` is not installed
    /// and this is not CI; in CI (`CI=true`) a missing binary panics: the test must run.
    pub fn start() -> Option<RedisServer> {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !ci,
                "redis-server is not installed (scripts/setup.sh installs it); CI must run the Redis tests"
            );
            eprintln!("SKIPPED: redis-server is not installed (run scripts/setup.sh)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        let mut server = RedisServer { child: None, port };
        server.spawn();
        Some(server)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen in 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL): everything it held is lost, as in a crash without
    /// persistence.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` every 20 ms until it is true, for at most `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
