//! `transport-scale`: N browser-transport conversations on one core, driven by a load
//! generator in another process.
//!
//! Three processes:
//!
//! - the **app under test** (`liveagent-bench transport-app`, a child of this one): an
//!   actix-web app with one worker, `BrowserTransport` mounted, every conversation of the
//!   transport in it, pinned to one core (`--app-cpu`, `sched_setaffinity`);
//! - the **load generator** (this process) and the **local realtime server** (its child),
//!   pinned to the other core(s) (`--load-cpus`): one task per simulated page, which sends
//!   `hello`, then a 20 ms PCM16 frame of the test speech every 20 ms on a fixed schedule
//!   (missed ticks are sent late, never skipped), plays what it receives on a 20 ms clock
//!   and reports `played` positions like the bundled page (every 100 ms while playing,
//!   `drained` at the end of an item, `flushed` after `interrupted`).
//!
//! Each page's schedule starts at a `CLOCK_MONOTONIC` instant it sends in `hello`'s
//! `params`, and every frame carries its actual send time (microseconds after that start,
//! in the least significant bits of its first 48 samples: inaudible, and the transport
//! passes 24 kHz audio through untouched). The app's agent factory gives each conversation
//! an event middleware that sees frame k reach the provider session's protocol (just
//! before JSON encoding and the provider socket write) and splits its lag behind the
//! schedule (t0 + k x 20 ms) in two, on the system-wide monotonic clock both processes read:
//!
//! - **generator lag**: schedule -> actual send. The load side's lateness (the generator
//!   shares its core with the local server): not the app's;
//! - **app lag**: actual send -> the provider session's protocol: the kernel, the app's
//!   socket read, decoding, the bus and the session. **This is what the app adds**, and
//!   what the verdict uses; the end-to-end **send lag** (their sum) is printed too, and so
//!   is the in-process part of the app lag (the transport's socket read -> the protocol).
//!
//! Real time for a run means all of: app lag p99 <= 20 ms (one frame); every answer's
//! audio reached the page at >= 0.98x real time (duration / arrival span, answers that
//! started in the measured window); no page failed. A run whose generator lag p99 is over
//! 20 ms says `load-side-late`: the app was fed bunched frames.
//!
//! Where a slow answer was stretched: the app records when each answer's audio chunks
//! were read from its provider socket (the chunks' `origin`) and hands them to the
//! generator by item id, which prints the same answers' rate at the app
//! (`app_min_answer_rate`: the local server and the kernel up to the app's read), the
//! slowest page answer's rate at the page and at the app, and how much longer each answer's
//! arrival span was at the page than at the app (`page_path_stretch_*`: the app's session,
//! bus, player and writer, the kernel, and the generator's reads).
//!
//! Also printed, for comparing builds on a loaded machine where wall-clock lags mean little:
//! the app's CPU time per session-second, its context switches per frame
//! (`/proc/PID/task/*/status`), and each core's utilisation by every process on it
//! (`/proc/stat`: 100% on the app's core means other tenants took what the app left).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_service::ServiceExt as _;
use actix_web::{App, HttpServer};
use anyhow::{bail, Context as _};
use futures_util::{SinkExt as _, StreamExt as _};
use liveagent::{EventMiddleware, LiveError, LiveEvent, SessionCommand, SessionOptions};
use liveagent_transport::{AgentSource, BrowserTransport, Limits};

use crate::common::{cpu_time, out, percentiles, speech_pattern, ServerProcess};

/// 20 ms at 24 kHz.
const FRAME: usize = 480;
const FRAME_NS: u64 = 20_000_000;

// ------------------------------------------------------------------ send stamps

/// Marks a stamped frame (16 bits).
const STAMP_MAGIC: u64 = 0xA5C3;
/// Samples carrying a stamp: one bit each, in their least significant bit (an inaudible
/// change of one step that no VAD notices), 16 bits of magic then 32 of the stamp.
const STAMP_SAMPLES: usize = 48;

/// Writes `us` (the generator's send time, microseconds after the page's schedule start)
/// into the low bits of the first [`STAMP_SAMPLES`] samples of a PCM16 LE frame.
fn stamp_frame(frame: &mut [u8], us: u32) {
    let bits = (STAMP_MAGIC << 32) | u64::from(us);
    for (i, byte) in frame.iter_mut().step_by(2).take(STAMP_SAMPLES).enumerate() {
        *byte = (*byte & !1) | ((bits >> (STAMP_SAMPLES - 1 - i)) & 1) as u8;
    }
}

/// The stamp [`stamp_frame`] wrote, if these samples carry one.
fn read_stamp(samples: &[i16]) -> Option<u32> {
    if samples.len() < STAMP_SAMPLES {
        return None;
    }
    let bits = samples[..STAMP_SAMPLES]
        .iter()
        .fold(0u64, |acc, s| (acc << 1) | (*s as u16 & 1) as u64);
    (bits >> 32 == STAMP_MAGIC).then_some(bits as u32)
}

// ------------------------------------------------------------------ clock and CPUs

/// `CLOCK_MONOTONIC` in nanoseconds: the same clock in every process on the machine.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The `Instant` at monotonic time `ns` (in the past or future).
fn instant_at(ns: u64) -> Instant {
    let (now_i, now_ns) = (Instant::now(), mono_ns());
    if ns >= now_ns {
        now_i + Duration::from_nanos(ns - now_ns)
    } else {
        now_i
            .checked_sub(Duration::from_nanos(now_ns - ns))
            .unwrap_or(now_i)
    }
}

