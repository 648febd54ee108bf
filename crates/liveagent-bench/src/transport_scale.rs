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
//! `params`; the app's agent factory gives that conversation an event middleware that
//! measures, for frame k, the time from its scheduled send (t0 + k x 20 ms) to its command
//! reaching the provider session's protocol (just before JSON encoding and the provider
//! socket write). Both processes read the same system-wide monotonic clock, so this **send
//! lag** includes everything between the page and the provider socket: the generator's own
//! lateness, the kernel, the app's socket reads, decoding, the bus and the session.
//!
//! Real time for a run means all of: send lag p99 <= 20 ms (one frame); every answer's
//! audio reached the page at >= 0.95x real time (duration / arrival span, answers that
//! started in the measured window); no page failed; and the generator kept its own
//! schedule (otherwise the run measured the generator, and says so).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpServer};
use anyhow::{bail, Context as _};
use futures_util::{SinkExt as _, StreamExt as _};
use liveagent::{EventMiddleware, LiveError, SessionCommand, SessionOptions};
use liveagent_transport::{AgentSource, BrowserTransport, Limits};

use crate::common::{cpu_time, out, percentiles, speech_pattern, ServerProcess};

/// 20 ms at 24 kHz.
const FRAME: usize = 480;
const FRAME_NS: u64 = 20_000_000;

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

fn cpu_list(s: &str) -> Vec<usize> {
    s.split(',').filter_map(|c| c.trim().parse().ok()).collect()
}

// ------------------------------------------------------------------ the app under test

/// Measures each audio frame's lag behind its schedule at the provider session's protocol.
struct SendLag {
    t0_ns: u64,
    frames: AtomicU64,
    shared: Arc<AppStats>,
}

#[derive(Default)]
struct AppStats {
    measuring: AtomicBool,
    lags_us: Mutex<Vec<u32>>,
}

