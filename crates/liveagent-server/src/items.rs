//! The conversation a session keeps (both protocols), and its public snapshot.

use serde::Serialize;

use crate::audio::{samples_to_ms, Pcm, INTERNAL_RATE};

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The user.
    User,
    /// The model.
    Assistant,
    /// System / developer text.
    System,
}

impl Role {
    /// The OpenAI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::System => "system",
        }
    }
}

/// One part of a message.
#[derive(Clone, Debug)]
pub enum Content {
    /// User/system text.
    InputText(String),
    /// User audio (24 kHz) and its (honest) transcript.
    InputAudio {
        /// The samples.
        audio: Pcm,
        /// "[speech 1.4 s]" when transcription ran, or what the client supplied.
        transcript: Option<String>,
    },
    /// Model text.
    OutputText(String),
    /// Model audio (24 kHz) and transcript.
    OutputAudio {
        /// The samples.
        audio: Pcm,
        /// The transcript.
        transcript: String,
    },
}

/// What an item is.
#[derive(Clone, Debug)]
pub enum ItemKind {
    /// A message.
    Message {
        /// Author.
        role: Role,
        /// Parts.
        content: Vec<Content>,
    },
    /// A tool call made by the model.
    FunctionCall {
        /// Call id.
        call_id: String,
        /// Tool name.
        name: String,
        /// Arguments as a JSON string.
        arguments: String,
    },
    /// A tool result from the client.
    FunctionCallOutput {
        /// Call id.
        call_id: String,
        /// The output string.
        output: String,
    },
}

/// A conversation item.
#[derive(Clone, Debug)]
pub struct Item {
    /// Item id (`item_…`).
    pub id: String,
    /// Content.
    pub kind: ItemKind,
    /// `completed`, `incomplete` or `in_progress`.
    pub status: &'static str,
}

impl Item {
    /// The text of a message (texts and transcripts joined), or the call/output text.
    pub fn text(&self) -> String {
        match &self.kind {
            ItemKind::Message { content, .. } => content
                .iter()
                .filter_map(|c| match c {
                    Content::InputText(t) | Content::OutputText(t) => Some(t.as_str()),
                    Content::InputAudio { transcript, .. } => transcript.as_deref(),
                    Content::OutputAudio { transcript, .. } => Some(transcript.as_str()),
                })
                .collect::<Vec<_>>()
                .join(" "),
            ItemKind::FunctionCall { arguments, .. } => arguments.clone(),
            ItemKind::FunctionCallOutput { output, .. } => output.clone(),
        }
    }

    /// Milliseconds of audio in the item.
    pub fn audio_ms(&self) -> u64 {
        match &self.kind {
            ItemKind::Message { content, .. } => content
                .iter()
                .map(|c| match c {
                    Content::InputAudio { audio, .. } | Content::OutputAudio { audio, .. } => {
                        samples_to_ms(audio.len(), INTERNAL_RATE)
                    }
                    _ => 0,
                })
                .sum(),
            _ => 0,
        }
    }

    /// The role of a message.
    pub fn role(&self) -> Option<Role> {
        match &self.kind {
            ItemKind::Message { role, .. } => Some(*role),
            _ => None,
        }
    }

    /// The public snapshot of this item.
    pub fn info(&self) -> ItemInfo {
        let (kind, call_id, name) = match &self.kind {
            ItemKind::Message { .. } => ("message", None, None),
            ItemKind::FunctionCall { call_id, name, .. } => {
                ("function_call", Some(call_id.clone()), Some(name.clone()))
            }
            ItemKind::FunctionCallOutput { call_id, .. } => {
                ("function_call_output", Some(call_id.clone()), None)
            }
        };
        ItemInfo {
            id: self.id.clone(),
            kind,
            role: self.role(),
            text: self.text(),
            audio_ms: self.audio_ms(),
            call_id,
            name,
            status: self.status,
        }
    }
}

