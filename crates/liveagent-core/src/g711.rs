//! G.711 μ-law and A-law: the 8 kHz telephone codecs (ITU-T G.711), one byte per sample.
//!
//! Decoding and encoding are a few bit operations each. Decoding a byte and encoding the
//! result gives the byte back for **every** code, so PCM16 on the event bus between two
//! μ-law (or A-law) ends is a lossless round trip, not a transcoding: the bytes a caller
//! sent are the bytes the provider gets. (μ-law's "negative zero" `0x7F` decodes to -1
//! instead of 0 for that reason: one LSB, inaudible, and `-1` encodes back to `0x7F`.)
//! Silence is `0xFF` (μ-law) and `0xD5` (A-law); never pad μ-law with `0x00`, which is
//! full-scale negative.

const BIAS: i32 = 0x84;
const CLIP: i32 = 32635;

/// Decodes one μ-law byte to a PCM16 sample.
///
/// ```
/// use liveagent_core::g711::{ulaw_decode, ulaw_encode};
/// assert_eq!(ulaw_decode(0xFF), 0);
/// assert_eq!(ulaw_decode(0x80), 32124);
/// assert_eq!(ulaw_encode(1000), 0xCE);
/// ```
pub fn ulaw_decode(byte: u8) -> i16 {
    if byte == 0x7F {
        return -1; // negative zero: keep the code distinct so it survives a round trip
    }
    let u = !byte;
    let sign = u & 0x80;
    let exp = ((u >> 4) & 7) as i32;
    let mant = (u & 0x0F) as i32;
    let mag = (((mant << 3) + BIAS) << exp) - BIAS;
    (if sign != 0 { -mag } else { mag }) as i16
}

/// Encodes one PCM16 sample as μ-law.
pub fn ulaw_encode(sample: i16) -> u8 {
    let mut x = sample as i32;
    let sign = if x < 0 {
        x = -x;
        0x80
    } else {
        0
    };
    x = x.min(CLIP) + BIAS;
    let exp = (31 - (x as u32).leading_zeros() as i32 - 7).clamp(0, 7);
    let mant = (x >> (exp + 3)) & 0x0F;
    !((sign | (exp << 4) | mant) as u8)
}

/// Decodes one A-law byte to a PCM16 sample.
pub fn alaw_decode(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let sign = a & 0x80;
    let exp = ((a >> 4) & 7) as i32;
    let mant = (a & 0x0F) as i32;
    let mag = if exp == 0 {
        (mant << 4) + 8
    } else {
        ((mant << 4) + 0x108) << (exp - 1)
    };
    (if sign != 0 { mag } else { -mag }) as i16
}

/// Encodes one PCM16 sample as A-law.
pub fn alaw_encode(sample: i16) -> u8 {
    let mut x = sample as i32;
    let sign = if x >= 0 {
        0x80
    } else {
        x = -x - 1;
        0
    };
    x = x.min(32767);
    let enc = if x < 256 {
        (x >> 4) as u8
    } else {
        let exp = (31 - (x as u32).leading_zeros() as i32 - 7).clamp(1, 7);
        let mant = (x >> (exp + 3)) & 0x0F;
        ((exp << 4) | mant) as u8
    };
    (sign | enc) ^ 0x55
}

/// Decodes μ-law bytes to PCM16 samples.
pub fn ulaw_to_pcm16(bytes: &[u8]) -> Vec<i16> {
    bytes.iter().map(|&b| ulaw_decode(b)).collect()
}

/// Encodes PCM16 samples as μ-law bytes.
pub fn pcm16_to_ulaw(samples: &[i16]) -> Vec<u8> {
    samples.iter().map(|&s| ulaw_encode(s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_vectors_from_the_protocol_notes() {
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(1), 0xFF);
        assert_eq!(ulaw_encode(1000), 0xCE);
        assert_eq!(ulaw_encode(-1000), 0x4E);
        assert_eq!(ulaw_encode(32767), 0x80);
        assert_eq!(ulaw_encode(-32768), 0x00);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), -1, "negative zero, one LSB below 0");
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0xFE), 8);
        assert_eq!(ulaw_decode(0x7E), -8);
    }

    #[test]
    fn ulaw_round_trip_is_lossless() {
        for b in 0..=255u8 {
            assert_eq!(ulaw_encode(ulaw_decode(b)), b, "code {b:#04x}");
        }
    }

    #[test]
    fn alaw_round_trip_is_lossless() {
        for b in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(b)), b, "code {b:#04x}");
        }
        assert_eq!(alaw_encode(0), 0xD5);
    }

    #[test]
    fn encoding_tracks_the_signal() {
        for s in (-32768i32..=32767).step_by(97) {
            let s = s as i16;
            let u = ulaw_decode(ulaw_encode(s)) as i32;
            let a = alaw_decode(alaw_encode(s)) as i32;
            let tol = (s as i32).abs() / 16 + 40;
            assert!((u - s as i32).abs() <= tol, "ulaw {s} -> {u}");
            assert!((a - s as i32).abs() <= tol, "alaw {s} -> {a}");
        }
    }
}
