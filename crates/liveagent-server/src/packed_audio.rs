//! Lossless compact storage for the conversation audio a session keeps.
//!
//! A committed user turn stays in the session so that `conversation.item.retrieve` can return
//! it with its audio, as the real API does; with tens of thousands of sessions on one server
//! that audio is most of a session's memory (≈ 48 KB per second of 24 kHz PCM16). This module
//! keeps it losslessly in less: the samples are cut into blocks of [`BLOCK`] (20 ms), each
//! coded on its own — the residual of the best of three fixed polynomial predictors (orders
//! 0–2, as FLAC's "fixed" subframes), zigzag-mapped and Rice-coded with a per-block
//! parameter; a block of one repeated value (digital silence) is stored as that value, and a
//! block the coder cannot shrink (noise) as raw samples, so nothing ever grows by more than a
//! header byte per block. Blocks decode independently, so a playback that reads 40 ms at a
//! time decodes only the blocks it needs.
//!
//! No file format is needed here (the bytes never leave the process), which is why this is a
//! small coder and not a FLAC encoder/decoder pair of crates.
//!
//! ```
//! use liveagent_server::audio::Pcm;
//! let samples: Vec<i16> = (0..10_000).map(|i| ((i as f32 / 40.0).sin() * 8000.0) as i16).collect();
//! let packed = Pcm::packed(samples.clone());
//! assert!(packed.held_bytes() < samples.len() * 2 / 2);
//! assert_eq!(packed.samples().unwrap().as_ref(), &samples[..]);
//! assert_eq!(packed.range(4_000, 4_010).as_ref(), &samples[4_000..4_010]);
//! ```

/// Samples per independently coded block: 20 ms at 24 kHz.
pub(crate) const BLOCK: usize = 480;

/// Unary prefixes at or above this length escape to a plain [`ESC_BITS`]-bit value.
const ESC: u32 = 24;
/// Bits of an escaped value: a zigzagged order-2 residual of PCM16 fits in 19.
const ESC_BITS: u32 = 20;

const MODE_CONSTANT: u8 = 3;
const MODE_RAW: u8 = 4;

/// Samples coded block by block; see the module documentation.
#[derive(Clone, Debug)]
pub(crate) struct Packed {
    data: Box<[u8]>,
    /// Byte offset of each block in `data`, and the end.
    offsets: Box<[u32]>,
    len: usize,
}

impl Packed {
    /// Codes `samples`.
    pub fn new(samples: &[i16]) -> Packed {
        Packed::from_parts(&[samples])
    }

