//! `floor`: the cheapest client the scale workload allows, to tell what part of a client's
//! CPU the workload itself costs (system calls, wake-ups, the kernel's loopback TCP) from
//! what a library adds on top.
//!
//! Same workload as [`crate::scale`]: N OpenAI realtime WebSocket sessions against the local
//! server, one 20 ms microphone chunk per session every 20 ms, sessions spread over 20 slots
//! 1 ms apart, each at its own place in the same speech pattern, answers streamed back by
//! the server. What the floor leaves out is everything a real client must do besides the
//! syscalls, so its figure is a **lower bound**, not a competitor:
//!
//! - every frame is built once before the run and shared by all sessions:
//!   `input_audio_buffer.append` JSON, base64 and the WebSocket mask (one fixed key) are
//!   not paid per chunk, and no session holds audio of its own;
//! - received bytes are read into one scratch buffer and dropped: no WebSocket parse, no
//!   JSON, no base64 decode, no events;
//! - one thread, one `epoll` (mio), no tasks, no actors, no timers but `epoll_wait`'s
//!   timeout, and at most one write per chunk.
//!
//! The handshake and the `session.update` come from liveagent's own OpenAI protocol
//! ([`OpenAiProtocol::connect_request`], [`OpenAiProtocol::session_update`]), so the server
//! sees the same session as the scale client's. The HTTP upgrade and the frame header are
//! written by hand on purpose: a WebSocket library is exactly what the floor measures
//! without.

use std::io::{Read, Write};
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use liveagent::openai::{OpenAiProtocol, RealtimeConfig};
use liveagent::protocol::{RealtimeProtocol, SessionSetup};
use liveagent::Secret;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::common::{self, ServerProcess};

/// Sessions per 1 ms send slot: session `i` sends in slot `i % SLOTS`, as in the scale bench.
const SLOTS: usize = 20;

/// The figures of one floor run.
#[derive(Debug)]
pub struct FloorFigures {
    sessions: usize,
    secs: f64,
    cpu_s_per_session_min: f64,
    user_s_per_session_min: f64,
    sys_s_per_session_min: f64,
    cpu_util: f64,
    rss_per_session: f64,
    anon_per_session: f64,
    received_kib_per_session_s: f64,
    send_lag_p50_ms: f64,
    send_lag_p99_ms: f64,
    send_lag_max_ms: f64,
    short_writes: u64,
    silent_sessions: usize,
    failed_sessions: usize,
    /// The server's count and timing of the answers it sent, to set beside the scale run's.
    server_rates: Option<common::ServerRates>,
}

impl FloorFigures {
    /// Prints the `RESULT floor ...` line.
    pub fn print(&self) {
        common::out(format!(
            "RESULT floor N={} ({:.0} s measured): client_cpu_s/session-min={:.4} user={:.4} sys={:.4} client_cpu={:.1}% client_rss/session_KiB={:.1} client_anon/session_KiB={:.1} received_KiB/session-s={:.1} send_lag_p50_ms={:.2} p99_ms={:.2} max_ms={:.1} short_writes={} silent_sessions={} failed_sessions={} realtime={} {} loadavg={}",
            self.sessions,
            self.secs,
            self.cpu_s_per_session_min,
            self.user_s_per_session_min,
            self.sys_s_per_session_min,
            self.cpu_util * 100.0,
            self.rss_per_session / 1024.0,
            self.anon_per_session / 1024.0,
            self.received_kib_per_session_s,
            self.send_lag_p50_ms,
            self.send_lag_p99_ms,
            self.send_lag_max_ms,
            self.short_writes,
            self.silent_sessions,
            self.failed_sessions,
            if self.send_lag_p99_ms <= 20.0 && self.silent_sessions == 0 && self.failed_sessions == 0 {
                "yes"
            } else {
                "NO"
            },
            self.server_rates
                .as_ref()
                .map_or("server_rates=unavailable".to_owned(), |r| r.fields()),
            common::loadavg(),
        ));
    }
}