/// Pins this process's threads created from now on (and the calling thread) to `cpus`.
pub fn pin_to(cpus: &[usize]) -> anyhow::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity only
    // touch the set we pass.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!(
                "sched_setaffinity({cpus:?}): {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// Context-switch counters of a process (all its threads). (Syscalls are not counted
/// here: `/proc/PID/io`'s `syscr`/`syscw` leave out `recvfrom`/`sendto`, which is all a
/// socket server does; count them with `perf stat -e raw_syscalls:sys_enter -p PID`.)
#[derive(Clone, Copy, Default)]
struct ProcIo {
    /// Voluntary context switches (the threads slept: waiting for work).
    vcsw: u64,
    /// Involuntary context switches (the threads were preempted).
    ivcsw: u64,
}

impl ProcIo {
    /// This process's counters (`None`) or those of `pid`; zeros where /proc has none.
    fn read(pid: Option<u32>) -> ProcIo {
        let dir = pid.map_or("/proc/self".to_owned(), |p| format!("/proc/{p}"));
        let mut io = ProcIo::default();
        let field = |text: &str, name: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or(0)
        };
        if let Ok(tasks) = std::fs::read_dir(format!("{dir}/task")) {
            for task in tasks.flatten() {
                if let Ok(text) = std::fs::read_to_string(task.path().join("status")) {
                    io.vcsw += field(&text, "voluntary_ctxt_switches:");
                    io.ivcsw += field(&text, "nonvoluntary_ctxt_switches:");
                }
            }
        }
        io
    }
}

/// Busy and total jiffies of each CPU (`/proc/stat`), for a core's utilisation by every
/// process on it, other tenants included.
fn cpu_jiffies() -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let total: u64 = v.iter().take(8).sum();
            // idle + iowait are not busy.
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (total - idle, total)
        })
        .collect()
}

/// Percent busy of `cpu` between two [`cpu_jiffies`] readings.
fn core_busy(a: &[(u64, u64)], b: &[(u64, u64)], cpu: usize) -> f64 {
    match (a.get(cpu), b.get(cpu)) {
        (Some(a), Some(b)) if b.1 > a.1 => (b.0 - a.0) as f64 * 100.0 / (b.1 - a.1) as f64,
        _ => f64::NAN,
    }
}

fn cpu_list(s: &str) -> Vec<usize> {
    s.split(',').filter_map(|c| c.trim().parse().ok()).collect()
}

// ------------------------------------------------------------------ the app under test

/// Measures each audio frame's lag behind its schedule at the provider session's protocol,
/// split by the frame's send stamp into the generator's part and the app's part.
struct SendLag {
    t0_ns: u64,
    frames: AtomicU64,
    shared: Arc<AppStats>,
}

/// Per-frame lags of the measured window, in microseconds.
#[derive(Default)]
struct Lags {
    /// Scheduled send -> the provider session's protocol (end to end).
    total: Vec<u32>,
    /// Scheduled send -> the generator's actual send (the load side's lateness).
    generator: Vec<u32>,
    /// The generator's actual send -> the provider session's protocol: the kernel, the
    /// app's socket read, decoding, the bus and the session. The app's added lag.
    app: Vec<u32>,
    /// The transport's socket read (the recorder got the frame) -> the protocol: the part
    /// of `app` spent inside the app's process after the read.
    in_process: Vec<u32>,
    /// Frames without a readable stamp (should be 0).
    unstamped: u64,
}

#[derive(Default)]
struct AppStats {
    measuring: AtomicBool,
    lags: Mutex<Lags>,
    /// Every answer's audio as the app received it, by item id (the whole run: the
    /// generator keeps the answers of its window).
    answers: Mutex<std::collections::HashMap<liveagent::events::Id, AppAnswer>>,
}

/// One answer's audio at the app: when its chunks were read from the provider socket
/// (the chunks' `origin`), on the monotonic clock every process reads.
#[derive(Clone, Copy)]
struct AppAnswer {
    /// Microseconds of audio.
    audio_us: u64,
    /// The first chunk's read.
    first_ns: u64,
    /// The last chunk's read.
    last_ns: u64,
    /// The last chunk's duration (the span counts it, as the generator's does).
    last_dur_us: u64,
}

fn us32(ns: u64) -> u32 {
    (ns / 1000).min(u32::MAX as u64) as u32
}

impl EventMiddleware for SendLag {
    fn on_event(&self, event: LiveEvent) -> Option<LiveEvent> {
        if let LiveEvent::SynthesizedAudio(a) = &event {
            let now = mono_ns();
            let read = a
                .audio
                .origin
                .map_or(now, |o| now.saturating_sub(o.elapsed().as_nanos() as u64));
            let dur_us = a.audio.duration_us();
            if let Ok(mut answers) = self.shared.answers.lock() {
                let e = answers.entry(a.item_id.clone()).or_insert(AppAnswer {
                    audio_us: 0,
                    first_ns: read,
                    last_ns: read,
                    last_dur_us: 0,
                });
                e.audio_us += dur_us;
                e.last_ns = read;
                e.last_dur_us = dur_us;
            }
        }
        Some(event)
    }

