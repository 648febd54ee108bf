//! [`TwilioCodec`]: Twilio Media Streams as a sans-IO codec. Caller audio (μ-law 8 kHz)
//! becomes PCM16 8 kHz on the bus; the agent's audio goes out as whole 20 ms μ-law frames,
//! each `media` followed by a `mark` whose echo says how far the caller has heard.

use std::collections::VecDeque;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use liveagent_core::events::Id;
use liveagent_core::AudioChunk;

use super::wire::{MarkPayload, OutMedia, TwilioIn, TwilioOut};
use crate::codec::{CallStart, Decoder, Encoder, FrameError, Inbound, OutFrame, WireIn};
use crate::g711;

/// Twilio's audio rate.
pub const TWILIO_RATE: u32 = 8_000;
/// One 20 ms μ-law frame.
pub const FRAME_BYTES: usize = 160;
/// μ-law silence.
pub const ULAW_SILENCE: u8 = 0xFF;
/// Longest gap in the caller's audio filled with silence (1 s).
const MAX_GAP_MS: u64 = 1_000;
/// Marks remembered while waiting for their echo.
const MAX_MARKS: usize = 4_096;

/// Checks the `start` message before the conversation starts (the per-call token).
pub type StartCheck = Arc<dyn Fn(&CallStart) -> bool + Send + Sync>;

/// The Twilio Media Streams codec. Split into its halves with [`split`](Self::split).
#[derive(Default)]
pub struct TwilioCodec {
    check: Option<StartCheck>,
}

impl TwilioCodec {
    /// A codec that accepts any `start`.
    pub fn new() -> Self {
        TwilioCodec::default()
    }

    /// Refuses a `start` for which `check` is false (closes with 1008).
    pub fn check_start(mut self, check: StartCheck) -> Self {
        self.check = Some(check);
        self
    }

    /// The decoder and the encoder.
    pub fn split(self) -> (TwilioDecoder, TwilioEncoder) {
        (
            TwilioDecoder {
                check: self.check,
                stream_sid: None,
                next_ts: None,
            },
            TwilioEncoder::default(),
        )
    }
}

/// The Twilio → server half.
pub struct TwilioDecoder {
    check: Option<StartCheck>,
    stream_sid: Option<String>,
    next_ts: Option<u64>,
}

impl std::fmt::Debug for TwilioDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioDecoder")
            .field("stream_sid", &self.stream_sid)
            .finish()
    }
}

impl TwilioDecoder {
    fn same_stream(&self, sid: Option<&String>) -> Result<(), FrameError> {
        match (sid, &self.stream_sid) {
            (Some(got), Some(ours)) if got != ours => Err(FrameError::OutOfOrder(format!(
                "streamSid {got} is not this stream's"
            ))),
            _ => Ok(()),
        }
    }
}

