//! What the default output device itself contributes to barge-in: its callback period and the
//! output latency cpal reports for each buffer (`playback - callback` timestamps), measured with
//! a bare cpal stream playing silence (no liveagent code on the path).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};

use crate::common::{self, out};

/// Plays silence on the default output for `secs` and prints the period and reported latency.
pub fn run(secs: u64) -> anyhow::Result<()> {
    let device = cpal::default_host()
        .default_output_device()
        .context("no default output device")?;
    let supported = device.default_output_config()?;
    let rate = supported.sample_rate() as f64;
    let channels = supported.channels().max(1) as usize;
    let format = supported.sample_format();
    let records: Arc<Mutex<Vec<(usize, Duration)>>> =
        Arc::new(Mutex::new(Vec::with_capacity(100_000)));
    let r = records.clone();
    let stream = device.build_output_stream_raw(
        supported.config(),
        format,
        move |data: &mut cpal::Data, info: &cpal::OutputCallbackInfo| {
            let frames = data.len() / channels;
            data.bytes_mut().fill(0);
            let ts = info.timestamp();
            if let Ok(mut v) = r.try_lock() {
                v.push((frames, ts.playback.duration_since(ts.callback)));
            }
        },
        |e| eprintln!("output error: {e}"),
        None,
    )?;
    stream.play()?;
    std::thread::sleep(Duration::from_secs(secs));
    drop(stream);
    let v = records.lock().map(|v| v.clone()).unwrap_or_default();
    if v.is_empty() {
        anyhow::bail!("the output callback never ran");
    }
    let mut periods: Vec<u32> = v
        .iter()
        .map(|(f, _)| (*f as f64 / rate * 1e6) as u32)
        .collect();
    let mut lat: Vec<u32> = v.iter().map(|(_, d)| d.as_micros() as u32).collect();
    let (pp50, _, pmax) = common::percentiles(&mut periods);
    let (l50, l99, lmax) = common::percentiles(&mut lat);
    out(format!(
        "RESULT output device ({format:?}, {rate} Hz, {channels} ch, cpal default buffer): callbacks={} period_p50_ms={} period_max_ms={} reported_output_latency_p50_ms={} p99_ms={} max_ms={}",
        v.len(),
        common::ms(pp50),
        common::ms(pmax),
        common::ms(l50),
        common::ms(l99),
        common::ms(lmax)
    ));
    Ok(())
}
