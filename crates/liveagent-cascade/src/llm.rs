//! [`ChatLlm`]: the LLM stage, any server speaking OpenAI Chat Completions with streaming
//! and tool calls (OpenAI, or a local Ollama, vLLM or llama.cpp server by base URL). It is
//! a thin adapter over [`liveagent_agent::Agent::stream_chat`], the workspace's one Chat
//! Completions client.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::LocalBoxStream;
use liveagent_agent::wire::{ChatMessage, ChatTool};
use liveagent_agent::{Agent, ChatStreamEvent};
use liveagent_core::{LiveError, Secret};

use crate::stage::Llm;

/// A Chat Completions model.
///
/// ```
/// use liveagent_cascade::ChatLlm;
/// // OpenAI, key from OPENAI_API_KEY:
/// let llm = ChatLlm::new("gpt-4o-mini");
/// // A local server (Ollama), no key:
/// let local = ChatLlm::new("llama3.2").base_url("http://127.0.0.1:11434/v1").without_api_key();
/// ```
#[derive(Clone, Debug)]
pub struct ChatLlm {
    model: Arc<str>,
    agent: Agent,
}

impl ChatLlm {
    /// `model` on OpenAI, key from `OPENAI_API_KEY`.
    pub fn new(model: impl Into<Arc<str>>) -> Self {
        let model = model.into();
        ChatLlm {
            agent: Agent::new("cascade-llm", "", model.clone()),
            model,
        }
    }

    /// The API base URL (`…/v1`).
    pub fn base_url(mut self, url: impl AsRef<str>) -> Self {
        self.agent = self.agent.base_url(url);
        self
    }

    /// The API key.
    pub fn api_key(mut self, key: impl Into<Secret>) -> Self {
        self.agent = self.agent.api_key(key);
        self
    }

    /// Send no key (local servers).
    pub fn without_api_key(mut self) -> Self {
        self.agent = self.agent.without_api_key();
        self
    }

    /// Sampling temperature.
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.agent = self.agent.temperature(temperature);
        self
    }

    /// The certificate authorities trusted for `https://` (default: the bundled public
    /// roots); add a private CA for a server with a self-signed or corporate certificate.
    pub fn tls_roots(mut self, roots: liveagent_core::TlsRoots) -> Self {
        self.agent = self.agent.tls_roots(roots);
        self
    }

    /// How long to wait for the response head and for each chunk (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.agent = self.agent.timeout(timeout);
        self
    }
}

impl Llm for ChatLlm {
    fn provider(&self) -> &'static str {
        "openai"
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn complete(
        &self,
        messages: Vec<ChatMessage>,
        tools: Vec<ChatTool>,
    ) -> LocalBoxStream<'static, Result<ChatStreamEvent, LiveError>> {
        self.agent.stream_chat(messages, tools)
    }
}
