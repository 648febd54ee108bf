//! [`Agent`] and its reply.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use awc::error::SendRequestError;
use liveagent_core::{
    ConversationContext, ErrorKind, LiveError, Secret, TlsRoots, ToolCall, ToolResult,
};
use liveagent_tools::{Tool, Toolbox};
use serde_json::Value;

use crate::wire::{ChatMessage, ChatRequest, ChatResponse, ChatTool, ChatUsage, ErrorBody};

/// OpenAI's API base URL, the default of [`Agent::base_url`].
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// The largest response body accepted (4 MiB).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// A turn-based text agent over OpenAI Chat Completions (or any server speaking it).
///
/// [`ask`](Self::ask) sends the prompt and the question, runs the tool calls the model
/// makes (concurrently, through the agent's [`Toolbox`]: middleware, approval, timeouts
/// apply), sends their outputs back, and repeats until the model answers in text, for at
/// most [`max_rounds`](Self::max_rounds) rounds of tool calls.
///
/// The API key is read from `OPENAI_API_KEY` by default and sent as a Bearer token; it
/// never appears in `Debug` output, logs or errors. Cloning is cheap; an agent is
/// `Send + Sync`.
#[derive(Clone)]
pub struct Agent {
    pub(crate) name: Arc<str>,
    prompt: Arc<str>,
    pub(crate) model: Arc<str>,
    pub(crate) base_url: Arc<str>,
    pub(crate) api_key: Option<Secret>,
    toolbox: Toolbox,
    pub(crate) max_rounds: u32,
    pub(crate) timeout: Duration,
    pub(crate) temperature: Option<f32>,
    tls_roots: TlsRoots,
}

impl fmt::Debug for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agent")
            .field("name", &self.name)
            .field("model", &self.model)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .field("toolbox", &self.toolbox)
            .field("max_rounds", &self.max_rounds)
            .field("timeout", &self.timeout)
            .field("tls_roots", &self.tls_roots)
            .finish()
    }
}

/// One tool call an agent made while answering.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolRun {
    /// The tool.
    pub name: String,
    /// The arguments the model gave.
    pub arguments: Value,
    /// What the tool returned (or the error text the model read).
    pub output: Result<Value, String>,
}

/// The answer of [`Agent::ask`].
#[derive(Clone, Debug, PartialEq)]
pub struct AgentReply {
    /// The final text.
    pub text: String,
    /// The tool calls made on the way, in order.
    pub tool_runs: Vec<ToolRun>,
    /// How many requests were sent.
    pub requests: u32,
    /// Token usage summed over the requests.
    pub usage: ChatUsage,
    /// The whole conversation (without the system prompt), to continue it with
    /// [`Agent::ask_with`].
    pub messages: Vec<ChatMessage>,
}

/// What [`Agent::ask_observed`] reports while it answers.
pub(crate) enum Step<'a> {
    /// A chat completion arrived (`request` counts from 1).
    Replied { request: u32 },
    /// The model called a tool; it starts now.
    ToolCalled { name: &'a str, arguments: &'a Value },
    /// A tool call finished.
    ToolFinished { name: &'a str, ok: bool },
}

impl Agent {
    /// An agent called `name` (for logs and errors) with system prompt `prompt`, using
    /// `model`, on OpenAI with the key from `OPENAI_API_KEY`.
    pub fn new(
        name: impl Into<Arc<str>>,
        prompt: impl Into<Arc<str>>,
        model: impl Into<Arc<str>>,
    ) -> Self {
        Agent {
            name: name.into(),
            prompt: prompt.into(),
            model: model.into(),
            base_url: DEFAULT_BASE_URL.into(),
            api_key: Secret::from_env("OPENAI_API_KEY"),
            toolbox: Toolbox::new(),
            max_rounds: 8,
            timeout: Duration::from_secs(60),
            temperature: None,
            tls_roots: TlsRoots::default(),
        }
    }

    /// The API base URL (`…/v1`; the agent posts to `{base}/chat/completions`).
    pub fn base_url(mut self, url: impl AsRef<str>) -> Self {
        self.base_url = url.as_ref().trim_end_matches('/').into();
        self
    }

