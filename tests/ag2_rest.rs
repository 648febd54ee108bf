//! The rest of the AG2 live surface (issue 17), end to end against the local realtime server
//! over real WebSockets: Gemini raw `setup` overrides (validated, merged last, still valid
//! for the official SDK's models), thinking tokens in usage, and a human-input question
//! asked and answered by voice. See docs/coming-from-ag2.md.

use std::time::Duration;

use futures_util::StreamExt;
use liveagent::{
    gemini, HumanInputRequest, LiveAgent, LiveEvent, NoArgs, Tool, ToolContext, ToolError,
};
use liveagent_e2e::*;
use serde_json::{json, Value};

async fn ready(run: &Run) {
    run.wait_count("session updated", 1, |e| {
        matches!(e, LiveEvent::SessionUpdated(_))
    })
    .await;
}

fn gemini_config(server: &liveagent_server::LocalServer) -> gemini::RealtimeConfig {
    gemini::RealtimeConfig::new("gemini-live-test")
        .base_url(server.gemini_url())
        .api_key("local-key")
}

fn setup_frame(server: &liveagent_server::LocalServer) -> Value {
    client_frames(server)
        .into_iter()
        .find(|f| f.get("setup").is_some())
        .expect("setup")
}

/// Item 7 (Gemini half) and item 11 (thinking tokens): raw `setup` fields (thinking config,
/// affective dialog, proactivity, media resolution, top_p / top_k / seed) are merged last
/// into `setup`, keep the typed settings, pass the official SDK's models; the local model
/// then thinks, and its thinking tokens arrive in `ResponseDone.usage` and the usage report.
#[actix_rt::test]
async fn gemini_raw_setup_is_merged_last_and_thinking_tokens_are_reported() {
    let server = server(None).await;
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("Typed prompt.")
            .config(
                gemini_config(&server)
                    .output(gemini::TextOutput)
                    .temperature(0.5)
                    .raw_setup(json!({
                        "generationConfig": {
                            "thinkingConfig": {"thinkingBudget": 512, "includeThoughts": false},
                            "enableAffectiveDialog": true,
                            "mediaResolution": "MEDIA_RESOLUTION_LOW",
                            "topP": 0.9,
                            "topK": 40,
                            "seed": 7,
                        },
                        "proactivity": {"proactiveAudio": true},
                    })),
            ),
    );
    ready(&run).await;
    let setup = setup_frame(&server);
    let g = &setup["setup"]["generationConfig"];
    assert_eq!(g["thinkingConfig"]["thinkingBudget"], 512);
    assert_eq!(g["enableAffectiveDialog"], true);
    assert_eq!(g["mediaResolution"], "MEDIA_RESOLUTION_LOW");
    assert_eq!(g["topP"], 0.9);
    assert_eq!(g["topK"], 40);
    assert_eq!(g["seed"], 7);
    assert_eq!(setup["setup"]["proactivity"]["proactiveAudio"], true);
    // Merged, not replaced: the typed settings are still there.
    assert_eq!(g["responseModalities"], json!(["TEXT"]));
    assert_eq!(g["temperature"], 0.5);
    assert_eq!(
        setup["setup"]["systemInstruction"]["parts"][0]["text"],
        "Typed prompt."
    );

    run.conversation.send_text("hello there");
    run.wait_count("response done", 1, |e| {
        matches!(e, LiveEvent::ResponseDone(_))
    })
    .await;
    let usage = run.collect(|e| match e {
        LiveEvent::ResponseDone(d) => d.usage.clone(),
        _ => None,
    });
    let usage = &usage[0];
    let thinking = usage.thinking_tokens.expect("thinking tokens reported");
    assert!(thinking > 0);
    assert_eq!(
        usage.total_tokens,
        usage.input_tokens + usage.output_tokens + thinking,
        "{usage:?}"
    );
    assert_eq!(
        run.conversation.usage_report().thinking_tokens,
        Some(thinking)
    );
    validate_lines(&server.recording(), Protocol::Gemini);
    run.conversation.stop().await;

    // Thinking off (budget 0): no thinking tokens.
    let run = Run::start(
        LiveAgent::builder("assistant").config(
            gemini_config(&server)
                .output(gemini::TextOutput)
                .raw_setup(json!({"generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}})),
        ),
    );
    ready(&run).await;
    run.conversation.send_text("hello again");
    run.wait_count("response done", 1, |e| {
        matches!(e, LiveEvent::ResponseDone(_))
    })
    .await;
    let usage = run.collect(|e| match e {
        LiveEvent::ResponseDone(d) => d.usage.clone(),
        _ => None,
    });
    assert_eq!(usage[0].thinking_tokens, None);
    run.conversation.stop().await;
    server.stop().await;

    // `null` removes a typed field.
    let c = gemini::RealtimeConfig::new("m").raw_setup(json!({"outputAudioTranscription": null}));
    assert!(c.validate().is_ok());

    // Validated up front: unknown fields and wrong types fail `build()`/`run()`.
    for (raw, needle) in [
        (
            json!({"generation_config": {}}),
            "unknown field `generation_config`",
        ),
        (
            json!({"generationConfig": {"top_p": 1}}),
            "unknown field `top_p`",
        ),
        (
            json!({"generationConfig": {"topK": 1.5}}),
            "`generationConfig.topK` must be an integer",
        ),
        (
            json!({"generationConfig": {"mediaResolution": "LOW"}}),
            "MEDIA_RESOLUTION_LOW",
        ),
        (
            json!({"generationConfig": {"thinkingConfig": {"budget": 1}}}),
            "unknown field `budget`",
        ),
        (
            json!({"proactivity": {"proactiveAudio": "yes"}}),
            "must be a boolean",
        ),
        (json!(["not", "an", "object"]), "must be a JSON object"),
    ] {
        let text = match LiveAgent::builder("a")
            .config(gemini::RealtimeConfig::new("m").raw_setup(raw.clone()))
            .build()
        {
            Err(e) => e.to_string(),
            Ok(agent) => match agent.run() {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{raw} was accepted"),
            },
        };
        assert!(text.contains(needle), "{raw}: {text}");
    }
}

const BOOK: &str = r#"
[[turn]]
call = "book_table"
args = { people = 2 }
then_say = "Booked: {output}."
"#;

/// Item 2, by voice: with `.human_input_voice(true)` the tool's question goes to the model
/// to be spoken (the agent says it), and the user's next utterance answers it.
#[actix_rt::test]
async fn a_human_input_question_is_asked_and_answered_by_voice() {
    let server = server(Some(BOOK)).await;
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("You book tables.")
            .config(openai_config(&server))
            .human_input_voice(true)
            .tool(Tool::with_context(
                "book_table",
                "Books a table.",
                |_: NoArgs, cx: ToolContext| async move {
                    let time = cx.input("What time would you like?").await?;
                    Ok::<_, ToolError>(format!("2 people at {time}"))
                },
            )),
    );
    let mut requests = run.conversation.stream().only::<HumanInputRequest>();
    ready(&run).await;
    run.speak(question()).await;
    let request = tokio::time::timeout(FAILSAFE, requests.next())
        .await
        .unwrap()
        .unwrap();
    assert!(request.voice, "{request:?}");
    assert_eq!(&*request.question, "What time would you like?");

    // The question went to the model as a user message asking it to speak it, and the
    // model answered that with speech (a response with audio after the request).
    let asked = || {
        client_frames(&server).into_iter().any(|f| {
            f["type"] == "conversation.item.create"
                && f.to_string().contains("What time would you like?")
        })
    };
    let deadline = std::time::Instant::now() + FAILSAFE;
    while !asked() {
        assert!(
            std::time::Instant::now() < deadline,
            "the question never reached the model"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let responses_before = run.count(|e| matches!(e, LiveEvent::ResponseDone(_)));
    run.wait_count("the spoken question", responses_before + 1, |e| {
        matches!(e, LiveEvent::ResponseDone(_))
    })
    .await;
    assert_eq!(
        run.count(|e| matches!(e, LiveEvent::ToolResult(_))),
        0,
        "the tool waits for the answer"
    );

    // The user's next utterance (a longer one, so its transcript differs) is the answer.
    let answer = speech_pcm("Eight in the evening, please, by the window.", 24_000);
    run.speak(&answer).await;
    run.wait_count("result", 1, |e| matches!(e, LiveEvent::ToolResult(_)))
        .await;
    let finals = run.collect(|e| match e {
        LiveEvent::InputTranscriptChunk(t) if t.is_final => Some(t.text.trim().to_owned()),
        _ => None,
    });
    let spoken = finals.last().expect("a final transcript").clone();
    assert_ne!(finals[0], spoken, "{finals:?}");
    let messages = run.collect(|e| match e {
        LiveEvent::HumanMessage(m) => Some((m.request_id.clone(), m.text.to_string())),
        _ => None,
    });
    assert_eq!(messages, vec![(request.request_id.clone(), spoken.clone())]);
    let result = run.collect(|e| match e {
        LiveEvent::ToolResult(r) => Some(r.output.clone()),
        _ => None,
    });
    assert_eq!(result, vec![Ok(json!(format!("2 people at {spoken}")))]);
    run.conversation.stop().await;
    server.stop().await;
}
