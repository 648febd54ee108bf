//! Streaming Chat Completions for the local server's chat endpoint (`"stream": true`):
//! the reply the brain chose, rendered as `chat.completion.chunk` server-sent events in
//! OpenAI's shape (role chunk, content deltas, tool-call fragments with the arguments split
//! across chunks, finish reason, the usage chunk when `include_usage`, `[DONE]`).

use actix_web::HttpResponse;
use serde_json::{json, Value};

/// The SSE response for a reply of `content` and `calls` (`[{id, type, function}]`); with
/// `cut`, the connection breaks halfway through the content (a scenario's `drop_after_ms`:
/// the network failing mid-answer).
pub(crate) fn respond(
    id: &str,
    model: &str,
    content: &str,
    calls: &Value,
    usage: (usize, usize),
    include_usage: bool,
    cut: bool,
) -> HttpResponse {
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": "fp_local",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
            "usage": null
        })
    };
    let mut events = vec![(
        String::new(),
        chunk(
            json!({"role": "assistant", "content": "", "refusal": null}),
            Value::Null,
        ),
    )];
    // A delta every word or two, as a model streams.
    let words: Vec<&str> = content.split_inclusive(' ').collect();
    let cut_at = cut.then(|| 1 + words.chunks(2).len().div_ceil(2));
    for pair in words.chunks(2) {
        events.push((
            String::new(),
            chunk(json!({"content": pair.concat()}), Value::Null),
        ));
    }
    let calls = calls.as_array().cloned().unwrap_or_default();
    for (index, call) in calls.iter().enumerate() {
        let name = call["function"]["name"].clone();
        let args = call["function"]["arguments"]
            .as_str()
            .unwrap_or("{}")
            .to_owned();
        events.push((
            String::new(),
            chunk(
                json!({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                       "function": {"name": name, "arguments": ""}}]}),
                Value::Null,
            ),
        ));
        let mid = args
            .char_indices()
            .nth(args.chars().count() / 2)
            .map(|(i, _)| i)
            .unwrap_or(0);
        for piece in [&args[..mid], &args[mid..]] {
            events.push((
                String::new(),
                chunk(
                    json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
                    Value::Null,
                ),
            ));
        }
    }
    let finish = if calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    events.push((String::new(), chunk(json!({}), json!(finish))));
    if include_usage {
        events.push((
            String::new(),
            json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": "fp_local", "choices": [],
                "usage": {"prompt_tokens": usage.0, "completion_tokens": usage.1,
                          "total_tokens": usage.0 + usage.1}
            }),
        ));
    }
    super::sse(events, false, true, cut_at)
}
