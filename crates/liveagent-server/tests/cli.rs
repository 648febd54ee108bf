//! The `liveagent-server` binary: flags wire up a scenario, a key and a recording.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;
use serde_json::json;

#[actix_rt::test]
async fn binary_serves_a_scenario_with_a_key_and_records() {
    let scenario = temp_path("greeting.toml");
    std::fs::write(&scenario, "[[turn]]\nsay = \"hello from the file\"\n").unwrap();
    let record = temp_path("cli-record.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_liveagent-server"))
        .args([
            "--port",
            "0",
            "--brain",
            "script",
            "--fast",
            "--chunk-ms",
            "20",
        ])
        .arg("--scenario")
        .arg(&scenario)
        .arg("--record")
        .arg(&record)
        .env("LIVEAGENT_SERVER_API_KEY", "cli-key")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the binary");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "{line}");

    let url = format!("ws://{addr}/v1/realtime?model=gpt-realtime");
    let mut ws = connect(&url, &[("Authorization", "Bearer cli-key")]).await;
    ws.until("session.created").await;
    ws.send(
        &json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "hi"}]}}),
    )
    .await;
    ws.send(&json!({"type": "response.create"})).await;
    let ev = ws.until("response.done").await;
    let tr = ev
        .iter()
        .find(|e| e["type"] == "response.output_audio_transcript.done")
        .unwrap();
    assert_eq!(tr["transcript"], "hello from the file");
    // 20 ms chunks: 960 bytes of PCM each (the last one may be shorter).
    let first = output_audio(
        &ev[..ev
            .iter()
            .position(|e| e["type"] == "response.output_audio.delta")
            .unwrap()
            + 1],
    );
    assert_eq!(first.len(), 480);
    // The scenario is also served by its file stem.
    let mut ws2 = connect(
        &format!("ws://{addr}/s/greeting/v1/realtime?model=m"),
        &[("Authorization", "Bearer cli-key")],
    )
    .await;
    ws2.until("session.created").await;
    let _ = child.kill();
    let _ = child.wait();
    let rec = std::fs::read_to_string(&record).unwrap();
    assert!(rec
        .lines()
        .any(|l| l.starts_with("> {") && l.contains("response.create")));
    assert!(rec
        .lines()
        .any(|l| l.starts_with("< {") && l.contains("hello from the file")));
    assert!(!rec.contains("cli-key"), "the key must not be recorded");
}
