//! Sample-rate and format conversion shared by every audio peer (recorder, player,
//! [`WavSource`](crate::WavSource), [`WavSink`](crate::WavSink)).
//!
//! - [`MonoResampler`]: a streaming mono resampler over rubato's FFT resampler. Push any
//!   number of samples, get the resampled samples out; its delay is compensated so that output
//!   sample `k` lines up with input time `k / out_rate`, and [`MonoResampler::flush`] ends the
//!   stream with exactly `round(n_in * out_rate / in_rate)` samples in total.
//! - [`pcm16_to_f32`] / [`f32_to_pcm16`]: lossless PCM16 ⇄ float (`s / 32768`, and back with
//!   rounding), so audio that needs no resampling passes through bit for bit.
//! - [`downmix_to_mono`] / [`upmix_from_mono`]: interleaved device frames of any channel
//!   count and any cpal sample format ⇄ mono float.
//!
//! ```
//! use liveagent_audio::convert::MonoResampler;
//! let mut rs = MonoResampler::new(48_000, 24_000).unwrap();
//! let mut out = Vec::new();
//! rs.process(&vec![0.25f32; 4800], &mut out); // 100 ms in
//! rs.flush(&mut out);
//! assert_eq!(out.len(), 2400); // 100 ms out
//! ```

use cpal::{FromSample, SizedSample};
use liveagent_core::{ErrorKind, LiveError};
use rubato::{FftFixedInOut, Resampler, SincFixedIn, SincInterpolationParameters};

enum Inner {
    Fft(FftFixedInOut<f32>),
    Sinc(SincFixedIn<f32>),
}

macro_rules! with_inner {
    ($inner:expr, $r:ident => $body:expr) => {
        match $inner {
            Inner::Fft($r) => $body,
            Inner::Sinc($r) => $body,
        }
    };
}

/// Converts one PCM16 sample to float in `[-1, 1)`.
#[inline]
pub fn pcm16_to_f32(s: i16) -> f32 {
    s as f32 / 32768.0
}

/// Converts one float sample to PCM16, rounding and clamping. Exact inverse of
/// [`pcm16_to_f32`].
#[inline]
pub fn f32_to_pcm16(x: f32) -> i16 {
    let v = (x * 32768.0).round();
    if v >= 32767.0 {
        32767
    } else if v <= -32768.0 {
        -32768
    } else {
        v as i16
    }
}

/// Converts one device sample of any cpal format to float.
#[inline]
pub fn sample_to_f32<T: SizedSample>(s: T) -> f32
where
    f32: FromSample<T>,
{
    s.to_sample::<f32>()
}

/// Converts one float sample to a device sample. Integer formats go through PCM16 (our audio is
/// 16-bit anyway), so 16-bit devices get bit-exact samples.
#[inline]
pub fn f32_to_sample<T: SizedSample + FromSample<f32> + FromSample<i16>>(x: f32) -> T {
    if T::FORMAT.is_float() {
        T::from_sample(x)
    } else {
        T::from_sample(f32_to_pcm16(x))
    }
}

/// Averages interleaved frames of `channels` channels into mono floats, appending to `out`.
/// Returns the number of frames converted. A partial trailing frame is ignored.
pub fn downmix_to_mono<T: SizedSample>(interleaved: &[T], channels: usize, out: &mut [f32]) -> usize
where
    f32: FromSample<T>,
{
    let channels = channels.max(1);
    let frames = (interleaved.len() / channels).min(out.len());
    if channels == 1 {
        for (o, s) in out.iter_mut().zip(&interleaved[..frames]) {
            *o = sample_to_f32(*s);
        }
    } else {
        let scale = 1.0 / channels as f32;
        for (o, frame) in out.iter_mut().zip(interleaved.chunks_exact(channels)) {
            let sum: f32 = frame.iter().map(|s| sample_to_f32(*s)).sum();
            *o = sum * scale;
        }
    }
    frames
}

/// Writes mono floats to every channel of interleaved device frames.
pub fn upmix_from_mono<T: SizedSample + FromSample<f32> + FromSample<i16>>(
    mono: &[f32],
    channels: usize,
    out: &mut [T],
) {
    let channels = channels.max(1);
    for (frame, x) in out.chunks_exact_mut(channels).zip(mono) {
        let s: T = f32_to_sample(*x);
        frame.iter_mut().for_each(|o| *o = s);
    }
}

