//! `liveagent-server`: run the local realtime server from the command line.
//!
//! ```text
//! liveagent-server --port 8765 --brain echo
//! liveagent-server --brain script --scenario tests/scenarios/weather.toml --record frames.jsonl
//! ```

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use liveagent_server::{Brain, LocalServer, Pacing, Scenario, ServerConfig, VadConfig};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BrainArg {
    /// Echo the user's audio back.
    Echo,
    /// Follow the --scenario file.
    Script,
}

/// The liveagent local realtime server (OpenAI Realtime GA + Gemini Live on 127.0.0.1).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TCP port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 8765)]
    port: u16,
    /// Require this API key from clients.
    #[arg(long, env = "LIVEAGENT_SERVER_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Default brain.
    #[arg(long, value_enum, default_value_t = BrainArg::Echo)]
    brain: BrainArg,
    /// Scenario file (TOML, or JSON by extension) for --brain script. Also served as the
    /// named scenario "<file stem>" (URL prefix /s/<stem>/).
    #[arg(long)]
    scenario: Vec<PathBuf>,
    /// Response audio chunk length in ms (20..=100).
    #[arg(long, default_value_t = 40)]
    chunk_ms: u32,
    /// Send response audio as fast as possible instead of in real time.
    #[arg(long)]
    fast: bool,
    /// VAD silence that ends a turn, in ms.
    #[arg(long, default_value_t = 500)]
    silence_ms: u32,
    /// VAD threshold 0..1.
    #[arg(long, default_value_t = 0.5)]
    threshold: f32,
    /// Record every frame to this JSON-lines file.
    #[arg(long)]
    record: Option<PathBuf>,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Largest client frame accepted, in bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_frame_bytes: usize,
    /// Output bytes (frames and pongs) a client that does not read may let pile up before it
    /// is dropped.
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    max_backlog_bytes: usize,
    /// Uncommitted input audio a session may buffer, in ms.
    #[arg(long, default_value_t = 600_000)]
    max_input_audio_ms: u64,
    /// Close sessions that receive no client frame for this many seconds (0 = never).
    #[arg(long, default_value_t = 600)]
    idle_timeout_s: u64,
    /// Most open TCP connections per client address (0 = no limit).
    #[arg(long, default_value_t = 1024)]
    max_connections_per_addr: usize,
    /// Accept this Host header value besides the loopback names (repeatable; `*` = any).
    #[arg(long)]
    allowed_host: Vec<String>,
    /// Accept browser requests from this Origin, e.g. http://localhost:3000 (repeatable;
    /// `*` = any).
    #[arg(long)]
    allowed_origin: Vec<String>,
    /// How long to wait for a client's close frame after the server's, in ms.
    #[arg(long, default_value_t = 1000)]
    close_timeout_ms: u64,
    /// Closed sessions kept for GET /debug/sessions.
    #[arg(long, default_value_t = 64)]
    closed_sessions_kept: usize,
    /// Item text kept over all closed sessions, in bytes.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    closed_sessions_bytes: usize,
    /// Lifetime of a Gemini resumption handle, in seconds.
    #[arg(long, default_value_t = 7200)]
    resumption_ttl_s: u64,
    /// Bytes kept over all Gemini resumable states.
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    resumption_bytes: usize,
    /// Conversation audio each session keeps for conversation.item.retrieve, in ms (the
    /// newest audio item is always kept whole).
    #[arg(long, default_value_t = 4_000)]
    conversation_audio_ms: u64,
    /// After sessions close, hand the heap memory they freed back to the system (glibc
    /// malloc_trim) at most once per this many ms (0 = never). While it is on, the binary
    /// also runs with glibc's per-thread cache off (unless GLIBC_TUNABLES sets
    /// glibc.malloc.tcache_count), so that freed chunks can be handed back.
    #[arg(long, default_value_t = 1000)]
    trim_interval_ms: u64,
}

/// Makes glibc return freed memory to the system. By default its mmap threshold grows after
/// every large free (up to 32 MiB), after which the server's large transient buffers (multi-MiB
/// frames, audio appends, conversation snapshots) come from the heap arenas and stay resident
/// after they are freed: the churn benchmark showed RSS ratcheting up wave after wave although
/// nothing was kept. A fixed threshold keeps large buffers in their own mappings, which are
/// unmapped on free, and a trim threshold hands back freed heap tops.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only changes glibc's allocation policy. It is called once, first thing
    // in main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

/// The glibc tunable that turns the per-thread cache off.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const NO_TCACHE: &str = "glibc.malloc.tcache_count=0";

/// Set in the environment of the re-executed process, so that it is done once at most.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const REEXEC_MARK: &str = "LIVEAGENT_SERVER_NO_TCACHE";

