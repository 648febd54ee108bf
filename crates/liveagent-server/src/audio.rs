//! Audio helpers: PCM16 <-> bytes, base64 (both alphabets), resampling, G.711, tone synthesis.
//!
//! Internally the server keeps every signal as mono PCM16 at [`INTERNAL_RATE`] (24 kHz).

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use std::borrow::Cow;
use std::sync::Arc;

use crate::packed_audio::Packed;

/// The rate every signal is kept at inside the server (OpenAI GA and Gemini output use it).
pub const INTERNAL_RATE: u32 = 24_000;

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Encodes bytes as standard base64 with padding (what both providers send).
///
/// `base64-simd` (SIMD where the CPU has it) rather than `base64`'s scalar engine: the
/// server encodes every audio delta it streams, and this was a tenth of its time.
pub fn b64_encode(bytes: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(bytes)
}

/// Decodes base64 in either alphabet (standard `+/` or URL-safe `-_`), with or without padding.
///
/// The standard alphabet is tried first: text with `-` or `_` fails it at once, and only
/// then is the URL-safe alphabet tried (the same result as choosing the alphabet by a scan
/// of the text first, without the scan on every audio frame).
pub fn b64_decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    // The strict SIMD decoder first (padded standard base64, what every client sends): what
    // it accepts, the lenient decoders accept with the same bytes; anything else goes to
    // them, and so do their errors.
    if let Ok(bytes) = base64_simd::STANDARD.decode_to_vec(text) {
        return Ok(bytes);
    }
    match STANDARD_LENIENT.decode(text) {
        Ok(bytes) => Ok(bytes),
        Err(_) if text.contains(['-', '_']) => URL_SAFE_LENIENT.decode(text),
        Err(e) => Err(e),
    }
}

/// Little-endian PCM16 bytes to samples (a trailing odd byte is ignored).
pub fn pcm_from_bytes(bytes: &[u8]) -> Vec<i16> {
    let mut out = vec![0i16; bytes.len() / 2];
    for (s, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *s = i16::from_le_bytes([b[0], b[1]]);
    }
    out
}

/// Samples to little-endian PCM16 bytes.
pub fn pcm_to_bytes(samples: &[i16]) -> Vec<u8> {
    let mut out = vec![0u8; samples.len() * 2];
    for (b, s) in out.chunks_exact_mut(2).zip(samples) {
        b.copy_from_slice(&s.to_le_bytes());
    }
    out
}

/// Base64 of samples `[from, to)` of `pcm` in the wire format `fmt`: the samples and their
/// bytes go through per-thread scratch buffers, so an audio delta costs one allocation (its
/// text) however the answer's audio is kept.
pub fn b64_delta(pcm: &Pcm, from: usize, to: usize, fmt: WireAudio) -> String {
    thread_local! {
        static SCRATCH: std::cell::RefCell<(Vec<i16>, Vec<u8>)> =
            const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
    }
    SCRATCH.with_borrow_mut(|(samples, bytes)| {
        samples.clear();
        pcm.range_into(from, to, samples);
        bytes.clear();
        match fmt {
            WireAudio::Pcm(INTERNAL_RATE) => {
                bytes.extend(samples.iter().flat_map(|s| s.to_le_bytes()));
            }
            other => bytes.extend_from_slice(&other.encode(samples)),
        }
        let text = b64_encode(bytes);
        // A long chunk (a test's 100 ms at most) does not keep big scratch buffers.
        if samples.capacity() > 1 << 16 {
            *samples = Vec::new();
            *bytes = Vec::new();
        }
        text
    })
}

/// Linear-interpolation resampler (good enough for an echo; not for hi-fi).
pub fn resample(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || samples.is_empty() || from == 0 || to == 0 {
        return samples.to_vec();
    }
    let out_len = (samples.len() as u64 * to as u64 / from as u64) as usize;
    let step = from as f64 / to as f64;
    (0..out_len)
        .map(|i| {
            let pos = i as f64 * step;
            let idx = pos as usize;
            let frac = pos - idx as f64;
            let a = samples[idx.min(samples.len() - 1)] as f64;
            let b = samples[(idx + 1).min(samples.len() - 1)] as f64;
            (a + (b - a) * frac).round() as i16
        })
        .collect()
}

/// Duration of `n` samples at `rate`, in milliseconds.
pub fn samples_to_ms(n: usize, rate: u32) -> u64 {
    n as u64 * 1000 / rate as u64
}