    fn on_command(&self, command: SessionCommand) -> Option<SessionCommand> {
        if let SessionCommand::Audio(chunk) = &command {
            let k = self.frames.fetch_add(1, Ordering::Relaxed);
            if self.shared.measuring.load(Ordering::Relaxed) {
                let now = mono_ns();
                let due = self.t0_ns + k * FRAME_NS;
                let sent = read_stamp(&chunk.samples).map(|us| self.t0_ns + u64::from(us) * 1000);
                if let Ok(mut l) = self.shared.lags.lock() {
                    l.total.push(us32(now.saturating_sub(due)));
                    if let Some(origin) = chunk.origin {
                        l.in_process.push(us32(origin.elapsed().as_nanos() as u64));
                    }
                    match sent {
                        Some(sent) => {
                            l.generator.push(us32(sent.saturating_sub(due)));
                            l.app.push(us32(now.saturating_sub(sent)));
                        }
                        None => l.unstamped += 1,
                    }
                }
            }
        }
        Some(command)
    }
}

/// `transport-app`: the app under test. Prints `listening on ADDR`, then reads commands on
/// stdin: `mark` starts the measured window, `report` prints `APP ...` and exits.
pub async fn run_app(
    provider_url: String,
    sessions: usize,
    cpu: Option<usize>,
    nagle: bool,
) -> anyhow::Result<()> {
    let stats = Arc::new(AppStats::default());
    let shared = stats.clone();
    let source = AgentSource::factory(move |call| {
        let t0_ns = call
            .params
            .get("bench_t0_ns")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(mono_ns);
        liveagent::LiveAgent::builder("bench")
            .prompt("You are a benchmark.")
            .config(
                liveagent::openai::RealtimeConfig::new("gpt-realtime")
                    .base_url(provider_url.clone())
                    .api_key("local"),
            )
            .session_options(SessionOptions::default())
            .event_middleware(SendLag {
                t0_ns,
                frames: AtomicU64::new(0),
                shared: shared.clone(),
            })
            .build()
            .map_err(LiveError::from)
    });
    let transport = BrowserTransport::new(source).limits(Limits {
        max_conversations: sessions + 10,
        ..Limits::default()
    });
    let mount = transport.clone();
    let http = HttpServer::new(move || App::new().configure(mount.configure()))
        .workers(1)
        .tcp_nodelay(!nagle)
        .disable_signals()
        .bind(("127.0.0.1", 0))?;
    let addr = http.addrs()[0];
    let http = http.run();
    let handle = http.handle();
    actix::spawn(http);
    out(format!(
        "listening on {addr} (pinned to cpu {})",
        cpu.map_or("none".into(), |c| c.to_string())
    ));

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line.trim().to_owned()).is_err() {
                break;
            }
        }
    });
    let mut out_mark = 0u64;
    let mut cpu0 = (Instant::now(), cpu_time(None));
    let mut io0 = ProcIo::read(None);
    // Until stdin closes: `mark` starts the window, `report` ends it and prints the figures.
    while let Some(cmd) = rx.recv().await {
        match cmd.as_str() {
            "mark" => {
                *stats.lags.lock().unwrap() = Lags::default();
                out_mark = transport.audio_out_latency().recorded();
                cpu0 = (Instant::now(), cpu_time(None));
                io0 = ProcIo::read(None);
                stats.measuring.store(true, Ordering::Relaxed);
            }
            "report" => {
                stats.measuring.store(false, Ordering::Relaxed);
                let wall = cpu0.0.elapsed().as_secs_f64();
                let cpu = (cpu_time(None) - cpu0.1).as_secs_f64();
                let mut lags = std::mem::take(&mut *stats.lags.lock().unwrap());
                let io = ProcIo::read(None);
                // The out samples recorded since `mark` (once the transport's ring of the
                // most recent 100,000 wrapped: those, which are the window's last seconds).
                let all = transport.audio_out_latency();
                let mut outl: Vec<u32> = if all.recorded() == all.micros().len() as u64 {
                    all.micros()[out_mark as usize..].to_vec()
                } else {
                    all.micros().to_vec()
                };
                let (l50, l99, lmax) = percentiles(&mut lags.total);
                let (g50, g99, gmax) = percentiles(&mut lags.generator);
                let (a50, a99, amax) = percentiles(&mut lags.app);
                let (p50, p99, pmax) = percentiles(&mut lags.in_process);
                let (o50, o99, omax) = percentiles(&mut outl);
                // Every answer's arrival at the app, for the generator to match with its own.
                for (id, a) in stats.answers.lock().unwrap().iter() {
                    out(format!(
                        "ITEM {} {} {} {} {id}",
                        a.audio_us, a.first_ns, a.last_ns, a.last_dur_us
                    ));
                }
                out(format!(
                    "APP lag_n={} lag_p50_us={l50} lag_p99_us={l99} lag_max_us={lmax} gen_p50_us={g50} gen_p99_us={g99} gen_max_us={gmax} app_p50_us={a50} app_p99_us={a99} app_max_us={amax} inproc_p50_us={p50} inproc_p99_us={p99} inproc_max_us={pmax} unstamped={} out_n={} out_p50_us={o50} out_p99_us={o99} out_max_us={omax} cpu_pct={:.1} cpu_s={cpu:.3} vcsw={} ivcsw={} conversations={}",
                    lags.total.len(),
                    lags.unstamped,
                    outl.len(),
                    cpu * 100.0 / wall.max(1e-9),
                    io.vcsw - io0.vcsw,
                    io.ivcsw - io0.ivcsw,
                    transport.conversations(),
                ));
            }
            _ => {}
        }
    }
    transport.shutdown().await;
    handle.stop(true).await;
    Ok(())
}