impl Decoder for TwilioDecoder {
    fn decode(&mut self, frame: WireIn<'_>) -> Result<Vec<Inbound>, FrameError> {
        let WireIn::Text(text) = frame else {
            return Err(FrameError::Unsupported(
                "binary frame (Media Streams messages are JSON text)".into(),
            ));
        };
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| FrameError::Malformed(e.to_string()))?;
        let event = value
            .get("event")
            .and_then(|e| e.as_str())
            .ok_or_else(|| FrameError::Malformed("no \"event\"".into()))?;
        if !matches!(
            event,
            "connected" | "start" | "media" | "mark" | "dtmf" | "stop"
        ) {
            return Err(FrameError::UnknownType(event.chars().take(64).collect()));
        }
        let msg: TwilioIn =
            serde_json::from_value(value).map_err(|e| FrameError::Malformed(e.to_string()))?;
        Ok(match msg {
            TwilioIn::Connected { .. } => vec![Inbound::Ignore],
            TwilioIn::Start { start, .. } => {
                if self.stream_sid.is_some() {
                    return Err(FrameError::OutOfOrder("a second start".into()));
                }
                let f = &start.media_format;
                if !f.encoding.eq_ignore_ascii_case("audio/x-mulaw")
                    || f.sample_rate != TWILIO_RATE
                    || f.channels != 1
                {
                    return Err(FrameError::Unsupported(format!(
                        "media format {} {} Hz x{} (only audio/x-mulaw 8000 Hz mono)",
                        f.encoding, f.sample_rate, f.channels
                    )));
                }
                if start.stream_sid.is_empty() || start.stream_sid.len() > 64 {
                    return Err(FrameError::Malformed("bad streamSid".into()));
                }
                let call = CallStart {
                    stream_sid: start.stream_sid.clone(),
                    call_sid: start.call_sid,
                    account_sid: start.account_sid,
                    params: start.custom_parameters,
                };
                if let Some(check) = &self.check {
                    if !check(&call) {
                        return Err(FrameError::OutOfOrder(
                            "start without a valid stream token".into(),
                        ));
                    }
                }
                let mut call = call;
                call.params.remove(super::TOKEN_PARAM);
                self.stream_sid = Some(start.stream_sid);
                vec![Inbound::Start(call)]
            }
            TwilioIn::Media { media, stream_sid } => {
                if self.stream_sid.is_none() {
                    return Err(FrameError::OutOfOrder("media before start".into()));
                }
                self.same_stream(stream_sid.as_ref())?;
                if media.track.as_deref().is_some_and(|t| t != "inbound") {
                    return Ok(vec![Inbound::Ignore]);
                }
                let mut bytes = B64
                    .decode(media.payload.as_bytes())
                    .map_err(|e| FrameError::BadAudio(format!("payload is not base64: {e}")))?;
                if bytes.is_empty() {
                    return Ok(vec![Inbound::Ignore]);
                }
                // Twilio may skip silent stretches: fill gaps from the timestamps.
                if let Some(ts) = media
                    .timestamp
                    .as_deref()
                    .and_then(|t| t.parse::<u64>().ok())
                {
                    if let Some(expected) = self.next_ts {
                        let gap = ts.saturating_sub(expected).min(MAX_GAP_MS);
                        if gap >= 20 {
                            let mut padded = vec![ULAW_SILENCE; (gap * 8) as usize];
                            padded.extend_from_slice(&bytes);
                            bytes = padded;
                        }
                    }
                    let dur = (bytes.len() as u64) / 8;
                    self.next_ts =
                        Some(ts.max(self.next_ts.unwrap_or(0)) + dur.min(MAX_GAP_MS * 10));
                }
                vec![Inbound::Audio(AudioChunk::new(
                    g711::ulaw_to_pcm16(&bytes),
                    TWILIO_RATE,
                ))]
            }
            TwilioIn::Mark { mark, stream_sid } => {
                self.same_stream(stream_sid.as_ref())?;
                vec![Inbound::Mark(mark.name)]
            }
            TwilioIn::Dtmf { dtmf } => {
                let d = dtmf.digit.trim();
                let valid = d.len() == 1
                    && d.chars()
                        .all(|c| c.is_ascii_digit() || "*#ABCDabcd".contains(c));
                if !valid {
                    return Err(FrameError::Malformed(format!(
                        "dtmf digit {:?}",
                        d.chars().take(8).collect::<String>()
                    )));
                }
                vec![Inbound::Dtmf(d.to_ascii_uppercase())]
            }
            TwilioIn::Stop {} => vec![Inbound::End],
        })
    }
}

#[derive(Debug)]
struct PendingMark {
    seq: u64,
    item: Id,
    ms: u64,
    last: bool,
}

/// The server → Twilio half.
#[derive(Debug, Default)]
pub struct TwilioEncoder {
    stream_sid: String,
    pending: Vec<u8>,
    item: Option<Id>,
    item_ms: u64,
    item_bytes: u64,
    generation: u64,
    seq: u64,
    marks: VecDeque<PendingMark>,
}

impl TwilioEncoder {
    fn push(&self, out: &mut Vec<OutFrame>, msg: &TwilioOut<'_>) {
        if let Ok(text) = serde_json::to_string(msg) {
            out.push(OutFrame::Text(text));
        }
    }

