//! [`ChunkLane`]: the text chunks of [`Conversation::history`](super::Conversation::history),
//! stored compactly.
//!
//! A spoken answer publishes every transcript delta twice: the
//! [`OutputTranscriptChunk`] and, right after it, the session's [`ModelMessageChunk`]
//! mirror of it (same item, same text, [`TextSource::Transcript`]). Kept as two
//! `(sequence, LiveEvent, size)` entries that is 2 × 104 bytes of slots per delta, and the
//! text chunks are most of a conversation's events. Here one [`ChunkRecord`] of 48 bytes
//! holds a chunk's fields, and an output transcript record also stands for its mirror when
//! the mirror came right after it. [`ChunkLane::events`] rebuilds exactly the events that
//! were recorded, with the same sequence numbers; the bounds count them exactly as the
//! other lane does (one event each, its in-memory size plus
//! [`LiveEvent::approx_bytes`]), so what the history keeps does not change, only the room
//! it takes.

use std::collections::VecDeque;
use std::sync::Arc;

use liveagent_core::{
    Id, InputTranscriptChunk, LiveEvent, ModelMessageChunk, OutputTranscriptChunk, TextSource,
};

/// What a [`ChunkRecord`] was published as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkKind {
    /// A [`ModelMessageChunk`] (its `item_id` is always `Some`).
    Model(TextSource),
    /// An [`OutputTranscriptChunk`]; `mirrored`: its [`ModelMessageChunk`] mirror was
    /// recorded right after it and is part of this record.
    Output { is_final: bool, mirrored: bool },
    /// An [`InputTranscriptChunk`].
    Input { is_final: bool },
}

/// One text chunk (or an output transcript chunk and its mirror).
#[derive(Clone, Debug)]
struct ChunkRecord {
    /// The sequence number of the (first) event.
    seq: u64,
    item_id: Option<Id>,
    text: Arc<str>,
    kind: ChunkKind,
}

impl ChunkRecord {
    /// The record of `event`, if it is a text chunk.
    fn of(seq: u64, event: &LiveEvent) -> Option<Self> {
        let (item_id, text, kind) = match event {
            LiveEvent::ModelMessageChunk(c) => (
                Some(c.item_id.clone()),
                c.text.clone(),
                ChunkKind::Model(c.source),
            ),
            LiveEvent::OutputTranscriptChunk(c) => (
                c.item_id.clone(),
                c.text.clone(),
                ChunkKind::Output {
                    is_final: c.is_final,
                    mirrored: false,
                },
            ),
            LiveEvent::InputTranscriptChunk(c) => (
                c.item_id.clone(),
                c.text.clone(),
                ChunkKind::Input {
                    is_final: c.is_final,
                },
            ),
            _ => return None,
        };
        Some(ChunkRecord {
            seq,
            item_id,
            text,
            kind,
        })
    }

    /// The first event of the record, as it was published.
    fn first(&self) -> LiveEvent {
        match self.kind {
            ChunkKind::Model(source) => LiveEvent::ModelMessageChunk(ModelMessageChunk {
                item_id: self.item_id.clone().unwrap_or_else(|| Id::from("")),
                text: self.text.clone(),
                source,
            }),
            ChunkKind::Output { is_final, .. } => {
                LiveEvent::OutputTranscriptChunk(OutputTranscriptChunk {
                    item_id: self.item_id.clone(),
                    text: self.text.clone(),
                    is_final,
                })
            }
            ChunkKind::Input { is_final } => {
                LiveEvent::InputTranscriptChunk(InputTranscriptChunk {
                    item_id: self.item_id.clone(),
                    text: self.text.clone(),
                    is_final,
                })
            }
        }
    }

