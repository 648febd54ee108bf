//! The input audio buffer both session types keep: what the client sent since the last
//! commit, placed on the session's timeline (samples since the session began, at
//! [`crate::audio::INTERNAL_RATE`]).
//!
//! It is sized for memory per session, which the `sessions` benchmark measures. The samples
//! are kept in chunks of one fixed size ([`CHUNK`], 100 ms), not in one growing buffer: a
//! turn's buffer holds at most one chunk of spare room, growing never copies what is
//! buffered, and since every chunk is the same size a freed chunk is exactly what the next
//! one needs — a growing buffer reallocated through every size up to a whole turn left free
//! holes of all those sizes in the heap, which stayed resident (the `sessions` benchmark
//! counted ≈ 40 KiB of such free memory per talking session). Keeping only the newest few
//! hundred ms while nobody speaks frees whole chunks from the front. Commits hand over the
//! samples losslessly packed ([`Pcm::packed`]), coded straight from the chunks, so a
//! conversation item holds its audio in about half the bytes and no unpacked copy of a
//! whole turn is ever made.

use std::collections::VecDeque;

use crate::audio::Pcm;
use crate::packed_audio::Packed;

/// Samples per chunk: 100 ms at 24 kHz (4.8 KB).
const CHUNK: usize = 2_400;

/// Audio received and not committed yet.
#[derive(Debug, Default)]
pub(crate) struct InputAudio {
    /// Full chunks, and the last one filling up.
    chunks: VecDeque<Box<[i16]>>,
    /// Where the first buffered sample is in the first chunk.
    head: usize,
    /// Samples buffered.
    len: usize,
    /// Timeline position of the first buffered sample.
    start: u64,
    /// Samples received over the session: the timeline's end.
    total: u64,
}

impl InputAudio {
    /// Samples buffered.
    pub fn len(&self) -> usize {
        self.len
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
    pub fn push(&mut self, mut samples: &[i16]) {
        self.total += samples.len() as u64;
        while !samples.is_empty() {
            let used = (self.head + self.len) % CHUNK;
            if used == 0 && self.head + self.len == self.chunks.len() * CHUNK {
                self.chunks.push_back(vec![0i16; CHUNK].into_boxed_slice());
            }
            let last = self.chunks.back_mut().expect("a chunk with room");
            let n = (CHUNK - used).min(samples.len());
            last[used..used + n].copy_from_slice(&samples[..n]);
            self.len += n;
            samples = &samples[n..];
        }
    }

    /// Counts received samples that are not kept (nothing can commit them); the buffer is
    /// emptied.
    pub fn skip(&mut self, n: usize) {
        self.total += n as u64;
        self.clear();
    }

    /// Drops the oldest `n` buffered samples (whole chunks are freed).
    fn drop_front(&mut self, n: usize) {
        let n = n.min(self.len);
        self.head += n;
        self.len -= n;
        self.start += n as u64;
        while self.head >= CHUNK {
            self.chunks.pop_front();
            self.head -= CHUNK;
        }
        if self.len == 0 {
            // Nothing buffered: the next sample starts a fresh chunk.
            self.chunks.clear();
            self.head = 0;
        }
    }

    /// Keeps only the newest `keep` samples (while nobody speaks, only the prefix padding of
    /// a turn that has not started yet can still be committed).
    pub fn keep_newest(&mut self, keep: usize) {
        if self.len > keep {
            self.drop_front(self.len - keep);
        }
    }

    /// Removes the timeline samples `[from, to)` and returns them, packed; everything
    /// buffered before `to` is dropped.
    pub fn take_range(&mut self, from: u64, to: u64) -> Pcm {
        let a = (from.saturating_sub(self.start) as usize).min(self.len);
        let b = (to.saturating_sub(self.start) as usize)
            .min(self.len)
            .max(a);
        let out = self.pack(a, b);
        self.drop_front(b);
        out
    }

    /// Takes everything buffered (a commit), packed; the buffer starts again, empty, at the
    /// end of the timeline.
    pub fn take_all(&mut self) -> Pcm {
        let all = self.pack(0, self.len);
        self.clear();
        all
    }

    /// Drops everything buffered; the buffer starts again at the end of the timeline.
    pub fn clear(&mut self) {
        self.drop_front(self.len);
        self.start = self.total;
    }

    /// Buffered samples `[a, b)`, packed straight from the chunks.
    fn pack(&self, a: usize, b: usize) -> Pcm {
        let mut parts: Vec<&[i16]> = Vec::new();
        let (mut from, to) = (self.head + a, self.head + b);
        while from < to {
            let (c, off) = (from / CHUNK, from % CHUNK);
            let n = (CHUNK - off).min(to - from);
            parts.push(&self.chunks[c][off..off + n]);
            from += n;
        }
        Pcm::from_packed(Packed::from_parts(&parts))
    }

    /// Allocated room, in samples (for tests).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.chunks.len() * CHUNK
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
    fn a_range_across_chunks_is_packed_whole() {
        let mut b = InputAudio::default();
        // Appends of 480 samples (20 ms), as clients send them, over many chunks; the front
        // is trimmed in the middle of a chunk.
        for i in 0..40 {
            b.push(&ramp(i * 480, 480));
        }
        b.keep_newest(15_000);
        assert_eq!(b.start(), 19_200 - 15_000);
        let t = b.take_range(4_500, 18_999);
        assert_eq!(t.samples().unwrap().as_ref(), &ramp(4_500, 14_499)[..]);
        assert_eq!(b.take_all(), Pcm::from(ramp(18_999, 201)));
        assert_eq!(b.capacity(), 0);
    }

    #[test]
    fn spare_room_stays_small() {
        let mut b = InputAudio::default();
        // Silence: only the newest 12,000 samples are kept, appended 480 at a time.
        for _ in 0..200 {
            b.push(&[0; 480]);
            b.keep_newest(12_000);
        }
        assert!(b.capacity() <= 12_000 + 2 * CHUNK, "{}", b.capacity());
        // A long turn: at most one chunk of spare room.
        for _ in 0..200 {
            b.push(&[1; 480]);
        }
        assert!(b.capacity() < b.len() + 2 * CHUNK, "{}", b.capacity());
        // After the turn is taken, only what is left stays allocated.
        let _ = b.take_range(b.start(), b.total() - 480);
        assert!(b.capacity() <= 2 * CHUNK, "{}", b.capacity());
        b.push(&[2; 480_000]);
        b.clear();
        assert_eq!(b.capacity(), 0);
    }
}