    fn send_media(&mut self, bytes: &[u8], last: bool, out: &mut Vec<OutFrame>) {
        let Some(item) = self.item.clone() else {
            return;
        };
        self.push(
            out,
            &TwilioOut::Media {
                stream_sid: &self.stream_sid,
                media: OutMedia {
                    payload: B64.encode(bytes),
                },
            },
        );
        self.item_bytes += bytes.len() as u64;
        self.item_ms = self.item_bytes / 8;
        self.seq += 1;
        let name = format!("la:{}:{}", self.generation, self.seq);
        if self.marks.len() >= MAX_MARKS {
            self.marks.pop_front();
        }
        self.marks.push_back(PendingMark {
            seq: self.seq,
            item,
            ms: self.item_ms,
            last,
        });
        self.push(
            out,
            &TwilioOut::Mark {
                stream_sid: &self.stream_sid,
                mark: MarkPayload { name },
            },
        );
    }
}

impl Encoder for TwilioEncoder {
    fn output_rate(&self) -> u32 {
        TWILIO_RATE
    }

    fn on_start(&mut self, start: &CallStart) {
        self.stream_sid = start.stream_sid.clone();
    }

    fn audio(
        &mut self,
        item: &Id,
        _response: Option<&Id>,
        samples: &[i16],
        out: &mut Vec<OutFrame>,
    ) {
        if self.item.as_ref() != Some(item) {
            self.item_done(out);
            self.item = Some(item.clone());
            self.item_bytes = 0;
            self.item_ms = 0;
        }
        self.pending
            .extend(samples.iter().map(|&s| g711::ulaw_encode(s)));
        let whole = self.pending.len() / FRAME_BYTES * FRAME_BYTES;
        if whole > 0 {
            let bytes: Vec<u8> = self.pending.drain(..whole).collect();
            self.send_media(&bytes, false, out);
        }
    }

    fn item_done(&mut self, out: &mut Vec<OutFrame>) {
        if self.item.is_none() {
            return;
        }
        if !self.pending.is_empty() {
            let mut bytes = std::mem::take(&mut self.pending);
            let real = bytes.len() as u64;
            bytes.resize(FRAME_BYTES, ULAW_SILENCE);
            self.send_media(&bytes, true, out);
            // The padding is not part of the item.
            self.item_bytes -= FRAME_BYTES as u64 - real;
            if let Some(m) = self.marks.back_mut() {
                m.ms = self.item_bytes / 8;
            }
        } else if let Some(m) = self.marks.back_mut() {
            if self.item.as_ref() == Some(&m.item) {
                m.last = true;
            }
        }
        self.item = None;
    }

    fn interrupted(&mut self, _item: Option<&Id>, out: &mut Vec<OutFrame>) {
        self.pending.clear();
        self.item = None;
        self.generation += 1;
        self.marks.clear();
        self.push(
            out,
            &TwilioOut::Clear {
                stream_sid: &self.stream_sid,
            },
        );
    }

    fn immediate_cut(&self) -> bool {
        true
    }

    fn mark(&mut self, name: &str) -> Option<(Id, u64, bool)> {
        let mut parts = name.strip_prefix("la:")?.split(':');
        let generation: u64 = parts.next()?.parse().ok()?;
        let seq: u64 = parts.next()?.parse().ok()?;
        if generation != self.generation {
            return None; // echoed by a `clear`: flushed, not played
        }
        let mut found = None;
        while let Some(m) = self.marks.front() {
            if m.seq > seq {
                break;
            }
            let m = self.marks.pop_front().expect("front exists");
            if m.seq == seq {
                found = Some(m);
            }
        }
        found.map(|m| (m.item, m.ms, m.last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start_json() -> &'static str {
        r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{"From":"+15550100"}},"streamSid":"MZ1"}"#
    }

