//! Compact copies of what the server keeps beyond a session's work: a closed session's
//! snapshot (the `GET /debug/sessions` history, [`crate::registry`]) and a Gemini resumable
//! state ([`crate::resume`]).
//!
//! Kept as they are, each would be hundreds of small allocations (every item's id, text and
//! content parts), made while a busy server's heap is at its largest, and they would stay
//! scattered over pages that are otherwise free: glibc hands back only whole free pages, so
//! a few hundred KiB of such data kept about a MiB resident after every wave of the churn
//! benchmark (docs/performance-server.md). Packed, each is one string holding all its text
//! and one or two slices of fixed-size records: two or three allocations whatever its
//! length. Unpacking (a debug listing, a resumption) builds ordinary values again.

use std::ops::Range;

use crate::audio::Pcm;
use crate::items::{Content, Item, ItemInfo, ItemKind, Role, SessionInfo};

/// One buffer that all of a packed value's strings are appended to.
#[derive(Default)]
struct Text(String);

impl Text {
    fn put(&mut self, s: &str) -> Range<usize> {
        let start = self.0.len();
        self.0.push_str(s);
        start..self.0.len()
    }

    fn done(self) -> Box<str> {
        self.0.into_boxed_str()
    }
}

fn take(text: &str, r: &Range<usize>) -> String {
    text[r.clone()].to_owned()
}

/// An [`ItemInfo`] whose strings are ranges of [`PackedSession::text`].
struct PackedInfo {
    id: Range<usize>,
    kind: &'static str,
    role: Option<Role>,
    text: Range<usize>,
    audio_ms: u64,
    call_id: Option<Range<usize>>,
    name: Option<Range<usize>>,
    status: &'static str,
}

/// A closed session's final snapshot, packed: its text in one string, its items in one
/// slice.
pub(crate) struct PackedSession {
    /// Everything else: the counters and flags (its strings and items are moved out).
    meta: SessionInfo,
    model: Range<usize>,
    scenario: Option<Range<usize>>,
    resumed_from: Option<Range<usize>>,
    items: Box<[PackedInfo]>,
    text: Box<str>,
}

impl PackedSession {
    /// Packs `info`.
    pub fn new(mut info: SessionInfo) -> Self {
        let items = std::mem::take(&mut info.items);
        let len = info.model.len()
            + info.scenario.as_ref().map_or(0, String::len)
            + info.resumed_from.as_ref().map_or(0, String::len)
            + items
                .iter()
                .map(|i| {
                    i.id.len()
                        + i.text.len()
                        + i.call_id.as_ref().map_or(0, String::len)
                        + i.name.as_ref().map_or(0, String::len)
                })
                .sum::<usize>();
        let mut text = Text(String::with_capacity(len));
        let model = text.put(&std::mem::take(&mut info.model));
        let scenario = info.scenario.take().map(|s| text.put(&s));
        let resumed_from = info.resumed_from.take().map(|s| text.put(&s));
        let items = items
            .into_iter()
            .map(|i| PackedInfo {
                id: text.put(&i.id),
                kind: i.kind,
                role: i.role,
                text: text.put(&i.text),
                audio_ms: i.audio_ms,
                call_id: i.call_id.as_deref().map(|s| text.put(s)),
                name: i.name.as_deref().map(|s| text.put(s)),
                status: i.status,
            })
            .collect();
        PackedSession {
            meta: info,
            model,
            scenario,
            resumed_from,
            items,
            text: text.done(),
        }
    }

    /// The session's number.
    pub fn id(&self) -> u64 {
        self.meta.id
    }

    /// Bytes of text held.
    #[cfg(test)]
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    /// The snapshot as it was packed.
    pub fn unpack(&self) -> SessionInfo {
        let t = &*self.text;
        SessionInfo {
            model: take(t, &self.model),
            scenario: self.scenario.as_ref().map(|r| take(t, r)),
            resumed_from: self.resumed_from.as_ref().map(|r| take(t, r)),
            items: self
                .items
                .iter()
                .map(|i| ItemInfo {
                    id: take(t, &i.id),
                    kind: i.kind,
                    role: i.role,
                    text: take(t, &i.text),
                    audio_ms: i.audio_ms,
                    call_id: i.call_id.as_ref().map(|r| take(t, r)),
                    name: i.name.as_ref().map(|r| take(t, r)),
                    status: i.status,
                })
                .collect(),
            ..self.meta.clone()
        }
    }
}

