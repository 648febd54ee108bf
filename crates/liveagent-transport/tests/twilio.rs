//! The Twilio transport against a scripted Twilio peer speaking the documented Media Streams
//! messages (shared/protocols/twilio-media-streams.md): 20 ms μ-law frames with string
//! counters, a playback clock that echoes marks after the audio before them has played,
//! `clear` handling, DTMF and a hang-up mid-answer; and the TwiML webhook with
//! `X-Twilio-Signature` validation. The agent runs against the local realtime server.

mod support;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use liveagent::{gemini, openai, LiveAgent, LiveError};
use liveagent_core::g711;
use liveagent_server::Pacing;
use liveagent_transport::twilio::signature;
use liveagent_transport::{AgentSource, TwilioTransport};
use serde_json::{json, Value};
use support::*;

const STREAM: &str = "MZ0123456789abcdef0123456789abcdef";
const CALL: &str = "CA0123456789abcdef0123456789abcdef";

/// What the fake Twilio plays: audio bytes and marks, in order.
enum Queued {
    Audio(usize),
    Mark(String),
}

/// A scripted Twilio Media Streams peer.
struct FakeTwilio {
    ws: Ws,
    seq: u64,
    chunk: u64,
    /// Playback buffer (bytes and marks in order) and the clock that drains it.
    queue: VecDeque<Queued>,
    /// μ-law bytes received per "item" (reset by `clear`), and all of them.
    item_bytes: u64,
    played_item_bytes: u64,
    received: Vec<u8>,
    /// Item ms at each mark echoed since the last clear.
    echoed_ms: Vec<u64>,
    marks_pending: VecDeque<(String, u64)>,
    clears: Vec<Vec<u64>>,
    sent: Vec<u8>,
    errors: Vec<String>,
    closed: Option<Option<(u16, String)>>,
}

impl FakeTwilio {
    async fn call(url: &str, params: Value) -> FakeTwilio {
        Self::try_call(url, &[], params)
            .await
            .expect("media stream upgrade")
    }

    /// Like [`call`](Self::call) with upgrade `headers`; `Err(status)` when refused.
    async fn try_call(
        url: &str,
        headers: &[(&str, &str)],
        params: Value,
    ) -> Result<FakeTwilio, u16> {
        let ws = ws_connect(url, headers).await?;
        let mut t = FakeTwilio {
            ws,
            seq: 0,
            chunk: 0,
            queue: VecDeque::new(),
            item_bytes: 0,
            played_item_bytes: 0,
            received: Vec::new(),
            echoed_ms: Vec::new(),
            marks_pending: VecDeque::new(),
            clears: Vec::new(),
            sent: Vec::new(),
            errors: Vec::new(),
            closed: None,
        };
        t.ws.send(&json!({"event":"connected","protocol":"Call","version":"1.0.0"}))
            .await;
        t.seq += 1;
        t.ws.send(&json!({
            "event": "start", "sequenceNumber": t.seq.to_string(),
            "start": {
                "accountSid": "AC0123456789abcdef0123456789abcdef", "streamSid": STREAM,
                "callSid": CALL, "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": params
            },
            "streamSid": STREAM
        }))
        .await;
        Ok(t)
    }

    async fn send_event(&mut self, mut v: Value) {
        self.seq += 1;
        v["sequenceNumber"] = json!(self.seq.to_string());
        v["streamSid"] = json!(STREAM);
        self.ws.send(&v).await;
    }

    /// One 20 ms tick: send a caller frame, play 20 ms of the agent, read what arrived.
    async fn tick(&mut self, frame: &[u8]) {
        self.chunk += 1;
        let ts = (self.chunk - 1) * 20;
        self.sent.extend_from_slice(frame);
        self.send_event(
            json!({"event":"media","media":{"track":"inbound","chunk":self.chunk.to_string(),
            "timestamp":ts.to_string(),"payload":B64.encode(frame)}}),
        )
        .await;
        self.play(160).await;
        self.read().await;
    }