    #[test]
    fn start_media_mark_dtmf_stop() {
        let (mut d, _) = TwilioCodec::new().split();
        assert_eq!(
            d.decode(WireIn::Text(
                r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#
            ))
            .unwrap(),
            vec![Inbound::Ignore]
        );
        assert!(d
            .decode(WireIn::Text(
                r#"{"event":"media","media":{"payload":"/w=="},"streamSid":"MZ1"}"#
            ))
            .is_err());
        match &d.decode(WireIn::Text(start_json())).unwrap()[0] {
            Inbound::Start(s) => {
                assert_eq!(s.call_sid, "CA1");
                assert_eq!(s.params["From"], "+15550100");
            }
            other => panic!("{other:?}"),
        }
        let payload = B64.encode([0xFFu8; 160]);
        let media = format!(
            r#"{{"event":"media","sequenceNumber":"2","media":{{"track":"inbound","chunk":"1","timestamp":"0","payload":"{payload}"}},"streamSid":"MZ1"}}"#
        );
        match &d.decode(WireIn::Text(&media)).unwrap()[0] {
            Inbound::Audio(a) => {
                assert_eq!(a.sample_rate, 8000);
                assert_eq!(a.len(), 160);
            }
            other => panic!("{other:?}"),
        }
        // A 40 ms gap is filled with silence.
        let late = media.replace(r#""timestamp":"0""#, r#""timestamp":"60""#);
        match &d.decode(WireIn::Text(&late)).unwrap()[0] {
            Inbound::Audio(a) => assert_eq!(a.len(), 160 + 320),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            d.decode(WireIn::Text(r#"{"event":"dtmf","streamSid":"MZ1","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}"#)).unwrap(),
            vec![Inbound::Dtmf("1".into())]
        );
        assert_eq!(
            d.decode(WireIn::Text(r#"{"event":"stop","sequenceNumber":"6","stop":{"accountSid":"AC1","callSid":"CA1"},"streamSid":"MZ1"}"#)).unwrap(),
            vec![Inbound::End]
        );
        for bad in [
            r#"{"event":"media","media":{"payload":"!!"},"streamSid":"MZ1"}"#,
            r#"{"event":"media","media":{"payload":"/w=="},"streamSid":"MZ2"}"#,
            r#"{"event":"dtmf","dtmf":{"digit":"12"}}"#,
            r#"{"event":"nope"}"#,
            r#"{"event":"start"}"#,
            "garbage",
        ] {
            assert!(d.decode(WireIn::Text(bad)).is_err(), "{bad}");
        }
        assert!(d.decode(WireIn::Binary(&[1, 2])).is_err());
    }

    #[test]
    fn marks_track_what_was_played_and_clear_invalidates_them() {
        let (_, mut e) = TwilioCodec::new().split();
        e.on_start(&CallStart {
            stream_sid: "MZ1".into(),
            ..Default::default()
        });
        let item: Id = "it_1".into();
        let mut out = Vec::new();
        e.audio(&item, None, &[0i16; 400], &mut out); // 50 ms: 40 ms sent, 10 ms held
        assert_eq!(out.len(), 2);
        let media: serde_json::Value = match &out[0] {
            OutFrame::Text(t) => serde_json::from_str(t).unwrap(),
            _ => panic!(),
        };
        assert_eq!(media["event"], "media");
        assert_eq!(media["streamSid"], "MZ1");
        assert_eq!(
            B64.decode(media["media"]["payload"].as_str().unwrap())
                .unwrap()
                .len(),
            320
        );
        e.item_done(&mut out); // pads the last 10 ms to a frame
        assert_eq!(out.len(), 4);
        let names: Vec<String> = out
            .iter()
            .filter_map(|f| match f {
                OutFrame::Text(t) => {
                    let v: serde_json::Value = serde_json::from_str(t).unwrap();
                    v["mark"]["name"].as_str().map(str::to_owned)
                }
                _ => None,
            })
            .collect();
        assert_eq!(e.mark(&names[0]), Some((item.clone(), 40, false)));
        assert_eq!(e.mark(&names[1]), Some((item.clone(), 50, true)));
        e.audio(&"it_2".into(), None, &[0i16; 160], &mut out);
        let n = out.len();
        e.interrupted(None, &mut out);
        assert!(
            matches!(&out[n], OutFrame::Text(t) if t == r#"{"event":"clear","streamSid":"MZ1"}"#)
        );
        assert_eq!(
            e.mark("la:0:3"),
            None,
            "marks echoed by clear are not played"
        );
    }
}
