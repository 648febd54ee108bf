//! `liveagent-demo --cascade` end to end: the demo binary, offline (`--local`), hears a
//! spoken question from a WAV file (espeak-ng) through the cascade against the local
//! server's fake STT, chat and TTS endpoints, answers, and writes the answer's audio.

use std::process::Command;

fn run_demo(extra: &[&str]) {
    let dir = std::env::temp_dir().join(format!(
        "liveagent-demo-cascade-{}-{}",
        std::process::id(),
        extra.len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let question = dir.join("question.wav");
    let answer = dir.join("answer.wav");
    let st = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&question)
        .arg("What is the weather like in Paris?")
        .status()
        .expect("espeak-ng not found: run scripts/setup.sh");
    assert!(st.success());
    let out = Command::new(env!("CARGO_BIN_EXE_liveagent-demo"))
        .args(["--cascade", "--local", "--max-seconds", "30", "--input-wav"])
        .arg(&question)
        .arg("--output-wav")
        .arg(&answer)
        .args(extra)
        .env_remove("OPENAI_API_KEY")
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("connected to cascade"), "{stdout}");
    assert!(stdout.contains("you said: [speech"), "{stdout}");
    assert!(stdout.contains("agent: echo: [speech"), "{stdout}");
    assert!(stdout.contains("the question was answered"), "{stdout}");
    // The answer's tones, at 24 kHz: over half a second.
    let wav = std::fs::read(&answer).expect("answer written");
    assert!(wav.len() > 44 + 24_000, "{} bytes of answer", wav.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_cascade_demo_answers_a_spoken_question_offline() {
    run_demo(&[]);
}

#[test]
fn the_cascade_demo_detects_the_turn_with_the_voice_model() {
    run_demo(&["--vad"]);
}
