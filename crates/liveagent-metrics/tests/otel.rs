//! OpenTelemetry export (feature `otel`): a real conversation's spans (`turn`, `tool_call`)
//! reach an OTLP/HTTP collector (a real HTTP server on loopback standing in for the
//! OpenTelemetry Collector) as `POST /v1/traces` protobuf bodies.
#![cfg(feature = "otel")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use futures_util::StreamExt;
use liveagent::tools::{tool, ToolError};
use liveagent::{openai, AudioChunk, LiveAgent, LiveEvent, RecordedAudio};
use liveagent_metrics::{observed_kinds, otel, FleetMetrics};
use liveagent_server::{LocalServer, Pacing, Scenario, ServerConfig};
use liveagent_testkit::{silence_pcm, speech_pcm};
use tracing_subscriber::layer::SubscriberExt as _;

/// Sum two numbers.
///
/// # Arguments
/// * `a` - The first number.
/// * `b` - The second number.
#[tool(crate = liveagent::tools)]
async fn sum_numbers(a: i64, b: i64) -> Result<i64, ToolError> {
    Ok(a + b)
}

const SCENARIO: &str = r#"
[[turn]]
call = "sum_numbers"
args = { a = 2, b = 3 }
then_say = "The sum is {output}."
"#;

/// Requests the collector received: path, content type, body.
type Received = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// Starts a collector on its own thread; returns its base URL and what it received.
fn collector() -> (String, Received) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                let sink = sink.clone();
                App::new().default_service(web::to(
                    move |req: actix_web::HttpRequest, body: web::Bytes| {
                        let sink = sink.clone();
                        async move {
                            let ct = req
                                .headers()
                                .get("content-type")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            sink.lock()
                                .unwrap()
                                .push((req.path().to_owned(), ct, body.to_vec()));
                            HttpResponse::Ok()
                                .content_type("application/x-protobuf")
                                .body(Vec::<u8>::new())
                        }
                    },
                ))
            })
            .workers(1)
            .bind("127.0.0.1:0")
            .unwrap();
            tx.send(format!("http://{}", server.addrs()[0])).unwrap();
            server.run().await.unwrap();
        });
    });
    (rx.recv().unwrap(), received)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Spans of a spoken turn with a tool call are exported over OTLP/HTTP.
#[test]
fn conversation_spans_reach_the_collector() {
    let (endpoint, received) = collector();
    let (layer, guard) = otel::layer("liveagent-test", &endpoint).expect("otel layer");
    let subscriber = tracing_subscriber::registry().with(layer);
    let _default = tracing::subscriber::set_default(subscriber);

    actix_rt::System::new().block_on(async {
        let mut config = ServerConfig::scripted(Scenario::from_toml(SCENARIO).unwrap());
        config.pacing = Pacing::AsFastAsPossible;
        let server = LocalServer::start(config).await.unwrap();
        let metrics = FleetMetrics::new();
        let agent = LiveAgent::builder("assistant")
            .config(
                openai::RealtimeConfig::new("gpt-realtime")
                    .base_url(server.openai_url())
                    .api_key("local-key"),
            )
            .tool(sum_numbers())
            .observer(observed_kinds(), metrics.observer("openai"))
            .build()
            .unwrap();
        let conversation = agent.run().unwrap();
        let mut events = conversation.stream().capacity(100_000).all();
        let rate = conversation.input_sample_rate();
        let mut pcm = speech_pcm("What is two plus three?", rate);
        pcm.extend(silence_pcm(1000, rate));
        for chunk in pcm.chunks((rate / 10) as usize) {
            conversation.publish(RecordedAudio {
                audio: AudioChunk::new(chunk.to_vec(), rate),
            });
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let done = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(e) = events.next().await {
                if matches!(&e, LiveEvent::ResponseDone(_))
                    && metrics
                        .render()
                        .contains("liveagent_turn_latency_seconds_count{provider=\"openai\"} 1")
                {
                    // The answer after the tool call ends the turn.
                    if metrics
                        .render()
                        .contains("liveagent_tool_latency_seconds_count{tool=\"sum_numbers\"} 1")
                    {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        return true;
                    }
                }
            }
            false
        })
        .await;
        assert_eq!(done, Ok(true));
        conversation.stop().await;
    });

    guard.flush();
    let got = received.lock().unwrap().clone();
    assert!(!got.is_empty(), "nothing exported");
    assert!(
        got.iter()
            .all(|(path, ct, _)| path == "/v1/traces" && ct == "application/x-protobuf"),
        "{:?}",
        got.iter().map(|g| (&g.0, &g.1)).collect::<Vec<_>>()
    );
    let all: Vec<u8> = got.into_iter().flat_map(|(_, _, b)| b).collect();
    assert!(contains(&all, b"tool_call"), "tool_call span exported");
    assert!(
        contains(&all, b"sum_numbers"),
        "tool name attribute exported"
    );
    assert!(contains(&all, b"turn"), "turn span exported");
    assert!(contains(&all, b"liveagent-test"), "service name exported");
}
