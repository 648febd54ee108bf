//! OpenAI Realtime runs the provider-conformance suite (see `liveagent-conformance`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use liveagent::{openai, RealtimeConfig};
use liveagent_conformance::{
    run_suite, Capabilities, ConfigOptions, Connection, ProviderHarness, Renewal, ToolTurn,
};
use liveagent_testkit::Protocol;

struct OpenAi;

impl ProviderHarness for OpenAi {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            speech_events: true,
            text_output: true,
            parallel_tool_calls: true,
            truncation: true,
            tool_turn: ToolTurn::NewResponse,
            renewal: Some(Renewal::MaxConnectionAge),
            renewal_resumes: false,
            connection: Connection::Session,
        }
    }

    fn config(&self, server: SocketAddr, options: &ConfigOptions) -> Arc<dyn RealtimeConfig> {
        let mut config = openai::RealtimeConfig::new("gpt-realtime")
            .base_url(format!("ws://{server}/v1"))
            .api_key(options.api_key.clone());
        if options.text_output {
            config = config.output(openai::TextOutput);
        }
        if let Some(age) = options.max_connection_age {
            config = config.max_connection_age(age);
        }
        Arc::new(config)
    }

    fn wire_protocol(&self) -> Option<Protocol> {
        Some(Protocol::OpenAi)
    }
}

fn main() -> ExitCode {
    run_suite(OpenAi)
}
