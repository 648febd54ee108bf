//! PCM16 audio as it travels on the event bus.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

/// Appends `samples` to `out` as little-endian PCM16 bytes.
///
/// One resize, then a loop over fixed-size slices that compiles to a copy (on little-endian
/// machines) or a vectorized byte swap; pushing two bytes per sample with
/// `extend_from_slice` checks the capacity each time and does not vectorize. Every 20 ms
/// frame of every conversation goes through this on its way to a socket.
///
/// ```
/// let mut out = vec![0xAA];
/// liveagent_core::audio::extend_le_bytes(&[16, -1], &mut out);
/// assert_eq!(out, vec![0xAA, 0x10, 0x00, 0xff, 0xff]);
/// ```
pub fn extend_le_bytes(samples: &[i16], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + samples.len() * 2, 0);
    for (b, s) in out[start..].chunks_exact_mut(2).zip(samples) {
        b.copy_from_slice(&s.to_le_bytes());
    }
}

/// A chunk of mono, signed 16-bit PCM audio and its sample rate.
///
/// The samples live behind an `Arc`, so cloning a chunk to fan it out to several
/// subscribers copies a pointer, not the audio.
///
/// ```
/// use liveagent_core::AudioChunk;
/// let chunk = AudioChunk::from_le_bytes(&[0x10, 0x00, 0xff, 0xff], 24_000);
/// assert_eq!(&chunk.samples[..], &[16, -1]);
/// assert_eq!(chunk.to_le_bytes(), vec![0x10, 0x00, 0xff, 0xff]);
/// ```
#[derive(Clone, Debug, Serialize)]
pub struct AudioChunk {
    /// Mono PCM16 samples.
    pub samples: Arc<[i16]>,
    /// Samples per second.
    pub sample_rate: u32,
    /// When this audio entered liveagent: the time its frame was read from the socket
    /// (synthesized audio, set by the session) or captured (microphone audio, set by the
    /// recorder). Used to measure the latency the library adds; `None` when unknown.
    #[serde(skip)]
    pub origin: Option<Instant>,
}

/// Two chunks are equal when their samples and rates are; `origin` is not compared.
impl PartialEq for AudioChunk {
    fn eq(&self, other: &Self) -> bool {
        self.sample_rate == other.sample_rate && self.samples == other.samples
    }
}

impl Eq for AudioChunk {}

impl AudioChunk {
    /// Wraps samples recorded or synthesized at `sample_rate`.
    pub fn new(samples: impl Into<Arc<[i16]>>, sample_rate: u32) -> Self {
        AudioChunk {
            samples: samples.into(),
            sample_rate,
            origin: None,
        }
    }

    /// Sets [`origin`](Self::origin).
    pub fn with_origin(mut self, origin: Instant) -> Self {
        self.origin = Some(origin);
        self
    }

    /// A chunk of `ms` milliseconds of silence.
    pub fn silence(ms: u32, sample_rate: u32) -> Self {
        let n = (sample_rate as u64 * ms as u64 / 1000) as usize;
        AudioChunk::new(vec![0i16; n], sample_rate)
    }

    /// Decodes little-endian PCM16 bytes (an odd trailing byte is ignored).
    pub fn from_le_bytes(bytes: &[u8], sample_rate: u32) -> Self {
        // Decoded straight into the shared buffer (one allocation), in a plain loop over
        // slices that compiles to a copy; collecting an iterator into an `Arc<[i16]>` writes
        // one element at a time behind a drop guard, several times slower per frame.
        // SAFETY: all-zero bytes are a valid `i16`.
        let mut samples = unsafe { Arc::<[i16]>::new_zeroed_slice(bytes.len() / 2).assume_init() };
        let out = Arc::get_mut(&mut samples).expect("a fresh Arc is unique");
        for (s, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            *s = i16::from_le_bytes([b[0], b[1]]);
        }
        AudioChunk {
            samples,
            sample_rate,
            origin: None,
        }
    }

    /// Encodes the samples as little-endian PCM16 bytes.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        extend_le_bytes(&self.samples, &mut out);
        out
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True when the chunk holds no samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Duration in microseconds.
    pub fn duration_us(&self) -> u64 {
        if self.sample_rate == 0 {
            return 0;
        }
        self.samples.len() as u64 * 1_000_000 / self.sample_rate as u64
    }

    /// Duration in whole milliseconds (rounded down).
    pub fn duration_ms(&self) -> u64 {
        self.duration_us() / 1000
    }

    /// Root-mean-square level in dBFS (-inf for digital silence), for level meters.
    pub fn level_dbfs(&self) -> f32 {
        if self.samples.is_empty() {
            return f32::NEG_INFINITY;
        }
        let sum: f64 = self.samples.iter().map(|&s| (s as f64) * (s as f64)).sum();
        let rms = (sum / self.samples.len() as f64).sqrt() / 32768.0;
        (20.0 * rms.log10()) as f32
    }
}