/// Runs this binary again with glibc's per-thread cache (tcache) turned off, when trimming
/// is on and the environment does not already choose a tcache size.
///
/// The tcache keeps up to 7 freed chunks of each small size class on every thread, outside
/// the arenas, and counts them as in use: `malloc_trim` cannot release them nor the pages
/// they sit on. After a wave of sessions those chunks lie scattered over the pages the wave
/// made resident, and the churn benchmark measured them keeping RSS 10-14 % above its
/// baseline; with the cache off, freed chunks go straight back to the arenas, where the
/// trimmer releases whole free pages (docs/performance-server.md). glibc reads its tunables
/// only at process start, from `GLIBC_TUNABLES`, hence the re-execution (same process id,
/// arguments and descriptors). `GLIBC_TUNABLES=glibc.malloc.tcache_count=7` keeps glibc's
/// default. Returns the error when the binary cannot be executed again (it then runs with
/// the cache).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn reexec_without_tcache(trimming: bool) -> Option<std::io::Error> {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(REEXEC_MARK).is_some() {
        // No other thread exists yet.
        std::env::remove_var(REEXEC_MARK);
        return None;
    }
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if !trimming || tunables.contains("glibc.malloc.tcache_count") {
        return None;
    }
    let tunables = if tunables.is_empty() {
        NO_TCACHE.to_owned()
    } else {
        format!("{tunables}:{NO_TCACHE}")
    };
    let mut argv = std::env::args_os();
    let arg0 = argv.next().unwrap_or_else(|| "liveagent-server".into());
    // exec returns only on failure.
    Some(
        std::process::Command::new("/proc/self/exe")
            .arg0(arg0)
            .args(argv)
            .env("GLIBC_TUNABLES", tunables)
            .env(REEXEC_MARK, "1")
            .exec(),
    )
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn reexec_without_tcache(_trimming: bool) -> Option<std::io::Error> {
    None
}

/// Returns the free memory inside glibc's heaps to the system. Freeing only returns the top
/// of a heap; the free chunks between live ones stay resident. After a wave of sessions has
/// come and gone, their frames, items and buffers leave many such chunks behind: the churn
/// benchmark measured the heap's live bytes back at their baseline while RSS stayed well
/// above it (see docs/performance-server.md). `malloc_trim(0)` releases those pages
/// (`MADV_DONTNEED`); they are refaulted, zeroed, when used again.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() {
    // SAFETY: malloc_trim takes the arenas' locks itself and only releases free pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

/// Trims the heap at most every `every` when sessions have closed since the last trim. It
/// runs on the main thread, not on a server worker: a trim briefly holds each arena's lock
/// but never stalls a session's loop for longer than that.
async fn trimmer(server: &LocalServer, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut trimmed_at = 0;
    loop {
        tick.tick().await;
        let s = server.stats();
        let closed = s.sessions_total - s.sessions_active;
        if closed != trimmed_at {
            trimmed_at = closed;
            trim_heap();
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let reexec_failed = reexec_without_tcache(args.trim_interval_ms > 0);
    tune_allocator();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    if let Some(e) = reexec_failed {
        tracing::warn!(
            "cannot restart without glibc's thread cache ({e}); freed memory may stay resident"
        );
    }
    let mut cfg = ServerConfig {
        api_key: args.api_key.clone(),
        chunk_ms: args.chunk_ms,
        pacing: if args.fast {
            Pacing::AsFastAsPossible
        } else {
            Pacing::RealTime
        },
        vad: VadConfig {
            silence_duration_ms: args.silence_ms,
            threshold: args.threshold,
            ..VadConfig::default()
        },
        record: args.record.clone(),
        port: args.port,
        workers: args.workers,
        max_frame_bytes: args.max_frame_bytes,
        max_backlog_bytes: args.max_backlog_bytes,
        max_input_audio_ms: args.max_input_audio_ms,
        idle_timeout: (args.idle_timeout_s > 0).then(|| Duration::from_secs(args.idle_timeout_s)),
        max_connections_per_addr: args.max_connections_per_addr,
        allowed_hosts: args.allowed_host.clone(),
        allowed_origins: args.allowed_origin.clone(),
        close_timeout: Duration::from_millis(args.close_timeout_ms),
        closed_sessions_kept: args.closed_sessions_kept,
        closed_sessions_bytes: args.closed_sessions_bytes,
        resumption_ttl: Duration::from_secs(args.resumption_ttl_s),
        resumption_bytes: args.resumption_bytes,
        conversation_audio_ms: args.conversation_audio_ms,
        ..ServerConfig::default()
    };
    for path in &args.scenario {
        let sc = Scenario::from_file(path)?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scenario".into());
        cfg.scenarios.insert(stem, sc);
    }
    if let BrainArg::Script = args.brain {
        let first = args
            .scenario
            .first()
            .ok_or_else(|| anyhow::anyhow!("--brain script needs --scenario FILE"))?;
        cfg.brain = Brain::Script(Scenario::from_file(first)?);
    }
    let rt = actix_rt::System::new();
    rt.block_on(async move {
        let server = LocalServer::start(cfg).await?;
        println!("liveagent-server listening on {}", server.local_addr());
        println!("  OpenAI Realtime base URL: {}", server.openai_url());
        println!("  Gemini Live base URL:     {}", server.gemini_url());
        println!(
            "  Chat Completions:         {}/v1/chat/completions",
            server.http_url()
        );
        if args.trim_interval_ms > 0 {
            let every = Duration::from_millis(args.trim_interval_ms);
            tokio::select! {
                r = tokio::signal::ctrl_c() => r?,
                _ = trimmer(&server, every) => {}
            }
        } else {
            tokio::signal::ctrl_c().await?;
        }
        println!("stopping");
        server.stop().await;
        anyhow::Ok(())
    })
}
