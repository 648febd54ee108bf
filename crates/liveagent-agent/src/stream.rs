//! Streaming Chat Completions (`"stream": true`): [`Agent::stream_chat`] sends a
//! conversation as it is (no tool loop) and yields [`ChatStreamEvent`]s as the model
//! produces them: text deltas at once, tool calls once their arguments are complete, the
//! finish reason and the usage. The cascade provider (`liveagent-cascade`) uses it as its
//! LLM stage, so there is one Chat Completions client in the workspace.
//!
//! Wire rules followed (see the cascade API notes): tool-call `arguments` are
//! concatenated per `index` and parsed only after `finish_reason`; usage arrives in an
//! extra chunk with `choices: []`; the stream ends with `data: [DONE]`; a `data:` object
//! with an `error` key is an API error; a stream that ends before a finish reason is an
//! error, never a silent truncation.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;

use bytes::Bytes;
use futures_util::stream::{self, LocalBoxStream, Stream, StreamExt};
use liveagent_core::{ErrorKind, LiveError};

use crate::sse::SseDecoder;
use crate::wire::{
    ChatChunk, ChatFunctionCall, ChatMessage, ChatRequest, ChatTool, ChatToolCall, ChatUsage,
    ErrorBody, StreamOptions,
};
use crate::Agent;

/// The largest SSE event accepted (1 MiB).
const MAX_EVENT: usize = 1 << 20;

/// What a streaming completion yields, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum ChatStreamEvent {
    /// More assistant text.
    Text(String),
    /// The tool calls of this completion, complete (sent just before [`Finished`](Self::Finished)).
    ToolCalls(Vec<ChatToolCall>),
    /// The model finished: `stop`, `tool_calls`, `length`, `content_filter`...
    Finished {
        /// The finish reason.
        reason: Option<String>,
    },
    /// Token usage (after `Finished`, when the server sends it).
    Usage(ChatUsage),
}

type Body = Pin<Box<dyn Stream<Item = Result<Bytes, awc::error::PayloadError>>>>;

impl Agent {
    /// Streams one completion of `messages` (the caller includes any system message;
    /// the agent's own prompt and tools are not added) offering `tools`. Each item is an
    /// event or the error that ended the stream; the stream ends after an error. The
    /// agent's timeout bounds the wait for the response head and for each chunk.
    pub fn stream_chat(
        &self,
        messages: Vec<ChatMessage>,
        tools: Vec<ChatTool>,
    ) -> LocalBoxStream<'static, Result<ChatStreamEvent, LiveError>> {
        let agent = self.clone();
        let request = ChatRequest {
            model: self.model.to_string(),
            messages,
            tools,
            tool_choice: None,
            temperature: self.temperature,
            max_completion_tokens: None,
            stream: Some(true),
            stream_options: Some(StreamOptions {
                include_usage: true,
            }),
        };
        stream::once(async move {
            let body = agent.open_stream(&request).await;
            (agent, body)
        })
        .flat_map(|(agent, body)| match body {
            Ok(body) => decode(agent, body),
            Err(e) => stream::iter([Err(e)]).boxed_local(),
        })
        .boxed_local()
    }

    async fn open_stream(&self, request: &ChatRequest) -> Result<Body, LiveError> {
        let url = format!("{}/chat/completions", self.base_url);
        // The whole stream may take long; each wait is bounded below instead.
        let client = self.client(self.timeout.saturating_mul(30));
        let mut builder = client
            .post(&url)
            .insert_header(("accept", "text/event-stream"));
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key.expose());
        }
        let send = builder.send_json(request);
        let mut response = match tokio::time::timeout(self.timeout, send).await {
            Err(_) => return Err(self.timed_out(&url)),
            Ok(Err(e)) => {
                return Err(self.err(
                    ErrorKind::Connection,
                    format!("request to {url} failed: {e}"),
                ))
            }
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if !status.is_success() {
            let body = tokio::time::timeout(self.timeout, response.body().limit(64 * 1024))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            return Err(self.http_error(status.as_u16(), &body));
        }
        Ok(Box::pin(response))
    }
}

struct Decoding {
    agent: Agent,
    body: Body,
    sse: SseDecoder,
    queue: VecDeque<Result<ChatStreamEvent, LiveError>>,
    calls: BTreeMap<u32, ChatToolCall>,
    finished: bool,
    done: bool,
}

