//! Pieces every benchmark shares: the server process, the agent, /proc readers, percentiles.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use liveagent::{openai, LiveAgent, SessionOptions};

/// A `liveagent-server` child process on 127.0.0.1 (a separate process, so that its CPU and
/// memory are measured apart from the client's).
pub struct ServerProcess {
    child: Child,
    /// `ws://127.0.0.1:PORT/v1`.
    pub openai_url: String,
}

impl ServerProcess {
    /// Starts the server binary with `args` (port 0 is added) and waits for its address.
    ///
    /// With `LIVEAGENT_BENCH_SERVER_CPUS` set (e.g. `0`), the server runs under
    /// `taskset -c` on those CPUs (bench.sh's capacity runs pin the client to another one).
    pub fn start(bin: &Path, args: &[String]) -> anyhow::Result<Self> {
        let mut command = match std::env::var("LIVEAGENT_BENCH_SERVER_CPUS") {
            Ok(cpus) if !cpus.is_empty() => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpus]).arg(bin);
                c
            }
            _ => Command::new(bin),
        };
        let mut child = command
            .args(["--port", "0"])
            // Every bench client comes from 127.0.0.1: the server's per-address connection
            // limit (1,024 by default) would cap the scale runs below their N.
            .args(["--max-connections-per-addr", "0"])
            .args(args)
            // Extra server arguments for debugging, e.g. `--record frames.jsonl`.
            .args(
                std::env::var("LIVEAGENT_BENCH_SERVER_ARGS")
                    .unwrap_or_default()
                    .split_whitespace(),
            )
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let Some(line) = lines.next() else {
                bail!("the server exited before printing its address");
            };
            let line = line?;
            if let Some(rest) = line.strip_prefix("liveagent-server listening on ") {
                break rest.trim().to_owned();
            }
        };
        // Keep draining its stdout so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(ServerProcess {
            child,
            openai_url: format!("ws://{addr}/v1"),
        })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl ServerProcess {
    /// The server's answer-rate histograms (`GET /debug/stats`): how fast it sent its
    /// answers' audio, as paced and as written. `None` when the server does not answer.
    pub async fn answer_rates(&self) -> Option<ServerRates> {
        let url = self
            .openai_url
            .replacen("ws://", "http://", 1)
            .trim_end_matches("/v1")
            .to_owned()
            + "/debug/stats";
        let mut resp = awc::Client::default().get(&url).send().await.ok()?;
        let v: serde_json::Value = resp.json().limit(4 << 20).await.ok()?;
        Some(ServerRates {
            paced: Rates::from_json(&v["answer_rate_paced"])?,
            written: Rates::from_json(&v["answer_rate_written"])?,
        })
    }
}

/// The local server's own timing of its answers, as paced (when a session queued each
/// audio delta) and as written (when its writer task handed it to the WebSocket): the
/// same rate formula as the clients' (audio duration / span of the deltas + the last
/// delta's duration), over completed answers of at least 400 ms. Set beside the client's
/// figure it tells whether the server sent the answers late or the client read them late.
#[derive(Clone, Debug, Default)]
pub struct ServerRates {
    pub paced: Rates,
    pub written: Rates,
}

impl ServerRates {
    /// The answers completed since `before` (a snapshot at the start of a window).
    pub fn since(&self, before: &ServerRates) -> ServerRates {
        ServerRates {
            paced: self.paced.since(&before.paced),
            written: self.written.since(&before.written),
        }
    }

    /// `server_paced_min_rate=… p1=… below_0.98=…` and the same for `written`.
    pub fn fields(&self) -> String {
        format!(
            "{} {}",
            self.paced.fields("server_paced"),
            self.written.fields("server_written")
        )
    }
}

/// One of the server's rate histograms (see `liveagent_server::AnswerRates`).
#[derive(Clone, Debug, Default)]
pub struct Rates {
    pub answers: u64,
    /// Exact for a histogram since the server's start; for a window, the lower bound of the
    /// slowest answer's 0.005-wide bucket.
    pub min_rate: f64,
    pub buckets: Vec<u64>,
}

impl Rates {
    fn from_json(v: &serde_json::Value) -> Option<Rates> {
        Some(Rates {
            answers: v["answers"].as_u64()?,
            min_rate: v["min_rate"].as_f64()?,
            buckets: v["buckets"]
                .as_array()?
                .iter()
                .map(|b| b.as_u64().unwrap_or(0))
                .collect(),
        })
    }

    /// The lower bound of bucket `i` (0.800 + 0.005 (i − 1); 0 for the first).
    fn floor(i: usize) -> f64 {
        if i == 0 {
            0.0
        } else {
            0.800 + 0.005 * (i - 1) as f64
        }
    }