/// A [`Content`] part whose strings are ranges of [`PackedItems::text`]. Audio stays a
/// view of the samples it shares with the session.
enum PackedPart {
    InputText(Range<usize>),
    InputAudio {
        audio: Pcm,
        transcript: Option<Range<usize>>,
    },
    OutputText(Range<usize>),
    OutputAudio {
        audio: Pcm,
        transcript: Range<usize>,
    },
}

enum PackedKind {
    Message {
        role: Role,
        /// Its parts in [`PackedItems::parts`].
        parts: Range<usize>,
    },
    FunctionCall {
        call_id: Range<usize>,
        name: Range<usize>,
        arguments: Range<usize>,
    },
    FunctionCallOutput {
        call_id: Range<usize>,
        output: Range<usize>,
    },
}

struct PackedItem {
    id: Range<usize>,
    kind: PackedKind,
    status: &'static str,
}

/// A conversation, packed: its text in one string, its items and their content parts in
/// one slice each.
pub(crate) struct PackedItems {
    items: Box<[PackedItem]>,
    parts: Box<[PackedPart]>,
    text: Box<str>,
}

fn item_text_len(item: &Item) -> usize {
    item.id.len()
        + match &item.kind {
            ItemKind::Message { content, .. } => content
                .iter()
                .map(|c| match c {
                    Content::InputText(t) | Content::OutputText(t) => t.len(),
                    Content::InputAudio { transcript, .. } => {
                        transcript.as_ref().map_or(0, String::len)
                    }
                    Content::OutputAudio { transcript, .. } => transcript.len(),
                })
                .sum(),
            ItemKind::FunctionCall {
                call_id,
                name,
                arguments,
            } => call_id.len() + name.len() + arguments.len(),
            ItemKind::FunctionCallOutput { call_id, output } => call_id.len() + output.len(),
        }
}

impl PackedItems {
    /// Packs a copy of `items`.
    pub fn new(items: &[Item]) -> Self {
        let mut text = Text(String::with_capacity(items.iter().map(item_text_len).sum()));
        let n_parts = items
            .iter()
            .map(|i| match &i.kind {
                ItemKind::Message { content, .. } => content.len(),
                _ => 0,
            })
            .sum();
        let mut parts = Vec::with_capacity(n_parts);
        let mut packed = Vec::with_capacity(items.len());
        for item in items {
            let id = text.put(&item.id);
            let kind = match &item.kind {
                ItemKind::Message { role, content } => {
                    let start = parts.len();
                    parts.extend(content.iter().map(|c| match c {
                        Content::InputText(t) => PackedPart::InputText(text.put(t)),
                        Content::OutputText(t) => PackedPart::OutputText(text.put(t)),
                        Content::InputAudio { audio, transcript } => PackedPart::InputAudio {
                            audio: audio.clone(),
                            transcript: transcript.as_deref().map(|t| text.put(t)),
                        },
                        Content::OutputAudio { audio, transcript } => PackedPart::OutputAudio {
                            audio: audio.clone(),
                            transcript: text.put(transcript),
                        },
                    }));
                    PackedKind::Message {
                        role: *role,
                        parts: start..parts.len(),
                    }
                }
                ItemKind::FunctionCall {
                    call_id,
                    name,
                    arguments,
                } => PackedKind::FunctionCall {
                    call_id: text.put(call_id),
                    name: text.put(name),
                    arguments: text.put(arguments),
                },
                ItemKind::FunctionCallOutput { call_id, output } => {
                    PackedKind::FunctionCallOutput {
                        call_id: text.put(call_id),
                        output: text.put(output),
                    }
                }
            };
            packed.push(PackedItem {
                id,
                kind,
                status: item.status,
            });
        }
        PackedItems {
            items: packed.into_boxed_slice(),
            parts: parts.into_boxed_slice(),
            text: text.done(),
        }
    }

