//! The server times its own answers (`answer_rate_paced` / `answer_rate_written` in
//! `GET /debug/stats`): every answer of which at least 400 ms of audio went out, played to its
//! end or cut short, is counted once at each point, with the same formula the benchmarks'
//! clients apply to what they receive. No timing is asserted: only what is counted.

mod common;
mod raw;

use common::*;
use liveagent_server::{LocalServer, ServerConfig};

#[actix_rt::test]
async fn a_completed_answer_is_timed_as_paced_and_as_written() {
    let (server, mut ws) = fast_openai().await;
    append_audio(&mut ws, &utterance(300, 1_000, 700, 24_000)).await;
    let ev = ws.until("response.done").await;
    assert!(output_audio(&ev).len() >= 24_000 * 4 / 10, "a short answer");
    // The writer times the answer's end before it writes `response.done`.
    let s = server.stats();
    for r in [&s.answer_rate_paced, &s.answer_rate_written] {
        assert_eq!(r.answers, 1, "{r:?}");
        assert_eq!(r.buckets.len(), 62);
        assert_eq!(r.buckets.iter().sum::<u64>(), 1, "{r:?}");
        assert!(r.min_rate > 0.0, "{r:?}");
    }
    let (status, body) = raw::http(server.local_addr(), "GET", "/debug/stats", &[]).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("\"answer_rate_written\":{\"answers\":1,"),
        "{body}"
    );
    ws.close().await;
    server.stop().await;
}

#[actix_rt::test]
async fn an_answer_cut_short_after_400_ms_is_timed_too() {
    // Real-time pacing, so that the user can speak over the answer.
    let server = LocalServer::start(ServerConfig::default()).await.unwrap();
    let mut ws = connect(
        &format!("{}/realtime?model=gpt-realtime", server.openai_url()),
        &[],
    )
    .await;
    ws.until("session.created").await;
    append_audio(&mut ws, &utterance(300, 1_000, 700, 24_000)).await;
    // 12 deltas of 40 ms received: at least 480 ms of the first answer went out.
    for _ in 0..12 {
        ws.until("response.output_audio.delta").await;
    }
    // Speaking again cuts the first answer short; the second one plays to its end.
    append_audio(&mut ws, &utterance(0, 600, 700, 24_000)).await;
    let ev = ws.until("response.done").await;
    let first = ev.iter().find(|e| e["type"] == "response.done").unwrap();
    assert_eq!(first["response"]["status"], "cancelled", "{first}");
    ws.until("response.done").await;
    let s = server.stats();
    assert_eq!(s.responses, 2);
    for r in [&s.answer_rate_paced, &s.answer_rate_written] {
        assert_eq!(r.answers, 2, "{r:?}");
    }
    ws.close().await;
    server.stop().await;
}
