//! The official `openai` Python SDK closes its realtime connection cleanly against the local
//! server: both close frames exchanged, code 1000, the connection fully closed. How long each
//! close took is printed for the record (`--nocapture`), never asserted; that the server ends
//! TCP right after the handshake is checked by ordering in `tests/close.rs`.

use std::path::PathBuf;
use std::process::Command;

use liveagent_server::{LocalServer, ServerConfig};

fn venv_python() -> PathBuf {
    let shared = liveagent_testkit::shared_dir();
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

#[actix_rt::test]
async fn openai_sdk_closes_cleanly() {
    let server = LocalServer::start(ServerConfig::default()).await.unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/openai_close.py");
    let out = Command::new(venv_python())
        .arg(&script)
        .arg(server.local_addr().port().to_string())
        .output()
        .expect("run python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    eprintln!("{text}");
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("close ")).collect();
    assert_eq!(lines.len(), 3, "{text}");
    for l in lines {
        assert!(l.contains("first=session.created"), "{l}");
        assert!(l.contains("state=CLOSED"), "{l}");
        assert!(l.contains("sent=1000 rcvd=1000"), "{l}");
        // The client started the close: it sent first, the server answered.
        assert!(l.contains("rcvd_then_sent=False"), "{l}");
    }
    server.stop().await;
}