    /// The conversation as it was packed.
    pub fn unpack(&self) -> Vec<Item> {
        let t = &*self.text;
        self.items
            .iter()
            .map(|i| Item {
                id: take(t, &i.id),
                kind: match &i.kind {
                    PackedKind::Message { role, parts } => ItemKind::Message {
                        role: *role,
                        content: self.parts[parts.clone()]
                            .iter()
                            .map(|p| match p {
                                PackedPart::InputText(r) => Content::InputText(take(t, r)),
                                PackedPart::OutputText(r) => Content::OutputText(take(t, r)),
                                PackedPart::InputAudio { audio, transcript } => {
                                    Content::InputAudio {
                                        audio: audio.clone(),
                                        transcript: transcript.as_ref().map(|r| take(t, r)),
                                    }
                                }
                                PackedPart::OutputAudio { audio, transcript } => {
                                    Content::OutputAudio {
                                        audio: audio.clone(),
                                        transcript: take(t, transcript),
                                    }
                                }
                            })
                            .collect(),
                    },
                    PackedKind::FunctionCall {
                        call_id,
                        name,
                        arguments,
                    } => ItemKind::FunctionCall {
                        call_id: take(t, call_id),
                        name: take(t, name),
                        arguments: take(t, arguments),
                    },
                    PackedKind::FunctionCallOutput { call_id, output } => {
                        ItemKind::FunctionCallOutput {
                            call_id: take(t, call_id),
                            output: take(t, output),
                        }
                    }
                },
                status: i.status,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::items::ProtocolKind;

    fn items() -> Vec<Item> {
        let audio = Pcm::from(vec![1i16, 2, 3, 4, 5, 6]);
        vec![
            Item {
                id: "item_1".into(),
                kind: ItemKind::Message {
                    role: Role::User,
                    content: vec![
                        Content::InputText("héllo".into()),
                        Content::InputAudio {
                            audio: audio.slice(0, 4),
                            transcript: Some("[speech]".into()),
                        },
                        Content::InputAudio {
                            audio: Pcm::default(),
                            transcript: None,
                        },
                    ],
                },
                status: "completed",
            },
            Item {
                id: "item_2".into(),
                kind: ItemKind::Message {
                    role: Role::Assistant,
                    content: vec![
                        Content::OutputAudio {
                            audio: audio.slice(2, 3),
                            transcript: "echo".into(),
                        },
                        Content::OutputText(String::new()),
                    ],
                },
                status: "incomplete",
            },
            Item {
                id: "item_3".into(),
                kind: ItemKind::FunctionCall {
                    call_id: "call_1".into(),
                    name: "get_weather".into(),
                    arguments: "{\"city\":\"Paris\"}".into(),
                },
                status: "completed",
            },
            Item {
                id: "item_4".into(),
                kind: ItemKind::FunctionCallOutput {
                    call_id: "call_1".into(),
                    output: "sunny".into(),
                },
                status: "completed",
            },
            Item {
                id: "item_5".into(),
                kind: ItemKind::Message {
                    role: Role::System,
                    content: vec![],
                },
                status: "in_progress",
            },
        ]
    }

    #[test]
    fn items_unpack_to_what_was_packed() {
        let items = items();
        let packed = PackedItems::new(&items);
        assert_eq!(format!("{:?}", packed.unpack()), format!("{items:?}"));
        // The samples are shared, not copied.
        let back = packed.unpack();
        let ItemKind::Message { content, .. } = &back[0].kind else {
            panic!("a message")
        };
        let Content::InputAudio { audio, .. } = &content[1] else {
            panic!("audio")
        };
        assert_eq!(audio.samples().as_deref(), Some(&[1i16, 2, 3, 4][..]));
        assert_eq!(PackedItems::new(&[]).unpack().len(), 0);
    }

    #[test]
    fn sessions_unpack_to_what_was_packed() {
        for (scenario, resumed_from) in [(None, None), (Some("weather"), Some("resume_1-s1"))] {
            let info = SessionInfo {
                id: 7,
                protocol: ProtocolKind::Gemini,
                model: "models/x".into(),
                scenario: scenario.map(Into::into),
                connected: false,
                items: items().iter().map(Item::info).collect(),
                responses: 3,
                resumed_from: resumed_from.map(Into::into),
                client_errors: 2,
                input_buffered_ms: 40,
            };
            let packed = PackedSession::new(info.clone());
            assert_eq!(packed.id(), 7);
            assert_eq!(format!("{:?}", packed.unpack()), format!("{info:?}"));
            let text: usize = info.model.len()
                + scenario.map_or(0, str::len)
                + resumed_from.map_or(0, str::len)
                + info
                    .items
                    .iter()
                    .map(|i| {
                        i.id.len()
                            + i.text.len()
                            + i.call_id.as_ref().map_or(0, String::len)
                            + i.name.as_ref().map_or(0, String::len)
                    })
                    .sum::<usize>();
            assert_eq!(packed.text_len(), text);
        }
    }
}
