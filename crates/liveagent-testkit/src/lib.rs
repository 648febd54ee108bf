//! Helpers shared by the tests of every liveagent crate. Of the liveagent crates it depends
//! only on `liveagent-core`, so any other crate can take it as a dev-dependency.
//!
//! - [`shared_dir`]: the `../shared` folder beside the repository (protocol validator, audio
//!   recipes); override with `LIVEAGENT_SHARED`.
//! - [`validate_frames`]: runs `shared/protocols/validate` over recorded frames and fails the
//!   test with its report when any frame fails.
//! - [`speech_pcm`]: real test speech from espeak-ng, as PCM16 mono at a chosen rate.
//! - [`tone_pcm`], [`silence_pcm`]: synthetic signals.
//! - [`live`]: for a provider's own end-to-end tests against the local server (wire
//!   details): an event log to wait on, speaking into a conversation, the server's
//!   recording.

pub mod live;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (the folder with the workspace `Cargo.toml`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// The shared folder: `$LIVEAGENT_SHARED`, else `../shared` beside the repository root.
pub fn shared_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("LIVEAGENT_SHARED") {
        return PathBuf::from(dir);
    }
    let dir = repo_root().join("../shared");
    assert!(
        dir.join("protocols/validate").exists(),
        "shared/ not found at {} (set LIVEAGENT_SHARED to the folder holding protocols/validate)",
        dir.display()
    );
    dir
}

/// Which protocol a frame file speaks, for the validator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OpenAI Realtime GA.
    OpenAi,
    /// Gemini Live.
    Gemini,
}

/// Runs the shared protocol validator over a JSON-lines file (one frame per line, optionally
/// prefixed with `>` for client-to-server or `<` for server-to-client). Panics with the
/// validator's report if any frame fails, or if no frame was checked. Returns the report.
pub fn validate_frames(path: &Path, protocol: Protocol) -> String {
    let validator = shared_dir().join("protocols/validate");
    let proto = match protocol {
        Protocol::OpenAi => "openai",
        Protocol::Gemini => "gemini",
    };
    let out = Command::new("bash")
        .arg(&validator)
        .args(["--protocol", proto])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", validator.display()));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "protocol validator failed for {}:\n{report}",
        path.display()
    );
    let checked = report
        .lines()
        .filter(|l| l.starts_with("OK") || l.starts_with("WARN"))
        .count();
    assert!(
        checked > 0,
        "protocol validator checked no frame in {}:\n{report}",
        path.display()
    );
    report
}

/// Writes `frames` (already prefixed with `>`/`<` or not) to a temporary JSON-lines file and
/// validates them (see [`validate_frames`]).
pub fn validate_lines<S: AsRef<str>>(frames: &[S], protocol: Protocol) -> String {
    let dir = std::env::temp_dir().join(format!("liveagent-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("frames-{}.jsonl", unique()));
    let mut file = std::fs::File::create(&path).unwrap();
    for f in frames {
        writeln!(file, "{}", f.as_ref()).unwrap();
    }
    drop(file);
    validate_frames(&path, protocol)
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Speech for `text` synthesized by espeak-ng, as mono PCM16 at `rate` Hz (sox resamples).
/// Panics with an install hint if the tools are missing.
pub fn speech_pcm(text: &str, rate: u32) -> Vec<i16> {
    let dir = std::env::temp_dir().join(format!(
        "liveagent-speech-{}-{}",
        std::process::id(),
        unique()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join("speech.wav");
    let raw = dir.join("speech.raw");
    let st = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("espeak-ng not found: run `just setup` (apt-get install espeak-ng sox)");
    assert!(st.success(), "espeak-ng failed");
    let st = Command::new("sox")
        .arg(&wav)
        .args([
            "-r",
            &rate.to_string(),
            "-c",
            "1",
            "-b",
            "16",
            "-e",
            "signed-integer",
            "-t",
            "raw",
        ])
        .arg(&raw)
        .status()
        .expect("sox not found: run `just setup` (apt-get install sox)");
    assert!(st.success(), "sox failed");
    let bytes = std::fs::read(&raw).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// A sine tone of `freq` Hz, `ms` long, at `rate` Hz and amplitude `amp` (0..=32767).
pub fn tone_pcm(freq: f32, ms: u32, rate: u32, amp: i16) -> Vec<i16> {
    let n = (rate as u64 * ms as u64 / 1000) as usize;
    (0..n)
        .map(|i| {
            ((i as f32 * freq * std::f32::consts::TAU / rate as f32).sin() * amp as f32) as i16
        })
        .collect()
}

/// `ms` of digital silence at `rate` Hz.
pub fn silence_pcm(ms: u32, rate: u32) -> Vec<i16> {
    vec![0; (rate as u64 * ms as u64 / 1000) as usize]
}
