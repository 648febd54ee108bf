//! A streamed TTS answer cut short is an error, not a shorter answer (issue 16).
//!
//! awc ends a response body normally when the server closes the connection between two
//! chunks of a chunked body (or before a `Content-Length` body is complete), so without
//! care a truncated answer would look complete. Here a real TCP peer plays an
//! OpenAI-shaped `/v1/audio/speech`: it sends a few flushed chunks of PCM and closes the
//! connection without the terminating `0` chunk (then, for the next answer, a
//! `Content-Length` body cut short; then a complete one). Through the public `LiveAgent`
//! API (STT and chat on the local server): each cut is a non-fatal `cascade-tts` error and a
//! failed response, and the conversation goes on to a completed answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use liveagent::cascade::openai::{OpenAiStt, OpenAiTts};
use liveagent::cascade::{CascadeConfig, ChatLlm};
use liveagent::{ErrorKind, LiveAgent, LiveEvent, ResponseStatus};
use liveagent_e2e::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SCRIPT: &str = r#"
[[turn]]
say = "It is sunny in Paris."

[[turn]]
say = "It is raining in London."

[[turn]]
say = "It is snowing in Oslo."
"#;

/// How the peer ends its answer to one request.
#[derive(Clone, Copy, Debug)]
enum End {
    /// Chunked: three flushed chunks, then the connection closes (no `0` chunk).
    CutChunked,
    /// `Content-Length` of a second of audio, a third of it sent, then the close.
    CutLength,
    /// Chunked, three chunks and the terminating `0` chunk.
    Complete,
}

/// 100 ms of a 440 Hz tone, PCM16 LE at 24 kHz.
fn tone() -> Vec<u8> {
    (0..2400)
        .flat_map(|i| {
            let x = (i as f32 * 440.0 * std::f32::consts::TAU / 24_000.0).sin();
            ((x * 8000.0) as i16).to_le_bytes()
        })
        .collect()
}

/// Reads one request (head and `Content-Length` body).
async fn read_request(sock: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = sock.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(head);
        }
    }
}

async fn answer(mut sock: TcpStream, end: End) {
    let Some(head) = read_request(&mut sock).await else {
        return;
    };
    assert!(head.starts_with("post /v1/audio/speech"), "{head}");
    let pcm = tone();
    match end {
        End::CutChunked | End::Complete => {
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                .await;
            for _ in 0..3 {
                let mut c = format!("{:x}\r\n", pcm.len()).into_bytes();
                c.extend_from_slice(&pcm);
                c.extend_from_slice(b"\r\n");
                let _ = sock.write_all(&c).await;
                let _ = sock.flush().await;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            if matches!(end, End::Complete) {
                let _ = sock.write_all(b"0\r\n\r\n").await;
                let _ = sock.flush().await;
                // Keep the connection open until the client is done with it.
                let mut rest = [0u8; 64];
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut rest))
                        .await;
            }
        }
        End::CutLength => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
                pcm.len() * 10
            );
            let _ = sock.write_all(head.as_bytes()).await;
            for _ in 0..3 {
                let _ = sock.write_all(&pcm).await;
                let _ = sock.flush().await;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
    // Dropping the socket closes the connection (a FIN, after what was written).
    let _ = sock.shutdown().await;
}

/// A speech server on a loopback port answering request `i` as `plan[i]` (then
/// `Complete`); returns its base URL (`…/v1`) and the count of requests taken.
async fn tts_peer(plan: Vec<End>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    actix_rt::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let i = count.fetch_add(1, Ordering::SeqCst);
            let end = plan.get(i).copied().unwrap_or(End::Complete);
            actix_rt::spawn(answer(sock, end));
        }
    });
    (format!("http://{addr}/v1"), served)
}

fn failed_tts(run: &Run) -> Vec<liveagent::LiveError> {
    run.collect(|e| match e {
        LiveEvent::ErrorEvent(x) if &*x.source == "cascade-tts" && !x.fatal => {
            Some(x.error.clone())
        }
        _ => None,
    })
}

#[actix_rt::test]
async fn a_tts_body_cut_short_is_an_error_and_the_conversation_goes_on() {
    let server = server(Some(SCRIPT)).await;
    let (tts_base, served) = tts_peer(vec![End::CutChunked, End::CutLength]).await;
    let base = format!("{}/v1", server.http_url());
    let run = Run::start(
        LiveAgent::builder("cascade").config(CascadeConfig::new(
            OpenAiStt::new("gpt-4o-mini-transcribe")
                .base_url(&base)
                .api_key("local-key"),
            ChatLlm::new("gpt-4o-mini")
                .base_url(&base)
                .api_key("local-key"),
            OpenAiTts::new("gpt-4o-mini-tts", "marin")
                .base_url(&tts_base)
                .api_key("local-key"),
        )),
    );

    for (turn, what) in ["chunked body cut", "content-length body cut"]
        .iter()
        .enumerate()
    {
        run.speak(question()).await;
        run.wait_count(
            what,
            turn + 1,
            |e| matches!(e, LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Failed),
        )
        .await;
        let errors = failed_tts(&run);
        assert_eq!(errors.len(), turn + 1, "{what}: {}", run.summary());
        let e = &errors[turn];
        assert_eq!(e.kind, ErrorKind::Connection, "{e}");
        assert!(e.message.contains("before the end of the body"), "{e}");
    }
    // The audio that did arrive was played (the flushed chunks).
    assert!(run.count(|e| matches!(e, LiveEvent::SynthesizedAudio(_))) > 0);
    let reasons: Vec<Option<String>> = run.collect(|e| match e {
        LiveEvent::ResponseDone(d) => Some(d.reason.clone()),
        _ => None,
    });
    assert!(
        reasons.iter().all(|r| r.as_deref() == Some("tts_failed")),
        "{reasons:?}"
    );

    // The conversation goes on: a complete body is a completed answer.
    run.speak(question()).await;
    run.wait_count(
        "completed answer",
        1,
        |e| matches!(e, LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Completed),
    )
    .await;
    assert_eq!(failed_tts(&run).len(), 2, "{}", run.summary());
    assert_eq!(served.load(Ordering::SeqCst), 3);
    run.conversation.stop().await;
    server.stop().await;
}
