//! Scripted scenarios and fault injection: what other crates' resilience tests rely on.

mod common;

use common::*;
use liveagent_server::{Brain, LocalServer, Pacing, Scenario, ServerConfig};
use serde_json::{json, Value};

fn scripted(toml: &str) -> ServerConfig {
    ServerConfig {
        brain: Brain::Script(Scenario::from_toml(toml).unwrap()),
        pacing: Pacing::AsFastAsPossible,
        ..ServerConfig::default()
    }
}

async fn open_openai(base: &str) -> Ws {
    let mut ws = connect(&format!("{base}/realtime?model=gpt-realtime"), &[]).await;
    assert_eq!(ws.json().await["type"], "session.created");
    ws
}

async fn say_text(ws: &mut Ws, text: &str) {
    ws.send(
        &json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
        "content": [{"type": "input_text", "text": text}]}}),
    )
    .await;
    ws.send(&json!({"type": "response.create"})).await;
}

/// Reads until the socket ends (returns the JSON events seen and how it ended).
async fn until_end(ws: &mut Ws) -> (Vec<Value>, Got) {
    let mut seen = Vec::new();
    loop {
        match ws.next().await {
            Got::Json(v) => seen.push(v),
            Got::Text(_) => {}
            other => return (seen, other),
        }
    }
}