/// Number of samples in `ms` milliseconds at `rate`.
pub fn ms_to_samples(ms: u64, rate: u32) -> usize {
    (ms * rate as u64 / 1000) as usize
}

/// G.711 µ-law byte to a PCM16 sample.
pub fn ulaw_decode(b: u8) -> i16 {
    let u = !b;
    let sign = u & 0x80;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0f) as i32;
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    (if sign != 0 { -magnitude } else { magnitude }) as i16
}

/// PCM16 sample to a G.711 µ-law byte.
pub fn ulaw_encode(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = sample as i32;
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// G.711 A-law byte to a PCM16 sample.
pub fn alaw_decode(b: u8) -> i16 {
    let a = b ^ 0x55;
    let sign = a & 0x80;
    let exponent = ((a >> 4) & 0x07) as i32;
    let mantissa = (a & 0x0f) as i32;
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    (if sign != 0 { magnitude } else { -magnitude }) as i16
}

/// PCM16 sample to a G.711 A-law byte.
pub fn alaw_encode(sample: i16) -> u8 {
    let mut s = sample as i32;
    let sign = if s >= 0 {
        0x80
    } else {
        s = -s - 1;
        0
    };
    s = s.min(32767);
    let byte = if s < 256 {
        (s >> 4) as u8
    } else {
        let mut exponent = 1;
        while exponent < 7 && s >= (256 << exponent) {
            exponent += 1;
        }
        ((exponent << 4) as u8) | (((s >> (exponent + 3)) & 0x0f) as u8)
    };
    (byte | sign) ^ 0x55
}

/// The wire audio encodings the server understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireAudio {
    /// PCM16 little-endian at the given rate.
    Pcm(u32),
    /// G.711 µ-law at 8 kHz.
    Pcmu,
    /// G.711 A-law at 8 kHz.
    Pcma,
}

impl WireAudio {
    /// Decodes wire bytes into PCM16 at [`INTERNAL_RATE`].
    pub fn decode(self, bytes: &[u8]) -> Vec<i16> {
        match self {
            WireAudio::Pcm(INTERNAL_RATE) => pcm_from_bytes(bytes),
            WireAudio::Pcm(rate) => resample(&pcm_from_bytes(bytes), rate, INTERNAL_RATE),
            WireAudio::Pcmu => {
                let s: Vec<i16> = bytes.iter().map(|b| ulaw_decode(*b)).collect();
                resample(&s, 8000, INTERNAL_RATE)
            }
            WireAudio::Pcma => {
                let s: Vec<i16> = bytes.iter().map(|b| alaw_decode(*b)).collect();
                resample(&s, 8000, INTERNAL_RATE)
            }
        }
    }

    /// Encodes PCM16 at [`INTERNAL_RATE`] into wire bytes.
    pub fn encode(self, samples: &[i16]) -> Vec<u8> {
        match self {
            WireAudio::Pcm(INTERNAL_RATE) => pcm_to_bytes(samples),
            WireAudio::Pcm(rate) => pcm_to_bytes(&resample(samples, INTERNAL_RATE, rate)),
            WireAudio::Pcmu => resample(samples, INTERNAL_RATE, 8000)
                .into_iter()
                .map(ulaw_encode)
                .collect(),
            WireAudio::Pcma => resample(samples, INTERNAL_RATE, 8000)
                .into_iter()
                .map(alaw_encode)
                .collect(),
        }
    }
}

/// Milliseconds of synthetic "speech" per character of text.
pub const MS_PER_CHAR: u64 = 60;

/// Synthesizes a stand-in for speech: one tone per word (its pitch derived from the word,
/// its length [`MS_PER_CHAR`] per character), separated by 40 ms gaps, at 24 kHz. The total
/// duration is therefore proportional to the text's length, like real speech. No TTS.
pub fn synth_text(text: &str) -> Vec<i16> {
    synth_text_up_to(text, usize::MAX)
}

