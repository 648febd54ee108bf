//! `/metrics` scraped from a real actix-web endpoint while a real conversation (a
//! `LiveAgent` against the local realtime server, spoken audio, tools, a dropped
//! connection) runs, and the answer parsed strictly as the Prometheus text format.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use actix_web::{App, HttpServer};
use futures_util::StreamExt;
use liveagent::tools::{tool, ToolError};
use liveagent::{
    openai, AudioChunk, AudioDropped, Interrupted, LiveAgent, LiveEvent, PlaybackStopped,
    RecordedAudio,
};
use liveagent_metrics::{observed_kinds, FleetMetrics, CONTENT_TYPE};
use liveagent_server::{LocalServer, Pacing, Scenario, ServerConfig};
use liveagent_testkit::{silence_pcm, speech_pcm};

/// Sum two numbers.
///
/// # Arguments
/// * `a` - The first number.
/// * `b` - The second number.
#[tool(crate = liveagent::tools)]
async fn sum_numbers(a: i64, b: i64) -> Result<i64, ToolError> {
    Ok(a + b)
}

/// Looks the weather up (always fails here).
///
/// # Arguments
/// * `city` - The city.
#[tool(crate = liveagent::tools)]
async fn get_weather(city: String) -> Result<String, ToolError> {
    Err(ToolError::msg(format!("no weather for {city}")))
}

const SCENARIO: &str = r#"
[[turn]]
call = "sum_numbers"
args = { a = 2, b = 3 }
then_say = "The sum is {output}."

[[turn]]
call = "get_weather"
args = { city = "Atlantis" }
then_say = "Sorry: {output}"

[[turn]]
steps = [{ say = "This answer is cut off half way through the sentence.", drop_after_ms = 100 }]

[[turn]]
say = "Back again."
"#;

/// A series' labels other than `le`, sorted.
type LabelSet = Vec<(String, String)>;

/// One sample line.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format (0.0.4) strictly: every line is a `# HELP`, a
/// `# TYPE` or a sample; names and label names are valid; label values are quoted with
/// only `\\`, `\"` and `\n` escapes; values are floats; every sample belongs to a family
/// whose TYPE came first; counters are `_total`; histogram buckets are cumulative, `le`
/// ascending, ending in `+Inf` equal to `_count`.
fn parse_strict(text: &str) -> (HashMap<String, String>, Vec<Sample>) {
    fn valid_name(n: &str) -> bool {
        let mut chars = n.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    assert!(text.ends_with('\n'), "exposition ends with a newline");
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = format!("line {}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect(&at);
            assert!(valid_name(name), "{at}");
            assert!(
                helps.insert(name.into(), help.into()).is_none(),
                "HELP twice: {at}"
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(&at);
            assert!(valid_name(name), "{at}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{at}"
            );
            assert!(
                types.insert(name.into(), kind.into()).is_none(),
                "TYPE twice: {at}"
            );
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line: {at}"
        );
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => panic!("no value: {at}"),
        };
        assert!(valid_name(name), "{at}");
        let mut labels = BTreeMap::new();
        let rest = if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let end;
            loop {
                // label name
                let start = chars.peek().expect(&at).0;
                if body[start..].starts_with('}') {
                    end = start + 1;
                    break;
                }
                let eq = body[start..].find('=').expect(&at) + start;
                let lname = &body[start..eq];
                assert!(
                    valid_name(lname) && !lname.starts_with("__"),
                    "label name: {at}"
                );
                while chars.peek().expect(&at).0 <= eq {
                    chars.next();
                }
                assert_eq!(chars.next().map(|c| c.1), Some('"'), "{at}");
                let mut value = String::new();
                loop {
                    match chars.next().expect(&at).1 {
                        '\\' => match chars.next().expect(&at).1 {
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            'n' => value.push('\n'),
                            c => panic!("bad escape \\{c}: {at}"),
                        },
                        '"' => break,
                        '\n' => panic!("raw newline: {at}"),
                        c => value.push(c),
                    }
                }
                assert!(
                    labels.insert(lname.to_owned(), value).is_none(),
                    "label twice: {at}"
                );
                match chars.next().expect(&at) {
                    (_, ',') => continue,
                    (i, '}') => {
                        end = i + 1;
                        break;
                    }
                    (_, c) => panic!("unexpected {c:?}: {at}"),
                }
            }
            &body[end..]
        } else {
            rest
        };
        let value = rest.strip_prefix(' ').expect(&at);
        let mut parts = value.split(' ');
        let v = parts.next().expect(&at);
        let value: f64 = match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("value {v:?}: {at}")),
        };
        if let Some(ts) = parts.next() {
            ts.parse::<i64>().expect(&at);
        }
        assert!(parts.next().is_none(), "{at}");
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
        // Its family must be typed already.
        let family = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        let kind = types
            .get(family)
            .unwrap_or_else(|| panic!("sample before its TYPE: {at}"));
        if kind == "counter" {
            assert!(name.ends_with("_total"), "counter without _total: {at}");
            assert!(value >= 0.0, "{at}");
        }
    }
    // Histograms: buckets cumulative, ascending, +Inf == count.
    for (family, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let mut series: BTreeMap<LabelSet, Vec<(f64, f64)>> = BTreeMap::new();
        for s in samples
            .iter()
            .filter(|s| s.name == format!("{family}_bucket"))
        {
            let le = s.labels.get("le").expect("bucket has le");
            let le: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            let key: Vec<_> = s
                .labels
                .iter()
                .filter(|(k, _)| *k != "le")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            series.entry(key).or_default().push((le, s.value));
        }
        for (key, buckets) in series {
            for w in buckets.windows(2) {
                assert!(w[0].0 < w[1].0, "{family} {key:?}: le not ascending");
                assert!(w[0].1 <= w[1].1, "{family} {key:?}: not cumulative");
            }
            let last = buckets.last().unwrap();
            assert!(last.0.is_infinite(), "{family} {key:?}: no +Inf bucket");
            let count = samples
                .iter()
                .find(|s| {
                    s.name == format!("{family}_count")
                        && s.labels
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect::<Vec<_>>()
                            == key
                })
                .expect("histogram has _count");
            assert_eq!(count.value, last.1, "{family} {key:?}: +Inf != count");
        }
    }
    (types, samples)
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

