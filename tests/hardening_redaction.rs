//! Secrets in what a hostile provider sends (issue 13, item 8): everything provider-supplied
//! that reaches logs or errors goes through the redactor. The local server's scripted model
//! sends frames that carry the API key (an unknown event type named after it, a malformed
//! event quoting it, unknown Gemini keys, an undecodable frame with the key across the
//! excerpt's cut); every log line (captured at debug level by a tracing subscriber writing
//! to a buffer) and every error event must be free of it.

use std::sync::{Arc, Mutex, OnceLock};

use liveagent::{gemini, LiveAgent, LiveEvent};
use liveagent_e2e::*;
use liveagent_server::Scenario;
use serde_json::json;

const KEY: &str = "sk-live-SECRET-31337-abcdefghijklmnop";

/// Every log line of this test binary (all threads), at debug level for liveagent.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer_buf = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "info,liveagent=debug,liveagent_server=info",
            ))
            .with_ansi(false)
            .with_writer(move || Capture(writer_buf.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
        buf
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

async fn scripted_server(scenario: serde_json::Value) -> liveagent_server::LocalServer {
    let mut config = liveagent_server::ServerConfig::scripted(
        Scenario::from_json(&scenario.to_string()).expect("scenario"),
    );
    config.pacing = liveagent_server::Pacing::AsFastAsPossible;
    liveagent_server::LocalServer::start(config.recording_in_memory())
        .await
        .expect("local server")
}

fn errors(run: &Run) -> Vec<String> {
    run.collect(|e| match e {
        LiveEvent::ErrorEvent(e) => Some(format!("{} {:?}", e.error, e.error.code)),
        _ => None,
    })
}

#[actix_rt::test]
async fn openai_unknown_and_malformed_events_never_log_the_key() {
    logs();
    // The key sits in an unknown event type, in a malformed known event (serde quotes the
    // bad value), in an `error` event and in item/call ids the client logs at debug.
    let scenario = json!({
        "turn": [{
            "steps": [
                {"send": {"type": format!("response.unknown_{KEY}"), "event_id": "e1"}},
                {"send": {"type": KEY}},
                {"send": {"type": "response.created", "response": {"id": 5, "status": KEY}}},
                {"send": {"type": "conversation.item.truncated", "event_id": "e2",
                          "item_id": format!("item_{KEY}"), "content_index": 0, "audio_end_ms": 0}},
                {"send": {"type": "error", "event_id": "e3",
                          "error": {"type": "invalid_request_error", "code": KEY,
                                    "message": format!("bad key {KEY}")}}},
                {"say": "still here"}
            ]
        }]
    });
    let server = scripted_server(scenario).await;
    let run = Run::start(
        LiveAgent::builder("assistant").prompt("Test.").config(
            openai_config(&server)
                .api_key(KEY)
                .base_url(server.openai_url()),
        ),
    );
    run.wait_count("session updated", 1, |e| {
        matches!(e, LiveEvent::SessionUpdated(_))
    })
    .await;
    run.conversation.context().send_text("go");
    run.wait_count("the answer after the hostile frames", 1, |e| {
        matches!(e, LiveEvent::OutputTranscriptChunk(c) if c.is_final && c.text.contains("still here"))
    })
    .await;
    let errors = errors(&run);
    run.conversation.stop().await;
    server.stop().await;

    let logs = captured();
    // The frames were seen and logged (so this test can fail).
    assert!(
        logs.contains("server event ignored"),
        "no debug log captured"
    );
    assert!(logs.contains("item truncated"), "no debug log captured");
    assert!(
        !logs.contains(KEY),
        "the key reached the logs:\n{}",
        excerpt_around(&logs)
    );
    assert!(errors.len() >= 2, "{errors:?}");
    for e in &errors {
        assert!(!e.contains(KEY), "the key reached an error: {e}");
    }
}

#[actix_rt::test]
async fn gemini_unknown_keys_and_undecodable_frames_never_log_the_key() {
    logs();
    // An undecodable frame whose key straddles the 160-byte excerpt cut, and a message with
    // an unknown top-level key named after the key.
    let mut straddling = String::from("{\"serverContent\": \"");
    while straddling.len() < 150 {
        straddling.push('x');
    }
    straddling.push_str(KEY);
    straddling.push_str("\" not json");
    let mut unknown = serde_json::Map::new();
    unknown.insert(KEY.to_owned(), json!(1));
    let scenario = json!({
        "turn": [{
            "steps": [
                {"send_text": straddling},
                {"send": serde_json::Value::Object(unknown)},
                {"say": "still here"}
            ]
        }]
    });
    let server = scripted_server(scenario).await;
    let run = Run::start(
        LiveAgent::builder("assistant").prompt("Test.").config(
            gemini::RealtimeConfig::new("gemini-live-test")
                .base_url(server.gemini_url())
                .api_key(KEY),
        ),
    );
    run.wait_count("ready", 1, |e| matches!(e, LiveEvent::SessionUpdated(_)))
        .await;
    run.conversation.context().send_text("go");
    run.wait_count("the answer after the hostile frames", 1, |e| {
        matches!(e, LiveEvent::ResponseDone(_))
    })
    .await;
    let errors = errors(&run);
    run.conversation.stop().await;
    server.stop().await;

    let logs = captured();
    assert!(logs.contains("undecodable frame"), "no log captured");
    assert!(
        logs.contains("unknown server message keys ignored"),
        "no debug log captured"
    );
    assert!(
        !logs.contains(KEY),
        "the key reached the logs:\n{}",
        excerpt_around(&logs)
    );
    // Not even the half of it before the excerpt's cut.
    assert!(
        !logs.contains(&KEY[..12]),
        "part of the key reached the logs"
    );
    for e in errors {
        assert!(!e.contains(&KEY[..12]), "the key reached an error: {e}");
    }
}

/// The log lines that hold the key, for the failure message.
fn excerpt_around(logs: &str) -> String {
    logs.lines()
        .filter(|l| l.contains(KEY))
        .take(5)
        .collect::<Vec<_>>()
        .join("\n")
}