fn audio_err(msg: impl Into<String>) -> LiveError {
    LiveError::new(ErrorKind::Audio, msg)
}

/// A streaming mono resampler (rubato), or a pass-through when both rates are equal.
///
/// Integer-ratio and "nice" rate pairs (48k/44.1k/24k/16k/8k...) use rubato's synchronous FFT
/// resampler with ~10 ms blocks; awkward pairs whose FFT block would exceed 100 ms fall back to
/// rubato's sinc resampler. Buffers are allocated once in [`new`](Self::new); `process` only
/// grows the caller's output vector.
pub struct MonoResampler {
    in_rate: u32,
    out_rate: u32,
    inner: Option<Inner>,
    chunk_in: usize,
    pending: Vec<f32>,
    in_buf: Vec<Vec<f32>>,
    out_buf: Vec<Vec<f32>>,
    skip: usize,
    delay: usize,
    total_in: u64,
    total_out: u64,
}

impl std::fmt::Debug for MonoResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonoResampler")
            .field("in_rate", &self.in_rate)
            .field("out_rate", &self.out_rate)
            .finish()
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl MonoResampler {
    /// A resampler from `in_rate` Hz to `out_rate` Hz. Errors (kind `Audio`) on rates outside
    /// 1 kHz to 768 kHz.
    pub fn new(in_rate: u32, out_rate: u32) -> Result<Self, LiveError> {
        const RATES: std::ops::RangeInclusive<u32> = 1_000..=768_000;
        if !RATES.contains(&in_rate) || !RATES.contains(&out_rate) {
            return Err(audio_err(format!(
                "unsupported sample rates {in_rate} Hz -> {out_rate} Hz (1 kHz to 768 kHz)"
            )));
        }
        let mut rs = MonoResampler {
            in_rate,
            out_rate,
            inner: None,
            chunk_in: 0,
            pending: Vec::new(),
            in_buf: Vec::new(),
            out_buf: Vec::new(),
            skip: 0,
            delay: 0,
            total_in: 0,
            total_out: 0,
        };
        if in_rate == out_rate {
            return Ok(rs);
        }
        let g = gcd(in_rate, out_rate);
        let min_chunk = (in_rate / g) as usize;
        let target = (in_rate as usize / 100).max(1);
        let inner = if min_chunk <= in_rate as usize / 10 {
            Inner::Fft(
                FftFixedInOut::<f32>::new(in_rate as usize, out_rate as usize, target, 1)
                    .map_err(|e| audio_err(format!("cannot build resampler: {e}")))?,
            )
        } else {
            let params = SincInterpolationParameters {
                sinc_len: 128,
                f_cutoff: 0.925,
                oversampling_factor: 128,
                interpolation: rubato::SincInterpolationType::Linear,
                window: rubato::WindowFunction::BlackmanHarris2,
            };
            Inner::Sinc(
                SincFixedIn::<f32>::new(out_rate as f64 / in_rate as f64, 1.0, params, target, 1)
                    .map_err(|e| audio_err(format!("cannot build resampler: {e}")))?,
            )
        };
        rs.chunk_in = with_inner!(&inner, r => r.input_frames_next());
        rs.delay = with_inner!(&inner, r => r.output_delay());
        rs.skip = rs.delay;
        rs.in_buf = vec![vec![0.0; rs.chunk_in]];
        rs.out_buf = vec![vec![0.0; with_inner!(&inner, r => r.output_frames_max())]];
        rs.pending = Vec::with_capacity(rs.chunk_in);
        let calibrate = matches!(inner, Inner::Sinc(_));
        rs.inner = Some(inner);
        if calibrate {
            rs.calibrate_delay();
        }
        Ok(rs)
    }

    /// Measures the resampler's delay with an impulse (for the sinc path, whose reported
    /// delay does not match its output).
    fn calibrate_delay(&mut self) {
        self.skip = 0;
        let pos = (self.in_rate as usize / 20).max(64);
        let mut input = vec![0f32; pos * 4];
        input[pos] = 1.0;
        let mut out = Vec::new();
        self.process(&input, &mut out);
        if let Some((peak, _)) = out
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        {
            let ideal =
                ((pos as f64 * self.out_rate as f64 / self.in_rate as f64).round()) as usize;
            self.delay = peak.saturating_sub(ideal);
        }
        self.reset();
    }

    /// Input rate in Hz.
    pub fn in_rate(&self) -> u32 {
        self.in_rate
    }

    /// Output rate in Hz.
    pub fn out_rate(&self) -> u32 {
        self.out_rate
    }

    /// True when the rates are equal and samples pass through untouched.
    pub fn is_passthrough(&self) -> bool {
        self.inner.is_none()
    }

    fn expected_out(&self) -> u64 {
        (self.total_in * self.out_rate as u64 + self.in_rate as u64 / 2) / self.in_rate as u64
    }

    fn run_chunk(&mut self, out: &mut Vec<f32>) {
        let Some(inner) = self.inner.as_mut() else {
            return;
        };
        let res =
            with_inner!(inner, r => r.process_into_buffer(&self.in_buf, &mut self.out_buf, None));
        match res {
            Ok((_, n)) => {
                let produced = &self.out_buf[0][..n];
                let skip = self.skip.min(n);
                self.skip -= skip;
                out.extend_from_slice(&produced[skip..]);
                self.total_out += (n - skip) as u64;
            }
            Err(e) => {
                // Cannot happen with our fixed buffer sizes; keep time aligned with silence.
                tracing::error!(error = %e, "resampler failed; inserting silence");
                let n =
                    (self.chunk_in as u64 * self.out_rate as u64 / self.in_rate as u64) as usize;
                out.extend(std::iter::repeat_n(0.0, n));
                self.total_out += n as u64;
            }
        }
    }

    /// Resamples `input`, appending whatever output is ready to `out`.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        self.total_in += input.len() as u64;
        if self.inner.is_none() {
            out.extend_from_slice(input);
            self.total_out += input.len() as u64;
            return;
        }
        let mut rest = input;
        while !rest.is_empty() {
            let need = self.chunk_in - self.pending.len();
            let take = need.min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == self.chunk_in {
                self.in_buf[0].copy_from_slice(&self.pending);
                self.pending.clear();
                self.run_chunk(out);
            }
        }
    }

    /// Resamples PCM16 input (see [`process`](Self::process)).
    pub fn process_i16(&mut self, input: &[i16], out: &mut Vec<f32>) {
        // Convert in small stack blocks: no allocation.
        let mut block = [0f32; 256];
        for part in input.chunks(block.len()) {
            for (b, s) in block.iter_mut().zip(part) {
                *b = pcm16_to_f32(*s);
            }
            self.process(&block[..part.len()], out);
        }
    }

    /// Ends the stream: pushes out the samples still held inside the resampler, so that the
    /// total output is `round(n_in * out_rate / in_rate)` samples, then [`reset`](Self::reset)s.
    pub fn flush(&mut self, out: &mut Vec<f32>) {
        if self.inner.is_some() {
            let expected = self.expected_out();
            let mut guard = 0;
            while self.total_out < expected && guard < 64 {
                let n = self.pending.len();
                self.in_buf[0][..n].copy_from_slice(&self.pending);
                self.in_buf[0][n..].iter_mut().for_each(|x| *x = 0.0);
                self.pending.clear();
                let before = out.len();
                self.run_chunk(out);
                let over = self.total_out.saturating_sub(expected) as usize;
                if over > 0 {
                    let keep = out.len().saturating_sub(over).max(before);
                    out.truncate(keep);
                    self.total_out = expected;
                }
                guard += 1;
            }
        }
        self.reset();
    }

    /// Forgets all state (for a new, unrelated stream).
    pub fn reset(&mut self) {
        if let Some(inner) = self.inner.as_mut() {
            with_inner!(inner, r => r.reset());
        }
        self.pending.clear();
        self.skip = self.delay;
        self.total_in = 0;
        self.total_out = 0;
    }
}