    fn since(&self, before: &Rates) -> Rates {
        if before.answers == 0 {
            return self.clone();
        }
        let buckets: Vec<u64> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, b)| b.saturating_sub(before.buckets.get(i).copied().unwrap_or(0)))
            .collect();
        let min_rate = buckets
            .iter()
            .position(|b| *b > 0)
            .map_or(0.0, Rates::floor)
            .max(self.min_rate);
        Rates {
            answers: self.answers.saturating_sub(before.answers),
            min_rate,
            buckets,
        }
    }

    /// The bucket floor under which 1 % of the answers fall (0.005 resolution).
    pub fn p1(&self) -> f64 {
        let target = self.answers.div_ceil(100).max(1);
        let mut acc = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            acc += b;
            if acc >= target {
                return Rates::floor(i);
            }
        }
        0.0
    }

    /// Answers below 0.98× real time (the benchmarks' criterion).
    pub fn below_098(&self) -> u64 {
        // Buckets from 1 cover [0.800 + 0.005 (i − 1), + 0.005): below 0.98 are i ≤ 36.
        self.buckets.iter().take(37).sum()
    }

    fn fields(&self, name: &str) -> String {
        format!(
            "{name}_min_rate={:.3}x {name}_p1_rate={:.3}x {name}_below_0.98={} {name}_answers={}",
            self.min_rate,
            self.p1(),
            self.below_098(),
            self.answers
        )
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `liveagent-server` binary next to this one (same cargo target dir), unless given.
pub fn server_bin(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let exe = std::env::current_exe()?;
    let p = exe
        .parent()
        .context("no parent dir")?
        .join("liveagent-server");
    if !p.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p liveagent-server` or pass --server-bin",
            p.display()
        );
    }
    Ok(p)
}

/// Writes a scenario whose every turn says `audio_ms` of audio, and returns its path.
pub fn long_say_scenario(turns: usize, audio_ms: u64) -> anyhow::Result<PathBuf> {
    let mut toml = String::from("name = \"long-say\"\n");
    for _ in 0..turns {
        toml.push_str(&format!(
            "[[turn]]\nsteps = [{{ say = \"This is a long answer.\", audio_ms = {audio_ms} }}]\n"
        ));
    }
    let path = std::env::temp_dir().join(format!("liveagent-bench-{}.toml", std::process::id()));
    std::fs::write(&path, toml)?;
    Ok(path)
}

/// The agent every benchmark runs: the OpenAI Realtime GA protocol against `url`.
pub fn agent(url: &str, options: SessionOptions) -> anyhow::Result<LiveAgent> {
    Ok(LiveAgent::builder("bench")
        .prompt("You are a benchmark.")
        .config(
            openai::RealtimeConfig::new("gpt-realtime")
                .base_url(url)
                .api_key("local"),
        )
        .session_options(options)
        .build()?)
}

/// User and system CPU seconds of a process (this one for `None`), from /proc/PID/stat.
pub fn cpu_split(pid: Option<u32>) -> (f64, f64) {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".into(),
    };
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): utime is field 14, stime field 15.
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let hz = clock_ticks();
    (ticks(14) / hz, ticks(15) / hz)
}

/// CPU time (user + system) of a process, from /proc/PID/stat.
pub fn cpu_time(pid: Option<u32>) -> Duration {
    let (user, sys) = cpu_split(pid);
    Duration::from_secs_f64(user + sys)
}

/// The 1, 5 and 15 minute load averages as `a/b/c`, for RESULT lines.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join("/")
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions. (Was a `getconf` child process per reading,
    // whose fork landed inside the measured window.)
    match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        hz if hz > 0 => hz as f64,
        _ => 100.0,
    }
}

/// Resident memory of a process in bytes, from /proc/PID/status (VmRSS).
pub fn rss_bytes(pid: Option<u32>) -> u64 {
    status_bytes(pid, "VmRSS:")
}

/// The anonymous part of the resident memory (`RssAnon` in `/proc/PID/status`): heap,
/// stacks and other private memory, without the file-backed pages (the binary's code and
/// data paged in on first use, shared with every process that maps the same file). The
/// Python side by side reports the same field.
pub fn rss_anon_bytes(pid: Option<u32>) -> u64 {
    status_bytes(pid, "RssAnon:")
}

/// One `kB` field of `/proc/PID/status` (`/proc/self/status` for `None`), in bytes; 0 when
/// it cannot be read.
fn status_bytes(pid: Option<u32>, field: &str) -> u64 {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".into(),
    };
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// p50 / p99 / max of microsecond samples.
pub fn percentiles(us: &mut [u32]) -> (u32, u32, u32) {
    if us.is_empty() {
        return (0, 0, 0);
    }
    us.sort_unstable();
    let at = |p: f64| us[(((p / 100.0) * us.len() as f64).ceil() as usize).clamp(1, us.len()) - 1];
    (at(50.0), at(99.0), *us.last().unwrap())
}

/// Formats microseconds as milliseconds with 3 decimals.
pub fn ms(us: u32) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

/// The test sentence (about 1.8 s of espeak-ng speech); bench/python uses the same.
pub const SPEECH_TEXT: &str = "What is the weather like today?";

/// Test speech at 24 kHz, cut in 20 ms chunks, followed by `silence_ms` of silence; the
/// chunks are shared (`Arc`) so that every session sends the same buffers.
pub fn speech_pattern(silence_ms: u32) -> Vec<Arc<[i16]>> {
    let mut pcm = liveagent_testkit::speech_pcm(SPEECH_TEXT, 24_000);
    pcm.extend(liveagent_testkit::silence_pcm(silence_ms, 24_000));
    pcm.chunks(480)
        .map(|c| {
            let mut v = c.to_vec();
            v.resize(480, 0);
            Arc::from(v)
        })
        .collect()
}

/// Prints a line and flushes (figures appear as they are measured).
pub fn out(line: impl AsRef<str>) {
    use std::io::Write;
    println!("{}", line.as_ref());
    let _ = std::io::stdout().flush();
}