// ------------------------------------------------------------------ the load generator

/// A WebSocket client like a browser's: `TCP_NODELAY` set (Chromium and Firefox set it on
/// every socket), unless `nagle` asks to reproduce the runs made before the generator set it.
/// With Nagle on, a page's `played` report written right after a frame waits for that
/// frame's ACK, which the app's kernel may delay by up to 40 ms, and the next frames queue
/// behind it: bursts of ~30 ms lag that are the generator's socket, not the app.
pub fn page_client(nagle: bool) -> awc::Client {
    let connector = actix_tls::connect::ConnectorService::default().map(
        move |conn: actix_tls::connect::Connection<awc::http::Uri, tokio::net::TcpStream>| {
            let _ = conn.io_ref().set_nodelay(!nagle);
            conn
        },
    );
    awc::Client::builder()
        .connector(awc::Connector::new().connector(connector))
        .timeout(Duration::from_secs(30))
        .finish()
}

/// The fields of the app's text messages the page acts on (the rest is skipped unparsed).
#[derive(serde::Deserialize)]
struct PageMsg<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    item_id: Option<std::borrow::Cow<'a, str>>,
}

/// One simulated page's playback: what it received and has not played yet.
#[derive(Default)]
struct Playback {
    /// Queued (item, samples), in arrival order.
    queue: VecDeque<(Rc<str>, usize)>,
    /// The item being played and its samples played so far.
    current: Option<(Rc<str>, u64)>,
    since_report: usize,
    /// Items whose `audio_done` arrived.
    done: Vec<Rc<str>>,
}

/// Answer audio arrival per item, for the answer-rate criterion (monotonic ns).
#[derive(Default)]
struct Arrival {
    item: Option<Rc<str>>,
    first_ns: Option<u64>,
    last_ns: u64,
    last_dur: Duration,
    audio: Duration,
}

/// One answer of >= 400 ms as the page received it.
struct GenAnswer {
    item: Rc<str>,
    /// First and last audio frame's arrival (monotonic ns).
    first_ns: u64,
    last_ns: u64,
    /// Audio duration / arrival span (the last frame's duration included).
    rate: f64,
    /// Audio duration (microseconds).
    audio_us: u64,
}

#[derive(Default)]
struct GenStats {
    /// Every answer of >= 400 ms.
    answers: Vec<GenAnswer>,
    late_ticks: u64,
    ticks: u64,
    failed: u64,
    failures: Vec<String>,
    frames_out: u64,
    audio_in_samples: u64,
    played_reports: u64,
    /// Per page: provider session open (the `session` `opened` message) after its
    /// schedule's start, in ms (negative: before).
    open_vs_t0_ms: Vec<i64>,
}

impl Arrival {
    fn close(&mut self, stats: &mut GenStats) {
        if let (Some(first_ns), Some(item)) = (self.first_ns, self.item.take()) {
            if self.audio >= Duration::from_millis(400) {
                let span = Duration::from_nanos(self.last_ns - first_ns) + self.last_dur;
                stats.answers.push(GenAnswer {
                    item,
                    first_ns,
                    last_ns: self.last_ns,
                    rate: self.audio.as_secs_f64() / span.as_secs_f64(),
                    audio_us: self.audio.as_micros() as u64,
                });
            }
        }
        *self = Arrival::default();
    }
}