    /// The mirror this record also stands for, if any (sequence number `seq + 1`).
    fn mirror(&self) -> Option<ModelMessageChunk> {
        match self.kind {
            ChunkKind::Output { mirrored: true, .. } => Some(ModelMessageChunk {
                item_id: self.item_id.clone().unwrap_or_else(|| Id::from("")),
                text: self.text.clone(),
                source: TextSource::Transcript,
            }),
            _ => None,
        }
    }

    /// True when `chunk`, recorded as event `seq`, is this record's mirror: exactly what
    /// [`ModelMessageChunk::from_transcript`] makes of it, published right after it.
    fn is_mirrored_by(&self, seq: u64, chunk: &ModelMessageChunk) -> bool {
        let ChunkKind::Output {
            is_final: false,
            mirrored: false,
        } = self.kind
        else {
            return false;
        };
        self.seq + 1 == seq
            && !self.text.is_empty()
            && chunk.source == TextSource::Transcript
            && *chunk.text == *self.text
            && *chunk.item_id == *self.item_id.as_deref().unwrap_or("")
    }

    /// Turns a mirrored record into the record of its mirror alone (its first event left).
    fn become_mirror(&mut self) {
        self.seq += 1;
        self.item_id = Some(self.item_id.take().unwrap_or_else(|| Id::from("")));
        self.kind = ChunkKind::Model(TextSource::Transcript);
    }
}

/// How much an event counts against the history's byte bound.
fn counted(event: &LiveEvent) -> usize {
    std::mem::size_of::<LiveEvent>() + event.approx_bytes()
}

/// The text chunks of the history, oldest first, bounded like the other lane.
#[derive(Default)]
pub(super) struct ChunkLane {
    records: VecDeque<ChunkRecord>,
    /// Events held (a mirrored record holds two).
    pub(super) events: usize,
    /// Their counted bytes.
    pub(super) bytes: usize,
}

impl ChunkLane {
    /// Records `event` as event `seq` if it is a text chunk, then drops the oldest events
    /// while more than `max_events` or (keeping at least one) more than `max_bytes` are
    /// held. Returns false, recording nothing, for any other event.
    pub(super) fn push(
        &mut self,
        seq: u64,
        event: &LiveEvent,
        max_events: usize,
        max_bytes: usize,
    ) -> bool {
        let mirrored = match (event, self.records.back_mut()) {
            (LiveEvent::ModelMessageChunk(c), Some(last)) if last.is_mirrored_by(seq, c) => {
                if let ChunkKind::Output { mirrored, .. } = &mut last.kind {
                    *mirrored = true;
                }
                true
            }
            _ => false,
        };
        if !mirrored {
            let Some(record) = ChunkRecord::of(seq, event) else {
                return false;
            };
            self.records.push_back(record);
        }
        self.events += 1;
        self.bytes += counted(event);
        while self.events > max_events || (self.bytes > max_bytes && self.events > 1) {
            self.pop_event();
        }
        true
    }

    /// Drops the oldest event.
    fn pop_event(&mut self) {
        let Some(front) = self.records.front_mut() else {
            return;
        };
        self.bytes = self.bytes.saturating_sub(counted(&front.first()));
        self.events -= 1;
        if front.mirror().is_some() {
            front.become_mirror();
        } else {
            self.records.pop_front();
        }
    }