    /// Consumes `bytes` of queued audio, echoing marks whose audio has played.
    async fn play(&mut self, mut bytes: usize) {
        loop {
            match self.queue.front_mut() {
                Some(Queued::Mark(_)) => {
                    let Some(Queued::Mark(name)) = self.queue.pop_front() else {
                        unreachable!()
                    };
                    let (_, ms) = self.marks_pending.pop_front().expect("mark bookkeeping");
                    self.echoed_ms.push(ms);
                    self.send_event(json!({"event":"mark","mark":{"name":name}}))
                        .await;
                }
                Some(Queued::Audio(n)) if bytes > 0 => {
                    let take = (*n).min(bytes);
                    *n -= take;
                    bytes -= take;
                    self.played_item_bytes += take as u64;
                    if *n == 0 {
                        self.queue.pop_front();
                    }
                }
                _ => return,
            }
        }
    }

    /// Reads every frame that arrived, validating each against the documented shapes.
    async fn read(&mut self) {
        while let Ok(got) = tokio::time::timeout(Duration::from_millis(2), self.ws.next()).await {
            let v = match got {
                Got::Json(v) => v,
                Got::Binary(_) => {
                    self.errors.push("binary frame".into());
                    continue;
                }
                Got::Close(c) => {
                    self.closed = Some(c);
                    return;
                }
                Got::Eof => {
                    self.closed = Some(None);
                    return;
                }
            };
            if v["streamSid"] != STREAM {
                self.errors.push(format!("wrong streamSid: {v}"));
            }
            match v["event"].as_str() {
                Some("media") => {
                    let payload = v["media"]["payload"].as_str().unwrap_or_default();
                    match B64.decode(payload) {
                        Ok(b) if !b.is_empty() && !b.starts_with(b"RIFF") => {
                            if b.len() % 160 != 0 {
                                self.errors.push(format!("media of {} bytes", b.len()));
                            }
                            self.item_bytes += b.len() as u64;
                            self.received.extend_from_slice(&b);
                            self.queue.push_back(Queued::Audio(b.len()));
                        }
                        _ => self.errors.push(format!("bad media payload: {v}")),
                    }
                }
                Some("mark") => {
                    let name = v["mark"]["name"].as_str().unwrap_or_default().to_owned();
                    self.marks_pending
                        .push_back((name.clone(), self.item_bytes / 8));
                    self.queue.push_back(Queued::Mark(name));
                    self.play(0).await; // echoed at once when nothing is queued before it
                }
                Some("clear") => {
                    // Drop queued audio; echo every pending mark (flushed, not played).
                    self.clears.push(self.echoed_ms.clone());
                    let pending: Vec<String> = self
                        .queue
                        .drain(..)
                        .filter_map(|q| match q {
                            Queued::Mark(n) => Some(n),
                            Queued::Audio(_) => None,
                        })
                        .collect();
                    self.marks_pending.clear();
                    for name in pending {
                        self.send_event(json!({"event":"mark","mark":{"name":name}}))
                            .await;
                    }
                    self.item_bytes = 0;
                    self.played_item_bytes = 0;
                    self.echoed_ms.clear();
                }
                other => self.errors.push(format!("unexpected event {other:?}: {v}")),
            }
        }
    }

    /// Speaks `frames` (20 ms each) in real time.
    async fn speak(&mut self, frames: &[Vec<u8>]) {
        let mut next = Instant::now();
        for f in frames {
            self.tick(f).await;
            next += Duration::from_millis(20);
            tokio::time::sleep_until(next.into()).await;
        }
    }

    /// Silence in real time until `done` holds (or the failsafe).
    async fn wait(&mut self, what: &str, mut done: impl FnMut(&FakeTwilio) -> bool) {
        let deadline = Instant::now() + FAILSAFE;
        let silence = vec![0xFFu8; 160];
        let mut next = Instant::now();
        while !done(self) {
            assert!(Instant::now() < deadline, "waited too long for {what}");
            assert!(
                self.closed.is_none(),
                "closed while waiting for {what}: {:?}",
                self.closed
            );
            self.tick(&silence).await;
            next += Duration::from_millis(20);
            tokio::time::sleep_until(next.into()).await;
        }
    }
}