/// [`synth_text`] that stops once `max_samples` are made (the result may pass it by the
/// rest of one word): a scenario's `say` with `audio_ms` needs no more than that, whatever the
/// length of its text (a 70 KB transcript would otherwise be over an hour of tones).
pub fn synth_text_up_to(text: &str, max_samples: usize) -> Vec<i16> {
    let rate = INTERNAL_RATE as f32;
    let mut out = Vec::new();
    for word in text.split_whitespace() {
        if out.len() >= max_samples {
            break;
        }
        let hash = word
            .bytes()
            .fold(5381u32, |h, b| h.wrapping_mul(33) ^ b as u32);
        let freq = 180.0 + (hash % 400) as f32;
        let n = ms_to_samples(word.chars().count() as u64 * MS_PER_CHAR, INTERNAL_RATE);
        let fade = (n / 10).max(1);
        for i in 0..n {
            let env = (i.min(n - i) as f32 / fade as f32).min(1.0);
            let chirp = freq * (1.0 + 0.15 * i as f32 / n as f32);
            let v = (i as f32 * chirp * std::f32::consts::TAU / rate).sin() * 8000.0 * env;
            out.push(v as i16);
        }
        out.extend(std::iter::repeat_n(0i16, ms_to_samples(40, INTERNAL_RATE)));
    }
    out
}

/// Samples shared without copying: a range of a reference-counted buffer, which the
/// conversation can also let go of while keeping the duration.
///
/// A user turn's audio item, the part of it the echo brain plays back and the assistant item
/// that keeps what was played are views of one buffer, not three copies. Audio the
/// conversation keeps is stored losslessly packed ([`Pcm::packed`], about half the bytes of
/// PCM16 for speech; see `packed_audio`); views of it decode only the range they are asked
/// for. A conversation item whose audio no longer fits the session's audio budget is
/// [`Pcm::release`]d: it still knows how long it was (truncation and snapshots need that),
/// but holds no samples.
///
/// ```
/// use liveagent_server::audio::Pcm;
/// let all = Pcm::from(vec![1i16, 2, 3, 4]);
/// let head = all.slice(0, 2);
/// assert_eq!(head.samples().as_deref(), Some(&[1i16, 2][..]));
/// let packed = Pcm::packed(vec![1i16, 2, 3, 4]);
/// assert_eq!(packed.slice(1, 3).range(0, 2).as_ref(), &[2i16, 3]);
/// assert_eq!(packed, all);
/// let mut kept = all.clone();
/// kept.release();
/// assert_eq!((kept.len(), kept.samples()), (4, None));
/// assert_eq!(head.len(), 2); // other views keep their samples
/// ```
#[derive(Clone, Default)]
pub struct Pcm {
    buf: Option<Arc<Store>>,
    start: usize,
    len: usize,
}

/// What a [`Pcm`] view's samples are kept in.
enum Store {
    /// Plain samples (audio being played or received).
    Raw(Vec<i16>),
    /// Losslessly packed samples (audio the conversation keeps).
    Packed(Packed),
}

impl Store {
    fn len(&self) -> usize {
        match self {
            Store::Raw(v) => v.len(),
            Store::Packed(p) => p.len(),
        }
    }

    fn held_bytes(&self) -> usize {
        match self {
            Store::Raw(v) => v.len() * 2,
            Store::Packed(p) => p.held_bytes(),
        }
    }
}

impl Pcm {
    /// Keeps `samples` losslessly packed (for audio that is kept rather than played: it
    /// costs a pass over the samples now, and each read decodes the blocks it touches).
    pub fn packed(samples: Vec<i16>) -> Pcm {
        Pcm::from_packed(Packed::new(&samples))
    }

    /// A view of all of `packed`.
    pub(crate) fn from_packed(packed: Packed) -> Pcm {
        Pcm {
            len: packed.len(),
            start: 0,
            buf: Some(Arc::new(Store::Packed(packed))),
        }
    }

    /// This view with its samples packed (a copy when they were plain; the same buffer
    /// when they already were packed, or were released).
    pub fn to_packed(&self) -> Pcm {
        match self.buf.as_deref() {
            Some(Store::Raw(_)) => Pcm::packed(self.range(0, self.len).into_owned()),
            _ => self.clone(),
        }
    }