    /// Codes the samples of `parts` one after the other (the chunks of an input buffer),
    /// without joining them first.
    pub fn from_parts(parts: &[&[i16]]) -> Packed {
        thread_local! {
            /// Where a turn is coded before it is copied out at its exact size: growing (or
            /// over-reserving and shrinking) the kept buffer itself would leave free holes of
            /// up to a turn's size in the heap, which stay resident.
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let len = parts.iter().map(|p| p.len()).sum::<usize>();
        let blocks = len.div_ceil(BLOCK);
        let mut offsets = Vec::with_capacity(blocks + 1);
        let mut residual = Vec::with_capacity(BLOCK);
        let mut block = [0i16; BLOCK];
        let mut rest = parts.iter().copied();
        let mut cur: &[i16] = &[];
        let data = SCRATCH.with_borrow_mut(|data| {
            data.clear();
            for b in 0..blocks {
                let n = BLOCK.min(len - b * BLOCK);
                // Gather the block from the parts, a slice at a time.
                let mut filled = 0;
                while filled < n {
                    if cur.is_empty() {
                        match rest.next() {
                            Some(p) => cur = p,
                            None => {
                                block[filled..n].fill(0);
                                break;
                            }
                        }
                        continue;
                    }
                    let m = cur.len().min(n - filled);
                    block[filled..filled + m].copy_from_slice(&cur[..m]);
                    filled += m;
                    cur = &cur[m..];
                }
                offsets.push(data.len() as u32);
                encode_block(&block[..n], &mut residual, data);
            }
            offsets.push(data.len() as u32);
            let exact: Box<[u8]> = data.as_slice().into();
            // A huge turn (a 10-minute commit) does not keep a huge scratch buffer.
            if data.capacity() > 1 << 20 {
                *data = Vec::new();
            }
            exact
        });
        Packed {
            data,
            offsets: offsets.into_boxed_slice(),
            len,
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes held (coded data and block index).
    pub fn held_bytes(&self) -> usize {
        self.data.len() + self.offsets.len() * 4
    }

    /// Appends samples `[from, to)` (clamped) to `out`, decoding only the blocks they are in.
    pub fn decode_range(&self, from: usize, to: usize, out: &mut Vec<i16>) {
        let to = to.min(self.len);
        if from >= to {
            return;
        }
        let mut block = [0i16; BLOCK];
        for b in from / BLOCK..=(to - 1) / BLOCK {
            let start = b * BLOCK;
            let n = BLOCK.min(self.len - start);
            let bytes = &self.data[self.offsets[b] as usize..self.offsets[b + 1] as usize];
            let lo = from.max(start) - start;
            let hi = to.min(start + n) - start;
            if lo == 0 && hi == n {
                // A whole block (the usual case): decoded straight into `out`.
                let at = out.len();
                out.resize(at + n, 0);
                decode_block(bytes, &mut out[at..]);
            } else {
                decode_block(bytes, &mut block[..n]);
                out.extend_from_slice(&block[lo..hi]);
            }
        }
    }
}

/// The prediction of sample `i` by the fixed predictor of `order`, from the block's own
/// previous samples (those before the block count as 0, so blocks decode independently).
#[inline]
fn predict(order: u8, x1: i32, x2: i32) -> i32 {
    match order {
        0 => 0,
        1 => x1,
        _ => 2 * x1 - x2,
    }
}

#[inline]
fn zigzag(r: i32) -> u32 {
    ((r << 1) ^ (r >> 31)) as u32
}

#[inline]
fn unzigzag(v: u32) -> i32 {
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

fn encode_block(block: &[i16], residual: &mut Vec<u32>, out: &mut Vec<u8>) {
    if block.iter().all(|&s| s == block[0]) {
        out.push(MODE_CONSTANT << 5);
        out.extend_from_slice(&block[0].to_le_bytes());
        return;
    }
    // The samples with the two (zero) samples before the block, so that every pass below is
    // a plain loop over arrays the compiler can vectorize.
    let n = block.len();
    let mut x = [0i32; BLOCK + 2];
    for (d, &s) in x[2..n + 2].iter_mut().zip(block) {
        *d = s as i32;
    }
    let x = &x[..n + 2];
    // The order whose residuals are smallest in sum (a fair proxy for their coded size).
    let mut sums = [0u64; 3];
    for w in x.windows(3) {
        sums[0] += zigzag(w[2]) as u64;
        sums[1] += zigzag(w[2] - w[1]) as u64;
        sums[2] += zigzag(w[2] - 2 * w[1] + w[0]) as u64;
    }
    let order = (0..3u8).min_by_key(|&o| sums[o as usize]).unwrap_or(0);
    residual.clear();
    match order {
        0 => residual.extend(x[2..].iter().map(|&v| zigzag(v))),
        1 => residual.extend(x[1..].windows(2).map(|w| zigzag(w[1] - w[0]))),
        _ => residual.extend(x.windows(3).map(|w| zigzag(w[2] - 2 * w[1] + w[0]))),
    }
    // The Rice parameter that codes the residuals in the fewest bits: near log2 of their
    // mean, the neighbours tried too.
    let mean = sums[order as usize] / n as u64;
    let guess = 64 - mean.leading_zeros();
    let ks = [guess.saturating_sub(1), guess, guess + 1];
    let mut bits = [0u64; 3];
    for (b, &k) in bits.iter_mut().zip(&ks) {
        *b = residual
            .iter()
            .map(|&v| {
                let q = v >> k;
                if q < ESC {
                    q + 1 + k
                } else {
                    ESC + ESC_BITS
                }
            })
            .sum::<u32>() as u64;
    }
    let k = (0..3)
        .filter(|&i| ks[i] <= 16)
        .min_by_key(|&i| bits[i])
        .map_or(16, |i| ks[i]);
    let start = out.len();
    out.reserve(2 + block.len() * 2 + 8);
    out.push((order << 5) | k as u8);
    let mut w = BitWriter::new(out);
    for &v in residual.iter() {
        let q = v >> k;
        if q < ESC {
            // q ones, a zero, then the low k bits: at most 23 + 1 + 16 bits in one write.
            let code = (((1u64 << q) - 1) << (k + 1)) | (v & ((1u32 << k) - 1)) as u64;
            w.put_long(code, q + 1 + k);
        } else {
            let code = (((1u64 << ESC) - 1) << ESC_BITS) | (v & ((1u32 << ESC_BITS) - 1)) as u64;
            w.put_long(code, ESC + ESC_BITS);
        }
    }
    w.flush();
    if out.len() - start > 1 + block.len() * 2 {
        out.truncate(start);
        out.push(MODE_RAW << 5);
        for s in block {
            out.extend_from_slice(&s.to_le_bytes());
        }
    }
}

fn decode_block(bytes: &[u8], out: &mut [i16]) {
    let Some((&head, body)) = bytes.split_first() else {
        out.fill(0);
        return;
    };
    let (mode, k) = (head >> 5, (head & 31) as u32);
    match mode {
        MODE_CONSTANT => {
            let v = i16::from_le_bytes([body[0], body[1]]);
            out.fill(v);
        }
        MODE_RAW => {
            for (s, b) in out.iter_mut().zip(body.chunks_exact(2)) {
                *s = i16::from_le_bytes([b[0], b[1]]);
            }
        }
        0 => decode_rice::<0>(body, k, out),
        1 => decode_rice::<1>(body, k, out),
        _ => decode_rice::<2>(body, k, out),
    }
}

/// Decodes a block's Rice-coded residuals with the predictor of `ORDER` (one loop per order,
/// so that the prediction is not chosen again for every sample).
fn decode_rice<const ORDER: u8>(body: &[u8], k: u32, out: &mut [i16]) {
    let mut r = BitReader::new(body);
    let (mut x1, mut x2) = (0i32, 0i32);
    for s in out.iter_mut() {
        let v = r.rice(k);
        let x = predict(ORDER, x1, x2) + unzigzag(v);
        *s = x as i16;
        (x2, x1) = (x1, x);
    }
}

/// Bits written most significant first.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    n: u32,
}

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        BitWriter { out, acc: 0, n: 0 }
    }

    /// Writes the low `bits` bits of `code` (at most 56).
    #[inline]
    fn put_long(&mut self, code: u64, bits: u32) {
        self.acc = (self.acc << bits) | code;
        self.n += bits;
        while self.n >= 8 {
            self.n -= 8;
            self.out.push((self.acc >> self.n) as u8);
        }
    }

    fn flush(&mut self) {
        if self.n > 0 {
            self.out.push((self.acc << (8 - self.n)) as u8);
            self.n = 0;
        }
    }
}

/// Reads what [`BitWriter`] wrote; past the end it reads zeros.
struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    acc: u64,
    n: u32,
}

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        BitReader {
            bytes,
            pos: 0,
            acc: 0,
            n: 0,
        }
    }

    /// Tops the accumulator up to at least 56 bits: eight bytes at a time while they are
    /// there (the bits of a partly taken byte are or-ed in again by the next refill, the
    /// same bits at the same place), then byte by byte, zeros past the end.
    #[inline]
    fn refill(&mut self) {
        if let Some(word) = self.bytes.get(self.pos..self.pos + 8) {
            let w = u64::from_be_bytes(word.try_into().unwrap_or([0; 8]));
            self.acc |= w >> self.n;
            let take = (63 - self.n) >> 3;
            self.pos += take as usize;
            self.n += take * 8;
            return;
        }
        while self.n <= 56 {
            let b = self.bytes.get(self.pos).copied().unwrap_or(0);
            self.pos += 1;
            self.acc |= (b as u64) << (56 - self.n);
            self.n += 8;
        }
    }

    /// Reads one Rice-coded value with parameter `k` (at most 16): up to [`ESC`] ones, the
    /// zero that ends them and `k` low bits, or [`ESC`] ones and an [`ESC_BITS`]-bit value.
    #[inline]
    fn rice(&mut self, k: u32) -> u32 {
        self.refill();
        let q = (!self.acc).leading_zeros().min(ESC);
        let (v, used) = if q < ESC {
            let low = if k == 0 {
                0
            } else {
                ((self.acc << (q + 1)) >> (64 - k)) as u32
            };
            ((q << k) | low, q + 1 + k)
        } else {
            (
                ((self.acc << ESC) >> (64 - ESC_BITS)) as u32,
                ESC + ESC_BITS,
            )
        };
        self.acc <<= used;
        self.n -= used;
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(samples: &[i16]) -> Packed {
        let p = Packed::new(samples);
        let mut out = Vec::new();
        p.decode_range(0, samples.len(), &mut out);
        assert_eq!(out, samples);
        p
    }

    fn noise(n: usize, seed: u64, amp: i32) -> Vec<i16> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x % (2 * amp as u64 + 1)) as i32 - amp) as i16
            })
            .collect()
    }

    #[test]
    fn every_kind_of_block_round_trips() {
        assert_eq!(round_trip(&[]).held_bytes(), 4);
        round_trip(&[5]);
        round_trip(&[i16::MIN, i16::MAX, i16::MIN, 0, i16::MAX]);
        // Extremes alternating: the order-2 residual needs all its 19 bits.
        let extremes: Vec<i16> = (0..2000)
            .map(|i| if i % 2 == 0 { i16::MIN } else { i16::MAX })
            .collect();
        round_trip(&extremes);
        // Full-scale noise: stored raw, one header byte per block more than the samples.
        let loud = noise(10_000, 7, 32767);
        assert!(round_trip(&loud).held_bytes() <= loud.len() * 2 + 21 * 5 + 4);
        // Silence: a few bytes per 20 ms.
        let silence = vec![0i16; 24_000];
        assert!(round_trip(&silence).held_bytes() <= 50 * 7 + 4);
        // A quiet noise floor, a tone, and a mix with steps: smaller than raw.
        let floor = noise(24_000, 3, 40);
        assert!(round_trip(&floor).held_bytes() < floor.len());
        let tone: Vec<i16> = (0..24_000)
            .map(|i| ((i as f32 * 0.05).sin() * 12_000.0) as i16)
            .collect();
        assert!(round_trip(&tone).held_bytes() < tone.len());
        let mixed: Vec<i16> = tone
            .iter()
            .zip(&floor)
            .enumerate()
            .map(|(i, (t, f))| if (i / 3000) % 2 == 0 { *f } else { t + f })
            .collect();
        round_trip(&mixed);
    }

    #[test]
    fn ranges_decode_only_what_they_ask_for() {
        let s = noise(5_000, 11, 3000);
        let p = Packed::new(&s);
        for (from, to) in [
            (0, 1),
            (479, 481),
            (480, 960),
            (100, 4_999),
            (4_990, 6_000),
            (7, 7),
        ] {
            let mut out = vec![1, 2];
            p.decode_range(from, to, &mut out);
            let to = to.min(s.len());
            assert_eq!(&out[2..], &s[from.min(to)..to], "{from}..{to}");
        }
    }
}