    /// The API key (instead of `OPENAI_API_KEY`).
    pub fn api_key(mut self, key: impl Into<Secret>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Sends no API key (local servers).
    pub fn without_api_key(mut self) -> Self {
        self.api_key = None;
        self
    }

    /// Adds tools.
    pub fn tools(mut self, tools: impl IntoIterator<Item = Tool>) -> Self {
        self.toolbox = self.toolbox.tools(tools);
        self
    }

    /// Adds a tool.
    pub fn tool(mut self, tool: Tool) -> Self {
        self.toolbox = self.toolbox.tool(tool);
        self
    }

    /// Replaces the toolbox (tools plus middleware, approval, dependencies, timeouts).
    pub fn toolbox(mut self, toolbox: Toolbox) -> Self {
        self.toolbox = toolbox;
        self
    }

    /// The most rounds of tool calls per question (default 8); a model that still calls
    /// tools after that makes [`ask`](Self::ask) fail.
    pub fn max_rounds(mut self, rounds: u32) -> Self {
        self.max_rounds = rounds;
        self
    }

    /// The time one HTTP request may take, response body included (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The certificate authorities trusted for `https://` (default: the bundled public
    /// roots). Add a private CA to reach a server with a self-signed or corporate
    /// certificate, e.g. a local vLLM or Ollama behind a TLS proxy:
    ///
    /// ```no_run
    /// # fn main() -> Result<(), liveagent_core::LiveError> {
    /// use liveagent_agent::Agent;
    /// use liveagent_core::TlsRoots;
    ///
    /// let agent = Agent::new("local", "You are terse.", "llama3.2")
    ///     .base_url("https://llm.internal:8443/v1")
    ///     .without_api_key()
    ///     .tls_roots(TlsRoots::default().with_pem_file("/etc/ssl/internal-ca.pem")?);
    /// # Ok(()) }
    /// ```
    pub fn tls_roots(mut self, roots: TlsRoots) -> Self {
        self.tls_roots = roots;
        self
    }

    /// The sampling temperature.
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The agent's toolbox.
    pub fn tools_ref(&self) -> &Toolbox {
        &self.toolbox
    }

    /// Answers `text` (a fresh conversation).
    pub async fn ask(&self, text: &str) -> Result<AgentReply, LiveError> {
        self.ask_with(Vec::new(), text).await
    }

    /// Answers `text` after `history` (the `messages` of an earlier [`AgentReply`]).
    pub async fn ask_with(
        &self,
        history: Vec<ChatMessage>,
        text: &str,
    ) -> Result<AgentReply, LiveError> {
        self.ask_observed(history, text, None, &|_| {}).await
    }

    /// [`ask_with`](Self::ask_with), running the agent's tools in `conversation` (when
    /// given) and telling `on_step` what happens as it happens.
    pub(crate) async fn ask_observed(
        &self,
        history: Vec<ChatMessage>,
        text: &str,
        conversation: Option<ConversationContext>,
        on_step: &dyn Fn(Step<'_>),
    ) -> Result<AgentReply, LiveError> {
        let mut messages = history;
        messages.push(ChatMessage::user(text));
        let tools: Vec<ChatTool> = self
            .toolbox
            .schemas()
            .into_iter()
            .map(ChatTool::from)
            .collect();
        let mut reply = AgentReply {
            text: String::new(),
            tool_runs: Vec::new(),
            requests: 0,
            usage: ChatUsage::default(),
            messages: Vec::new(),
        };
        let mut round = 0;
        loop {
            let mut all = Vec::with_capacity(messages.len() + 1);
            all.push(ChatMessage::system(self.prompt.to_string()));
            all.extend(messages.iter().cloned());
            let request = ChatRequest {
                model: self.model.to_string(),
                messages: all,
                tools: tools.clone(),
                tool_choice: None,
                temperature: self.temperature,
                max_completion_tokens: None,
                stream: None,
                stream_options: None,
            };
            let response = self.post(&request).await?;
            reply.requests += 1;
            on_step(Step::Replied {
                request: reply.requests,
            });
            if let Some(u) = response.usage {
                reply.usage.prompt_tokens += u.prompt_tokens;
                reply.usage.completion_tokens += u.completion_tokens;
                reply.usage.total_tokens += u.total_tokens;
            }
            let Some(choice) = response.choices.into_iter().next() else {
                return Err(self.err(
                    ErrorKind::Protocol,
                    "the chat completion has no choices".to_owned(),
                ));
            };
            let ChatMessage::Assistant {
                content,
                tool_calls,
                refusal,
            } = choice.message
            else {
                return Err(self.err(
                    ErrorKind::Protocol,
                    "the chat completion's message is not from the assistant".to_owned(),
                ));
            };
            if tool_calls.is_empty() {
                let text = match (content, refusal) {
                    (Some(c), _) => c,
                    (None, Some(r)) => r,
                    (None, None) => String::new(),
                };
                messages.push(ChatMessage::assistant(text.clone()));
                reply.text = text;
                reply.messages = messages;
                return Ok(reply);
            }
            if round >= self.max_rounds {
                return Err(self.err(
                    ErrorKind::Tool,
                    format!(
                        "the model still called tools after {} rounds",
                        self.max_rounds
                    ),
                ));
            }
            round += 1;
            messages.push(ChatMessage::Assistant {
                content,
                tool_calls: tool_calls.clone(),
                refusal,
            });
            let calls: Vec<ToolCall> = tool_calls
                .iter()
                .map(|c| ToolCall {
                    call_id: c.id.as_str().into(),
                    name: c.function.name.as_str().into(),
                    arguments: serde_json::from_str(&c.function.arguments)
                        .unwrap_or_else(|_| Value::String(c.function.arguments.clone())),
                    response_id: None,
                })
                .collect();
            for call in &calls {
                on_step(Step::ToolCalled {
                    name: &call.name,
                    arguments: &call.arguments,
                });
            }
            let outcomes = futures_util::future::join_all(
                calls
                    .iter()
                    .map(|call| self.toolbox.run(call.clone(), conversation.clone())),
            )
            .await;
            for (call, output) in calls.into_iter().zip(outcomes) {
                tracing::debug!(agent = %self.name, tool = %call.name, ok = output.is_ok(), "agent tool call");
                on_step(Step::ToolFinished {
                    name: &call.name,
                    ok: output.is_ok(),
                });
                let result = ToolResult {
                    call_id: call.call_id.clone(),
                    name: call.name.clone(),
                    output,
                    request_response: false,
                };
                messages.push(ChatMessage::Tool {
                    tool_call_id: call.call_id.to_string(),
                    content: result.output_text(),
                });
                reply.tool_runs.push(ToolRun {
                    name: call.name.to_string(),
                    arguments: call.arguments,
                    output: result.output,
                });
            }
        }
    }

    pub(crate) fn err(&self, kind: ErrorKind, message: String) -> LiveError {
        LiveError::new(
            kind,
            format!("agent `{}`: {}", self.name, self.redact(&message)),
        )
    }

    pub(crate) fn redact(&self, text: &str) -> String {
        match &self.api_key {
            Some(key) => key.redact(text),
            None => text.to_owned(),
        }
    }

    async fn post(&self, request: &ChatRequest) -> Result<ChatResponse, LiveError> {
        let url = format!("{}/chat/completions", self.base_url);
        match tokio::time::timeout(self.timeout, self.post_inner(&url, request)).await {
            Ok(result) => result,
            Err(_) => Err(self.timed_out(&url)),
        }
    }

    pub(crate) fn timed_out(&self, url: &str) -> LiveError {
        self.err(
            ErrorKind::Connection,
            format!(
                "no complete response from {url} within {} s",
                self.timeout.as_secs_f32()
            ),
        )
        .with_code("timeout")
    }

    /// An HTTP client for this agent's requests; `timeout` bounds the whole request (use a
    /// long one for streams).
    pub(crate) fn client(&self, timeout: Duration) -> awc::Client {
        // HTTP/1.1 only (as the WebSocket client): the TLS configuration's ALPN never
        // offers h2, so the h2 0.3 code reachable through actix-http (and its advisories)
        // is never used for our requests.
        let tls = self.tls_roots.client_config();
        awc::Client::builder()
            .connector(awc::Connector::new().rustls_0_23(tls).timeout(self.timeout))
            .timeout(timeout)
            .disable_redirects()
            .finish()
    }

    async fn post_inner(
        &self,
        url: &str,
        request: &ChatRequest,
    ) -> Result<ChatResponse, LiveError> {
        let mut builder = self.client(self.timeout).post(url);
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key.expose());
        }
        let mut response = builder.send_json(request).await.map_err(|e| match e {
            SendRequestError::Timeout => self.timed_out(url),
            other => self.err(
                ErrorKind::Connection,
                format!("request to {url} failed: {other}"),
            ),
        })?;
        let status = response.status();
        let body = response.body().limit(MAX_BODY).await.map_err(|e| {
            self.err(
                ErrorKind::Connection,
                format!("reading the response from {url} failed: {e}"),
            )
        })?;
        if !status.is_success() {
            return Err(self.http_error(status.as_u16(), &body));
        }
        serde_json::from_slice::<ChatResponse>(&body).map_err(|e| {
            let shown: String = String::from_utf8_lossy(&body).chars().take(200).collect();
            self.err(
                ErrorKind::Protocol,
                format!("malformed chat completion ({e}): {shown:?}"),
            )
        })
    }

    pub(crate) fn http_error(&self, status: u16, body: &[u8]) -> LiveError {
        let parsed = serde_json::from_slice::<ErrorBody>(body)
            .ok()
            .map(|b| b.error);
        let code = parsed.as_ref().and_then(|e| match &e.code {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        });
        let kind_tag = parsed.as_ref().and_then(|e| e.kind.clone());
        let message = match &parsed {
            Some(e) if !e.message.is_empty() => e.message.clone(),
            _ => {
                let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
                if text.trim().is_empty() {
                    "no error message".to_owned()
                } else {
                    text
                }
            }
        };
        let quota = [code.as_deref(), kind_tag.as_deref()].contains(&Some("insufficient_quota"));
        let kind = match status {
            401 | 403 => ErrorKind::Auth,
            404 => ErrorKind::NotFound,
            429 if quota => ErrorKind::Quota,
            400 | 409 | 413 | 422 => ErrorKind::InvalidRequest,
            _ => ErrorKind::Provider,
        };
        self.err(kind, format!("HTTP {status}: {message}"))
            .with_code(self.redact(&code.unwrap_or_else(|| status.to_string())))
    }
}
