//! The audio a session keeps for `conversation.item.retrieve` is stored packed (lossless,
//! about half the bytes of PCM16 for speech): what a client retrieves is exactly what it
//! sent, sample for sample, and real speech with a microphone's noise floor really is kept
//! in fewer bytes.

mod common;

use common::*;
use liveagent_server::audio::Pcm;
use serde_json::json;

/// A quiet noise floor (about -60 dBFS), as a real microphone adds under speech and silence.
fn noise_floor(n: usize) -> Vec<i16> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 61) as i16 - 30
        })
        .collect()
}

/// espeak-ng speech at 24 kHz with 300 ms of silence around it and a noise floor on all of it.
fn spoken(text: &str) -> Vec<i16> {
    let mut pcm = vec![0i16; 7_200];
    pcm.extend(liveagent_testkit::speech_pcm(text, 24_000));
    pcm.extend(std::iter::repeat_n(0i16, 7_200));
    let floor = noise_floor(pcm.len());
    for (s, n) in pcm.iter_mut().zip(floor) {
        *s = s.saturating_add(n);
    }
    pcm
}

#[test]
fn speech_is_kept_losslessly_in_fewer_bytes() {
    for text in [
        "What is the weather like today?",
        "Please book a table for four people at seven thirty tomorrow evening.",
    ] {
        let pcm = spoken(text);
        let packed = Pcm::packed(pcm.clone());
        assert_eq!(packed.samples().unwrap().as_ref(), &pcm[..], "{text}");
        let ratio = packed.held_bytes() as f64 / (pcm.len() * 2) as f64;
        println!(
            "{text:?}: {} samples packed to {:.0} % of PCM16",
            pcm.len(),
            ratio * 100.0
        );
        assert!(ratio < 0.75, "{text:?}: packed to {:.0} %", ratio * 100.0);
        // Any range of a view decodes to the same samples as the plain buffer.
        let view = packed.slice(1_000, pcm.len() - 333);
        assert_eq!(view.range(4_321, 9_999).as_ref(), &pcm[5_321..10_999]);
    }
}

#[actix_rt::test]
async fn a_retrieved_user_turn_is_exactly_what_was_sent() {
    let (server, mut ws) = fast_openai().await;
    let mut sent = spoken("What is the weather like today?");
    sent.extend(std::iter::repeat_n(0i16, 24_000));
    append_audio(&mut ws, &sent).await;
    let ev = ws.until("response.done").await;
    let user = committed_item(&ev);
    let start_ms = ev
        .iter()
        .find(|e| e["type"] == "input_audio_buffer.speech_started")
        .unwrap()["audio_start_ms"]
        .as_u64()
        .unwrap() as usize;
    ws.send(&json!({"type": "conversation.item.retrieve", "item_id": user}))
        .await;
    let item = ws.until("conversation.item.retrieved").await.pop().unwrap()["item"].clone();
    let heard = unb64(item["content"][0]["audio"].as_str().unwrap());
    // The item starts 300 ms (the default prefix padding) before the detected speech.
    let from = (start_ms - 300) * 24;
    assert!(heard.len() > 24_000, "{} samples", heard.len());
    assert!(
        heard[..] == sent[from..from + heard.len()],
        "the retrieved audio differs from what was sent"
    );
    ws.close().await;
    server.stop().await;
}

#[actix_rt::test]
async fn older_spoken_turns_let_go_of_their_audio() {
    let (server, mut ws) = fast_openai().await;
    let mut users = Vec::new();
    for _ in 0..3 {
        append_audio(&mut ws, &utterance(300, 2_000, 700, 24_000)).await;
        let ev = ws.until("response.done").await;
        users.push(committed_item(&ev));
    }
    let mut kept = Vec::new();
    for id in &users {
        ws.send(&json!({"type": "conversation.item.retrieve", "item_id": id}))
            .await;
        let item = ws.until("conversation.item.retrieved").await.pop().unwrap()["item"].clone();
        kept.push(item["content"][0]["audio"].is_string());
    }
    // Turns of ~2.8 s against the default 4 s budget: only the last turn (which its answer
    // shares) keeps its audio.
    assert_eq!(kept, [false, false, true]);
    ws.close().await;
    server.stop().await;
}
