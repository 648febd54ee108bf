//! `transport`: N browser-transport conversations driven by a Rust WebSocket load generator
//! (one task per simulated page, 20 ms PCM16 frames in real time, reading everything the
//! server sends), against the local server as a child process. Reports the latency the
//! transport adds in both directions:
//!
//! - in: page frame read from the transport socket → the command reaching the provider
//!   session's protocol (event middleware, just before encoding and the socket write);
//! - out: provider frame read from the provider socket → its frame queued to the page's
//!   socket writer (`BrowserTransport::audio_out_latency`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpServer};
use futures_util::{SinkExt as _, StreamExt as _};
use liveagent::{EventMiddleware, LatencySamples, SessionCommand, SessionOptions};
use liveagent_transport::{BrowserTransport, Limits};

use crate::common::{cpu_time, ms, out, percentiles, speech_pattern, ServerProcess};

struct InLatency(Arc<Mutex<LatencySamples>>);

impl EventMiddleware for InLatency {
    fn on_command(&self, command: SessionCommand) -> Option<SessionCommand> {
        if let SessionCommand::Audio(a) = &command {
            if let (Some(origin), Ok(mut l)) = (a.origin, self.0.lock()) {
                l.record(origin.elapsed());
            }
        }
        Some(command)
    }
}

pub async fn run(server_bin: std::path::PathBuf, sessions: usize, secs: u64) -> anyhow::Result<()> {
    let server = ServerProcess::start(&server_bin, &["--workers".into(), "1".into()])?;
    let in_latency = Arc::new(Mutex::new(LatencySamples::new(200_000)));
    let agent = liveagent::LiveAgent::builder("bench")
        .config(
            liveagent::openai::RealtimeConfig::new("gpt-realtime")
                .base_url(server.openai_url.clone())
                .api_key("local"),
        )
        .session_options(SessionOptions::default())
        .event_middleware(InLatency(in_latency.clone()))
        .build()?;
    let transport = BrowserTransport::new(agent).limits(Limits {
        max_conversations: sessions + 10,
        ..Limits::default()
    });
    let mount = transport.clone();
    let http = HttpServer::new(move || App::new().configure(mount.configure()))
        .workers(1)
        .tcp_nodelay(true)
        .disable_signals()
        .bind(("127.0.0.1", 0))?;
    let addr = http.addrs()[0];
    let http = http.run();
    let handle = http.handle();
    actix::spawn(http);
    let _ = rustls::crypto::ring::default_provider().install_default();

    let pattern = Arc::new(speech_pattern(1500));
    let received = Arc::new(AtomicU64::new(0));
    let late_frames = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_time(None);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..sessions {
        let (pattern, received, late, failed) = (
            pattern.clone(),
            received.clone(),
            late_frames.clone(),
            failed.clone(),
        );
        let url = format!("ws://{addr}/ws");
        tasks.push(actix::spawn(async move {
            // Stagger the starts over a second.
            tokio::time::sleep(Duration::from_millis((i as u64 * 1000) / sessions.max(1) as u64)).await;
            let Ok((_, mut ws)) = crate::transport_scale::page_client(false).ws(url).max_frame_size(1 << 20).connect().await else {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let hello = r#"{"type":"hello","protocol":1,"input_rate":24000,"output_rate":24000}"#;
            if ws.send(awc::ws::Message::Text(hello.into())).await.is_err() {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            // Audio starts once the provider session is open (before that the session buffers
            // it, which is connection setup, not transport latency).
            loop {
                match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
                    Ok(Some(Ok(awc::ws::Frame::Text(t)))) if t.windows(8).any(|w| w == b"\"opened\"") => break,
                    Ok(Some(Ok(_))) => {}
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
            let start = Instant::now();
            let mut ticker = tokio::time::interval(Duration::from_millis(20));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut n = 0usize;
            let end = start + Duration::from_secs(secs);
            loop {
                tokio::select! {
                    t = ticker.tick() => {
                        if t.into_std() > end { break; }
                        if t.elapsed() > Duration::from_millis(20) { late.fetch_add(1, Ordering::Relaxed); }
                        let chunk = &pattern[n % pattern.len()];
                        n += 1;
                        let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
                        if ws.send(awc::ws::Message::Binary(bytes.into())).await.is_err() {
                            failed.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                    frame = ws.next() => match frame {
                        Some(Ok(awc::ws::Frame::Binary(b))) => { received.fetch_add(b.len() as u64, Ordering::Relaxed); }
                        Some(Ok(_)) => {}
                        _ => { failed.fetch_add(1, Ordering::Relaxed); return; }
                    }
                }
            }
            let _ = ws.send(awc::ws::Message::Text(r#"{"type":"end"}"#.into())).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let wall = t0.elapsed();
    let cpu = cpu_time(None).saturating_sub(cpu0);
    let server_cpu = cpu_time(Some(server.pid()));
    let mut inn: Vec<u32> = in_latency.lock().unwrap().micros().to_vec();
    let mut outl: Vec<u32> = transport.audio_out_latency().micros().to_vec();
    let (i50, i99, imax) = percentiles(&mut inn);
    let (o50, o99, omax) = percentiles(&mut outl);
    let audio_s = received.load(Ordering::Relaxed) as f64 / 48_000.0;
    let fails = failed.load(Ordering::Relaxed);
    let late = late_frames.load(Ordering::Relaxed);
    out(format!(
        "RESULT transport sessions={sessions} secs={secs} failed={fails} in_p50_ms={} in_p99_ms={} in_max_ms={} in_n={} out_p50_ms={} out_p99_ms={} out_max_ms={} out_n={} agent_audio_s={audio_s:.0} late_sends={late} bench_cpu_pct_of_one_core={:.0} server_cpu_s={:.1} wall_s={:.1}",
        ms(i50), ms(i99), ms(imax), inn.len(), ms(o50), ms(o99), ms(omax), outl.len(),
        cpu.as_secs_f64() * 100.0 / wall.as_secs_f64(),
        server_cpu.as_secs_f64(),
        wall.as_secs_f64(),
    ));
    transport.shutdown().await;
    handle.stop(true).await;
    Ok(())
}
