//! Environments for driving the real cpal paths on a machine without a sound card.
//!
//! ALSA reads its configuration once per process, and PulseAudio clients find their server
//! through environment variables, so each device test re-executes its own test binary
//! (`current_exe() <test name> --exact`) with the environment it needs; the child runs the
//! test body, the parent prepares files/servers and checks what came out.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CHILD: &str = "LIVEAGENT_AUDIO_TEST_CHILD";

/// True inside the re-executed child.
pub fn is_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "liveagent-audio-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `test` (this binary's test of that name) in a child process with `envs`; panics with
/// the child's output if it fails. Returns its stdout.
pub fn run_child(test: &str, envs: &[(&str, String)], remove: &[&str]) -> String {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1");
    for k in remove {
        cmd.env_remove(k);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("cannot re-run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "child test {test} failed:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "child test {test} did not run:\n{stdout}"
    );
    stdout
}

/// A `KEY=value` result line printed by a child.
pub fn result(stdout: &str, key: &str) -> String {
    let prefix = format!("RESULT {key}=");
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix(&prefix).map(str::to_owned))
        .unwrap_or_else(|| panic!("no {key} in child output:\n{stdout}"))
}

pub fn write_raw(path: &Path, samples: &[i16]) {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

pub fn read_raw(path: &Path) -> Vec<i16> {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Renders `/work/shared/audio/alsa-file.conf`'s recipe: ALSA's default device captures
/// `input` and plays into `output` (S16_LE, `rate`, mono). Returns the config path.
pub fn alsa_file_conf(dir: &Path, input: &Path, output: &Path, rate: u32) -> PathBuf {
    let conf = format!(
        r#"pcm.!default {{
    type asym
    playback.pcm {{
        type plug
        slave {{ pcm {{ type file; slave.pcm {{ type null }}; file "{out}"; format "raw" }}
                format S16_LE; rate {rate}; channels 1 }}
    }}
    capture.pcm {{
        type plug
        slave {{ pcm {{ type file; slave.pcm {{ type null }}; file "/dev/null"; infile "{inp}"; format "raw" }}
                format S16_LE; rate {rate}; channels 1 }}
    }}
}}
"#,
        out = output.display(),
        inp = input.display(),
    );
    let path = dir.join("alsa.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

/// A private PulseAudio server with null sinks `mic` and `spk` (recipe B of
/// shared/audio/README.md), killed on drop.
pub struct PulseServer {
    pub dir: PathBuf,
    child: Child,
}

impl PulseServer {
    pub fn start(rate: u32) -> PulseServer {
        let dir = temp_dir("pulse");
        std::fs::create_dir_all(dir.join("run")).unwrap();
        std::fs::create_dir_all(dir.join("home")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.join("run"), std::fs::Permissions::from_mode(0o700))
                .unwrap();
        }
        let sink = |name: &str| {
            format!("module-null-sink sink_name={name} rate={rate} channels=1 format=s16le")
        };
        let mut cmd = Command::new("pulseaudio");
        cmd.args([
            "-n",
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--disallow-exit",
        ])
        .arg(format!(
            "--log-target=file:{}",
            dir.join("pa.log").display()
        ))
        .args(["-L", "module-native-protocol-unix", "-L"])
        .arg(sink("spk"))
        .arg("-L")
        .arg(sink("mic"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let server = PulseServer {
            child: Self::envs_for(&dir, &mut cmd)
                .spawn()
                .expect("pulseaudio not found (apt-get install pulseaudio pulseaudio-utils libasound2-plugins)"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ok = server
                .command("pactl")
                .arg("info")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "private pulseaudio did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // The first capture on a fresh server stalls about 2 s: warm it up.
        let _ = server
            .command("arecord")
            .args([
                "-q",
                "-d",
                "1",
                "-f",
                "S16_LE",
                "-r",
                &rate.to_string(),
                "-c",
                "1",
                "-t",
                "raw",
                "/dev/null",
            ])
            .stderr(Stdio::null())
            .status();
        server
    }

    fn envs_for<'a>(dir: &Path, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("XDG_RUNTIME_DIR", dir.join("run"))
            .env("HOME", dir.join("home"))
            .env("PULSE_SOURCE", "mic.monitor")
            .env("PULSE_SINK", "spk")
            .env_remove("ALSA_CONFIG_PATH")
            .env_remove("PULSE_SERVER")
    }

    /// A command that talks to this server.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        Self::envs_for(&self.dir, &mut cmd);
        cmd
    }

    /// The environment a child process needs to use this server through ALSA's default device.
    pub fn envs(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "XDG_RUNTIME_DIR",
                self.dir.join("run").display().to_string(),
            ),
            ("HOME", self.dir.join("home").display().to_string()),
            ("PULSE_SOURCE", "mic.monitor".into()),
            ("PULSE_SINK", "spk".into()),
        ]
    }

    /// Starts `parecord` on the speaker's monitor into `path` (raw S16_LE mono at `rate`).
    pub fn record_speaker(&self, path: &Path, rate: u32) -> Child {
        self.command("parecord")
            .args([
                "--latency-msec=20",
                "--device=spk.monitor",
                "--raw",
                "--channels=1",
                "--format=s16le",
            ])
            .arg(format!("--rate={rate}"))
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("parecord not found (apt-get install pulseaudio-utils)")
    }

    /// The server's process id (to stall it with SIGSTOP/SIGCONT, as a loaded machine does).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PulseServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Stops a recorder child process (SIGINT so it flushes), by its pid.
pub fn stop_child(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Signal-to-noise ratio (dB) of `got` against `reference`, at the best lag within ±`max_lag`.
pub fn snr_db(reference: &[i16], got: &[i16], max_lag: i64) -> (f64, i64) {
    let mut best = (f64::NEG_INFINITY, 0);
    for lag in -max_lag..=max_lag {
        let mut sig = 0f64;
        let mut err = 0f64;
        for (i, r) in reference.iter().enumerate() {
            let j = i as i64 + lag;
            if j < 0 || j as usize >= got.len() {
                continue;
            }
            let g = got[j as usize] as f64;
            let r = *r as f64;
            sig += r * r;
            err += (g - r) * (g - r);
        }
        let snr = 10.0 * (sig / err.max(1e-9)).log10();
        if snr > best.0 {
            best = (snr, lag);
        }
    }
    best
}

/// Milliseconds of 10 ms windows louder than `threshold` (mean absolute value), and the
/// index (in windows) of the last loud one.
pub fn loud_windows(samples: &[i16], rate: u32, threshold: f64) -> Vec<bool> {
    let w = (rate / 100) as usize;
    samples
        .chunks(w)
        .map(|c| c.iter().map(|s| (*s as f64).abs()).sum::<f64>() / c.len() as f64 > threshold)
        .collect()
}
