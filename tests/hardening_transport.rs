//! An API key must not leave in cleartext (issue 13, item 7): a `ws://` / `http://` base URL
//! to a host that is not loopback is refused with a clear `BuildError` while a key is set,
//! unless the configuration opts in with `allow_insecure_transport()`. Loopback (the local
//! server) needs no opt-in, and a refused configuration never opens a socket.

use liveagent::{gemini, openai, BuildError, LiveAgent};

fn build(config: impl liveagent::RealtimeConfig) -> Result<LiveAgent, BuildError> {
    LiveAgent::builder("assistant").config(config).build()
}

#[test]
fn cleartext_urls_to_remote_hosts_are_refused_when_a_key_is_set() {
    for url in [
        "ws://10.0.0.5/v1",
        "http://api.example.com/v1",
        "WS://Example.com:80",
    ] {
        let config = openai::RealtimeConfig::new("gpt-realtime")
            .base_url(url)
            .api_key("sk-live-123");
        match build(config) {
            Err(BuildError::InsecureTransport(shown)) => {
                assert!(!shown.contains("sk-live-123"));
                let text = BuildError::InsecureTransport(shown).to_string();
                assert!(text.contains("allow_insecure_transport"), "{text}");
            }
            other => panic!("{url}: expected InsecureTransport, got {other:?}"),
        }
    }
    let gemini = gemini::RealtimeConfig::new("gemini-live")
        .base_url("ws://192.168.1.20:9000")
        .api_key("g-key");
    assert!(matches!(
        build(gemini.clone()),
        Err(BuildError::InsecureTransport(_))
    ));
    // The provider's own builder refuses too (for users of the session crate directly).
    let err = liveagent::RealtimeConfig::build_protocol(&gemini, Default::default())
        .err()
        .expect("refused");
    assert!(err.message.contains("cleartext"), "{err}");
}

#[test]
fn tls_loopback_and_explicit_opt_in_are_accepted() {
    for url in [
        "wss://api.openai.com/v1",
        "https://example.com/v1",
        "ws://127.0.0.1:9000/v1",
        "ws://localhost:9000/v1",
        "ws://[::1]:9000/v1",
    ] {
        let config = openai::RealtimeConfig::new("gpt-realtime")
            .base_url(url)
            .api_key("sk-live-123");
        assert!(build(config).is_ok(), "{url}");
    }
    let opted_in = openai::RealtimeConfig::new("gpt-realtime")
        .base_url("ws://10.0.0.5/v1")
        .api_key("sk-live-123")
        .allow_insecure_transport();
    assert!(build(opted_in).is_ok());
    let gemini = gemini::RealtimeConfig::new("gemini-live")
        .base_url("ws://192.168.1.20:9000")
        .api_key("g-key")
        .allow_insecure_transport();
    assert!(build(gemini).is_ok());
}
