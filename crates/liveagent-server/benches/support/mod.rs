//! What the server's memory benchmarks (`churn`, `sessions`) share: the `liveagent-server`
//! child process they measure, its resident memory read from `/proc`, a sampler of its peak,
//! and its `GET /debug/stats` counters.
//!
//! Not a benchmark itself: each bench includes it with `#[path = "support/mod.rs"] mod support;`.

#![allow(dead_code)] // each bench uses a different part

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

/// A numeric environment variable, or `default`.
pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The machine's load average, as `/proc/loadavg` has it.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// A `liveagent-server` child process on a free loopback port, killed when dropped.
pub struct Server {
    child: Child,
    /// Its process id (for `/proc`).
    pub pid: u32,
    /// The address it listens on.
    pub addr: SocketAddr,
}

impl Server {
    /// Starts `bin` (the release binary of this crate unless `SERVER_BIN` names another
    /// build, e.g. an older one for a before/after) with `--port 0` and `args`, logging errors
    /// only. Its stdout is drained so that the server never blocks on a full pipe.
    pub fn start(args: &[&str]) -> Server {
        let bin = std::env::var("SERVER_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_liveagent-server").to_owned());
        let mut child = Command::new(bin)
            .args(["--port", "0"])
            .args(args)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start liveagent-server");
        let pid = child.id();
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("the server's banner");
        let addr: SocketAddr = line
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in the server's banner {line:?}"));
        std::thread::spawn(move || {
            let mut sink = String::new();
            while out.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        Server { child, pid, addr }
    }

    /// Its resident memory now.
    pub fn memory(&self) -> Memory {
        Memory::of(self.pid)
    }

    /// `GET /debug/stats` (`Value::Null` if it cannot be read).
    pub async fn stats(&self) -> Value {
        let (_, body) = crate::raw::http(self.addr, "GET", "/debug/stats", &[]).await;
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }

    /// Where its resident memory is now.
    pub fn breakdown(&self) -> Breakdown {
        Breakdown::of(self.pid)
    }

    /// Starts sampling its RSS every 50 ms; [`PeakSampler::stop`] gives the highest seen.
    pub fn sample_peak(&self) -> PeakSampler {
        PeakSampler::start(self.pid)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process's resident memory, from `/proc/PID/status`, in KiB: the total and its two
/// parts — anonymous memory (heap, thread stacks) and file-backed pages (the binary's code
/// and read-only data, paged in as code paths are first run).
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// VmRSS.
    pub rss: u64,
    /// RssAnon.
    pub anon: u64,
    /// RssFile.
    pub file: u64,
}

impl Memory {
    /// Reads `/proc/PID/status` (zeros if the process is gone).
    pub fn of(pid: u32) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        Memory {
            rss: field("VmRSS:"),
            anon: field("RssAnon:"),
            file: field("RssFile:"),
        }
    }
}

/// Where a process's resident memory is, from `/proc/PID/smaps`, in KiB: glibc's main
/// heap (`[heap]`, grown with `brk`), its other arenas (the per-thread heaps: anonymous
/// mappings aligned to their 64 MiB reservation), the rest of the anonymous memory (thread
/// stacks, large allocations mapped on their own), and file-backed pages (code, read-only
/// data, libraries).
#[derive(Clone, Copy, Debug, Default)]
pub struct Breakdown {
    /// `[heap]`: glibc's main arena.
    pub main_heap: u64,
    /// glibc's other arenas (one per thread that allocated, up to its limit).
    pub arenas: u64,
    /// Every other anonymous mapping: stacks, mmapped allocations.
    pub other_anon: u64,
    /// File-backed pages.
    pub file: u64,
}

impl Breakdown {
    /// Reads `/proc/PID/smaps` (zeros if it cannot be read).
    pub fn of(pid: u32) -> Breakdown {
        const ARENA: u64 = 64 << 20;
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
        let mut b = Breakdown::default();
        let mut kind = 0u8;
        for line in smaps.lines() {
            let mut parts = line.split_whitespace();
            let first = parts.next().unwrap_or("");
            if let Some((lo, hi)) = first.split_once('-') {
                if let (Ok(lo), Ok(hi)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16))
                {
                    let path = parts.nth(4).unwrap_or("");
                    kind = match path {
                        "[heap]" => 1,
                        "" if lo % ARENA == 0 && hi - lo <= ARENA => 2,
                        "" | "[stack]" => 3,
                        p if p.starts_with('[') => 3,
                        _ => 4,
                    };
                    continue;
                }
            }
            if first == "Rss:" {
                let kib: u64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                match kind {
                    1 => b.main_heap += kib,
                    2 => b.arenas += kib,
                    3 => b.other_anon += kib,
                    _ => b.file += kib,
                }
            }
        }
        b
    }
}

/// Samples a process's RSS in the background and keeps the peak.
pub struct PeakSampler {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakSampler {
    fn start(pid: u32) -> PeakSampler {
        let peak = Arc::new(AtomicU64::new(0));
        let task = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    peak.fetch_max(Memory::of(pid).rss, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        PeakSampler { peak, task }
    }

    /// Stops sampling; the highest RSS seen, in KiB.
    pub fn stop(self) -> u64 {
        self.task.abort();
        self.peak.load(Ordering::Relaxed)
    }
}

/// A byte count from the stats as KiB (`-` where the allocator reports none).
pub fn kib(v: &Value) -> String {
    v.as_u64().map_or("-".into(), |b| (b / 1024).to_string())
}
