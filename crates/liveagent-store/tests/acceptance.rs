//! The store acceptance suite against both backends: in memory, and Redis (a real
//! `redis-server` started on a random loopback port).

use std::sync::atomic::{AtomicUsize, Ordering};

use liveagent_store::acceptance::{store_acceptance_suite, RedisServer};
use liveagent_store::{InMemoryConversationStore, RedisConversationStore};

/// Every scenario passes on the in-memory store.
#[actix_rt::test]
async fn in_memory_store_passes_the_suite() {
    store_acceptance_suite(InMemoryConversationStore::with_history_limit).await;
}

/// Every scenario passes on Redis.
#[actix_rt::test]
async fn redis_store_passes_the_suite() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let n = AtomicUsize::new(0);
    store_acceptance_suite(|limit| {
        RedisConversationStore::builder(redis.url())
            .key_prefix(format!("suite{}", n.fetch_add(1, Ordering::Relaxed)))
            .history_limit(limit)
            .build()
            .unwrap()
    })
    .await;
}