/// One connection: its socket, the frame bytes a short write left behind, and counters.
struct Conn {
    stream: TcpStream,
    pending: Vec<u8>,
    received: u64,
    closed: bool,
}

/// Runs the floor client against a fresh local server for `secs` seconds (after a 4 s
/// warm-up, like the scale bench). Blocks the calling thread.
pub fn run(server_bin: PathBuf, sessions: usize, secs: u64) -> anyhow::Result<FloorFigures> {
    let server = ServerProcess::start(&server_bin, &["--workers".into(), "1".into()])?;
    std::thread::sleep(Duration::from_millis(200));

    let config = RealtimeConfig::new("gpt-realtime")
        .base_url(&server.openai_url)
        .api_key("local");
    let protocol = OpenAiProtocol::new(
        config,
        SessionSetup {
            instructions: "You are a benchmark.".into(),
            tools: Vec::new(),
        },
        Secret::new("local"),
    );
    let request = protocol.connect_request()?;
    let update = serde_json::to_string(&protocol.session_update())?;

    // The frames of the speech pattern, once for every session.
    const MASK: [u8; 4] = [0x9e, 0x37, 0x79, 0xb9];
    let frames: Vec<Vec<u8>> = common::speech_pattern(3000)
        .iter()
        .map(|chunk| {
            let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
            let mut text = br#"{"type":"input_audio_buffer.append","audio":""#.to_vec();
            text.extend_from_slice(base64_simd::STANDARD.encode_to_string(&bytes).as_bytes());
            text.extend_from_slice(br#""}"#);
            masked_text_frame(&text, MASK)
        })
        .collect();

    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 64 * 1024];
    let mut lags: Vec<u32> = Vec::with_capacity(sessions * 50 * secs as usize);
    // Everything shared is allocated (and touched) by now: what grows from here is per session.
    scratch.fill(0);
    lags.resize(lags.capacity(), 0);
    lags.clear();
    let (rss0, anon0) = (common::rss_bytes(None), common::rss_anon_bytes(None));
    let mut conns = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let mut stream = handshake(&request.url, &request.headers, i)?;
        stream.write_all(&masked_text_frame(update.as_bytes(), MASK))?;
        stream.set_nonblocking(true)?;
        conns.push(Conn {
            stream: TcpStream::from_std(stream),
            pending: Vec::new(),
            received: 0,
            closed: false,
        });
    }

    let mut poll = Poll::new()?;
    for (i, c) in conns.iter_mut().enumerate() {
        poll.registry()
            .register(&mut c.stream, Token(i), Interest::READABLE)?;
    }
    let mut short_writes = 0u64;

    let t0 = Instant::now() + Duration::from_millis(50);
    let warm = t0 + Duration::from_secs(4);
    let stop_at = warm + Duration::from_secs(secs);
    let mut measuring = None;
    let mut m: usize = 0;
    loop {
        let scheduled = t0 + Duration::from_millis(m as u64);
        let now = Instant::now();
        if now >= scheduled {
            if scheduled >= stop_at {
                break;
            }
            if measuring.is_none() && scheduled >= warm {
                let received: u64 = conns.iter().map(|c| c.received).sum();
                measuring = Some((Instant::now(), common::cpu_split(None), received));
            }
            let (k, slot) = (m / SLOTS, m % SLOTS);
            for i in (slot..sessions).step_by(SLOTS) {
                let c = &mut conns[i];
                if c.closed {
                    continue;
                }
                let frame = &frames[(k + i * 7) % frames.len()];
                if send(c, frame)? {
                    short_writes += 1;
                }
                if measuring.is_some() {
                    lags.push(scheduled.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
            }
            m += 1;
            continue;
        }
        poll.poll(&mut events, Some(scheduled - now))?;
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            loop {
                match c.stream.read(&mut scratch) {
                    Ok(0) => {
                        c.closed = true;
                        break;
                    }
                    Ok(n) => c.received += n as u64,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        c.closed = true;
                        break;
                    }
                }
            }
        }
    }
    let (m0, (user0, sys0), received0) = measuring.expect("the run passes its warm-up");
    let wall = m0.elapsed().as_secs_f64();
    let (user1, sys1) = common::cpu_split(None);
    let (rss, anon) = (common::rss_bytes(None), common::rss_anon_bytes(None));
    let received: u64 = conns.iter().map(|c| c.received).sum::<u64>() - received0;
    let failed = conns.iter().filter(|c| c.closed).count();
    let silent = conns.iter().filter(|c| c.received < 64 * 1024).count();
    let server_rates = actix_rt::System::new().block_on(server.answer_rates());
    drop(conns);
    drop(server);

    let (p50, p99, max) = common::percentiles(&mut lags);
    let n = sessions as f64;
    let per_session_min = |s: f64| s / (n * wall / 60.0);
    let (user, sys) = (user1 - user0, sys1 - sys0);
    Ok(FloorFigures {
        sessions,
        secs: wall,
        cpu_s_per_session_min: per_session_min(user + sys),
        user_s_per_session_min: per_session_min(user),
        sys_s_per_session_min: per_session_min(sys),
        cpu_util: (user + sys) / wall,
        rss_per_session: rss.saturating_sub(rss0) as f64 / n,
        anon_per_session: anon.saturating_sub(anon0) as f64 / n,
        received_kib_per_session_s: received as f64 / 1024.0 / n / wall,
        send_lag_p50_ms: p50 as f64 / 1000.0,
        send_lag_p99_ms: p99 as f64 / 1000.0,
        send_lag_max_ms: max as f64 / 1000.0,
        short_writes,
        silent_sessions: silent,
        failed_sessions: failed,
        server_rates,
    })
}