/// Lets go of the audio samples of older items once newer items hold `budget` samples
/// (`ServerConfig::conversation_audio_ms`). The newest audio always stays, whatever its
/// length, so that the item just committed or spoken can be retrieved. Released items keep
/// their duration and transcript. Releasing goes from the oldest side, so the walk stops at
/// the first item already released: a call costs only the recent items.
///
/// Audio is counted by buffer, not by view: a kept view counts its whole buffer (a short
/// truncated answer still holds all of the turn it echoes), and an item whose samples are in
/// a buffer a newer kept item holds (a user turn and the answer that echoes it) costs
/// nothing more and keeps its audio.
pub(crate) fn keep_recent_audio(items: &mut [Item], budget: usize) {
    let mut total = 0usize;
    let mut newest = true;
    // Called after every frame: the kept buffers' ids go on the stack (a few at most; a
    // conversation of many short kept turns spills to the heap).
    let mut few = [0usize; 8];
    let mut nfew = 0;
    let mut more: Vec<usize> = Vec::new();
    for item in items.iter_mut().rev() {
        let ItemKind::Message { content, .. } = &mut item.kind else {
            continue;
        };
        for c in content.iter_mut().rev() {
            let (Content::InputAudio { audio, .. } | Content::OutputAudio { audio, .. }) = c else {
                continue;
            };
            if audio.is_empty() {
                continue;
            }
            if !audio.is_held() {
                return;
            }
            let buffer = audio.buffer_id();
            if buffer.is_some_and(|b| few[..nfew].contains(&b) || more.contains(&b)) {
                continue;
            }
            total += audio.buffer_len();
            if total > budget && !newest {
                audio.release();
            } else if let Some(b) = buffer {
                if nfew < few.len() {
                    few[nfew] = b;
                    nfew += 1;
                } else {
                    more.push(b);
                }
            }
            newest = false;
        }
    }
}

/// A snapshot of one conversation item, for tests and `GET /debug/sessions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ItemInfo {
    /// Item id.
    pub id: String,
    /// `message`, `function_call` or `function_call_output`.
    pub kind: &'static str,
    /// Message author.
    pub role: Option<Role>,
    /// Text, transcript, call arguments or tool output.
    pub text: String,
    /// Milliseconds of audio (after truncation).
    pub audio_ms: u64,
    /// Call id of a call or output.
    pub call_id: Option<String>,
    /// Tool name of a call.
    pub name: Option<String>,
    /// `completed`, `incomplete`, `in_progress`.
    pub status: &'static str,
}

/// Which protocol a session speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolKind {
    /// OpenAI Realtime GA.
    OpenAi,
    /// Gemini Live.
    Gemini,
}

/// A snapshot of one session (live or ended), from [`crate::LocalServer::sessions`].
#[derive(Clone, Debug, Serialize)]
pub struct SessionInfo {
    /// Server-wide session number (1, 2, …).
    pub id: u64,
    /// Protocol.
    pub protocol: ProtocolKind,
    /// Model name the client asked for.
    pub model: String,
    /// Scenario key, when one was selected.
    pub scenario: Option<String>,
    /// Whether the connection is still open.
    pub connected: bool,
    /// Conversation items in order.
    pub items: Vec<ItemInfo>,
    /// Responses started.
    pub responses: u32,
    /// Gemini: the session was restored from this resumption handle.
    pub resumed_from: Option<String>,
    /// Raw client frames that failed to parse or were refused.
    pub client_errors: u32,
    /// Input audio buffered and not yet committed, in ms (bounded by
    /// `ServerConfig::max_input_audio_ms`).
    pub input_buffered_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audio_item(role: Role, audio: Pcm) -> Item {
        let content = match role {
            Role::User => Content::InputAudio {
                audio,
                transcript: None,
            },
            _ => Content::OutputAudio {
                audio,
                transcript: String::new(),
            },
        };
        Item {
            id: String::new(),
            kind: ItemKind::Message {
                role,
                content: vec![content],
            },
            status: "completed",
        }
    }

    fn held(items: &[Item]) -> Vec<bool> {
        items
            .iter()
            .map(|i| match &i.kind {
                ItemKind::Message { content, .. } => match &content[0] {
                    Content::InputAudio { audio, .. } | Content::OutputAudio { audio, .. } => {
                        audio.is_held()
                    }
                    _ => true,
                },
                _ => true,
            })
            .collect()
    }

    #[test]
    fn a_turn_and_its_echo_count_once_and_older_turns_go() {
        // Turns of 2,600 samples echoed (2,100 of them) by the answer; a budget of 4,000.
        let mut items = Vec::new();
        for turn in 0..4 {
            let user = Pcm::packed(vec![turn as i16; 2_600]);
            let echo = user.slice(0, 2_100);
            items.push(audio_item(Role::User, user));
            keep_recent_audio(&mut items, 4_000);
            items.push(audio_item(Role::Assistant, echo));
            keep_recent_audio(&mut items, 4_000);
        }
        // The last turn and its answer share one buffer: both keep their audio; every older
        // turn is let go of, whole.
        assert_eq!(
            held(&items),
            [false, false, false, false, false, false, true, true]
        );
    }
}