impl EventMiddleware for SendLag {
    fn on_command(&self, command: SessionCommand) -> Option<SessionCommand> {
        if let SessionCommand::Audio(_) = &command {
            let k = self.frames.fetch_add(1, Ordering::Relaxed);
            if self.shared.measuring.load(Ordering::Relaxed) {
                let due = self.t0_ns + k * FRAME_NS;
                let lag = mono_ns().saturating_sub(due) / 1000;
                if let Ok(mut l) = self.shared.lags_us.lock() {
                    l.push(lag.min(u32::MAX as u64) as u32);
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
    // Until stdin closes: `mark` starts the window, `report` ends it and prints the figures.
    while let Some(cmd) = rx.recv().await {
        match cmd.as_str() {
            "mark" => {
                stats.lags_us.lock().unwrap().clear();
                out_mark = transport.audio_out_latency().recorded();
                cpu0 = (Instant::now(), cpu_time(None));
                stats.measuring.store(true, Ordering::Relaxed);
            }
            "report" => {
                stats.measuring.store(false, Ordering::Relaxed);
                let wall = cpu0.0.elapsed().as_secs_f64();
                let cpu = (cpu_time(None) - cpu0.1).as_secs_f64();
                let mut lags = std::mem::take(&mut *stats.lags_us.lock().unwrap());
                // The out samples recorded since `mark` (once the transport's ring of the
                // most recent 100,000 wrapped: those, which are the window's last seconds).
                let all = transport.audio_out_latency();
                let mut outl: Vec<u32> = if all.recorded() == all.micros().len() as u64 {
                    all.micros()[out_mark as usize..].to_vec()
                } else {
                    all.micros().to_vec()
                };
                let (l50, l99, lmax) = percentiles(&mut lags);
                let (o50, o99, omax) = percentiles(&mut outl);
                out(format!(
                    "APP lag_n={} lag_p50_us={l50} lag_p99_us={l99} lag_max_us={lmax} out_n={} out_p50_us={o50} out_p99_us={o99} out_max_us={omax} cpu_pct={:.1} conversations={}",
                    lags.len(),
                    outl.len(),
                    cpu * 100.0 / wall.max(1e-9),
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

/// Answer audio arrival per item, for the answer-rate criterion.
#[derive(Default)]
struct Arrival {
    item: Option<Rc<str>>,
    first: Option<Instant>,
    last: Option<Instant>,
    last_dur: Duration,
    audio: Duration,
}

#[derive(Default)]
struct GenStats {
    /// (first arrival, ratio) per answer of >= 400 ms.
    answers: Vec<(Instant, Instant, f64)>,
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
        if let (Some(first), Some(last)) = (self.first, self.last) {
            if self.audio >= Duration::from_millis(400) {
                let span = last.duration_since(first) + self.last_dur;
                stats
                    .answers
                    .push((first, last, self.audio.as_secs_f64() / span.as_secs_f64()));
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
) {
    let fail = |why: String| {
        let mut s = stats.borrow_mut();
        s.failed += 1;
        if s.failures.len() < 5 {
            s.failures.push(why);
        }
    };
    let connect = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
        .ws(url)
        .max_frame_size(1 << 20)
        .connect();
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
                let frame = pattern[(offset + k) % pattern.len()].clone();
                k += 1;
                if ws.send(awc::ws::Message::Binary(frame)).await.is_err() {
                    return fail("send".into());
                }
                // Play 20 ms; report like the page's worklet.
                for msg in play.tick(FRAME) {
                    stats.borrow_mut().played_reports += 1;
                    if ws.send(awc::ws::Message::Text(msg.into())).await.is_err() {
                        return fail("send played".into());
                    }
                }
            }
            frame = ws.next() => match frame {
                Some(Ok(awc::ws::Frame::Binary(b))) => {
                    let samples = b.len() / 2;
                    stats.borrow_mut().audio_in_samples += samples as u64;
                    let item = current_item.clone().unwrap_or_else(|| Rc::from(""));
                    let now = Instant::now();
                    if arrival.item.as_deref() != Some(&*item) {
                        arrival.close(&mut stats.borrow_mut());
                        arrival.item = Some(item.clone());
                    }
                    let d = Duration::from_micros(samples as u64 * 1_000_000 / 24_000);
                    arrival.first.get_or_insert(now);
                    arrival.last = Some(now);
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
                    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&t) else { continue };
                    match v["type"].as_str() {
                        Some("audio") => {
                            current_item = v["item_id"].as_str().map(Rc::from);
                        }
                        Some("audio_done") => {
                            if let Some(i) = v["item_id"].as_str() { play.done.push(Rc::from(i)); }
                            arrival.close(&mut stats.borrow_mut());
                        }
                        Some("interrupted") => {
                            arrival.close(&mut stats.borrow_mut());
                            if let Some(msg) = play.flush() {
                                let _ = ws.send(awc::ws::Message::Text(msg.into())).await;
                            }
                        }
                        Some("error") => { ended = true; fail(format!("error: {v}")); break; }
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
) -> anyhow::Result<Figures> {
    let server = ServerProcess::start(server_bin, &["--workers".into(), "1".into()])?;
    let mut app = AppProcess::start(&server.openai_url, sessions, app_cpu)?;
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
    let window_start = instant_at(first_t0) + warmup;
    let end_ns = first_t0 + warmup.as_nanos() as u64 + secs * 1_000_000_000 + 500_000_000;
    let mut tasks = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let connect_at = start_ns + ramp_ns * i as u64 / sessions.max(1) as u64;
        let t0 = first_t0 + (i as u64 % 20) * 1_000_000;
        let (url, pattern, stats) = (url.clone(), pattern.clone(), stats.clone());
        tasks.push(actix::spawn(async move {
            tokio::time::sleep_until(instant_at(connect_at).into()).await;
            page(url, t0, end_ns, pattern, i * 7, stats).await;
        }));
    }
    tokio::time::sleep_until(window_start.into()).await;
    app.command("mark")?;
    let (g0, a0, s0) = (
        cpu_time(None),
        cpu_time(Some(app.pid())),
        cpu_time(Some(server.pid())),
    );
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
    let app_line = app.report()?;
    let window_end = Instant::now();
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
    let mut ratios: Vec<f64> = s
        .answers
        .iter()
        .filter(|(first, last, _)| *first >= window_start && *last <= window_end)
        .map(|(_, _, r)| *r)
        .collect();
    ratios.sort_by(|a, b| a.total_cmp(b));
    let min_rate = ratios.first().copied().unwrap_or(0.0);
    let p1_rate = ratios.get(ratios.len() / 100).copied().unwrap_or(0.0);
    let field = |name: &str| -> u64 {
        app_line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(u64::MAX)
    };
    let lag_p99_ms = field("lag_p99_us") as f64 / 1000.0;
    let app_cpu_pct = (a1 - a0).as_secs_f64() * 100.0 / wall;
    let gen_late_pct = late as f64 * 100.0 / ticks.max(1) as f64;
    let generator_ok = gen_late_pct < 1.0;
    let realtime = lag_p99_ms <= 20.0 && min_rate >= 0.95 && !ratios.is_empty() && s.failed == 0;
    let verdict = match (realtime, generator_ok) {
        (true, _) => "yes",
        (false, true) => "NO",
        (false, false) => "NO(generator-late)",
    };
    let line = format!(
        "RESULT transport-scale N={sessions} ({wall:.0} s measured) realtime={verdict} app_cpu={app_cpu_pct:.0}%(cpu{app_cpu}) send_lag_p50_ms={:.2} p99_ms={lag_p99_ms:.2} max_ms={:.1} lag_n={} out_p50_ms={:.3} out_p99_ms={:.3} out_max_ms={:.1} min_answer_rate={min_rate:.3}x p1_answer_rate={p1_rate:.3}x answers={} failed={} generator_cpu={:.0}% server_cpu={:.0}%(cpus{load_cpus:?}) generator_late_ticks={gen_late_pct:.2}% loadavg={}",
        field("lag_p50_us") as f64 / 1000.0,
        field("lag_max_us") as f64 / 1000.0,
        field("lag_n"),
        field("out_p50_us") as f64 / 1000.0,
        field("out_p99_us") as f64 / 1000.0,
        field("out_max_us") as f64 / 1000.0,
        ratios.len(),
        s.failed,
        (g1 - g0).as_secs_f64() * 100.0 / wall,
        (s1 - s0).as_secs_f64() * 100.0 / wall,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join("/"),
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
) -> anyhow::Result<()> {
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load = cpu_list(&load_cpus);
    if ncpu < 2 || load.is_empty() || load.contains(&app_cpu) || load.iter().any(|&c| c >= ncpu) {
        bail!("need the app on its own core: --app-cpu {app_cpu} --load-cpus {load_cpus} on {ncpu} CPUs");
    }
    pin_to(&load)?;
    let mut best = None;
    for n in sessions {
        let f = run_one(&server_bin, n, secs, app_cpu, &load).await?;
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
    fn start(provider_url: &str, sessions: usize, cpu: usize) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["transport-app", "--provider-url", provider_url])
            .args([
                "--sessions",
                &sessions.to_string(),
                "--cpu",
                &cpu.to_string(),
            ])
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

    /// Ends the window; the app's `APP ...` line.
    fn report(&mut self) -> anyhow::Result<String> {
        self.command("report")?;
        for line in self.lines.by_ref() {
            let line = line?;
            if line.starts_with("APP ") {
                return Ok(line);
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