/// Writes what a short write left behind, then `frame`; returns whether this write was
/// short (the rest waits for the next chunk, so frames stay whole and in order).
fn send(c: &mut Conn, frame: &[u8]) -> anyhow::Result<bool> {
    if !c.pending.is_empty() {
        let n = write_some(&mut c.stream, &c.pending)?;
        c.pending.drain(..n);
        if !c.pending.is_empty() {
            c.pending.extend_from_slice(frame);
            return Ok(true);
        }
    }
    let n = write_some(&mut c.stream, frame)?;
    if n < frame.len() {
        c.pending.extend_from_slice(&frame[n..]);
        return Ok(true);
    }
    Ok(false)
}

fn write_some(stream: &mut TcpStream, bytes: &[u8]) -> anyhow::Result<usize> {
    loop {
        match stream.write(bytes) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Opens a blocking TCP connection to `url` (`ws://host:port/path`) and performs the
/// WebSocket upgrade with `headers`; returns the stream positioned after the response
/// head (any frame bytes that came with it are dropped, like every other received byte).
fn handshake(
    url: &str,
    headers: &[(String, String)],
    i: usize,
) -> anyhow::Result<std::net::TcpStream> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| anyhow::anyhow!("the floor speaks plain ws:// only, not {url}"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr = host
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{host} does not resolve"))?;
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let key = base64_simd::STANDARD.encode_to_string((i as u128).to_le_bytes());
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 || got.len() > 16 * 1024 {
            anyhow::bail!("the server closed or sent no end of headers during the upgrade");
        }
        got.push(byte[0]);
    }
    if !got.starts_with(b"HTTP/1.1 101") {
        let line = String::from_utf8_lossy(&got);
        anyhow::bail!("upgrade refused: {}", line.lines().next().unwrap_or(""));
    }
    Ok(stream)
}

/// A final, masked client text frame carrying `payload` (RFC 6455 § 5.2).
fn masked_text_frame(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 14);
    f.push(0x81);
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(j, b)| b ^ mask[j % 4]));
    f
}
