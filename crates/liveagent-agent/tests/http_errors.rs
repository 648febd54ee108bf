//! HTTP failures become typed `LiveError`s with the key redacted. These cases need
//! responses the local server does not produce on purpose (a hung peer, a refused port,
//! a body that is not JSON, an OpenAI-style 401 that echoes the key), so a raw TCP peer on
//! 127.0.0.1 writes them: real sockets and real HTTP bytes.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use liveagent_agent::Agent;
use liveagent_core::ErrorKind;

/// Serves one canned HTTP response per connection, after reading the request head.
fn canned(status: &'static str, body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = vec![0u8; 65536];
            let mut seen = Vec::new();
            // Read until the end of the headers and the announced body.
            loop {
                let n = match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if seen.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    url
}

fn agent(url: &str) -> Agent {
    Agent::new("helper", "You help.", "gpt-test")
        .base_url(url)
        .api_key("sk-test-SECRET-123")
        .timeout(Duration::from_secs(5))
}

#[actix_rt::test]
async fn a_401_is_an_auth_error_with_the_key_redacted() {
    let url = canned(
        "401 Unauthorized",
        r#"{"error":{"message":"Incorrect API key provided: sk-test-SECRET-123.","type":"invalid_request_error","code":"invalid_api_key"}}"#,
    );
    let err = agent(&url).ask("hi").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth);
    assert_eq!(err.code.as_deref(), Some("invalid_api_key"));
    let text = err.to_string();
    assert!(!text.contains("SECRET"), "{text}");
    assert!(text.contains("***") && text.contains("HTTP 401"), "{text}");
    assert!(!format!("{:?}", agent(&url)).contains("SECRET"));
}

#[actix_rt::test]
async fn a_5xx_is_a_provider_error_and_a_quota_429_is_a_quota_error() {
    let url = canned("503 Service Unavailable", "upstream overloaded");
    let err = agent(&url).ask("hi").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Provider);
    assert_eq!(err.code.as_deref(), Some("503"));
    assert!(err.message.contains("upstream overloaded"), "{err}");

    let url = canned(
        "429 Too Many Requests",
        r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#,
    );
    let err = agent(&url).ask("hi").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Quota);
}

#[actix_rt::test]
async fn a_malformed_body_is_a_protocol_error() {
    let url = canned(
        "200 OK",
        r#"{"choices": [{"message": {"role": "assistant", "content": "#,
    );
    let err = agent(&url).ask("hi").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol);
    assert!(err.message.contains("malformed chat completion"), "{err}");

    let url = canned("200 OK", r#"{"choices": []}"#);
    let err = agent(&url).ask("hi").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol);
    assert!(err.message.contains("no choices"), "{err}");
}

#[actix_rt::test]
async fn a_peer_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    // Accept and hold connections without ever answering.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    let err = agent(&url)
        .timeout(Duration::from_millis(300))
        .ask("hi")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Connection);
    assert_eq!(err.code.as_deref(), Some("timeout"));
}

#[actix_rt::test]
async fn a_refused_connection_is_a_connection_error_and_a_tool_error_result() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/v1");
    let err = agent(&url).ask("hi").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Connection);
    assert!(!err.is_permanent());

    // As a tool, the failure is an error result the voice model can read.
    let tool = agent(&url).as_tool("Ask the helper.");
    let out = tool
        .call(
            serde_json::json!({"objective": "hi"}),
            liveagent_tools::ToolContext::new("c1", "task_helper"),
        )
        .await;
    let text = out.unwrap_err();
    assert!(
        text.contains("agent `helper`") && text.contains("connection error"),
        "{text}"
    );
    assert!(!text.contains("SECRET"));
}
