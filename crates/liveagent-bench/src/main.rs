//! `liveagent-bench`: measures liveagent against the local realtime server and prints
//! `RESULT ...` lines. `scripts/bench.sh` runs every benchmark with its defaults (and the
//! PulseAudio null sinks they need); docs/performance.md has the figures and commands.
//!
//! ```text
//! liveagent-bench latency-out --sink wav --sessions 20 --secs 12
//! liveagent-bench latency-out --sink device --sessions 20 --secs 12   # needs an audio output
//! liveagent-bench latency-in --sessions 20 --secs 12                  # needs an audio input
//! liveagent-bench barge-in --trials 20                                # needs PulseAudio null sinks
//! liveagent-bench device-latency                                      # the output device alone
//! liveagent-bench scale --sessions 100,200,500 --secs 30
//! liveagent-bench floor --sessions 20,100 --secs 20              # the workload's own cost
//! liveagent-bench transport --sessions 100 --secs 20                 # browser transport
//! liveagent-bench cascade --sessions 10 --turns 5                      # cascade mode
//! liveagent-bench transport-scale --sessions 300,500 --secs 30       # app pinned to one core
//! liveagent-bench soak --conversations 100 --secs 600                 # faults, RSS curve
//! ```
//!
//! Nothing here runs as a test: the binary has `test = false` and asserts nothing.

mod alloc;
mod bargein;
mod cascade;
mod clock;
mod common;
mod device;
mod floor;
mod latency;
mod scale;
mod soak;
mod transport;
mod transport_scale;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Counts live bytes (off until the soak turns it on): see [`alloc`].
#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

