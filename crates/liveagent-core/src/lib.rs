//! # liveagent-core
//!
//! The provider-neutral heart of liveagent. Everything a live conversation carries is a
//! typed [`LiveEvent`]; every peer of a conversation (the provider session, the microphone
//! recorder, the speaker player, the tool executor, your own observers) talks to the others
//! only by publishing events to, and subscribing to events from, one [`EventBus`] actor.
//!
//! Read the modules in this order:
//!
//! - [`audio`]: [`AudioChunk`], PCM16 samples with their sample rate.
//! - [`events`]: every event type, the [`LiveEvent`] enum that carries any of them and
//!   [`EventKind`], the tag used to filter them.
//! - [`filter`]: [`EventFilter`], a set of event kinds, and [`EventSet`] for tuples of types.
//! - [`condition`]: [`Condition`], filters with field tests and AND / OR / NOT.
//! - [`bus`]: the [`EventBus`] registry actor, its bounded delivery policy and its messages.
//! - [`context`]: [`ConversationContext`], the handle `LiveAgent::run()` gives out, with
//!   publishing helpers and filtered async streams.
//! - [`protocol`]: the sans-IO [`RealtimeProtocol`] interface that the OpenAI and Gemini
//!   crates implement, and [`RealtimeConfig`], the provider configuration that builds one.
//! - [`limits`]: byte caps on provider-supplied text (per item, for the restore history).
//! - [`metrics`]: [`LatencySamples`], latency measurements for the benchmarks.
//! - [`probe`]: [`MicProbe`](probe::MicProbe), the microphone path stage by stage (benchmarks).
//! - [`middleware`]: [`EventMiddleware`], hooks on the event flow.
//! - [`observer`]: closure [`Observer`]s and the built-in [`LoopDetector`] and
//!   [`TokenMonitor`].
//! - [`error`]: [`LiveError`], the typed error every component reports.
//! - [`secret`]: [`Secret`], an API key that never prints.
//! - [`tls`]: [`TlsRoots`], the certificate authorities the HTTPS and WSS clients trust.
//! - [`raw`]: raw provider overrides (unstable): JSON merging and checking.
//! - [`variables`]: [`Variables`], the conversation's typed variables, and [`Var`].
//!
//! ```
//! use liveagent_core::{EventBus, ConversationContext, ModelMessageChunk};
//! use futures_util::StreamExt;
//!
//! # actix::System::new().block_on(async {
//! let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
//! let mut texts = ctx.stream().only::<ModelMessageChunk>();
//! ctx.publish(ModelMessageChunk::new("item_1", "Hello"));
//! assert_eq!(&*texts.next().await.unwrap().text, "Hello");
//! # });
//! ```

pub mod audio;
pub mod bus;
pub mod condition;
pub mod context;
pub mod error;
pub mod events;
pub mod filter;
pub mod g711;
pub mod limits;
pub mod metrics;
pub mod middleware;
pub mod observer;
pub mod output;
pub mod probe;
pub mod protocol;
pub mod raw;
pub mod secret;
pub mod tls;
pub mod variables;

pub use audio::AudioChunk;
pub use bus::{
    BusConfig, BusStats, EventBus, GetStats, Publish, Shutdown, Subscribe, SubscriberId,
    Unsubscribe,
};
pub use condition::Condition;
pub use context::{ConversationContext, EventStream, StreamBuilder};
pub use error::{ErrorKind, LiveError};
pub use events::*;
pub use filter::{EventFilter, EventSet};
pub use metrics::LatencySamples;
pub use middleware::EventMiddleware;
pub use observer::{
    start_observer, FnObserver, LoopDetector, Observer, ObserverActor, TokenMonitor,
};
pub use output::{Output, TextOutput};
pub use protocol::{
    ByteString, ConnectRequest, Outbox, ProtocolSignal, ProtocolTask, RealtimeConfig,
    RealtimeProtocol, RestoreSnapshot, RestoreTurn, SessionCommand, SessionSetup, TaskId, TaskItem,
    ToolSchema, WireFrame,
};
pub use secret::Secret;
pub use tls::TlsRoots;
pub use variables::{Var, Variables};