fn transcript(events: &[Value]) -> String {
    events
        .iter()
        .filter(|e| e["type"] == "response.output_audio_transcript.done")
        .map(|e| e["transcript"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[actix_rt::test]
async fn drop_on_turn_two_does_not_repeat_after_reconnect() {
    let server = LocalServer::start(scripted(
        r#"
        [[turn]]
        say = "one"
        [[turn]]
        steps = [ { say = "two is a longer answer than the others", drop_after_ms = 200 } ]
        [[turn]]
        say = "three"
        "#,
    ))
    .await
    .unwrap();
    let mut ws = open_openai(&server.openai_url()).await;
    say_text(&mut ws, "a").await;
    assert_eq!(transcript(&ws.until("response.done").await), "one");
    say_text(&mut ws, "b").await;
    let (events, end) = until_end(&mut ws).await;
    assert!(
        matches!(end, Got::Eof),
        "dropped without a close frame: {end:?}"
    );
    assert!(events
        .iter()
        .any(|e| e["type"] == "response.output_audio.delta"));
    assert!(!events.iter().any(|e| e["type"] == "response.done"));
    // Reconnect: the scenario carries on at turn 3.
    let mut ws = open_openai(&server.openai_url()).await;
    say_text(&mut ws, "c").await;
    assert_eq!(transcript(&ws.until("response.done").await), "three");
    assert_eq!(server.turns_answered(None), 3);
    // After the last turn: echo.
    say_text(&mut ws, "d").await;
    assert_eq!(transcript(&ws.until("response.done").await), "You said: d");
    server.stop().await;
}

#[actix_rt::test]
async fn refused_connections_then_accepted() {
    let server = LocalServer::start(scripted(
        r#"
        refuse_connections = 2
        [[turn]]
        steps = [ { refuse_next = 1 }, { drop = true } ]
        "#,
    ))
    .await
    .unwrap();
    let url = format!("{}/realtime?model=m", server.openai_url());
    assert!(matches!(try_connect(&url, &[]).await, Connect::Status(503)));
    assert!(matches!(try_connect(&url, &[]).await, Connect::Status(503)));
    let mut ws = open_openai(&server.openai_url()).await;
    say_text(&mut ws, "x").await;
    let (_, end) = until_end(&mut ws).await;
    assert!(matches!(end, Got::Eof));
    assert!(matches!(try_connect(&url, &[]).await, Connect::Status(503)));
    let _ws = open_openai(&server.openai_url()).await;
    server.stop().await;
}

#[actix_rt::test]
async fn malformed_unknown_error_and_oversized_frames_then_the_turn_goes_on() {
    let server = LocalServer::start(scripted(
        r#"
        [[turn]]
        steps = [
          { send_text = "{this is not json" },
          { send = { type = "liveagent.surprise", event_id = "x1" } },
          { error = "something broke", code = "server_error" },
          { send_oversized = 200000 },
          { say = "after" },
        ]
        "#,
    ))
    .await
    .unwrap();
    let mut ws = open_openai(&server.openai_url()).await;
    say_text(&mut ws, "go").await;
    let mut raw_texts = 0;
    let mut events = Vec::new();
    loop {
        match ws.next().await {
            Got::Json(v) => {
                let done = v["type"] == "response.done";
                events.push(v);
                if done {
                    break;
                }
            }
            Got::Text(t) => {
                assert_eq!(t, "{this is not json");
                raw_texts += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(raw_texts, 1);
    let t = types(&events);
    assert!(t.contains(&"liveagent.surprise".to_owned()));
    let err = events.iter().find(|e| e["type"] == "error").unwrap();
    assert_eq!(err["error"]["type"], "server_error");
    assert_eq!(err["error"]["message"], "something broke");
    let big = events
        .iter()
        .find(|e| e.get("padding").is_some())
        .expect("the oversized frame");
    assert!(big.to_string().len() >= 199_000);
    assert_eq!(transcript(&events), "after");
    server.stop().await;
}

#[actix_rt::test]
async fn drop_after_events_and_mid_arguments() {
    let server = LocalServer::start(scripted(
        r#"
        [[turn]]
        say = "never finished"
        drop_after_events = 3
        [[turn]]
        steps = [ { call = "lookup", args = { q = "a fairly long query string" }, drop_mid_arguments = true } ]
        "#,
    ))
    .await
    .unwrap();
    let mut ws = open_openai(&server.openai_url()).await;
    say_text(&mut ws, "x").await;
    ws.until("conversation.item.done").await; // the user item
    let (events, end) = until_end(&mut ws).await;
    assert!(matches!(end, Got::Eof));
    assert_eq!(events.len(), 3, "{:?}", types(&events));
    assert_eq!(events[0]["type"], "response.created");
    let mut ws = open_openai(&server.openai_url()).await;
    say_text(&mut ws, "y").await;
    let (events, end) = until_end(&mut ws).await;
    assert!(matches!(end, Got::Eof));
    let t = types(&events);
    assert_eq!(
        t.last().unwrap(),
        "response.function_call_arguments.delta",
        "{t:?}"
    );
    assert!(!t
        .iter()
        .any(|x| x == "response.function_call_arguments.done"));
    server.stop().await;
}

#[actix_rt::test]
async fn close_with_code_and_connection_specific_steps() {
    let server = LocalServer::start(scripted(
        r#"
        [[on_connection]]
        number = 1
        steps = [ { close = true, code = 1011, reason = "scripted failure" } ]
        [[turn]]
        say = "hello on the second connection"
        "#,
    ))
    .await
    .unwrap();
    let mut ws = open_openai(&server.openai_url()).await;
    match ws.next().await {
        Got::Close(Some((1011, reason))) => assert_eq!(reason, "scripted failure"),
        other => panic!("{other:?}"),
    }
    let mut ws = open_openai(&server.openai_url()).await;
    say_text(&mut ws, "hi").await;
    assert_eq!(
        transcript(&ws.until("response.done").await),
        "hello on the second connection"
    );
    server.stop().await;
}

#[actix_rt::test]
async fn named_scenarios_by_url_and_model_and_slow_delayed_turns() {
    let cfg = ServerConfig {
        pacing: Pacing::AsFastAsPossible,
        ..ServerConfig::default()
    }
    .with_scenario(
        "weather",
        Scenario::from_toml("[[turn]]\nsay = \"sunny\"\ndelay_ms = 50\nsteps = [ { slow = 2.0 }, { wait_ms = 20 }, { say = \"really\" } ]").unwrap(),
    );
    let server = LocalServer::start(cfg).await.unwrap();
    // By URL prefix.
    let mut ws = open_openai(&server.openai_url_for("weather")).await;
    say_text(&mut ws, "?").await;
    assert_eq!(
        transcript(&ws.until("response.done").await),
        "sunny | really"
    );
    // By model name (the scenario's turn counter is shared, so this is turn 2: echo).
    let mut ws = connect(
        &format!("{}/realtime?model=weather", server.openai_url()),
        &[],
    )
    .await;
    ws.until("session.created").await;
    say_text(&mut ws, "again").await;
    assert_eq!(
        transcript(&ws.until("response.done").await),
        "You said: again"
    );
    // The default brain is still echo.
    let mut ws = open_openai(&server.openai_url()).await;
    say_text(&mut ws, "plain").await;
    assert_eq!(
        transcript(&ws.until("response.done").await),
        "You said: plain"
    );
    // Unknown scenario: 404.
    assert!(matches!(
        try_connect(
            &format!("{}/realtime?model=m", server.openai_url_for("nope")),
            &[]
        )
        .await,
        Connect::Status(404)
    ));
    let keys: Vec<Option<String>> = server
        .sessions()
        .iter()
        .map(|s| s.scenario.clone())
        .collect();
    assert_eq!(keys, [Some("weather".into()), Some("weather".into()), None]);
    server.stop().await;
}

#[actix_rt::test]
async fn gemini_go_away_then_close_and_error_step() {
    let server = LocalServer::start(scripted(
        r#"
        [[on_connection]]
        number = 1
        steps = [ { go_away = "0.2s" } ]
        [[turn]]
        steps = [ { error = "model overloaded" } ]
        "#,
    ))
    .await
    .unwrap();
    let path = "/ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent";
    let mut ws = connect(&format!("{}{path}", server.gemini_url()), &[]).await;
    ws.send(&json!({"setup": {"model": "models/x"}})).await;
    assert!(ws.json().await.get("setupComplete").is_some());
    assert_eq!(ws.json().await["goAway"]["timeLeft"], "0.2s");
    match ws.next().await {
        Got::Close(Some((1001, _))) => {}
        other => panic!("expected the connection to end after goAway: {other:?}"),
    }
    let mut ws = connect(&format!("{}{path}", server.gemini_url()), &[]).await;
    ws.send(&json!({"setup": {"model": "models/x"}})).await;
    ws.json().await;
    ws.send(&json!({"realtimeInput": {"text": "hi"}})).await;
    match ws.next().await {
        Got::Close(Some((1011, reason))) => assert_eq!(reason, "model overloaded"),
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

#[actix_rt::test]
async fn scenario_files_load_from_disk() {
    let toml = temp_path("s.toml");
    std::fs::write(&toml, "[[turn]]\nsay = \"from toml\"\n").unwrap();
    let json_path = temp_path("s.json");
    std::fs::write(&json_path, r#"{"turn": [{"say": "from json"}]}"#).unwrap();
    assert_eq!(
        Scenario::from_file(&toml).unwrap().turns[0].say.as_deref(),
        Some("from toml")
    );
    assert_eq!(
        Scenario::from_file(&json_path).unwrap().turns[0]
            .say
            .as_deref(),
        Some("from json")
    );
    let err = Scenario::from_file(&temp_path("missing.toml")).unwrap_err();
    assert!(err.to_string().contains("cannot read scenario"), "{err}");
}

type ScenarioParser = fn(&str) -> Result<Scenario, liveagent_server::ScenarioError>;

#[test]
fn every_scenario_example_in_the_docs_parses() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/local-server.md"),
    )
    .unwrap();
    let mut checked = 0;
    for (fence, parse) in [
        ("```toml\n", Scenario::from_toml as ScenarioParser),
        ("```json\n", Scenario::from_json as ScenarioParser),
    ] {
        for block in doc.split(fence).skip(1) {
            let body = block.split("```").next().unwrap();
            let s = parse(body).unwrap_or_else(|e| panic!("{e}\n{body}"));
            assert!(!s.turns.is_empty() || !s.on_connection.is_empty(), "{body}");
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} examples found");
}