    /// Number of samples (also after [`Pcm::release`]).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The samples (decoded when packed), or `None` once released.
    pub fn samples(&self) -> Option<Cow<'_, [i16]>> {
        self.buf.as_ref()?;
        Some(self.range(0, self.len))
    }

    /// Samples `[from, to)` of this view (clamped), decoding only those when packed; empty
    /// once released.
    pub fn range(&self, from: usize, to: usize) -> Cow<'_, [i16]> {
        let to = to.min(self.len);
        let from = from.min(to);
        match self.buf.as_deref() {
            None => Cow::Borrowed(&[]),
            Some(Store::Raw(v)) => Cow::Borrowed(&v[self.start + from..self.start + to]),
            Some(Store::Packed(p)) => {
                let mut out = Vec::with_capacity(to - from);
                p.decode_range(self.start + from, self.start + to, &mut out);
                Cow::Owned(out)
            }
        }
    }

    /// Appends samples `[from, to)` of this view (clamped) to `out`, decoding only those
    /// when packed; nothing once released.
    pub fn range_into(&self, from: usize, to: usize, out: &mut Vec<i16>) {
        let to = to.min(self.len);
        let from = from.min(to);
        match self.buf.as_deref() {
            None => {}
            Some(Store::Raw(v)) => out.extend_from_slice(&v[self.start + from..self.start + to]),
            Some(Store::Packed(p)) => p.decode_range(self.start + from, self.start + to, out),
        }
    }

    /// Bytes this view's samples take in their buffer (its share of a packed buffer); 0
    /// once released.
    pub fn held_bytes(&self) -> usize {
        match self.buf.as_deref() {
            None => 0,
            Some(store) => {
                (store.held_bytes() as u128 * self.len as u128 / store.len().max(1) as u128)
                    as usize
            }
        }
    }

    /// Identifies the buffer this view's samples are in (views of one buffer share it);
    /// `None` once released.
    pub(crate) fn buffer_id(&self) -> Option<usize> {
        self.buf.as_ref().map(|b| Arc::as_ptr(b) as usize)
    }

    /// Samples in the whole buffer this view is a range of; 0 once released.
    pub(crate) fn buffer_len(&self) -> usize {
        self.buf.as_deref().map_or(0, Store::len)
    }

    /// Whether the samples are still held.
    pub fn is_held(&self) -> bool {
        self.buf.is_some() || self.len == 0
    }

    /// Samples `[from, to)` of this view (clamped), sharing the buffer.
    pub fn slice(&self, from: usize, to: usize) -> Pcm {
        let to = to.min(self.len);
        let from = from.min(to);
        Pcm {
            buf: self.buf.clone(),
            start: self.start + from,
            len: to - from,
        }
    }

    /// Lets go of the samples, keeping the length.
    pub fn release(&mut self) {
        self.buf = None;
    }
}

impl From<Vec<i16>> for Pcm {
    fn from(v: Vec<i16>) -> Self {
        Pcm {
            len: v.len(),
            start: 0,
            buf: Some(Arc::new(Store::Raw(v))),
        }
    }
}

impl PartialEq for Pcm {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.samples() == other.samples()
    }
}

impl std::fmt::Debug for Pcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Pcm({} samples{})",
            self.len,
            match self.buf.as_deref() {
                None if self.len > 0 => ", released",
                Some(Store::Packed(_)) => ", packed",
                _ => "",
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_both_alphabets_and_padding() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        let std = b64_encode(&bytes);
        assert_eq!(b64_decode(&std).unwrap(), bytes);
        let url = std.replace('+', "-").replace('/', "_");
        assert_eq!(b64_decode(&url).unwrap(), bytes);
        assert_eq!(b64_decode(url.trim_end_matches('=')).unwrap(), bytes);
        assert!(b64_decode("not base64!").is_err());
    }

    #[test]
    fn g711_round_trip_is_close() {
        for s in [-30000i16, -1000, -10, 0, 10, 1000, 30000] {
            let u = ulaw_decode(ulaw_encode(s));
            assert!(
                (u as i32 - s as i32).abs() <= (s as i32).abs() / 16 + 16,
                "ulaw {s} {u}"
            );
            let a = alaw_decode(alaw_encode(s));
            assert!(
                (a as i32 - s as i32).abs() <= (s as i32).abs() / 16 + 16,
                "alaw {s} {a}"
            );
        }
    }

    #[test]
    fn resample_changes_length_by_ratio() {
        let s = vec![100i16; 1600];
        assert_eq!(resample(&s, 16000, 24000).len(), 2400);
        assert_eq!(resample(&s, 24000, 8000).len(), 533);
    }

    #[test]
    fn synth_duration_follows_text_length() {
        let short = synth_text("hi");
        let long = synth_text("a much longer sentence to say");
        assert!(long.len() > short.len() * 5);
        assert!(short.iter().any(|s| s.abs() > 1000));
    }
}