fn decode(agent: Agent, body: Body) -> LocalBoxStream<'static, Result<ChatStreamEvent, LiveError>> {
    let state = Decoding {
        agent,
        body,
        sse: SseDecoder::new(MAX_EVENT),
        queue: VecDeque::new(),
        calls: BTreeMap::new(),
        finished: false,
        done: false,
    };
    stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.queue.pop_front() {
                if item.is_err() {
                    st.done = true;
                    st.queue.clear();
                }
                return Some((item, st));
            }
            if st.done {
                return None;
            }
            let next = tokio::time::timeout(st.agent.timeout, st.body.next()).await;
            match next {
                Err(_) => {
                    let e = st
                        .agent
                        .err(
                            ErrorKind::Connection,
                            format!(
                                "the completion stream stalled for {} s",
                                st.agent.timeout.as_secs_f32()
                            ),
                        )
                        .with_code("timeout");
                    st.queue.push_back(Err(e));
                }
                Ok(Some(Ok(bytes))) => match st.sse.push(&bytes) {
                    Ok(events) => {
                        for ev in events {
                            st.on_data(&ev.data);
                        }
                    }
                    Err(e) => {
                        let e = st.agent.err(ErrorKind::Protocol, e.to_string());
                        st.queue.push_back(Err(e));
                    }
                },
                Ok(Some(Err(e))) => {
                    let e = st.agent.err(
                        ErrorKind::Connection,
                        format!("the completion stream broke: {e}"),
                    );
                    st.queue.push_back(Err(e));
                }
                Ok(None) => {
                    if let Some(ev) = st.sse.finish() {
                        st.on_data(&ev.data);
                    }
                    if !st.done {
                        st.done = true;
                        if !st.finished {
                            let e = st.agent.err(
                                ErrorKind::Connection,
                                "the completion stream ended before the model finished".into(),
                            );
                            st.queue.push_back(Err(e));
                        }
                    }
                }
            }
        }
    })
    .boxed_local()
}

impl Decoding {
    fn on_data(&mut self, data: &str) {
        if self.done {
            return;
        }
        let data = data.trim();
        if data.is_empty() {
            return;
        }
        if data == "[DONE]" {
            self.done = true;
            if !self.finished {
                let e = self.agent.err(
                    ErrorKind::Protocol,
                    "the completion stream said [DONE] before a finish reason".into(),
                );
                self.queue.push_back(Err(e));
            }
            return;
        }
        if let Ok(body) = serde_json::from_str::<ErrorBody>(data) {
            let message = body.error.message;
            let mut e = self.agent.err(
                ErrorKind::Provider,
                format!("the model failed mid-stream: {message}"),
            );
            if let Some(serde_json::Value::String(code)) = body.error.code {
                e = e.with_code(self.agent.redact(&code));
            }
            self.queue.push_back(Err(e));
            return;
        }
        let chunk: ChatChunk = match serde_json::from_str(data) {
            Ok(c) => c,
            Err(e) => {
                let shown: String = data.chars().take(200).collect();
                let e = self.agent.err(
                    ErrorKind::Protocol,
                    format!("malformed completion chunk ({e}): {shown:?}"),
                );
                self.queue.push_back(Err(e));
                return;
            }
        };
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            let delta = choice.delta;
            for text in [delta.content, delta.refusal].into_iter().flatten() {
                if !text.is_empty() {
                    self.queue.push_back(Ok(ChatStreamEvent::Text(text)));
                }
            }
            for fragment in delta.tool_calls {
                let call = self
                    .calls
                    .entry(fragment.index)
                    .or_insert_with(|| ChatToolCall {
                        id: String::new(),
                        kind: "function".into(),
                        function: ChatFunctionCall {
                            name: String::new(),
                            arguments: String::new(),
                        },
                    });
                if let Some(id) = fragment.id.filter(|i| !i.is_empty()) {
                    call.id = id;
                }
                if let Some(f) = fragment.function {
                    if let Some(name) = f.name.filter(|n| !n.is_empty()) {
                        call.function.name = name;
                    }
                    if let Some(args) = f.arguments {
                        call.function.arguments.push_str(&args);
                    }
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finished = true;
                let calls: Vec<ChatToolCall> =
                    std::mem::take(&mut self.calls).into_values().collect();
                if !calls.is_empty() {
                    if let Some(bad) = calls
                        .iter()
                        .find(|c| c.id.is_empty() || c.function.name.is_empty())
                    {
                        let e = self.agent.err(
                            ErrorKind::Protocol,
                            format!("a streamed tool call has no id or name: {bad:?}"),
                        );
                        self.queue.push_back(Err(e));
                        return;
                    }
                    self.queue.push_back(Ok(ChatStreamEvent::ToolCalls(calls)));
                }
                self.queue.push_back(Ok(ChatStreamEvent::Finished {
                    reason: Some(reason),
                }));
            }
        }
        if let Some(usage) = chunk.usage {
            self.queue.push_back(Ok(ChatStreamEvent::Usage(usage)));
        }
    }
}
