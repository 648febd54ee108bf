//! Session lifecycle: the connect URL, the handshake (`session.created` → `session.update`
//! → `session.updated`), the session configuration sent in `session.update`, and how `error`
//! events are classified (fatal or not).

use liveagent_core::{
    ErrorEvent, ErrorKind, LiveError, Outbox, ProtocolSignal, SessionOpened, SessionUpdated,
};

use super::{OpenAiProtocol, Phase, PROVIDER};
use crate::config::{Output, TurnDetection};
use crate::wire::{
    ApiError, AudioInputConfig, AudioOutputConfig, ClientEvent, FunctionTool, Modality,
    NoiseReductionConfig, SessionAudio, SessionConfig, SessionInfo, SessionType,
    TranscriptionConfig, TurnDetectionConfig,
};

/// Checks and normalizes a base URL: trailing `/` removed, `http(s)` mapped to `ws(s)`.
pub(crate) fn websocket_base(url: &str) -> Result<String, LiveError> {
    let url = url.trim().trim_end_matches('/');
    let url = if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        url.to_owned()
    };
    let host = url
        .strip_prefix("wss://")
        .or_else(|| url.strip_prefix("ws://"))
        .ok_or_else(|| {
            LiveError::config(format!(
                "openai: base URL must start with wss://, ws://, https:// or http://: {url}"
            ))
        })?;
    if host.is_empty() || host.starts_with('/') {
        return Err(LiveError::config(format!(
            "openai: base URL has no host: {url}"
        )));
    }
    if url.contains('?') || url.contains('#') {
        return Err(LiveError::config(format!(
            "openai: base URL must not carry a query or fragment: {url}"
        )));
    }
    Ok(url)
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
pub(super) fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Maps an `error` event to a typed error and whether the session can go on.
pub fn classify_error(error: &ApiError) -> (ErrorKind, bool) {
    let code = error.code.as_deref().unwrap_or("");
    let kind = error.kind.as_deref().unwrap_or("");
    match code {
        "invalid_api_key"
        | "invalid_client_secret"
        | "expired_client_secret"
        | "unauthorized"
        | "authentication_error"
        | "missing_api_key" => return (ErrorKind::Auth, true),
        "model_not_found" | "deployment_not_found" | "DeploymentNotFound" => {
            return (ErrorKind::NotFound, true)
        }
        "insufficient_quota" | "billing_hard_limit_reached" => return (ErrorKind::Quota, true),
        "rate_limit_exceeded" => return (ErrorKind::Provider, false),
        _ => {}
    }
    match kind {
        "authentication_error" | "permission_error" | "invalid_api_key" => (ErrorKind::Auth, true),
        "insufficient_quota" => (ErrorKind::Quota, true),
        "not_found_error" => (ErrorKind::NotFound, true),
        "invalid_request_error" => (ErrorKind::InvalidRequest, false),
        _ => (ErrorKind::Provider, false),
    }
}

impl OpenAiProtocol {
    /// The `session.update` this protocol sends after `session.created`.
    pub fn session_update(&self) -> ClientEvent {
        ClientEvent::SessionUpdate {
            event_id: self.update_event_id.clone(),
            session: Box::new(self.session_config()),
        }
    }

    pub(super) fn session_config(&self) -> SessionConfig {
        let c = &self.config;
        let turn_detection = match &c.input.turn_detection {
            TurnDetection::SemanticVad(v) => Some(TurnDetectionConfig::SemanticVad {
                eagerness: v.eagerness,
                create_response: v.create_response,
                interrupt_response: v.interrupt_response,
            }),
            TurnDetection::ServerVad(v) => Some(TurnDetectionConfig::ServerVad {
                threshold: v.threshold,
                prefix_padding_ms: v.prefix_padding_ms,
                silence_duration_ms: v.silence_duration_ms,
                idle_timeout_ms: v.idle_timeout_ms,
                create_response: v.create_response,
                interrupt_response: v.interrupt_response,
            }),
            TurnDetection::Manual => None,
        };
        let input = AudioInputConfig {
            format: Some(c.input_format.wire()),
            noise_reduction: Some(
                c.input
                    .noise_reduction
                    .map(|kind| NoiseReductionConfig { kind }),
            ),
            transcription: Some(c.input.transcription.as_ref().map(|t| TranscriptionConfig {
                model: t.model.clone(),
                language: t.language.clone(),
                prompt: t.prompt.clone(),
            })),
            turn_detection: Some(turn_detection),
        };
        let (modality, output) = match &c.output {
            Output::Audio(a) => (
                Modality::Audio,
                Some(AudioOutputConfig {
                    format: Some(c.output_format.wire()),
                    voice: Some(a.voice.clone()),
                    speed: Some(a.speed),
                }),
            ),
            Output::Text(_) => (Modality::Text, None),
        };
        SessionConfig {
            kind: SessionType::Realtime,
            // With an Azure deployment the URL names the deployment, not the model.
            model: match &c.azure {
                Some(az) if az.deployment.is_some() => None,
                _ => Some(c.model.clone()),
            },
            instructions: Some(self.setup.instructions.clone()),
            output_modalities: Some(vec![modality]),
            audio: Some(SessionAudio {
                input: Some(input),
                output,
            }),
            tools: Some(
                self.setup
                    .tools
                    .iter()
                    .map(|t| FunctionTool {
                        kind: "function",
                        name: t.name.clone(),
                        description: t.description.clone(),
                        parameters: t.parameters.clone(),
                    })
                    .collect(),
            ),
            tool_choice: c.tool_choice.clone(),
            max_output_tokens: c.max_output_tokens,
        }
    }