/// Converts a whole PCM16 buffer from `in_rate` to `out_rate` (one-shot helper for files).
pub fn resample_pcm16(input: &[i16], in_rate: u32, out_rate: u32) -> Result<Vec<i16>, LiveError> {
    let mut rs = MonoResampler::new(in_rate, out_rate)?;
    let mut out = Vec::with_capacity(input.len() * out_rate as usize / in_rate as usize + 16);
    rs.process_i16(input, &mut out);
    rs.flush(&mut out);
    Ok(out.into_iter().map(f32_to_pcm16).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcm16_round_trip_is_exact() {
        for s in [i16::MIN, -12345, -1, 0, 1, 777, i16::MAX] {
            assert_eq!(f32_to_pcm16(pcm16_to_f32(s)), s);
        }
        assert_eq!(f32_to_pcm16(2.0), i16::MAX);
        assert_eq!(f32_to_pcm16(-2.0), i16::MIN);
    }

    #[test]
    fn device_formats_convert() {
        assert_eq!(f32_to_sample::<i16>(pcm16_to_f32(1234)), 1234i16);
        let u: u16 = f32_to_sample(0.0);
        assert_eq!(u, 32768);
        let mut mono = [0f32; 2];
        let n = downmix_to_mono(&[1000i16, 3000, -2000, -2000], 2, &mut mono);
        assert_eq!(n, 2);
        assert_eq!(f32_to_pcm16(mono[0]), 2000);
        assert_eq!(f32_to_pcm16(mono[1]), -2000);
        let mut out = [0f32; 4];
        upmix_from_mono(&[0.5, -0.25], 2, &mut out);
        assert_eq!(out, [0.5, 0.5, -0.25, -0.25]);
    }

    fn sine(freq: f32, rate: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (i as f32 * freq * std::f32::consts::TAU / rate as f32).sin() * 0.5)
            .collect()
    }

    /// Resampling a sine keeps its frequency, amplitude and phase (delay compensated), for
    /// the rate pairs the peers use, fed in odd-sized pieces.
    #[test]
    fn resampled_sine_matches_ideal() {
        for (from, to) in [
            (48_000, 24_000),
            (44_100, 16_000),
            (24_000, 48_000),
            (16_000, 24_000),
            (22_050, 24_000),
            (44_101, 24_000),
        ] {
            let input = sine(440.0, from, from as usize); // 1 s
            let mut rs = MonoResampler::new(from, to).unwrap();
            let mut out = Vec::new();
            for piece in input.chunks(333) {
                rs.process(piece, &mut out);
            }
            rs.flush(&mut out);
            assert_eq!(out.len(), to as usize, "{from}->{to}");
            let ideal = sine(440.0, to, to as usize);
            // ignore the edges, where the filter sees the stream start/end
            let lo = to as usize / 20;
            let hi = out.len() - lo;
            let err = out[lo..hi]
                .iter()
                .zip(&ideal[lo..hi])
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            // the sinc fallback for awkward pairs is aligned to about a sample
            let tolerance = if from == 44_101 { 0.1 } else { 0.02 };
            if err >= tolerance {
                let lag = (-200i32..200).min_by_key(|l| {
                    let e: f32 = (lo..hi)
                        .map(|i| (out[i] - ideal[(i as i32 + l) as usize]).abs())
                        .sum();
                    (e * 1000.0) as i64
                });
                panic!("{from}->{to}: max error {err}, best lag {lag:?}");
            }
        }
    }

    /// Odd and extreme rate pairs never panic: they resample or return an error.
    #[test]
    fn odd_rates_do_not_panic() {
        for (from, to) in [
            (1, 24_000),
            (8_000, 192_000),
            (192_000, 8_000),
            (24_000, 1),
            (7, 11),
            (1_000, 44_101),
            (44_101, 1_000),
        ] {
            if let Ok(mut rs) = MonoResampler::new(from, to) {
                let mut out = Vec::new();
                rs.process(&vec![0.1; 1000], &mut out);
                rs.flush(&mut out);
                let want = (1000u64 * to as u64 + from as u64 / 2) / from as u64;
                assert!(
                    out.len() as u64 <= want + 1,
                    "{from}->{to}: {} > {want}",
                    out.len()
                );
            }
        }
    }

    #[test]
    fn passthrough_is_bit_exact() {
        let pcm: Vec<i16> = (0..1000).map(|i| (i * 37 % 20000) as i16 - 10000).collect();
        assert_eq!(resample_pcm16(&pcm, 24_000, 24_000).unwrap(), pcm);
        assert!(MonoResampler::new(0, 24_000).is_err());
    }
}
