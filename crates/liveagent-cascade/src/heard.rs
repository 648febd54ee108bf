//! What of a response the user heard: [`Spoken`] keeps, for one response's audio item,
//! the pieces of text sent to the synthesizer with where their audio starts and how long
//! it is, so a barge-in can cut each assistant message to what was synthesized, and a
//! `PlaybackStopped { played_ms }` to the words actually played.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use liveagent_core::Id;

/// The pieces of one response's audio item, in play order.
#[derive(Clone, Debug)]
pub(crate) struct Spoken {
    pub(crate) item: Id,
    pub(crate) response: Id,
    pub(crate) segments: Vec<Segment>,
    pub(crate) total_ms: u64,
    pub(crate) first_audio: Option<Instant>,
    pub(crate) played_out: bool,
    /// The history index of each round's assistant message (once the round's LLM ended).
    pub(crate) messages: Vec<Option<usize>>,
}

/// One piece of text sent to the synthesizer and the audio it got so far.
#[derive(Clone, Debug)]
pub(crate) struct Segment {
    /// The LLM round (assistant message) the text belongs to.
    pub(crate) round: usize,
    pub(crate) text: String,
    pub(crate) start_ms: u64,
    pub(crate) ms: u64,
    pub(crate) complete: bool,
}

impl Spoken {
    /// The text whose audio was synthesized (an upper bound of what was heard).
    pub(crate) fn synthesized_text(&self) -> String {
        self.texts(None)
            .into_values()
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The text heard after `played_ms` of this item's audio (see [`Spoken::texts`]).
    #[cfg(test)]
    pub(crate) fn heard_text(&self, played_ms: u64) -> String {
        self.texts(Some(played_ms))
            .into_values()
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Per round, the text that was synthesized (`played_ms` `None`) or heard after
    /// `played_ms` of this item's audio: whole pieces, then the played share of the piece
    /// in progress, cut back to a word boundary. Rounds with nothing map to "".
    pub(crate) fn texts(&self, played_ms: Option<u64>) -> BTreeMap<usize, String> {
        let mut out: BTreeMap<usize, Vec<String>> = Default::default();
        for round in 0..self.messages.len() {
            out.entry(round).or_default();
        }
        let ms_per_char = self.ms_per_char();
        for s in self.segments.iter().filter(|s| s.ms > 0) {
            let parts = out.entry(s.round).or_default();
            let chars: Vec<char> = s.text.chars().collect();
            // A piece still being synthesized will last about as long as its text takes
            // to say, so what exists of it covers only its first words.
            let full_ms = if s.complete {
                s.ms
            } else {
                s.ms.max(chars.len() as u64 * ms_per_char)
            };
            let end = s.start_ms + s.ms;
            let upto = played_ms.map_or(end, |p| p.min(end));
            if upto <= s.start_ms {
                break;
            }
            let covered = upto - s.start_ms;
            if covered >= full_ms {
                parts.push(s.text.clone());
                continue;
            }
            let n = (chars.len() as u64 * covered / full_ms.max(1)) as usize;
            let mut cut: String = chars[..n.min(chars.len())].iter().collect();
            if n < chars.len() && chars[n].is_alphanumeric() {
                // Mid-word: keep only whole words.
                cut = match cut.rfind(char::is_whitespace) {
                    Some(i) => cut[..i].to_owned(),
                    None => String::new(),
                };
            }
            let cut = cut.trim_end().to_owned();
            if !cut.is_empty() {
                parts.push(cut);
            }
            break;
        }
        out.into_iter().map(|(k, v)| (k, v.join(" "))).collect()
    }

    /// How long a character takes to say with this voice: measured on the pieces already
    /// synthesized whole, else 65 ms (about 15 characters a second).
    fn ms_per_char(&self) -> u64 {
        let (ms, chars) = self
            .segments
            .iter()
            .filter(|s| s.complete && s.ms > 0)
            .fold((0u64, 0u64), |(m, c), s| {
                (m + s.ms, c + s.text.chars().count() as u64)
            });
        ms.checked_div(chars).map_or(65, |v| v.max(1))
    }

    pub(crate) fn may_be_playing(&self) -> bool {
        !self.played_out
            && self.first_audio.is_some_and(|t| {
                t.elapsed() < Duration::from_millis(self.total_ms) + Duration::from_millis(1500)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spoken() -> Spoken {
        Spoken {
            item: "i".into(),
            response: "r".into(),
            segments: vec![
                Segment {
                    round: 0,
                    text: "It is sunny.".into(),
                    start_ms: 0,
                    ms: 1000,
                    complete: true,
                },
                Segment {
                    round: 0,
                    text: "Take a hat with you.".into(),
                    start_ms: 1000,
                    ms: 2000,
                    complete: true,
                },
            ],
            total_ms: 3000,
            first_audio: None,
            played_out: false,
            messages: vec![None],
        }
    }

    #[test]
    fn heard_text_cuts_at_word_boundaries() {
        let s = spoken();
        assert_eq!(s.heard_text(0), "");
        assert_eq!(s.heard_text(999), "It is sunny");
        assert_eq!(s.heard_text(1000), "It is sunny.");
        assert_eq!(s.heard_text(1500), "It is sunny. Take");
        assert_eq!(s.heard_text(1600), "It is sunny. Take a");
        assert_eq!(s.heard_text(5000), "It is sunny. Take a hat with you.");
        assert_eq!(s.synthesized_text(), "It is sunny. Take a hat with you.");
    }

    #[test]
    fn a_piece_still_synthesizing_counts_only_its_first_words() {
        let mut s = spoken();
        // 20 characters at ~65 ms each take ~1.3 s to say: after 500 ms of it only the
        // first words exist.
        s.segments.remove(0);
        s.segments[0].start_ms = 0;
        s.segments[0].complete = false;
        s.segments[0].ms = 500;
        assert_eq!(s.synthesized_text(), "Take a");
        assert_eq!(s.heard_text(300), "Take");
        assert_eq!(s.heard_text(100), "");
    }

    #[test]
    fn rounds_are_cut_separately() {
        let mut s = spoken();
        s.segments[1].round = 1;
        s.messages = vec![Some(1), Some(3)];
        let heard = s.texts(Some(1500));
        assert_eq!(heard[&0], "It is sunny.");
        assert_eq!(heard[&1], "Take");
        let heard = s.texts(Some(500));
        assert_eq!(heard[&1], "");
    }
}
