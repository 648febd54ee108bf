//! The fast path for the most frequent server event, `response.output_audio.delta`: find its
//! three fields in the frame text without a JSON parser.
//!
//! A serde parse of an audio delta spends most of its time scanning the base64 text byte by
//! byte for the end of the string (≈6.5 % of the client at N=1000). [`AudioDeltaFrame::scan`]
//! walks the top-level object itself, finds the end of each string with `memchr`, and
//! accepts only the frames it can read with certainty: the exact JSON grammar for the values
//! it allows (strings without escapes or control characters, integers), each known field at
//! most once, any field order, and nothing after the object. Anything else — an escape, a
//! nested value, `true`/`false`/`null`, a fraction, a duplicate field, malformed JSON — is
//! `None`, and the caller takes the full serde parse, which reads (or rejects) it exactly as
//! before. The delta's characters are not checked here: the caller decodes them as base64
//! and takes the full parse when that fails, so a delta that reaches the audio path holds
//! only base64 characters (no control characters, which JSON forbids).

/// The `type` of the frames [`AudioDeltaFrame::scan`] reads.
pub const AUDIO_DELTA_TYPE: &str = "response.output_audio.delta";

/// The fields of a `response.output_audio.delta` frame, borrowed from the frame text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioDeltaFrame<'a> {
    /// The response.
    pub response_id: &'a str,
    /// The assistant item.
    pub item_id: &'a str,
    /// The base64 audio, exactly as in the frame (not yet checked to be base64).
    pub delta: &'a str,
}

impl<'a> AudioDeltaFrame<'a> {
    /// The fields of `frame` when it is certainly a complete audio delta that the full
    /// parse would read as the same [`ServerEvent::OutputAudioDelta`](super::ServerEvent),
    /// provided its delta is base64; `None` when the frame is anything else or the scan is
    /// not certain (parse those with serde).
    ///
    /// ```
    /// use liveagent_openai::wire::AudioDeltaFrame;
    /// let frame = r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","output_index":0,"delta":"AQI="}"#;
    /// let d = AudioDeltaFrame::scan(frame).unwrap();
    /// assert_eq!((d.response_id, d.item_id, d.delta), ("r", "i", "AQI="));
    /// // An escape anywhere: not certain, the caller parses it fully.
    /// assert_eq!(AudioDeltaFrame::scan(&frame.replace("\"i\"", r#""\u0069""#)), None);
    /// ```
    pub fn scan(frame: &'a str) -> Option<Self> {
        let b = frame.as_bytes();
        let mut i = skip_ws(b, 0);
        if *b.get(i)? != b'{' {
            return None;
        }
        i += 1;
        let mut typed = false;
        let (mut response_id, mut item_id, mut delta) = (None, None, None);
        loop {
            i = skip_ws(b, i);
            if *b.get(i)? != b'"' {
                return None;
            }
            let (key, after) = string(b, i + 1, true)?;
            i = skip_ws(b, after);
            if *b.get(i)? != b':' {
                return None;
            }
            i = skip_ws(b, i + 1);
            let is_string = *b.get(i)? == b'"';
            match &b[key.0..key.1] {
                b"type" if !typed && is_string => {
                    let (v, after) = string(b, i + 1, true)?;
                    if &b[v.0..v.1] != AUDIO_DELTA_TYPE.as_bytes() {
                        return None;
                    }
                    typed = true;
                    i = after;
                }
                b"response_id" if response_id.is_none() && is_string => {
                    let (v, after) = string(b, i + 1, true)?;
                    response_id = Some(v);
                    i = after;
                }
                b"item_id" if item_id.is_none() && is_string => {
                    let (v, after) = string(b, i + 1, true)?;
                    item_id = Some(v);
                    i = after;
                }
                b"delta" if delta.is_none() && is_string => {
                    // The long one: its characters are left to the base64 decoder.
                    let (v, after) = string(b, i + 1, false)?;
                    delta = Some(v);
                    i = after;
                }
                // A known field twice, or not a string: the full parse decides.
                b"type" | b"response_id" | b"item_id" | b"delta" => return None,
                // Another field (ignored by the full parse): a string or an integer.
                _ if is_string => i = string(b, i + 1, true)?.1,
                _ => i = integer(b, i)?,
            }
            i = skip_ws(b, i);
            match *b.get(i)? {
                b',' => i += 1,
                b'}' => break,
                _ => return None,
            }
        }
        if !typed || skip_ws(b, i + 1) != b.len() {
            return None;
        }
        let text = |(start, end): (usize, usize)| frame.get(start..end);
        Some(Self {
            response_id: text(response_id?)?,
            item_id: text(item_id?)?,
            delta: text(delta?)?,
        })
    }
}

/// The index of the first byte at or after `i` that is not JSON whitespace.
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// The string whose text starts at `start` (after its opening quote): its text's range and
/// the index after its closing quote. `None` if it has an escape or is not closed, or (when
/// `checked`) holds a control character, which JSON forbids in a string.
fn string(b: &[u8], start: usize, checked: bool) -> Option<((usize, usize), usize)> {
    let len = memchr::memchr2(b'"', b'\\', b.get(start..)?)?;
    let end = start + len;
    if b[end] != b'"' || (checked && b[start..end].iter().any(|&c| c < 0x20)) {
        return None;
    }
    Some(((start, end), end + 1))
}

/// The index after the integer at `i` (`-?(0|[1-9][0-9]*)`, at most 18 digits, so that it
/// fits any integer type the full parse might read it as); `None` for anything else,
/// fractions and exponents included.
fn integer(b: &[u8], mut i: usize) -> Option<usize> {
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    let digits = b
        .get(i..)?
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if digits == 0 || digits > 18 || (digits > 1 && b[i] == b'0') {
        return None;
    }
    Some(i + digits)
}
