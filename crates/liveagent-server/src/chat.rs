//! `POST /v1/chat/completions`: the OpenAI Chat Completions shape, for turn-based agents.
//!
//! Stateless like the real API: the turn number is the number of user messages in the
//! request; when the last message is a `tool` result, the scripted turn continues after
//! its `call` step with `{output}` replaced by the tool's content.

use std::collections::VecDeque;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::brain::{substitute, Brain, Step};
use crate::server::{bearer, query_param, Shared};

#[derive(Debug, Deserialize)]
struct ChatRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<Value>,
}

#[derive(Debug, Serialize)]
struct ToolCall {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionCall,
}

#[derive(Debug, Serialize)]
struct FunctionCall {
    name: String,
    arguments: String,
}

fn content_text(v: &Option<Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn error(status: actix_web::http::StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}
    }))
}

/// The handler (also under `/s/{scenario}/v1/chat/completions`).
pub(crate) async fn completions(
    req: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    if !shared.key_ok(bearer(&req).as_deref()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "Incorrect API key provided.",
        );
    }
    // Notes, not frames: a recording must stay valid for the realtime validator.
    shared.recorder.note(&format!(
        "chat request: {}",
        String::from_utf8_lossy(&body).replace('\n', " ")
    ));
    let request: ChatRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("Invalid request body: {e}"),
            )
        }
    };
    let key = req
        .match_info()
        .get("scenario")
        .map(str::to_owned)
        .or_else(|| query_param(&req, "scenario"));
    let model = request
        .model
        .clone()
        .unwrap_or_else(|| "gpt-4o-mini".into());
    let selected = match shared.select(key.as_deref(), Some(&model)) {
        Ok(s) => s,
        Err(msg) => return error(StatusCode::NOT_FOUND, "not_found", &msg),
    };
    let user_turns = request.messages.iter().filter(|m| m.role == "user").count() as u32;
    let last_user = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| content_text(&m.content))
        .unwrap_or_default();
    // The results of the last round of calls (the trailing `tool` messages), one a line,
    // as the realtime fakes join several outputs.
    let outputs: Vec<String> = request
        .messages
        .iter()
        .rev()
        .take_while(|m| m.role == "tool")
        .map(|m| content_text(&m.content))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let tool_output = (!outputs.is_empty()).then(|| outputs.join("\n"));

    // What to say / call.
    let mut steps: VecDeque<Step> = match &selected.brain {
        Brain::Echo => VecDeque::from([Step::Say {
            text: match &tool_output {
                Some(out) => format!("tool said: {out}"),
                None => format!("echo: {last_user}"),
            },
            audio: None,
            drop_after_ms: None,
        }]),
        Brain::Script(sc) => match sc.turn(user_turns.max(1)) {
            Some(spec) => {
                let mut all = spec.steps().unwrap_or_default();
                substitute(&mut all, "{input}", &last_user);
                if let Some(out) = &tool_output {
                    // Continue after the (last) call step.
                    let after = all
                        .iter()
                        .rposition(|s| matches!(s, Step::Call { .. }))
                        .map(|p| p + 1)
                        .unwrap_or(0);
                    let mut rest: VecDeque<Step> = all.split_off(after);
                    substitute(&mut rest, "{output}", out);
                    rest
                } else {
                    all
                }
            }
            None => VecDeque::from([Step::Say {
                text: format!("echo: {last_user}"),
                audio: None,
                drop_after_ms: None,
            }]),
        },
    };
    let mut text = Vec::new();
    let mut calls = Vec::new();
    let mut cut = false;
    while let Some(step) = steps.pop_front() {
        match step {
            Step::Say {
                text: t,
                drop_after_ms,
                ..
            } => {
                cut |= drop_after_ms.is_some();
                text.push(t)
            }
            Step::Call { name, args, .. } => {
                calls.push(ToolCall {
                    id: shared.new_id("call"),
                    kind: "function",
                    function: FunctionCall {
                        name,
                        arguments: serde_json::to_string(&args).unwrap_or_else(|_| "{}".into()),
                    },
                });
                // A call ends this completion (with the calls right after it: parallel
                // calls); the rest follows the tool results.
                if !matches!(steps.front(), Some(Step::Call { .. })) {
                    break;
                }
            }
            Step::Error { message, code } => {
                return HttpResponse::InternalServerError().json(json!({
                    "error": {"message": message, "type": "server_error", "param": null,
                              "code": code.unwrap_or_else(|| "server_error".into())}
                }))
            }
            Step::Wait(d) => actix_rt::time::sleep(d).await,
            _ => {}
        }
    }
    let content = text.join(" ");
    let prompt_tokens: usize = request
        .messages
        .iter()
        .map(|m| content_text(&m.content).chars().count().div_ceil(4))
        .sum();
    let completion_tokens = content.chars().count().div_ceil(4);
    let finish_reason = if calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    if request.stream == Some(true) {
        let include_usage = request
            .stream_options
            .as_ref()
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let calls = serde_json::to_value(&calls).unwrap_or_default();
        let id = shared.new_id("chatcmpl");
        let usage = (prompt_tokens, completion_tokens);
        return crate::cascade::chat_stream::respond(
            &id,
            &model,
            &content,
            &calls,
            usage,
            include_usage,
            cut,
        );
    }
    let message = if calls.is_empty() {
        json!({"role": "assistant", "content": content})
    } else {
        json!({"role": "assistant", "content": if content.is_empty() { Value::Null } else { json!(content) }, "tool_calls": calls})
    };
    let reply = json!({
        "id": shared.new_id("chatcmpl"),
        "object": "chat.completion",
        "created": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": null}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens}
    });
    shared.recorder.note(&format!("chat response: {reply}"));
    HttpResponse::Ok().json(reply)
}