async fn page(
    url: String,
    t0_ns: u64,
    end_ns: u64,
    pattern: Arc<Vec<bytes::Bytes>>,
    offset: usize,
    stats: Rc<RefCell<GenStats>>,
    nagle: bool,
) {
    let fail = |why: String| {
        let mut s = stats.borrow_mut();
        s.failed += 1;
        if s.failures.len() < 5 {
            s.failures.push(why);
        }
    };
    let connect = page_client(nagle).ws(url).max_frame_size(1 << 20).connect();
    let mut ws = match tokio::time::timeout(Duration::from_secs(30), connect).await {
        Ok(Ok((_, ws))) => ws,
        Ok(Err(e)) => return fail(format!("connect: {e}")),
        Err(_) => return fail("connect: timed out".into()),
    };
    let hello = format!(
        r#"{{"type":"hello","protocol":1,"input_rate":24000,"output_rate":24000,"params":{{"bench_t0_ns":"{t0_ns}"}}}}"#
    );
    if ws.send(awc::ws::Message::Text(hello.into())).await.is_err() {
        return fail("hello".into());
    }
    let mut ticker = tokio::time::interval_at(instant_at(t0_ns).into(), Duration::from_millis(20));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = instant_at(end_ns);
    let mut k = 0usize;
    let mut play = Playback::default();
    let mut arrival = Arrival::default();
    let mut current_item: Option<Rc<str>> = None;
    let mut ended = false;
    let mut opened = false;
    let mut buf = bytes::BytesMut::with_capacity(FRAME * 2);
    loop {
        tokio::select! {
            t = ticker.tick() => {
                let t = t.into_std();
                if t >= end { break; }
                {
                    let mut s = stats.borrow_mut();
                    s.ticks += 1;
                    if t.elapsed() > Duration::from_millis(20) { s.late_ticks += 1; }
                    s.frames_out += 1;
                }
                // The frame is built in the page's own buffer, whose memory is reused once
                // the codec has copied (and masked) the previous frame: no allocation per
                // frame.
                buf.reserve(FRAME * 2);
                buf.extend_from_slice(&pattern[(offset + k) % pattern.len()]);
                stamp_frame(&mut buf, ((mono_ns().saturating_sub(t0_ns)) / 1000) as u32);
                let frame = buf.split().freeze();
                k += 1;
                // Play 20 ms; report like the page's worklet. The frame and the reports due
                // with it leave in one write (`feed`, then one flush): one syscall per tick.
                let msgs = play.tick(FRAME);
                if ws.feed(awc::ws::Message::Binary(frame)).await.is_err() {
                    return fail("send".into());
                }
                for msg in msgs {
                    stats.borrow_mut().played_reports += 1;
                    if ws.feed(awc::ws::Message::Text(msg.into())).await.is_err() {
                        return fail("send played".into());
                    }
                }
                if ws.flush().await.is_err() {
                    return fail("send".into());
                }
            }
            frame = ws.next() => match frame {
                Some(Ok(awc::ws::Frame::Binary(b))) => {
                    let samples = b.len() / 2;
                    stats.borrow_mut().audio_in_samples += samples as u64;
                    let item = current_item.clone().unwrap_or_else(|| Rc::from(""));
                    let now = mono_ns();
                    if arrival.item.as_deref() != Some(&*item) {
                        arrival.close(&mut stats.borrow_mut());
                        arrival.item = Some(item.clone());
                    }
                    let d = Duration::from_micros(samples as u64 * 1_000_000 / 24_000);
                    arrival.first_ns.get_or_insert(now);
                    arrival.last_ns = now;
                    arrival.last_dur = d;
                    arrival.audio += d;
                    play.queue.push_back((item, samples));
                }
                Some(Ok(awc::ws::Frame::Text(t))) => {
                    if !opened && t.windows(8).any(|w| w == b"\"opened\"") {
                        opened = true;
                        let late = mono_ns() as i64 - t0_ns as i64;
                        stats.borrow_mut().open_vs_t0_ms.push(late / 1_000_000);
                    }
                    // Only the type and the item id are read (no JSON tree per message).
                    let Ok(v) = serde_json::from_slice::<PageMsg>(&t) else { continue };
                    match Some(&*v.kind) {
                        Some("audio") => {
                            current_item = v.item_id.as_deref().map(Rc::from);
                        }
                        Some("audio_done") => {
                            if let Some(i) = v.item_id.as_deref() { play.done.push(Rc::from(i)); }
                            arrival.close(&mut stats.borrow_mut());
                        }
                        Some("interrupted") => {
                            arrival.close(&mut stats.borrow_mut());
                            if let Some(msg) = play.flush() {
                                let _ = ws.send(awc::ws::Message::Text(msg.into())).await;
                            }
                        }
                        Some("error") => { ended = true; fail(format!("error: {}", String::from_utf8_lossy(&t))); break; }
                        _ => {}
                    }
                }
                Some(Ok(awc::ws::Frame::Close(r))) => { ended = true; fail(format!("closed by the app: {r:?}")); break; }
                Some(Ok(_)) => {}
                Some(Err(e)) => { ended = true; fail(format!("read: {e}")); break; }
                None => { ended = true; fail("connection ended".into()); break; }
            }
        }
    }
    arrival.close(&mut stats.borrow_mut());
    if !ended {
        let _ = ws
            .send(awc::ws::Message::Text(r#"{"type":"end"}"#.into()))
            .await;
        let _ = ws.close().await;
    }
}

impl Playback {
    /// Plays `n` samples; returns the `played` messages the page would send.
    fn tick(&mut self, mut n: usize) -> Vec<String> {
        let mut msgs = Vec::new();
        while n > 0 {
            let Some((item, left)) = self.queue.front_mut() else {
                break;
            };
            if self.current.as_ref().map(|c| &c.0) != Some(item) {
                if let Some((prev, samples)) = self.current.take() {
                    msgs.push(played(&prev, samples, "drained"));
                }
                self.current = Some((item.clone(), 0));
            }
            let take = (*left).min(n);
            *left -= take;
            n -= take;
            self.since_report += take;
            if let Some(c) = self.current.as_mut() {
                c.1 += take as u64;
            }
            if *left == 0 {
                self.queue.pop_front();
            }
        }
        if let Some((item, samples)) = &self.current {
            if self.queue.is_empty() && self.done.iter().any(|d| d == item) {
                msgs.push(played(item, *samples, "drained"));
                self.done.retain(|d| d != item);
                self.current = None;
                self.since_report = 0;
            } else if self.since_report >= 2400 {
                msgs.push(played(item, *samples, "playing"));
                self.since_report = 0;
            }
        }
        msgs
    }

    /// Barge-in: drop what is queued, report the position reached.
    fn flush(&mut self) -> Option<String> {
        self.queue.clear();
        self.since_report = 0;
        let (item, samples) = self.current.take()?;
        Some(played(&item, samples, "flushed"))
    }
}

fn played(item: &str, samples: u64, state: &str) -> String {
    format!(r#"{{"type":"played","item_id":"{item}","samples":{samples},"state":"{state}"}}"#)
}

/// Where the answers' stretch happened: the rate of the same answers at the app (their
/// audio read from the provider socket) next to the page's, and the span the path from
/// the app's provider socket to the page added.
struct Stretch {
    /// Answers of the window the app also saw.
    matched: usize,
    app_min: f64,
    app_p1: f64,
    /// The page's slowest answer: its rate at the page and at the app.
    slowest_page: f64,
    slowest_app: f64,
    /// Page span minus app span per answer (ms): p50, p99, max.
    path_ms: (f64, f64, f64),
    /// The slowest page answer's audio (ms) and how far its last frame arrived behind
    /// real time (arrival span minus audio, ms).
    slowest_audio_ms: f64,
    slowest_behind_ms: f64,
    /// The most any answer fell behind real time (ms), at the page and at the app.
    max_behind_page_ms: f64,
    max_behind_app_ms: f64,
}

impl Stretch {
    fn of(page: &[&GenAnswer], app: &std::collections::HashMap<String, AppAnswer>) -> Stretch {
        let rate = |a: &AppAnswer| {
            a.audio_us as f64 / ((a.last_ns - a.first_ns) as f64 / 1000.0 + a.last_dur_us as f64)
        };
        let behind = |audio_us: u64, rate: f64| audio_us as f64 / 1000.0 * (1.0 / rate - 1.0);
        let mut app_rates = Vec::new();
        let mut path: Vec<f64> = Vec::new();
        let (mut max_behind_page_ms, mut max_behind_app_ms) = (f64::NAN, f64::NAN);
        for g in page {
            max_behind_page_ms = max_behind_page_ms.max(behind(g.audio_us, g.rate));
            if let Some(a) = app.get(&*g.item) {
                max_behind_app_ms = max_behind_app_ms.max(behind(a.audio_us, rate(a)));
                app_rates.push(rate(a));
                let page_span = (g.last_ns - g.first_ns) as f64;
                let app_span = (a.last_ns - a.first_ns) as f64;
                path.push((page_span - app_span) / 1e6);
            }
        }
        app_rates.sort_by(f64::total_cmp);
        path.sort_by(f64::total_cmp);
        let at = |v: &[f64], q: f64| {
            v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)))
                .copied()
                .unwrap_or(f64::NAN)
        };
        let slowest = page.first();
        Stretch {
            matched: app_rates.len(),
            app_min: app_rates.first().copied().unwrap_or(f64::NAN),
            app_p1: at(&app_rates, 0.01),
            slowest_page: slowest.map_or(f64::NAN, |g| g.rate),
            slowest_app: slowest
                .and_then(|g| app.get(&*g.item))
                .map_or(f64::NAN, rate),
            path_ms: (
                at(&path, 0.5),
                at(&path, 0.99),
                path.last().copied().unwrap_or(f64::NAN),
            ),
            slowest_audio_ms: slowest.map_or(f64::NAN, |g| g.audio_us as f64 / 1000.0),
            slowest_behind_ms: slowest.map_or(f64::NAN, |g| behind(g.audio_us, g.rate)),
            max_behind_page_ms,
            max_behind_app_ms,
        }
    }
}