fn ulaw_frames(text: &str, silence_ms: usize) -> Vec<Vec<u8>> {
    let mut pcm = liveagent_testkit::speech_pcm(text, 8_000);
    pcm.extend(std::iter::repeat_n(0i16, silence_ms * 8));
    let bytes = g711::pcm16_to_ulaw(&pcm);
    bytes
        .chunks(160)
        .map(|c| {
            let mut c = c.to_vec();
            c.resize(160, 0xFF);
            c
        })
        .collect()
}

const SCENARIO: &str = r#"
[[turn]]
say = "Thanks for calling. This answer goes on for a while, so that you have time to interrupt it halfway through."
[[turn]]
say = "Sure, I stopped. You can press a key now, or keep talking to me for a little longer."
"#;

fn phone_agent(server: &liveagent_server::LocalServer) -> AgentSource {
    let url = server.openai_url();
    AgentSource::factory(move |call| {
        LiveAgent::builder("receptionist")
            .prompt("You answer the phone. The caller's number is {caller}.")
            .variable(
                "caller",
                call.params
                    .get("From")
                    .map(String::as_str)
                    .unwrap_or("unknown"),
            )
            .config(
                openai::RealtimeConfig::new("gpt-realtime")
                    .base_url(url.clone())
                    .api_key("local-key")
                    .audio_formats(openai::AudioFormat::Pcmu, openai::AudioFormat::Pcmu),
            )
            .build()
            .map_err(LiveError::from)
    })
}

/// A whole call: caller parameters reach the prompt, μ-law passes through to the provider
/// byte for byte, the answer comes back as whole 20 ms frames with marks, a barge-in sends
/// `clear` and truncates at a position the caller's marks confirmed, DTMF reaches the
/// conversation, and hanging up mid-answer ends the provider session.
#[actix_rt::test]
async fn scripted_call_with_barge_in_dtmf_and_hang_up() {
    let server = local_server(Some(SCENARIO), Pacing::RealTime).await;
    let transport = TwilioTransport::new(phone_agent(&server));
    let mount = transport.clone();
    let (port, handle) = serve(move |cfg| mount.config(cfg));
    let url = format!("ws://127.0.0.1:{port}/twilio/media");

    let mut call = FakeTwilio::call(&url, json!({"From": "+15550100", "To": "+15550199"})).await;
    call.speak(&ulaw_frames("Hello, what are your opening hours?", 900))
        .await;
    call.wait("the answer to play for a second", |c| {
        c.echoed_ms.last().copied().unwrap_or(0) >= 1000
    })
    .await;
    // Barge in.
    call.speak(&ulaw_frames("Stop, please.", 0)).await;
    call.wait("a clear", |c| !c.clears.is_empty()).await;
    call.speak(&ulaw_frames("", 900)).await;
    call.wait("the second answer", |c| c.item_bytes >= 1600)
        .await;
    call.send_event(json!({"event":"dtmf","dtmf":{"track":"inbound_track","digit":"5"}}))
        .await;
    let dtmf_seen = || {
        client_frames(&server)
            .iter()
            .any(|f| f["type"] == "conversation.item.create" && f.to_string().contains("pressed 5"))
    };
    call.wait("the DTMF to reach the provider", |_| dtmf_seen())
        .await;
    // Hang up mid-answer.
    call.send_event(json!({"event":"stop","stop":{"accountSid":"AC0123456789abcdef0123456789abcdef","callSid":CALL}}))
        .await;
    call.ws.close().await;
    wait_for("the conversation to end", || transport.conversations() == 0).await;
    wait_for("the provider session to close", || {
        server.sessions().iter().all(|s| !s.connected)
    })
    .await;

    let frames = client_frames(&server);
    assert!(call.errors.is_empty(), "protocol errors: {:?}", call.errors);
    // Parameters reached the prompt; G.711 both ways.
    let update = frames
        .iter()
        .find(|f| f["type"] == "session.update")
        .unwrap();
    assert!(update["session"]["instructions"]
        .as_str()
        .unwrap()
        .contains("+15550100"));
    assert_eq!(
        update["session"]["audio"]["input"]["format"]["type"],
        "audio/pcmu"
    );
    assert_eq!(
        update["session"]["audio"]["output"]["format"]["type"],
        "audio/pcmu"
    );
    // Passthrough: the provider got exactly the bytes the caller sent, in order.
    let appended: Vec<u8> = frames
        .iter()
        .filter(|f| f["type"] == "input_audio_buffer.append")
        .flat_map(|f| B64.decode(f["audio"].as_str().unwrap()).unwrap())
        .collect();
    assert!(appended.len() > 8_000);
    assert_eq!(
        &call.sent[..appended.len()],
        &appended[..],
        "caller audio was altered"
    );
    // Passthrough back: what the caller received is the provider's audio, byte for byte.
    let server_audio: Vec<u8> = liveagent_server_frames(&server)
        .iter()
        .filter(|f| f["type"] == "response.output_audio.delta")
        .flat_map(|f| B64.decode(f["delta"].as_str().unwrap()).unwrap())
        .collect();
    assert!(call.received.len() > 8_000);
    let n = call.received.len().min(server_audio.len()).min(8_000);
    assert_eq!(
        &call.received[..n],
        &server_audio[..n],
        "agent audio was altered"
    );
    // The barge-in truncated the first answer at a position the caller's marks confirmed.
    let truncate = frames
        .iter()
        .find(|f| f["type"] == "conversation.item.truncate")
        .expect("a truncate");
    let end = truncate["audio_end_ms"].as_u64().unwrap();
    let echoed_before_clear = &call.clears[0];
    assert!(end >= 1000, "truncated at {end} ms");
    assert!(
        echoed_before_clear.contains(&end),
        "{end} not among {echoed_before_clear:?}"
    );
    assert!(transport.shutdown().await);
    handle.stop(true).await;
    server.stop().await;
}

