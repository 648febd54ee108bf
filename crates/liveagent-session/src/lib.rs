//! Supervised WebSocket session actor for liveagent: connects a provider protocol, reconnects with backoff and buffers what must not be lost.
