//! The official Python SDKs (`openai`, `google-genai`, from the protocol validator's venv)
//! talk to the local server: one voice turn each, answered by the echo brain.

use std::path::PathBuf;
use std::process::Command;

use liveagent_server::{LocalServer, Pacing, ServerConfig};

/// The validator's venv (built on first use by `shared/protocols/validate`).
fn venv_python() -> PathBuf {
    let shared = liveagent_testkit::shared_dir();
    // Running the validator once makes sure the venv exists.
    let st = Command::new("bash")
        .arg(shared.join("protocols/validate"))
        .arg("/dev/null")
        .status()
        .expect("run the validator");
    assert!(st.success());
    let venv = std::env::var("LIVEAGENT_PROTOCOL_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let cache = std::env::var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"));
            cache.join("liveagent-protocol-venv")
        });
    venv.join("bin/python")
}

fn run_script(name: &str, port: u16) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(name);
    let out = Command::new(venv_python())
        .arg(&script)
        .arg(port.to_string())
        .output()
        .expect("run python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{name} failed:\n{text}");
    text
}

#[actix_rt::test]
async fn openai_python_sdk_voice_turn() {
    let server = LocalServer::start(ServerConfig {
        pacing: Pacing::AsFastAsPossible,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    // The server runs on its own thread, so blocking here is fine.
    let out = run_script("openai_voice_turn.py", server.local_addr().port());
    assert!(out.contains("input transcript: [speech 1.0 s]"), "{out}");
    assert!(
        out.contains("output transcript: You said: [speech 1.0 s]"),
        "{out}"
    );
    assert!(out.contains("done: completed samples 31200"), "{out}");
    server.stop().await;
}

#[actix_rt::test]
async fn gemini_python_sdk_voice_turn() {
    let server = LocalServer::start(ServerConfig {
        pacing: Pacing::AsFastAsPossible,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let out = run_script("gemini_voice_turn.py", server.local_addr().port());
    assert!(out.contains("input transcript: [speech 1.0 s]"), "{out}");
    assert!(
        out.contains("turn complete; samples 31200 out: You said: [speech 1.0 s]"),
        "{out}"
    );
    assert!(out.contains("handle "), "{out}");
    server.stop().await;
}
