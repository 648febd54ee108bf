//! Shared by the sans-IO hardening tests: a protocol past its handshake, and feeding it frames.

use liveagent_core::{Outbox, RealtimeProtocol, SessionSetup, WireFrame};
use liveagent_openai::{OpenAiProtocol, RealtimeConfig};
use serde_json::{json, Value};

/// A protocol for `gpt-realtime` that has seen `session.created` and `session.updated`.
pub fn ready() -> OpenAiProtocol {
    let mut p = RealtimeConfig::new("gpt-realtime")
        .api_key("sk-test")
        .protocol(SessionSetup::default())
        .unwrap();
    let mut out = Outbox::new();
    p.on_open(false, &mut out);
    feed(
        &mut p,
        json!({"type":"session.created","event_id":"e1","session":{"type":"realtime","id":"s"}}),
    );
    feed(
        &mut p,
        json!({"type":"session.updated","event_id":"e2","session":{"type":"realtime"}}),
    );
    p
}

/// Feeds one server frame; returns what the protocol sent and published in answer.
pub fn feed(p: &mut OpenAiProtocol, v: Value) -> Outbox {
    let mut out = Outbox::new();
    p.on_frame(WireFrame::Text(v.to_string().into()), &mut out);
    out
}