async fn scrape(url: &str) -> (String, String) {
    let client = awc::Client::default();
    let mut res = client.get(url).send().await.expect("scrape");
    assert!(res.status().is_success());
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = res.body().limit(1 << 20).await.expect("body");
    (ct, String::from_utf8(body.to_vec()).expect("utf-8"))
}

/// Every metric the fleet needs moves with a real conversation, and `/metrics` is valid
/// Prometheus text.
#[actix_rt::test]
async fn metrics_endpoint_reports_a_real_conversation() {
    let mut config = ServerConfig::scripted(Scenario::from_toml(SCENARIO).unwrap());
    config.pacing = Pacing::AsFastAsPossible;
    let server = LocalServer::start(config).await.unwrap();

    let metrics = FleetMetrics::new();
    let app_metrics = metrics.clone();
    let http = HttpServer::new(move || App::new().configure(app_metrics.configure()))
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
    let url = format!("http://{}/metrics", http.addrs()[0]);
    let http = http.run();
    let http_handle = http.handle();
    actix_rt::spawn(http);

    let agent = LiveAgent::builder("assistant")
        .prompt("You add numbers.")
        .config(
            openai::RealtimeConfig::new("gpt-realtime")
                .base_url(server.openai_url())
                .api_key("local-key"),
        )
        .tools([sum_numbers(), get_weather()])
        .observer(observed_kinds(), metrics.observer("openai"))
        .build()
        .unwrap();
    let conversation = agent.run().unwrap();
    let mut events = conversation.stream().capacity(100_000).all();

    let (_, before) = scrape(&url).await;
    let (_, s) = parse_strict(&before);
    assert_eq!(
        value(
            &s,
            "liveagent_active_conversations",
            &[("provider", "openai")]
        ),
        1.0
    );

    // Turn 1, spoken: VAD ends it, the model calls sum_numbers and answers aloud.
    let rate = conversation.input_sample_rate();
    let mut pcm = speech_pcm("What is two plus three?", rate);
    pcm.extend(silence_pcm(1000, rate));
    for chunk in pcm.chunks((rate / 10) as usize) {
        conversation.publish(RecordedAudio {
            audio: AudioChunk::new(chunk.to_vec(), rate),
        });
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let said = |needle: &'static str| move |e: &LiveEvent| matches!(e, LiveEvent::OutputTranscriptChunk(t) if t.is_final && t.text.contains(needle));
    wait_for(&mut events, said("The sum is 5")).await;
    // Turn 2: the tool fails.
    conversation.send_text("And the weather?");
    wait_for(&mut events, said("Sorry")).await;
    // A player reports a barge-in cut (what SoundDevicePlayer publishes).
    conversation.publish(Interrupted::default());
    conversation.publish(PlaybackStopped {
        item_id: "item_x".into(),
        played_ms: 400,
        interrupted: true,
    });
    // A player that had to drop audio (what the players publish on overflow).
    conversation.publish(AudioDropped {
        source: "player".into(),
        dropped_ms: 120,
        reason: "jitter buffer overflow".into(),
    });
    // Turn 3: the connection drops mid-answer; the session reconnects; turn 4 answers.
    conversation.send_text("Tell me a story.");
    wait_for(&mut events, |e| {
        matches!(e, LiveEvent::SessionReconnected(_))
    })
    .await;
    conversation.send_text("Are you back?");
    wait_for(&mut events, said("Back again")).await;

    let (ct, text) = scrape(&url).await;
    assert_eq!(ct, CONTENT_TYPE);
    let (types, s) = parse_strict(&text);
    for (name, kind) in [
        ("liveagent_active_conversations", "gauge"),
        ("liveagent_turn_latency_seconds", "histogram"),
        ("liveagent_barge_ins_total", "counter"),
        ("liveagent_truncations_total", "counter"),
        ("liveagent_reconnects_total", "counter"),
        ("liveagent_reconnect_outage_seconds", "histogram"),
        ("liveagent_tool_latency_seconds", "histogram"),
        ("liveagent_tool_errors_total", "counter"),
        ("liveagent_provider_audio_bytes_total", "counter"),
        ("liveagent_audio_dropped_ms_total", "counter"),
    ] {
        assert_eq!(
            types.get(name).map(String::as_str),
            Some(kind),
            "{name}\n{text}"
        );
    }
    let op = [("provider", "openai")];
    assert_eq!(value(&s, "liveagent_conversations_total", &op), 1.0);
    assert_eq!(value(&s, "liveagent_active_conversations", &op), 1.0);
    assert_eq!(
        value(&s, "liveagent_turn_latency_seconds_count", &op),
        1.0,
        "one spoken turn\n{text}"
    );
    assert!(value(&s, "liveagent_turn_latency_seconds_sum", &op) > 0.0);
    assert_eq!(
        value(
            &s,
            "liveagent_tool_latency_seconds_count",
            &[("tool", "sum_numbers")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "liveagent_tool_latency_seconds_count",
            &[("tool", "get_weather")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "liveagent_tool_errors_total",
            &[("tool", "get_weather")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "liveagent_tool_errors_total",
            &[("tool", "sum_numbers")]
        ),
        0.0
    );
    assert_eq!(value(&s, "liveagent_barge_ins_total", &op), 1.0);
    assert_eq!(
        value(
            &s,
            "liveagent_audio_dropped_ms_total",
            &[("provider", "openai"), ("source", "player")]
        ),
        120.0,
        "{text}"
    );
    assert_eq!(value(&s, "liveagent_truncations_total", &op), 1.0);
    assert_eq!(
        value(
            &s,
            "liveagent_reconnects_total",
            &[("provider", "openai"), ("cause", "connection_lost")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(&s, "liveagent_reconnect_outage_seconds_count", &op),
        1.0
    );
    let bytes_in = value(
        &s,
        "liveagent_provider_audio_bytes_total",
        &[("provider", "openai"), ("direction", "in")],
    );
    assert_eq!(
        bytes_in,
        (pcm.len() * 2) as f64,
        "every microphone byte counted"
    );
    assert!(
        value(
            &s,
            "liveagent_provider_audio_bytes_total",
            &[("provider", "openai"), ("direction", "out")]
        ) > 0.0
    );

    // The conversation ends: no longer active.
    conversation.stop().await;
    let mut gone = false;
    for _ in 0..200 {
        let (_, text) = scrape(&url).await;
        let (_, s) = parse_strict(&text);
        if value(&s, "liveagent_active_conversations", &op) == 0.0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        gone,
        "the stopped conversation is no longer counted as active"
    );
    http_handle.stop(true).await;
}

async fn wait_for(
    events: &mut (impl futures_util::Stream<Item = LiveEvent> + Unpin),
    f: impl Fn(&LiveEvent) -> bool,
) {
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(e) = events.next().await {
            if f(&e) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "event not seen");
}

/// The strict parser rejects what Prometheus would.
#[test]
#[should_panic]
fn strict_parser_rejects_untyped_samples() {
    parse_strict("foo_total 1\n");
}

/// The strict parser rejects bad escapes.
#[test]
#[should_panic]
fn strict_parser_rejects_bad_escapes() {
    parse_strict("# TYPE foo_total counter\nfoo_total{a=\"x\\q\"} 1\n");
}