    /// `session.created`: send `session.update` and, after a reconnect, replay the history.
    pub(super) fn on_session_created(&mut self, session: SessionInfo, out: &mut Outbox) {
        self.session_id = session.id;
        if self.phase != Phase::AwaitingCreated {
            tracing::debug!(target: "liveagent::openai", phase = ?self.phase, "unexpected session.created");
            return;
        }
        self.update_seq += 1;
        self.update_event_id = Some(format!("liveagent_session_update_{}", self.update_seq));
        let update = self.session_update();
        match &self.config.raw_session {
            Some(raw) => {
                // The unstable raw fields, merged last.
                let mut frame = serde_json::to_value(&update).unwrap_or_default();
                liveagent_core::raw::merge_json(&mut frame["session"], raw);
                out.send_text(frame.to_string());
            }
            None => self.send(out, &update),
        }
        let items = self.history.replay();
        if !items.is_empty() {
            tracing::info!(target: "liveagent::openai", items = items.len(), "replaying conversation history");
        }
        for item in items {
            self.send(
                out,
                &ClientEvent::ConversationItemCreate {
                    event_id: None,
                    item,
                },
            );
        }
        self.phase = Phase::AwaitingUpdated;
    }

    /// `session.updated`: the handshake is done (or the app's update was applied).
    pub(super) fn on_session_updated(&mut self, out: &mut Outbox) {
        if self.phase == Phase::AwaitingUpdated {
            self.phase = Phase::Ready;
            out.signal(ProtocolSignal::Ready { resumed: false });
            if !self.opened_once {
                self.opened_once = true;
                out.publish(SessionOpened {
                    provider: PROVIDER,
                    session_id: self.session_id.clone(),
                });
                out.publish(SessionUpdated { provider: PROVIDER });
            }
            if self.response_deferred {
                self.response_deferred = false;
                self.request_response(out);
            }
        } else if self.phase == Phase::Ready {
            out.publish(SessionUpdated { provider: PROVIDER });
        }
    }

    pub(super) fn on_error(&mut self, error: ApiError, out: &mut Outbox) {
        let (mut kind, mut fatal) = classify_error(&error);
        // An error about our own session.update during the handshake: the configuration
        // is wrong and the session would never become ready.
        if self.phase == Phase::AwaitingUpdated
            && (error.event_id.is_some() && error.event_id == self.update_event_id
                || error
                    .param
                    .as_deref()
                    .is_some_and(|p| p.starts_with("session")))
        {
            fatal = true;
            if !kind.is_permanent() {
                kind = ErrorKind::Config;
            }
        }
        let message = self.key.redact(&format!(
            "openai: {}{}",
            error.message.as_deref().unwrap_or("error without message"),
            error
                .param
                .as_deref()
                .map(|p| format!(" (param {p})"))
                .unwrap_or_default(),
        ));
        let mut err = LiveError::new(kind, message);
        if let Some(code) = error.code.clone().or(error.kind.clone()) {
            // The code is provider-supplied text too.
            err = err.with_code(self.key.redact(&code));
        }
        if fatal {
            // The session runtime publishes the fatal ErrorEvent and SessionClosed.
            tracing::error!(target: "liveagent::openai", "{err}");
            out.signal(ProtocolSignal::Fatal(err));
        } else {
            tracing::warn!(target: "liveagent::openai", "{err}");
            out.publish(ErrorEvent::new(PROVIDER, err));
        }
    }
}