impl std::fmt::Display for Stretch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "app_min_answer_rate={:.3}x app_p1_answer_rate={:.3}x slowest_answer={:.3}x@page/{:.3}x@app \
             slowest_answer_audio_ms={:.0} behind_ms={:.1} max_behind_ms={:.1}@page/{:.1}@app \
             page_path_stretch_p50_ms={:.1} p99_ms={:.1} max_ms={:.1} matched={}",
            self.app_min,
            self.app_p1,
            self.slowest_page,
            self.slowest_app,
            self.slowest_audio_ms,
            self.slowest_behind_ms,
            self.max_behind_page_ms,
            self.max_behind_app_ms,
            self.path_ms.0,
            self.path_ms.1,
            self.path_ms.2,
            self.matched
        )
    }
}

/// The figures of one run.
struct Figures {
    line: String,
    realtime: bool,
}

/// Runs the app child pinned to `app_cpu`, the server and the generator on `load_cpus`.
async fn run_one(
    server_bin: &std::path::Path,
    sessions: usize,
    secs: u64,
    app_cpu: usize,
    load_cpus: &[usize],
    nagle: bool,
) -> anyhow::Result<Figures> {
    let server = ServerProcess::start(server_bin, &["--workers".into(), "1".into()])?;
    let mut app = AppProcess::start(&server.openai_url, sessions, app_cpu, nagle)?;
    let url = format!("ws://{}/ws", app.addr);

    let pattern: Arc<Vec<bytes::Bytes>> = Arc::new(
        speech_pattern(1500)
            .iter()
            .map(|c| {
                let mut b = Vec::with_capacity(FRAME * 2);
                c.iter().for_each(|s| b.extend_from_slice(&s.to_le_bytes()));
                bytes::Bytes::from(b)
            })
            .collect(),
    );
    let stats = Rc::new(RefCell::new(GenStats::default()));
    // Connect over ~2 s; every page's schedule starts 3 s after its connection (time for
    // the provider session to open), spread over 20 ms so that pages are not in phase.
    let start_ns = mono_ns();
    let ramp_ns = 2_000_000_000u64;
    let warmup = Duration::from_secs(4);
    let first_t0 = start_ns + ramp_ns + 3_000_000_000;
    let window_start_ns = first_t0 + warmup.as_nanos() as u64;
    let window_start = instant_at(window_start_ns);
    let end_ns = first_t0 + warmup.as_nanos() as u64 + secs * 1_000_000_000 + 500_000_000;
    let mut tasks = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let connect_at = start_ns + ramp_ns * i as u64 / sessions.max(1) as u64;
        let t0 = first_t0 + (i as u64 % 20) * 1_000_000;
        let (url, pattern, stats) = (url.clone(), pattern.clone(), stats.clone());
        tasks.push(actix::spawn(async move {
            tokio::time::sleep_until(instant_at(connect_at).into()).await;
            page(url, t0, end_ns, pattern, i * 7, stats, nagle).await;
        }));
    }
    tokio::time::sleep_until(window_start.into()).await;
    let rates0 = server.answer_rates().await;
    app.command("mark")?;
    let (g0, a0, s0) = (
        cpu_time(None),
        cpu_time(Some(app.pid())),
        cpu_time(Some(server.pid())),
    );
    let j0 = cpu_jiffies();
    let (ticks0, late0) = {
        let s = stats.borrow();
        (s.ticks, s.late_ticks)
    };
    let m0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let wall = m0.elapsed().as_secs_f64();
    let (g1, a1, s1) = (
        cpu_time(None),
        cpu_time(Some(app.pid())),
        cpu_time(Some(server.pid())),
    );
    let j1 = cpu_jiffies();
    let (app_line, app_answers) = app.report()?;
    let window_end_ns = mono_ns();
    let server_rates = match (server.answer_rates().await, rates0) {
        (Some(r1), Some(r0)) => r1.since(&r0).fields(),
        _ => "server_rates=unavailable".to_owned(),
    };
    let (ticks, late) = {
        let s = stats.borrow();
        (s.ticks - ticks0, s.late_ticks - late0)
    };
    for t in tasks {
        let _ = t.await;
    }
    drop(app);
    drop(server);

    let s = stats.borrow();
    let mut in_window: Vec<&GenAnswer> = s
        .answers
        .iter()
        .filter(|a| a.first_ns >= window_start_ns && a.last_ns <= window_end_ns)
        .collect();
    in_window.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    let ratios: Vec<f64> = in_window.iter().map(|a| a.rate).collect();
    let min_rate = ratios.first().copied().unwrap_or(0.0);
    let p1_rate = ratios.get(ratios.len() / 100).copied().unwrap_or(0.0);
    let stretch = Stretch::of(&in_window, &app_answers);
    let field = |name: &str| -> u64 {
        app_line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(u64::MAX)
    };
    let ms = |name: &str| field(name) as f64 / 1000.0;
    let app_p99_ms = ms("app_p99_us");
    let gen_p99_ms = ms("gen_p99_us");
    let app_cpu_s = (a1 - a0).as_secs_f64();
    let app_cpu_pct = app_cpu_s * 100.0 / wall;
    let frames = field("lag_n").max(1) as f64;
    let csw_per_frame = (field("vcsw") + field("ivcsw")) as f64 / frames;
    let (busy_app, busy_load) = (
        core_busy(&j0, &j1, app_cpu),
        load_cpus
            .iter()
            .map(|&c| core_busy(&j0, &j1, c))
            .fold(0.0, f64::max),
    );
    let gen_late_pct = late as f64 * 100.0 / ticks.max(1) as f64;
    // The load side (generator + server) kept its schedule: otherwise the app was fed
    // bunched frames and the run says so, whatever the app's own figures.
    let load_ok = gen_p99_ms <= 20.0 && field("unstamped") == 0;
    let realtime = app_p99_ms <= 20.0 && min_rate >= 0.98 && !ratios.is_empty() && s.failed == 0;
    let verdict = match (realtime, load_ok) {
        (true, true) => "yes",
        (true, false) => "yes(load-side-late)",
        (false, true) => "NO",
        (false, false) => "NO(load-side-late)",
    };
    let line = format!(
        "RESULT transport-scale N={sessions} ({wall:.0} s measured) realtime={verdict} \
         app_lag_p50_ms={:.2} p99_ms={app_p99_ms:.2} max_ms={:.1} \
         gen_lag_p50_ms={:.2} p99_ms={gen_p99_ms:.2} max_ms={:.1} \
         send_lag_p50_ms={:.2} p99_ms={:.2} max_ms={:.1} \
         in_app_p50_ms={:.3} p99_ms={:.3} max_ms={:.1} lag_n={} unstamped={} \
         out_p50_ms={:.3} out_p99_ms={:.3} out_max_ms={:.1} \
         min_answer_rate={min_rate:.3}x p1_answer_rate={p1_rate:.3}x answers={} failed={} \
         {stretch} {server_rates} \
         app_cpu={app_cpu_pct:.0}%(cpu{app_cpu}) app_cpu_us_per_session_s={:.0} \
         app_csw_per_frame={csw_per_frame:.3} \
         core{app_cpu}_busy={busy_app:.0}% load_core_busy={busy_load:.0}%(cpus{load_cpus:?}) \
         generator_cpu={:.0}% server_cpu={:.0}% generator_late_ticks={gen_late_pct:.2}% loadavg={}",
        ms("app_p50_us"),
        ms("app_max_us"),
        ms("gen_p50_us"),
        ms("gen_max_us"),
        ms("lag_p50_us"),
        ms("lag_p99_us"),
        ms("lag_max_us"),
        ms("inproc_p50_us"),
        ms("inproc_p99_us"),
        ms("inproc_max_us"),
        field("lag_n"),
        field("unstamped"),
        ms("out_p50_us"),
        ms("out_p99_us"),
        ms("out_max_us"),
        ratios.len(),
        s.failed,
        app_cpu_s * 1e6 / (sessions.max(1) as f64 * wall),
        (g1 - g0).as_secs_f64() * 100.0 / wall,
        (s1 - s0).as_secs_f64() * 100.0 / wall,
        crate::common::loadavg(),
    );
    let mut opens = s.open_vs_t0_ms.clone();
    opens.sort_unstable();
    out(format!(
        "(provider sessions open vs schedule start, ms: min {:?} median {:?} max {:?}; {} of {sessions} opened)",
        opens.first(),
        opens.get(opens.len() / 2),
        opens.last(),
        opens.len()
    ));
    if !s.failures.is_empty() {
        out(format!("(first failures: {:?})", s.failures));
    }
    Ok(Figures { line, realtime })
}

