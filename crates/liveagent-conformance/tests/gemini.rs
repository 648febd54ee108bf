//! Gemini Live runs the provider-conformance suite (see `liveagent-conformance`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use liveagent::{gemini, RealtimeConfig};
use liveagent_conformance::{
    run_suite, Capabilities, ConfigOptions, Connection, ProviderHarness, Renewal, ToolTurn,
};
use liveagent_testkit::Protocol;

struct Gemini;

impl ProviderHarness for Gemini {
    fn name(&self) -> &'static str {
        "gemini"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // Gemini Live reports no voice activity unless asked; the session only learns
            // of the user's speech from transcripts and `interrupted`.
            speech_events: false,
            text_output: true,
            parallel_tool_calls: true,
            // No truncation message: the heard part is kept in the local history only.
            truncation: false,
            tool_turn: ToolTurn::SameResponse,
            renewal: Some(Renewal::GoAway),
            renewal_resumes: true,
            connection: Connection::Session,
        }
    }

    fn config(&self, server: SocketAddr, options: &ConfigOptions) -> Arc<dyn RealtimeConfig> {
        let mut config = gemini::RealtimeConfig::new("gemini-3.1-flash-live-preview")
            .base_url(format!("ws://{server}"))
            .api_key(options.api_key.clone())
            .input(gemini::InputConfig::new(true));
        if options.text_output {
            config = config.output(gemini::TextOutput);
        }
        assert!(
            options.max_connection_age.is_none(),
            "Gemini renews on goAway, not on an age limit"
        );
        Arc::new(config)
    }

    fn wire_protocol(&self) -> Option<Protocol> {
        Some(Protocol::Gemini)
    }
}

fn main() -> ExitCode {
    run_suite(Gemini)
}
