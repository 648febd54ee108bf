//! # liveagent-conformance
//!
//! The provider-conformance suite, written once. Every provider (OpenAI Realtime, Gemini
//! Live, and any provider added later) is driven through the public [`liveagent`] API
//! ([`LiveAgent`](liveagent::LiveAgent) → [`Conversation`](liveagent::Conversation)) against
//! the local realtime server (`liveagent-server`) over real WebSockets, and must publish the
//! same events in the same order for each case.
//!
//! A provider joins by implementing [`ProviderHarness`] (how to build its configuration for
//! the local server, what it can do) and adding a test binary that calls [`run_suite`]:
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use std::sync::Arc;
//! use liveagent::{openai, RealtimeConfig};
//! use liveagent_conformance::{
//!     run_suite, Capabilities, ConfigOptions, Connection, ProviderHarness, Renewal, ToolTurn,
//! };
//!
//! struct OpenAi;
//!
//! impl ProviderHarness for OpenAi {
//!     fn name(&self) -> &'static str {
//!         "openai"
//!     }
//!     fn capabilities(&self) -> Capabilities {
//!         Capabilities {
//!             speech_events: true,
//!             text_output: true,
//!             parallel_tool_calls: true,
//!             truncation: true,
//!             tool_turn: ToolTurn::NewResponse,
//!             renewal: Some(Renewal::MaxConnectionAge),
//!             renewal_resumes: false,
//!             connection: Connection::Session,
//!         }
//!     }
//!     fn config(&self, server: SocketAddr, options: &ConfigOptions) -> Arc<dyn RealtimeConfig> {
//!         let mut config = openai::RealtimeConfig::new("gpt-realtime")
//!             .base_url(format!("ws://{server}/v1"))
//!             .api_key(options.api_key.clone());
//!         if options.text_output {
//!             config = config.output(openai::TextOutput);
//!         }
//!         if let Some(age) = options.max_connection_age {
//!             config = config.max_connection_age(age);
//!         }
//!         Arc::new(config)
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     run_suite(OpenAi)
//! }
//! ```
//!
//! with, in the crate's `Cargo.toml`, `[[test]] name = "openai"` and `harness = false`, so
//! the runner prints every case in the CI log: run (with the normalized event sequence it
//! checked), skipped (with the capability that is missing), or failed.
//!
//! # Layout
//! - this file: [`ProviderHarness`], [`Capabilities`], [`ConfigOptions`] and the runner
//!   ([`run_suite`], [`CASES`]).
//! - `cases`: the cases, one `async fn` each.
//! - [`Run`]: a running conversation with every event recorded, and [`milestones`], the
//!   normalized event sequence the cases compare.
//! - [`CutProxy`]: a TCP proxy whose connections a test can cut (a network fault on the
//!   real socket path).

mod cases;
mod proxy;
mod run;

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use liveagent::RealtimeConfig;
use liveagent_server::ServerConfig;

pub use proxy::CutProxy;
pub use run::{milestones, Run, FAILSAFE};

/// The API key the local server accepts in every case (the auth case presents another).
pub const SERVER_KEY: &str = "conformance-key-123";

/// What a provider is asked to build in a case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigOptions {
    /// The API key to present ([`SERVER_KEY`], or a wrong one in the auth case).
    pub api_key: String,
    /// Answer in text only (no synthesized audio).
    pub text_output: bool,
    /// Renew the connection after this age (only asked of providers whose
    /// [`Capabilities::renewal`] is [`Renewal::MaxConnectionAge`]).
    pub max_connection_age: Option<Duration>,
}

impl Default for ConfigOptions {
    fn default() -> Self {
        ConfigOptions {
            api_key: SERVER_KEY.to_owned(),
            text_output: false,
            max_connection_age: None,
        }
    }
}

/// How a response that calls tools is shaped on the event stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolTurn {
    /// The response that asks for the calls ends (`ResponseDone`, then `ToolCallRequested`)
    /// and the answer with the results comes in a new response (OpenAI Realtime: the client
    /// sends `response.create` with the outputs).
    NewResponse,
    /// The calls are requested inside the running response, which goes on with the results
    /// and ends after the answer (Gemini Live: the model turn spans the `toolCall`).
    SameResponse,
}