fn liveagent_server_frames(server: &liveagent_server::LocalServer) -> Vec<Value> {
    server
        .recording()
        .iter()
        .filter_map(|l| l.strip_prefix("< "))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// With a provider that does not take G.711 (Gemini: 16 kHz in, 24 kHz out) the caller's
/// audio is resampled on the way in and the answer on the way out, still in whole frames.
#[actix_rt::test]
async fn gemini_call_is_transcoded() {
    let server = local_server(None, Pacing::AsFastAsPossible).await;
    let agent = LiveAgent::builder("receptionist")
        .config(
            gemini::RealtimeConfig::new("gemini-live")
                .base_url(server.gemini_url())
                .api_key("local-key"),
        )
        .build()
        .unwrap();
    let transport = TwilioTransport::new(agent);
    let mount = transport.clone();
    let (port, handle) = serve(move |cfg| mount.config(cfg));
    let mut call =
        FakeTwilio::call(&format!("ws://127.0.0.1:{port}/twilio/media"), json!({})).await;
    call.speak(&ulaw_frames("What time is it?", 900)).await;
    call.wait("the echoed answer (0.4 s of it)", |c| {
        c.received.len() >= 3_200
    })
    .await;
    call.send_event(json!({"event":"stop"})).await;
    wait_for("the conversation to end", || transport.conversations() == 0).await;
    assert!(call.errors.is_empty(), "{:?}", call.errors);
    let rates: Vec<String> = client_frames(&server)
        .iter()
        .filter_map(|f| {
            f["realtimeInput"]["audio"]["mimeType"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(!rates.is_empty());
    assert!(
        rates.iter().all(|r| r == "audio/pcm;rate=16000"),
        "{rates:?}"
    );
    // The echo of speech is speech: the caller heard something loud enough.
    let pcm = g711::ulaw_to_pcm16(&call.received);
    let rms = (pcm.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt();
    assert!(rms > 100.0, "answer rms {rms}");
    handle.stop(true).await;
    server.stop().await;
}

async fn post_form(url: &str, form: &[(&str, &str)], signature: Option<&str>) -> (u16, String) {
    crypto();
    let client = awc::Client::default();
    let mut req = client.post(url);
    if let Some(s) = signature {
        req = req.insert_header(("X-Twilio-Signature", s));
    }
    let mut resp = req.send_form(&form).await.expect("post");
    let body = resp.body().await.expect("body");
    (
        resp.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// The webhook answers `<Connect><Stream>` with the call's parameters; with an auth token it
/// refuses unsigned and wrongly signed requests with 403, and so does the stream's upgrade.
#[actix_rt::test]
async fn webhook_twiml_and_signatures() {
    let server = local_server(None, Pacing::AsFastAsPossible).await;
    let agent = agent_builder(&server).build().unwrap();
    let open = TwilioTransport::new(agent.clone()).path("/open/");
    let signed = TwilioTransport::new(agent)
        .path("/signed/")
        .auth_token("12345")
        .public_url("https://agent.example.com");
    let (o, s) = (open.clone(), signed.clone());
    let (port, handle) = serve(move |cfg| {
        o.config(cfg);
        s.config(cfg);
    });
    let form = [
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("CallSid", CALL),
        ("From", "+14155550100"),
        ("To", "+14155550199"),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
    ];
    let (status, xml) =
        post_form(&format!("http://127.0.0.1:{port}/open/voice"), &form, None).await;
    assert_eq!(status, 200);
    let stream_url = format!(r#"<Stream url="ws://127.0.0.1:{port}/open/media">"#);
    assert!(
        xml.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect>"#),
        "{xml}"
    );
    assert!(xml.contains(&stream_url), "{xml}");
    assert!(
        xml.contains(r#"<Parameter name="From" value="+14155550100" />"#),
        "{xml}"
    );
    assert!(
        !xml.contains("liveagent_token"),
        "no token without an auth token"
    );

    let url = format!("http://127.0.0.1:{port}/signed/voice");
    let (status, _) = post_form(&url, &form, None).await;
    assert_eq!(status, 403, "unsigned");
    let (status, _) = post_form(&url, &form, Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")).await;
    assert_eq!(status, 403, "wrongly signed");
    // Twilio signs the public URL it called.
    let good = signature::compute("12345", "https://agent.example.com/signed/voice", &form);
    let (status, xml) = post_form(&url, &form, Some(&good)).await;
    assert_eq!(status, 200, "{xml}");
    assert!(
        xml.contains(r#"<Stream url="wss://agent.example.com/signed/media">"#),
        "{xml}"
    );
    assert!(xml.contains(r#"name="liveagent_token""#), "{xml}");

    // The stream's upgrade must be signed too (tests/twilio_signatures.rs has the cases);
    // signed over the `wss://` URL of the <Stream>, the call starts.
    let media = format!("ws://127.0.0.1:{port}/signed/media");
    let none: [(&str, &str); 0] = [];
    let upgrade_sig = signature::compute("12345", "wss://agent.example.com/signed/media", &none);
    assert_eq!(
        FakeTwilio::try_call(&media, &[], json!({})).await.err(),
        Some(403)
    );
    let mut ok = FakeTwilio::try_call(
        &media,
        &[("X-Twilio-Signature", &upgrade_sig)],
        json!({"From": "+14155550100"}),
    )
    .await
    .expect("signed upgrade");
    wait_for("the signed call to start", || {
        signed.conversations() == 1 && !server.sessions().is_empty()
    })
    .await;
    ok.send_event(json!({"event":"stop"})).await;
    wait_for("the call to end", || signed.conversations() == 0).await;
    handle.stop(true).await;
    server.stop().await;
}

/// Frames Twilio would never send close the stream with a reason, never a panic.
#[actix_rt::test]
async fn hostile_stream_frames_close_the_call() {
    let server = local_server(None, Pacing::AsFastAsPossible).await;
    let transport = TwilioTransport::new(agent_builder(&server).build().unwrap());
    let mount = transport.clone();
    let (port, handle) = serve(move |cfg| mount.config(cfg));
    let url = format!("ws://127.0.0.1:{port}/twilio/media");
    let cases: Vec<(bool, Value, u16)> = vec![
        (
            false,
            json!({"event":"media","media":{"payload":"/w=="},"streamSid":STREAM}),
            1008,
        ),
        (
            true,
            json!({"event":"media","media":{"payload":"***"}}),
            1007,
        ),
        (true, json!({"event":"party"}), 1007),
        (true, json!({"event":"dtmf","dtmf":{"digit":"99"}}), 1007),
        (
            true,
            json!({"event":"start","start":{"streamSid":"MZ2","mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}),
            1008,
        ),
        (
            true,
            json!({"event":"media","media":{"payload":"/w=="},"streamSid":"MZother"}),
            1008,
        ),
    ];
    for (started, frame, code) in cases {
        let mut ws = ws_connect(&url, &[]).await.unwrap();
        if started {
            ws.send(&json!({"event":"start","start":{"streamSid":STREAM,"callSid":CALL,
                "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}},"streamSid":STREAM}))
                .await;
        }
        ws.send(&frame).await;
        let (close, _) = ws.until_close().await;
        assert_eq!(close.map(|c| c.0), Some(code), "{frame}");
    }
    let mut ws = ws_connect(&url, &[]).await.unwrap();
    ws.send_binary(vec![1, 2, 3]).await;
    let (close, _) = ws.until_close().await;
    assert_eq!(close.map(|c| c.0), Some(1003));
    let mut ws = ws_connect(&url, &[]).await.unwrap();
    ws.send(&json!({"event":"start","start":{"streamSid":STREAM,"mediaFormat":{"encoding":"audio/l16","sampleRate":16000,"channels":1}}}))
        .await;
    let (close, _) = ws.until_close().await;
    assert_eq!(close.map(|c| c.0), Some(1003));
    wait_for("every call to end", || transport.conversations() == 0).await;
    handle.stop(true).await;
    server.stop().await;
}

/// The remote player publishes `AudioPlaybackStarted` for an answer once the caller's marks
/// say some of it was heard, once per item, before its `PlaybackStopped`.
#[actix_rt::test]
async fn the_remote_player_announces_what_the_caller_starts_hearing() {
    use std::sync::{Arc, Mutex};
    let server = local_server(Some(SCENARIO), Pacing::AsFastAsPossible).await;
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let url = server.openai_url();
    let log = seen.clone();
    let transport = TwilioTransport::new(AgentSource::factory(move |_call| {
        let started = log.clone();
        let stopped = log.clone();
        LiveAgent::builder("receptionist")
            .config(
                openai::RealtimeConfig::new("gpt-realtime")
                    .base_url(url.clone())
                    .api_key("local-key")
                    .audio_formats(openai::AudioFormat::Pcmu, openai::AudioFormat::Pcmu),
            )
            .on::<liveagent::AudioPlaybackStarted, _, _>(move |e, _| {
                started
                    .lock()
                    .unwrap()
                    .push(("started".into(), e.item_id.to_string()));
                async {}
            })
            .on::<liveagent::PlaybackStopped, _, _>(move |e, _| {
                stopped
                    .lock()
                    .unwrap()
                    .push(("stopped".into(), e.item_id.to_string()));
                async {}
            })
            .build()
            .map_err(LiveError::from)
    }));
    let mount = transport.clone();
    let (port, handle) = serve(move |cfg| mount.config(cfg));
    let url = format!("ws://127.0.0.1:{port}/twilio/media");
    let mut call = FakeTwilio::call(&url, json!({"From": "+15550100"})).await;
    call.speak(&ulaw_frames("Hello, what are your opening hours?", 900))
        .await;
    call.wait("some of the answer heard", |c| {
        c.echoed_ms.last().copied().unwrap_or(0) >= 200
    })
    .await;
    wait_for("AudioPlaybackStarted", || {
        seen.lock().unwrap().iter().any(|(k, _)| k == "started")
    })
    .await;
    let events = seen.lock().unwrap().clone();
    let started: Vec<&String> = events
        .iter()
        .filter(|(k, _)| k == "started")
        .map(|(_, i)| i)
        .collect();
    assert_eq!(started.len(), 1, "{events:?}");
    // Not announced after it stopped.
    if let Some(stop) = events
        .iter()
        .position(|(k, i)| k == "stopped" && i == started[0])
    {
        assert!(
            events.iter().position(|(k, _)| k == "started").unwrap() < stop,
            "{events:?}"
        );
    }
    call.send_event(json!({"event":"stop","stop":{"accountSid":"AC0123456789abcdef0123456789abcdef","callSid":CALL}}))
        .await;
    call.ws.close().await;
    wait_for("the conversation to end", || transport.conversations() == 0).await;
    assert!(transport.shutdown().await);
    handle.stop(true).await;
    server.stop().await;
}
