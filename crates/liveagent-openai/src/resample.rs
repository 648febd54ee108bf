//! A small streaming linear resampler for microphone audio that arrives at the wrong rate.
//! The recorder should resample properly (the `liveagent-audio` crate uses rubato); this is
//! the safety net so that a 16 or 48 kHz chunk still reaches the model intelligibly.

/// Linear interpolation across chunk boundaries (the last sample of a chunk is kept for the
/// next one, so there are no clicks between chunks).
#[derive(Clone, Debug)]
pub(crate) struct LinearResampler {
    from: u32,
    to: u32,
    /// Position of the next output sample, in input samples relative to the current chunk's
    /// first sample (in `[-1, 0)` between chunks: it falls between the previous chunk's last
    /// sample and the current chunk's first).
    next: f64,
    prev: Option<i16>,
}

impl LinearResampler {
    pub(crate) fn new(from: u32, to: u32) -> Self {
        LinearResampler {
            from,
            to,
            next: 0.0,
            prev: None,
        }
    }

    pub(crate) fn input_rate(&self) -> u32 {
        self.from
    }

    pub(crate) fn process(&mut self, input: &[i16]) -> Vec<i16> {
        if input.is_empty() || self.from == 0 || self.to == 0 {
            return Vec::new();
        }
        let step = self.from as f64 / self.to as f64;
        let len = input.len() as f64;
        let mut out = Vec::with_capacity((len / step) as usize + 2);
        let sample = |i: isize, prev: Option<i16>| -> f64 {
            if i < 0 {
                prev.unwrap_or(input[0]) as f64
            } else {
                input[(i as usize).min(input.len() - 1)] as f64
            }
        };
        while self.next < len - 1.0 {
            let i = self.next.floor();
            let frac = self.next - i;
            let a = sample(i as isize, self.prev);
            let b = sample(i as isize + 1, self.prev);
            out.push((a + (b - a) * frac).round().clamp(-32768.0, 32767.0) as i16);
            self.next += step;
        }
        self.next -= len;
        self.prev = input.last().copied();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_length_follows_the_ratio_across_chunks() {
        let mut r = LinearResampler::new(16_000, 24_000);
        let total: usize = (0..50).map(|_| r.process(&[100; 320]).len()).sum();
        // 50 × 20 ms at 16 kHz = 1 s → 24 000 samples, give or take one.
        assert!((23_999..=24_001).contains(&total), "{total}");
        let mut r = LinearResampler::new(48_000, 24_000);
        let total: usize = (0..50).map(|_| r.process(&[7; 960]).len()).sum();
        assert!((23_999..=24_001).contains(&total), "{total}");
    }

    #[test]
    fn constant_signal_stays_constant() {
        let mut r = LinearResampler::new(16_000, 24_000);
        let out: Vec<i16> = (0..3).flat_map(|_| r.process(&[1234; 160])).collect();
        assert!(out.iter().all(|&s| s == 1234));
    }
}