/// How the provider renews a connection before the provider ends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// The configuration's maximum connection age ([`ConfigOptions::max_connection_age`]).
    MaxConnectionAge,
    /// The server announces the end of the connection (Gemini `goAway`).
    GoAway,
}

/// How the provider reaches its model, which decides what a dropped connection and a
/// refused key look like on the event stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connection {
    /// One long-lived session socket (OpenAI Realtime, Gemini Live). A drop loses the
    /// socket: the response in flight fails (`connection lost`), the session reconnects
    /// (`SessionReconnecting`, `SessionReconnected`); a refused key fails the connect (no
    /// `SessionOpened`). The provider's copy of the conversation is the server session's.
    Session,
    /// A request per stage and turn, no session socket (a cascade: speech-to-text, Chat
    /// Completions and text-to-speech over HTTP). A drop breaks a stage request
    /// mid-stream: the response in flight fails with a non-fatal `ErrorEvent` and the
    /// conversation goes on with the next request, which carries it whole (there is
    /// nothing to reconnect); a cut while no request is open must not be noticed. A
    /// refused key is found at the first request: the session has opened, the response
    /// fails, then one fatal error and `SessionClosed`. The provider's copy of the
    /// conversation is what each chat request carries (the server's recorded
    /// `chat request:` notes), so truncation is checked in the request after it.
    PerRequest,
}

/// What a provider can do. A case that needs a missing capability is skipped, and the
/// runner prints it as skipped with the reason, so nothing is left out silently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// `SpeechStarted` / `SpeechStopped` are published when the user starts and stops
    /// speaking (Gemini Live's server does not report voice activity by default).
    pub speech_events: bool,
    /// Text-only output ([`ConfigOptions::text_output`]).
    pub text_output: bool,
    /// Several calls in one `ToolCallRequested`.
    pub parallel_tool_calls: bool,
    /// After a barge-in the provider's copy of the interrupted answer is cut to what the
    /// user heard (`PlaybackStopped::played_ms`).
    pub truncation: bool,
    /// How a tool-calling response is shaped.
    pub tool_turn: ToolTurn,
    /// How connections are renewed (`None`: the renewal case is skipped).
    pub renewal: Option<Renewal>,
    /// A renewed connection resumes the provider's session (`SessionReconnected::resumed`)
    /// rather than replaying the history into a new one.
    pub renewal_resumes: bool,
    /// How the provider reaches its model.
    pub connection: Connection,
}

/// What the conformance suite needs from a provider.
pub trait ProviderHarness: Send + Sync + 'static {
    /// The provider's name, printed with every case.
    fn name(&self) -> &'static str;

    /// What the provider can do; cases that do not apply are skipped (and printed).
    fn capabilities(&self) -> Capabilities;

    /// The provider configuration that talks to the local server listening on `server`
    /// (or to the proxy in front of it), with `options`.
    fn config(&self, server: SocketAddr, options: &ConfigOptions) -> Arc<dyn RealtimeConfig>;

    /// The local server for a case: `base` holds the case's scenario, pacing and key. A
    /// provider may adjust it (say, enable an endpoint it needs). Default: unchanged.
    fn server_config(&self, base: ServerConfig) -> ServerConfig {
        base
    }

    /// The wire protocol the official validator checks the client frames against after each
    /// case (`None`: no validator for this provider's wire).
    fn wire_protocol(&self) -> Option<liveagent_testkit::Protocol> {
        None
    }
}

/// One case of the suite.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// Its name, printed (the same list for every provider).
    pub name: &'static str,
    /// What it checks.
    pub about: &'static str,
}

