//! The store acceptance suite against both backends: in memory, and Redis (a real
//! `redis-server` started on a random loopback port).

use std::sync::atomic::{AtomicUsize, Ordering};

use liveagent_store::acceptance::{
    leases_fence_a_zombie_owner, store_acceptance_suite, RedisServer,
};
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

/// Leases on one in-memory store seen through two handles.
#[actix_rt::test]
async fn in_memory_leases_fence_a_zombie_owner() {
    let store = std::sync::Arc::new(InMemoryConversationStore::new());
    leases_fence_a_zombie_owner(&*store, &*store).await;
}

/// Leases between two Redis clients (two connections, as two instances have).
#[actix_rt::test]
async fn redis_leases_fence_a_zombie_owner() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let client = || {
        RedisConversationStore::builder(redis.url())
            .key_prefix("leases")
            .build()
            .unwrap()
    };
    leases_fence_a_zombie_owner(&client(), &client()).await;
}
