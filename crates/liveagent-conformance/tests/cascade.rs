//! The cascade (speech-to-text → Chat Completions → text-to-speech) runs the
//! provider-conformance suite (see `liveagent-conformance`), against the local server's
//! fake OpenAI-shaped STT, chat and TTS endpoints over real HTTP. What differs from a
//! realtime provider is declared in its capabilities, not special-cased in the cases:
//! no session socket ([`Connection::PerRequest`]), a tool-calling response that goes on
//! with the results ([`ToolTurn::SameResponse`]), nothing to renew.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use liveagent::cascade::openai::{OpenAiStt, OpenAiTts};
use liveagent::cascade::{CascadeConfig, ChatLlm};
use liveagent::RealtimeConfig;
use liveagent_conformance::{
    run_suite, Capabilities, ConfigOptions, Connection, ProviderHarness, ToolTurn,
};

struct Cascade;

impl ProviderHarness for Cascade {
    fn name(&self) -> &'static str {
        "cascade"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // The client-side turn detector reports the user's speech.
            speech_events: true,
            text_output: true,
            parallel_tool_calls: true,
            // The next request's history holds only the words heard.
            truncation: true,
            // The text before the calls is spoken while they run; the response goes on
            // with their results (a new LLM round in the same response).
            tool_turn: ToolTurn::SameResponse,
            // No connection outlives a stage request or an utterance (HTTP requests per
            // utterance, LLM round and piece of text; the realtime STT and stream-input TTS
            // sockets close after each utterance or piece), and every chat request carries
            // the whole conversation: there is nothing to renew, and inventing
            // SessionReconnecting for it would be false (docs/providers/cascade.md).
            renewal: None,
            renewal_resumes: false,
            connection: Connection::PerRequest,
        }
    }

    fn config(&self, server: SocketAddr, options: &ConfigOptions) -> Arc<dyn RealtimeConfig> {
        let base = format!("http://{server}/v1");
        let key = options.api_key.clone();
        assert!(
            options.max_connection_age.is_none(),
            "the cascade has no connection to renew"
        );
        Arc::new(
            CascadeConfig::new(
                OpenAiStt::new("gpt-4o-mini-transcribe")
                    .base_url(&base)
                    .api_key(key.clone()),
                ChatLlm::new("gpt-4o-mini")
                    .base_url(&base)
                    .api_key(key.clone()),
                OpenAiTts::new("gpt-4o-mini-tts", "marin")
                    .base_url(&base)
                    .api_key(key),
            )
            .text_only(options.text_output),
        )
    }
}

fn main() -> ExitCode {
    run_suite(Cascade)
}
