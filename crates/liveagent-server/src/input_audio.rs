//! The input audio buffer both session types keep: what the client sent since the last
//! commit, placed on the session's timeline (samples since the session began, at
//! [`crate::audio::INTERNAL_RATE`]).
//!
//! It is sized for memory per session, which the `sessions` benchmark measures: a ring
//! (`VecDeque`), so that keeping only the newest few hundred ms while nobody speaks drops
//! old samples without moving the rest; growth by an eighth instead of doubling, so that a
//! turn's buffer holds little spare room; and commits hand over the samples losslessly
//! packed ([`Pcm::packed`]), coded straight from the ring, so that a conversation item holds
//! its audio in about half the bytes and no unpacked copy of a whole turn is ever made.

use std::collections::VecDeque;

use crate::audio::Pcm;
use crate::packed_audio::Packed;

/// The least a growing buffer reserves beyond what it needs: 100 ms at 24 kHz.
const GROW_MIN: usize = 2_400;

/// Audio received and not committed yet.
#[derive(Debug, Default)]
pub(crate) struct InputAudio {
    buf: VecDeque<i16>,
    /// Timeline position of the first buffered sample.
    start: u64,
    /// Samples received over the session: the timeline's end.
    total: u64,
}

impl InputAudio {
    /// Samples buffered.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Timeline position of the first buffered sample.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Samples received over the session (the end of the timeline).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Appends received samples.
    pub fn push(&mut self, samples: &[i16]) {
        self.total += samples.len() as u64;
        let need = self.buf.len() + samples.len();
        if need > self.buf.capacity() {
            // An eighth more than needed (at least 100 ms), not twice: a buffer holding a
            // turn keeps at most ~12 % of spare room instead of up to 100 %.
            self.buf
                .reserve_exact(samples.len() + (need / 8).max(GROW_MIN));
        }
        self.buf.extend(samples);
    }

    /// Counts received samples that are not kept (nothing can commit them); the buffer is
    /// emptied.
    pub fn skip(&mut self, n: usize) {
        self.total += n as u64;
        self.clear();
    }

    /// Keeps only the newest `keep` samples (while nobody speaks, only the prefix padding of
    /// a turn that has not started yet can still be committed). Dropping the oldest samples
    /// of a ring moves nothing.
    pub fn keep_newest(&mut self, keep: usize) {
        if self.buf.len() > keep {
            let cut = self.buf.len() - keep;
            self.buf.drain(..cut);
            self.start += cut as u64;
        }
    }

    /// Removes the timeline samples `[from, to)` and returns them, packed; everything
    /// buffered before `to` is dropped.
    pub fn take_range(&mut self, from: u64, to: u64) -> Pcm {
        let a = (from.saturating_sub(self.start) as usize).min(self.buf.len());
        let b = (to.saturating_sub(self.start) as usize)
            .min(self.buf.len())
            .max(a);
        let out = self.pack(a, b);
        self.buf.drain(..b);
        self.start += b as u64;
        self.shed_capacity();
        out
    }

    /// Takes everything buffered (a commit), packed; the buffer starts again, empty, at the
    /// end of the timeline.
    pub fn take_all(&mut self) -> Pcm {
        let all = self.pack(0, self.buf.len());
        self.buf = VecDeque::new();
        self.start = self.total;
        all
    }

    /// Buffered samples `[a, b)`, packed straight from the ring's two halves.
    fn pack(&self, a: usize, b: usize) -> Pcm {
        let (head, tail) = self.buf.as_slices();
        let cut = |s: &'_ [i16], from: usize, to: usize| -> std::ops::Range<usize> {
            from.min(s.len())..to.min(s.len())
        };
        let h = &head[cut(head, a, b)];
        let t = &tail[cut(
            tail,
            a.saturating_sub(head.len()),
            b.saturating_sub(head.len()),
        )];
        Pcm::from_packed(Packed::from_parts(h, t))
    }

    /// Drops everything buffered; the buffer starts again at the end of the timeline.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = self.total;
        self.shed_capacity();
    }

    /// Gives back the spare capacity of a buffer that was drained or cleared: otherwise it
    /// keeps its high-water capacity — one long utterance, or a flood of appends up to the
    /// input cap, would stay allocated for the rest of the session. Not on every small trim:
    /// only when the spare room is well past what the buffer holds.
    fn shed_capacity(&mut self) {
        if self.buf.capacity() > 4 * self.buf.len() + 8192 {
            self.buf.shrink_to(2 * self.buf.len());
        }
    }

    /// Allocated capacity, in samples (for tests).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(from: i16, n: usize) -> Vec<i16> {
        (0..n).map(|i| from.wrapping_add(i as i16)).collect()
    }

    #[test]
    fn ranges_are_taken_on_the_session_timeline() {
        let mut b = InputAudio::default();
        b.push(&ramp(0, 1000));
        b.keep_newest(400);
        assert_eq!((b.start(), b.len(), b.total()), (600, 400, 1000));
        b.push(&ramp(1000, 500));
        let t = b.take_range(700, 1200);
        assert_eq!(t, Pcm::from(ramp(700, 500)));
        // Everything before the range's end is gone; the rest stays.
        assert_eq!((b.start(), b.len()), (1200, 300));
        let all = b.take_all();
        assert_eq!(all, Pcm::from(ramp(1200, 300)));
        assert_eq!((b.start(), b.len(), b.total()), (1500, 0, 1500));
        b.skip(100);
        b.push(&[7; 10]);
        assert_eq!((b.start(), b.total()), (1600, 1610));
        // A range before what is buffered is empty and drops nothing; one that reaches into
        // it is clamped to it.
        assert!(b.take_range(0, 1600).is_empty());
        assert_eq!((b.start(), b.len()), (1600, 10));
        assert_eq!(b.take_range(0, 1605), Pcm::from(vec![7; 5]));
        assert_eq!((b.start(), b.len()), (1605, 5));
    }

    #[test]
    fn a_range_across_the_ring_wrap_is_packed_whole() {
        let mut b = InputAudio::default();
        b.push(&ramp(0, 3000));
        b.keep_newest(1000);
        // The ring wraps: the newest samples land in the front of the allocation.
        b.push(&ramp(3000, 3000));
        assert!(!b.buf.as_slices().1.is_empty(), "the ring did not wrap");
        let t = b.take_range(2100, 5900);
        assert_eq!(t.samples().unwrap().as_ref(), &ramp(2100, 3800)[..]);
        assert_eq!(b.take_all(), Pcm::from(ramp(5900, 100)));
    }

    #[test]
    fn spare_room_stays_small() {
        let mut b = InputAudio::default();
        // Silence: only the newest 12,000 samples are kept, appended 480 at a time.
        for _ in 0..200 {
            b.push(&[0; 480]);
            b.keep_newest(12_000);
        }
        assert!(
            b.capacity() <= 12_480 + 12_480 / 8 + GROW_MIN,
            "{}",
            b.capacity()
        );
        // A long turn: at most an eighth (or 100 ms) of spare room, not up to twice the data.
        for _ in 0..200 {
            b.push(&[1; 480]);
        }
        assert!(b.capacity() <= b.len() + b.len() / 8 + GROW_MIN + 480);
        // After the turn is taken, the capacity goes back down.
        let _ = b.take_range(b.start(), b.total() - 480);
        assert!(b.capacity() <= 8192 + 4 * 480, "{}", b.capacity());
        b.push(&[2; 480_000]);
        b.clear();
        assert!(b.capacity() <= 8192, "{}", b.capacity());
    }
}