    /// The events held, oldest first, with their sequence numbers.
    pub(super) fn events(&self) -> impl Iterator<Item = (u64, LiveEvent)> + '_ {
        self.records.iter().flat_map(|r| {
            let mirror = r
                .mirror()
                .map(|m| (r.seq + 1, LiveEvent::ModelMessageChunk(m)));
            std::iter::once((r.seq, r.first())).chain(mirror)
        })
    }

    /// The counted bytes of the events held, summed again (for tests).
    #[cfg(test)]
    pub(super) fn recount(&self) -> usize {
        self.events().map(|(_, e)| counted(&e)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(item: Option<&str>, text: &str, is_final: bool) -> OutputTranscriptChunk {
        OutputTranscriptChunk {
            item_id: item.map(Id::from),
            text: text.into(),
            is_final,
        }
    }

    /// Publishes like the session: each output delta, then its mirror.
    fn spoken(item: Option<&str>, text: &str) -> Vec<LiveEvent> {
        let delta = output(item, text, false);
        let mirror = ModelMessageChunk::from_transcript(&delta).expect("a delta");
        vec![delta.into(), mirror.into()]
    }

    fn debug(events: impl IntoIterator<Item = (u64, LiveEvent)>) -> Vec<String> {
        events
            .into_iter()
            .map(|(s, e)| format!("{s} {e:?}"))
            .collect()
    }

    #[test]
    fn a_record_is_48_bytes() {
        assert!(std::mem::size_of::<ChunkRecord>() <= 48);
    }

    #[test]
    fn the_events_come_back_exactly_and_a_mirror_shares_its_record() {
        let mut published: Vec<LiveEvent> = Vec::new();
        published.extend(spoken(Some("item_1"), "Hello "));
        published.extend(spoken(None, "there"));
        published.push(output(Some("item_1"), "Hello there", true).into()); // final: no mirror
        published.push(ModelMessageChunk::new("item_2", "written").into());
        published.push(
            InputTranscriptChunk {
                item_id: Some("u1".into()),
                text: "hi".into(),
                is_final: true,
            }
            .into(),
        );
        // A mirror that does not follow its delta right away is a record of its own.
        let late = output(Some("item_3"), "late", false);
        published.push(late.clone().into());
        published.push(ModelMessageChunk::new("item_3", "unrelated").into());
        published.push(ModelMessageChunk::from_transcript(&late).unwrap().into());

        let mut lane = ChunkLane::default();
        let mut expected = Vec::new();
        for (i, event) in published.iter().enumerate() {
            let seq = 10 + i as u64;
            lane.push(seq, event, usize::MAX, usize::MAX);
            expected.push((seq, event.clone()));
        }
        assert_eq!(debug(lane.events()), debug(expected.clone()));
        assert_eq!(lane.events, published.len());
        assert_eq!(
            lane.records.len(),
            published.len() - 2,
            "two mirrors share a record"
        );
        assert_eq!(lane.bytes, lane.recount());
        assert_eq!(
            lane.bytes,
            expected.iter().map(|(_, e)| counted(e)).sum::<usize>()
        );
    }

    #[test]
    fn bounds_drop_one_event_at_a_time_even_half_a_record() {
        let mut published = Vec::new();
        for i in 0..40 {
            published.extend(spoken(Some("item_1"), &format!("w{i} ")));
        }
        for max_events in [1, 2, 3, 7, 10] {
            let mut lane = ChunkLane::default();
            for (i, event) in published.iter().enumerate() {
                lane.push(i as u64, event, max_events, usize::MAX);
            }
            let expected: Vec<_> = published
                .iter()
                .cloned()
                .enumerate()
                .map(|(i, e)| (i as u64, e))
                .skip(published.len() - max_events)
                .collect();
            assert_eq!(
                debug(lane.events()),
                debug(expected),
                "max_events {max_events}"
            );
            assert_eq!(lane.bytes, lane.recount());
        }
        // By bytes: the same events as a lane of whole events would keep.
        let mut lane = ChunkLane::default();
        let max_bytes = 2_000;
        let mut kept: VecDeque<(u64, LiveEvent)> = VecDeque::new();
        let mut kept_bytes = 0;
        for (i, event) in published.iter().enumerate() {
            lane.push(i as u64, event, usize::MAX, max_bytes);
            kept.push_back((i as u64, event.clone()));
            kept_bytes += counted(event);
            while kept_bytes > max_bytes && kept.len() > 1 {
                let (_, e) = kept.pop_front().unwrap();
                kept_bytes -= counted(&e);
            }
        }
        assert_eq!(debug(lane.events()), debug(kept));
        assert_eq!(lane.bytes, kept_bytes);
    }
}