/// Every case, in the order they run and are printed.
pub const CASES: &[Case] = &[
    Case {
        name: "spoken_turn",
        about: "speech in; speech, transcripts and one completed response out",
    },
    Case {
        name: "text_turn",
        about: "text in, text-only answer out (no audio)",
    },
    Case {
        name: "tool_call",
        about: "one tool call runs once; its output is spoken",
    },
    Case {
        name: "parallel_tool_calls",
        about: "two calls in one request, each result delivered once",
    },
    Case {
        name: "barge_in",
        about: "user speech interrupts a long answer: Interrupted, then a cancelled response",
    },
    Case {
        name: "barge_in_truncation",
        about: "after a barge-in the provider keeps only what the user heard",
    },
    Case {
        name: "drop_mid_answer",
        about: "connection lost mid-answer: failed response, reconnect, the conversation goes on",
    },
    Case {
        name: "drop_mid_tool_call",
        about: "connection cut while the tool runs: its result is delivered once, after the outage",
    },
    Case {
        name: "renewal",
        about: "the connection is renewed at an idle moment; the conversation keeps its context",
    },
    Case {
        name: "auth_error",
        about:
            "a wrong key is one fatal auth error and a closed session, no retries, no key leaked",
    },
];

/// Why `case` does not apply to a provider with `caps`, if it does not.
pub fn skip_reason(case: &str, caps: &Capabilities) -> Option<&'static str> {
    match case {
        "text_turn" if !caps.text_output => Some("no text-only output (capability text_output)"),
        "parallel_tool_calls" if !caps.parallel_tool_calls => {
            Some("no parallel tool calls (capability parallel_tool_calls)")
        }
        "barge_in_truncation" if !caps.truncation => Some(
            "no truncation: the provider side keeps the whole interrupted answer (capability truncation)",
        ),
        "renewal" if caps.renewal.is_none() && caps.connection == Connection::PerRequest => Some(
            "nothing to renew: no connection outlives a stage request or an utterance (Connection::PerRequest)",
        ),
        "renewal" if caps.renewal.is_none() => Some("no connection renewal (capability renewal)"),
        _ => None,
    }
}

/// Logs to the test output when `RUST_LOG` is set (off otherwise, so the case list stays
/// readable; failures carry the events seen).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "off".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Runs every case of [`CASES`] against `harness`, each in its own thread and actix system,
/// one after the other, and prints one line per case: `ok` with the normalized event
/// sequence it checked, `SKIPPED` with the reason, or `FAILED` with the panic message.
/// Returns failure if any case failed. Command-line arguments that do not start with `-`
/// select cases by substring (like libtest's filter); `--list` lists them.
pub fn run_suite<H: ProviderHarness>(harness: H) -> ExitCode {
    init_tracing();
    let harness: Arc<dyn ProviderHarness> = Arc::new(harness);
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for case in CASES {
            println!("{}: test", case.name);
        }
        return ExitCode::SUCCESS;
    }
    let mut filters = Vec::new();
    let mut skip_value = false;
    for a in &args {
        if skip_value {
            skip_value = false;
        } else if a == "--test-threads" || a == "--skip" || a == "--format" || a == "--color" {
            skip_value = true;
        } else if !a.starts_with('-') {
            filters.push(a.clone());
        }
    }
    let exact = args.iter().any(|a| a == "--exact");
    let selected: Vec<&Case> = CASES
        .iter()
        .filter(|c| {
            filters.is_empty()
                || filters.iter().any(|f| {
                    if exact {
                        c.name == f
                    } else {
                        c.name.contains(f.as_str())
                    }
                })
        })
        .collect();
    let caps = harness.capabilities();
    let name = harness.name();
    println!(
        "\nprovider conformance suite: {name}, {} of {} cases",
        selected.len(),
        CASES.len()
    );
    let (mut passed, mut skipped, mut failed) = (0, 0, Vec::new());
    for case in selected {
        print!("  {:<22} ", case.name);
        let _ = std::io::stdout().flush();
        if let Some(reason) = skip_reason(case.name, &caps) {
            println!("SKIPPED: {reason}");
            skipped += 1;
            continue;
        }
        let h = harness.clone();
        let case_name = case.name;
        let outcome = std::thread::Builder::new()
            .name(format!("{name}-{case_name}"))
            .spawn(move || actix_rt::System::new().block_on(cases::run(case_name, h)))
            .expect("spawn a case thread")
            .join();
        match outcome {
            Ok(sequence) => {
                println!("ok  [{}]", sequence.join(", "));
                passed += 1;
            }
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panicked".into());
                println!("FAILED\n      {msg}");
                failed.push(case.name);
            }
        }
    }
    println!(
        "conformance {name}: {passed} passed, {skipped} skipped, {} failed{}",
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(" ({})", failed.join(", "))
        }
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
