//! What the cascade end-to-end tests share: the chat stage on the local server, the
//! weather tool and its script, the microphone, and readers of what the server recorded
//! (chat requests, the fakes' WebSocket messages) and of the events (transcripts,
//! responses).

use std::time::Duration;

use liveagent::cascade::ChatLlm;
use liveagent::tools::{tool, ToolError};
use liveagent::{AudioChunk, LiveEvent, RecordedAudio, ResponseDone};
use liveagent_server::LocalServer;
use serde_json::Value;

use crate::Run;

/// Looks the weather up.
///
/// # Arguments
/// * `city` - The city.
#[tool(crate = liveagent::tools)]
pub async fn get_weather(city: String) -> Result<String, ToolError> {
    Ok(format!("sunny and 21 degrees in {city}"))
}

/// A scripted conversation: the first answer calls `get_weather` between two sentences.
pub const WEATHER: &str = r#"
[[turn]]
say = "Let me look that up for you."
call = "get_weather"
args = { city = "Paris" }
then_say = "It is {output}. Anything else?"

[[turn]]
say = "Goodbye."
"#;

/// The Chat Completions stage on `server` (`gpt-4o-mini`).
pub fn chat_llm(server: &LocalServer) -> ChatLlm {
    ChatLlm::new("gpt-4o-mini")
        .base_url(format!("{}/v1", server.http_url()))
        .api_key("local-key")
}

/// Publishes `pcm` (24 kHz) as microphone audio in 100 ms chunks, faster than real time,
/// with nothing after it (the turn stays open until silence comes).
pub async fn mic(run: &Run, pcm: &[i16]) {
    for chunk in pcm.chunks(2400) {
        run.conversation.publish(RecordedAudio {
            audio: AudioChunk::new(chunk.to_vec(), 24_000),
        });
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The chat requests the server received, parsed.
pub fn chat_requests(server: &LocalServer) -> Vec<Value> {
    recorded(server, "chat request: ")
}

/// The client messages the fakes' WebSockets received, parsed.
pub fn ws_received(server: &LocalServer) -> Vec<Value> {
    recorded(server, "cascade ws <- ")
}

fn recorded(server: &LocalServer, marker: &str) -> Vec<Value> {
    server
        .recording()
        .iter()
        .filter_map(|l| l.split_once(marker).map(|(_, j)| j.to_owned()))
        .filter_map(|j| serde_json::from_str(&j).ok())
        .collect()
}

/// Every `InputTranscriptChunk` so far: (is final, text).
pub fn transcripts(run: &Run) -> Vec<(bool, String)> {
    run.collect(|e| match e {
        LiveEvent::InputTranscriptChunk(t) => Some((t.is_final, t.text.to_string())),
        _ => None,
    })
}

/// Every `ResponseDone` so far.
pub fn responses_done(run: &Run) -> Vec<ResponseDone> {
    run.collect(|e| match e {
        LiveEvent::ResponseDone(d) => Some((**d).clone()),
        _ => None,
    })
}