/// `transport-scale`: one run per N (each with fresh processes), then the largest N that
/// kept real time.
pub async fn run(
    server_bin: PathBuf,
    sessions: Vec<usize>,
    secs: u64,
    app_cpu: usize,
    load_cpus: String,
    nagle: bool,
) -> anyhow::Result<()> {
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load = cpu_list(&load_cpus);
    if ncpu < 2 || load.is_empty() || load.contains(&app_cpu) || load.iter().any(|&c| c >= ncpu) {
        bail!("need the app on its own core: --app-cpu {app_cpu} --load-cpus {load_cpus} on {ncpu} CPUs");
    }
    pin_to(&load)?;
    let mut best = None;
    for n in sessions {
        let f = run_one(&server_bin, n, secs, app_cpu, &load, nagle).await?;
        out(&f.line);
        if f.realtime {
            best = Some(best.map_or(n, |b: usize| b.max(n)));
        }
    }
    out(format!(
        "RESULT transport-scale largest real-time N tried: {}",
        best.map_or("none".to_string(), |n| n.to_string())
    ));
    Ok(())
}

/// The app under test as a child process.
struct AppProcess {
    child: Child,
    addr: String,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl AppProcess {
    fn start(provider_url: &str, sessions: usize, cpu: usize, nagle: bool) -> anyhow::Result<Self> {
        // `TRANSPORT_APP_WRAP="valgrind --tool=callgrind"` runs the app under a profiler
        // (instruction counts do not depend on the machine's load); `TRANSPORT_APP_BIN`
        // runs another build's app against this generator (before/after comparisons).
        let wrap = std::env::var("TRANSPORT_APP_WRAP").unwrap_or_default();
        let mut wrap = wrap.split_whitespace();
        let exe = match std::env::var_os("TRANSPORT_APP_BIN") {
            Some(bin) => PathBuf::from(bin),
            None => std::env::current_exe()?,
        };
        let mut command = match wrap.next() {
            Some(tool) => {
                let mut c = Command::new(tool);
                c.args(wrap).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let mut child = command
            .args(["transport-app", "--provider-url", provider_url])
            .args([
                "--sessions",
                &sessions.to_string(),
                "--cpu",
                &cpu.to_string(),
            ])
            .args(nagle.then_some("--nagle"))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the app process")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let Some(line) = lines.next() else {
                bail!("the app exited before printing its address");
            };
            let line = line?;
            if let Some(rest) = line.strip_prefix("listening on ") {
                break rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            }
        };
        Ok(AppProcess { child, addr, lines })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn command(&mut self, cmd: &str) -> anyhow::Result<()> {
        let stdin = self.child.stdin.as_mut().context("no stdin")?;
        writeln!(stdin, "{cmd}")?;
        stdin.flush()?;
        Ok(())
    }

    /// Ends the window; the app's `APP ...` line and its answers by item id (its
    /// `ITEM ...` lines).
    fn report(&mut self) -> anyhow::Result<(String, std::collections::HashMap<String, AppAnswer>)> {
        self.command("report")?;
        let mut answers = std::collections::HashMap::new();
        for line in self.lines.by_ref() {
            let line = line?;
            if line.starts_with("APP ") {
                return Ok((line, answers));
            }
            if let Some(rest) = line.strip_prefix("ITEM ") {
                let f: Vec<&str> = rest.splitn(5, ' ').collect();
                let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
                if let (
                    Some(audio_us),
                    Some(first_ns),
                    Some(last_ns),
                    Some(last_dur_us),
                    Some(id),
                ) = (n(0), n(1), n(2), n(3), f.get(4))
                {
                    answers.insert(
                        (*id).to_owned(),
                        AppAnswer {
                            audio_us,
                            first_ns,
                            last_ns,
                            last_dur_us,
                        },
                    );
                }
            }
        }
        bail!("the app exited without a report")
    }
}

impl Drop for AppProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