#[derive(Debug, Parser)]
#[command(about = "liveagent benchmarks (see docs/performance.md)")]
struct Args {
    /// The liveagent-server binary (default: next to this one).
    #[arg(long, global = true)]
    server_bin: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Socket read -> output buffer latency of synthesized audio.
    LatencyOut {
        #[arg(long, value_enum, default_value_t = latency::Sink::Wav)]
        sink: latency::Sink,
        #[arg(long, default_value_t = 20)]
        sessions: usize,
        #[arg(long, default_value_t = 12)]
        secs: u64,
    },
    /// Microphone callback -> socket latency.
    LatencyIn {
        #[arg(long, default_value_t = 20)]
        sessions: usize,
        #[arg(long, default_value_t = 12)]
        secs: u64,
        /// Also trace every chunk stage by stage (callback, recorder woken, published, bus,
        /// session, encoded, written) and print the breakdown (adds a mutex per stage).
        #[arg(long)]
        stages: bool,
        /// Spread the conversations (and each one's recorder) round-robin over this many
        /// worker arbiters (0: all on the main arbiter).
        #[arg(long, default_value_t = 0)]
        arbiters: usize,
        /// Ask the input device for periods of this many frames (default: the recorder's,
        /// 10 ms at the device rate when the device supports the session's format).
        #[arg(long)]
        device_buffer_frames: Option<u32>,
        /// Open the input device at this rate, mono, 16-bit (default: the recorder's, the
        /// session's rate when the device supports it).
        #[arg(long)]
        device_rate: Option<u32>,
        /// Open the input device in its own default configuration (cpal's, e.g. 48 kHz
        /// stereo f32: the recorder's default before it preferred the session's format).
        #[arg(long)]
        device_default_config: bool,
    },
    /// Speech-started -> silent output, on the real cpal path.
    BargeIn {
        #[arg(long, default_value_t = 20)]
        trials: usize,
        /// Ask the output device for this many frames per callback, fixed (default: the
        /// player's adaptive buffer, which starts at about 5 ms and grows after underruns).
        #[arg(long, conflicts_with = "host_buffer")]
        device_buffer_frames: Option<u32>,
        /// Use the host's default device buffer (the player's default before the adaptive
        /// buffer).
        #[arg(long)]
        host_buffer: bool,
        /// Open the microphone in its device's default configuration (cpal's) instead of the
        /// recorder's default (the session's format).
        #[arg(long)]
        mic_device_default_config: bool,
    },
    /// The default output device's own period and reported output latency (bare cpal).
    DeviceLatency {
        #[arg(long, default_value_t = 3)]
        secs: u64,
    },
    /// N browser-transport conversations driven by a WebSocket load generator: the latency
    /// the transport adds (in and out) and whether N keep real time.
    Transport {
        #[arg(long, default_value_t = 100)]
        sessions: usize,
        #[arg(long, default_value_t = 20)]
        secs: u64,
    },
    /// N cascade conversations (STT -> LLM -> TTS against the local server's fake stages):
    /// stage timings per turn, the pipeline's added latency per hop, CPU and memory.
    Cascade {
        #[arg(long, default_value_t = 10)]
        sessions: usize,
        #[arg(long, default_value_t = 5)]
        turns: usize,
    },
    /// N browser-transport conversations in an app process pinned to one core, driven by a
    /// WebSocket load generator (this process) and the local server pinned to other cores.
    TransportScale {
        #[arg(long, value_delimiter = ',', default_value = "500")]
        sessions: Vec<usize>,
        #[arg(long, default_value_t = 30)]
        secs: u64,
        /// The core the app under test runs on.
        #[arg(long, default_value_t = 0)]
        app_cpu: usize,
        /// The cores of the load generator and the local server (comma-separated).
        #[arg(long, default_value = "1")]
        load_cpus: String,
        /// Leave Nagle's algorithm on (the OS default) on the pages' sockets and the app's
        /// accepted sockets, as runs before TCP_NODELAY was set did (for comparison).
        #[arg(long)]
        nagle: bool,
    },
    /// The app under test of `transport-scale` (started by it).
    #[command(hide = true)]
    TransportApp {
        #[arg(long)]
        provider_url: String,
        #[arg(long)]
        sessions: usize,
        #[arg(long)]
        cpu: Option<usize>,
        #[arg(long)]
        nagle: bool,
    },
    /// N conversations for a long time against a server injecting random faults (drops,
    /// silence, audio floods, late deltas, oversized transcripts, tool calls): the client's
    /// RSS curve, tool results lost, panics, conversations alive at the end.
    Soak {
        #[arg(long, default_value_t = 100)]
        conversations: usize,
        #[arg(long, default_value_t = 600)]
        secs: u64,
        #[arg(long, default_value_t = 30)]
        sample_secs: u64,
        #[arg(long, default_value_t = 13)]
        seed: u64,
        /// Turns in the scripted cycle of faults (repeated for as long as the run lasts).
        #[arg(long, default_value_t = 400)]
        cycle: usize,
        /// Call `malloc_trim(0)` before each sample (glibc): RSS then shows what the heap
        /// holds rather than what the allocator keeps.
        #[arg(long)]
        trim: bool,
        /// Bound `Conversation::history` to this many KiB, by bytes only (default: the
        /// library's bounds, 1,000 events and 64 KiB).
        #[arg(long)]
        history_kib: Option<usize>,
        /// Bound the OpenAI restore history to this many KiB (default: the library's, 128 KiB).
        #[arg(long)]
        restore_history_kib: Option<usize>,
    },
    /// N concurrent full-duplex sessions (comma-separated list of N).
    Scale {
        #[arg(long, value_delimiter = ',', default_value = "100")]
        sessions: Vec<usize>,
        #[arg(long, default_value_t = 30)]
        secs: u64,
        /// Worker arbiters (threads) to spread the sessions over, round-robin
        /// (`LiveAgent::run_on`); 0 = every session on the main arbiter, with the driver.
        #[arg(long, default_value_t = 0)]
        arbiters: usize,
        /// Leave Nagle's algorithm on for the provider connections
        /// (`SessionOptions::tcp_nodelay = false`), for the A/B of its CPU cost.
        #[arg(long)]
        provider_nagle: bool,
    },
    /// The scale workload with the cheapest possible client (frames built once, answers
    /// read and dropped): the lower bound of any client's CPU on it. See `floor.rs`.
    Floor {
        #[arg(long, value_delimiter = ',', default_value = "20,100")]
        sessions: Vec<usize>,
        #[arg(long, default_value_t = 20)]
        secs: u64,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Cmd::TransportApp {
        provider_url,
        sessions,
        cpu,
        nagle,
    } = args.cmd
    {
        // Pin before the runtime starts its threads: they inherit the mask.
        if let Some(c) = cpu {
            transport_scale::pin_to(&[c])?;
        }
        return actix::System::new().block_on(transport_scale::run_app(
            provider_url,
            sessions,
            cpu,
            nagle,
        ));
    }
    let server_bin = common::server_bin(args.server_bin)?;
    let system = actix::System::new();
    system.block_on(async move {
        match args.cmd {
            Cmd::LatencyOut {
                sink,
                sessions,
                secs,
            } => latency::run_out(server_bin, sink, sessions, secs)
                .await?
                .print(),
            Cmd::LatencyIn {
                sessions,
                secs,
                stages,
                arbiters,
                device_buffer_frames,
                device_rate,
                device_default_config,
            } => latency::run_in(
                server_bin,
                sessions,
                secs,
                stages,
                arbiters,
                latency::InputSetup {
                    buffer_frames: device_buffer_frames,
                    rate: device_rate,
                    device_default: device_default_config,
                },
            )
            .await?
            .print(),
            Cmd::BargeIn {
                trials,
                device_buffer_frames,
                host_buffer,
                mic_device_default_config,
            } => {
                let buffer = match (device_buffer_frames, host_buffer) {
                    (Some(f), _) => liveagent::audio::DeviceBuffer::Fixed(f),
                    (None, true) => liveagent::audio::DeviceBuffer::HostDefault,
                    (None, false) => liveagent::audio::DeviceBuffer::default(),
                };
                bargein::run(server_bin, trials, buffer, mic_device_default_config).await?
            }
            Cmd::DeviceLatency { secs } => device::run(secs)?,
            Cmd::Transport { sessions, secs } => transport::run(server_bin, sessions, secs).await?,
            Cmd::Cascade { sessions, turns } => cascade::run(server_bin, sessions, turns).await?,
            Cmd::TransportScale {
                sessions,
                secs,
                app_cpu,
                load_cpus,
                nagle,
            } => {
                transport_scale::run(server_bin, sessions, secs, app_cpu, load_cpus, nagle).await?
            }
            Cmd::TransportApp { .. } => unreachable!("handled above"),
            Cmd::Soak {
                conversations,
                secs,
                sample_secs,
                seed,
                cycle,
                trim,
                history_kib,
                restore_history_kib,
            } => {
                soak::run(
                    server_bin,
                    soak::SoakArgs {
                        conversations,
                        secs,
                        sample_secs,
                        seed,
                        cycle,
                        trim,
                        history_kib,
                        restore_history_kib,
                    },
                )
                .await?
            }
            Cmd::Scale {
                sessions,
                secs,
                arbiters,
                provider_nagle,
            } => {
                if let [n] = sessions[..] {
                    scale::run(server_bin, n, secs, arbiters, !provider_nagle)
                        .await?
                        .print();
                    return anyhow::Ok(());
                }
                // One process per N: memory freed by an earlier run would skew RSS deltas.
                let mut best = None;
                for n in sessions {
                    let output = std::process::Command::new(std::env::current_exe()?)
                        .arg("--server-bin")
                        .arg(&server_bin)
                        .args([
                            "scale",
                            "--sessions",
                            &n.to_string(),
                            "--secs",
                            &secs.to_string(),
                            "--arbiters",
                            &arbiters.to_string(),
                        ])
                        .args(provider_nagle.then_some("--provider-nagle"))
                        .stderr(std::process::Stdio::inherit())
                        .output()?;
                    let text = String::from_utf8_lossy(&output.stdout);
                    for line in text.lines() {
                        common::out(line);
                    }
                    if text.contains("realtime=yes") {
                        best = Some(best.map_or(n, |b: usize| b.max(n)));
                    }
                }
                common::out(format!(
                    "RESULT scale largest real-time N tried: {}",
                    best.map_or("none".to_string(), |n| n.to_string())
                ));
            }
            Cmd::Floor { sessions, secs } => {
                if let [n] = sessions[..] {
                    // Its own blocking loop, off the actix thread.
                    let figures =
                        std::thread::spawn(move || floor::run(server_bin, n, secs)).join();
                    figures
                        .map_err(|_| anyhow::anyhow!("the floor client panicked"))??
                        .print();
                    return anyhow::Ok(());
                }
                // One process per N, as for `scale`.
                for n in sessions {
                    let output = std::process::Command::new(std::env::current_exe()?)
                        .arg("--server-bin")
                        .arg(&server_bin)
                        .args(["floor", "--sessions", &n.to_string()])
                        .args(["--secs", &secs.to_string()])
                        .stderr(std::process::Stdio::inherit())
                        .output()?;
                    for line in String::from_utf8_lossy(&output.stdout).lines() {
                        common::out(line);
                    }
                }
            }
        }
        anyhow::Ok(())
    })
}
