//! Conversation items: `conversation.item.create`, `.truncate`, and the wire form of an item.

use super::super::wire::*;
use super::*;
use crate::audio::{self, WireAudio, INTERNAL_RATE};
use crate::brain::TurnInput;
use crate::conn::End;
use crate::items::{Content, Item, ItemKind, Role};

impl OaSession {
    pub(super) async fn item_create(
        &mut self,
        item: ClientItem,
        previous_item_id: Option<String>,
    ) -> Result<Result<(), Invalid>, End> {
        let new_item = match self.convert_item(item) {
            Ok(i) => i,
            Err(e) => return Ok(Err(e)),
        };
        if self.items.iter().any(|i| i.id == new_item.id) {
            return Ok(Err(invalid(
                "item_already_exists",
                format!("Item with id '{}' already exists.", new_item.id),
                Some("item.id"),
            )));
        }
        let pos = match previous_item_id.as_deref() {
            None => self.items.len(),
            Some("root") => 0,
            Some(prev) => match self.items.iter().position(|i| i.id == prev) {
                Some(p) => p + 1,
                None => {
                    return Ok(Err(invalid(
                        "previous_item_not_found",
                        format!("Previous item with id '{prev}' not found."),
                        Some("previous_item_id"),
                    )))
                }
            },
        };
        let prev = pos.checked_sub(1).map(|p| self.items[p].id.clone());
        let id = new_item.id.clone();
        if let ItemKind::FunctionCallOutput { call_id, output } = &new_item.kind {
            if let Some(p) = self.pending.as_mut() {
                if p.call_ids.contains(call_id) {
                    p.outputs.insert(call_id.clone(), output.clone());
                }
            }
        }
        if new_item.role() == Some(Role::User) {
            self.unanswered = Some(id.clone());
            if let ItemKind::Message { content, .. } = &new_item.kind {
                for c in content {
                    if let Content::InputAudio { audio, transcript } = c {
                        let label = transcript.clone().unwrap_or_else(|| {
                            TurnInput::speech_label(audio::samples_to_ms(
                                audio.len(),
                                INTERNAL_RATE,
                            ))
                        });
                        self.echo_audio.insert(id.clone(), (audio.clone(), label));
                    }
                }
            }
        }
        self.items.insert(pos, new_item);
        let wi = wire_item(&self.items[pos], false, self.settings.output_fmt);
        self.emit(ServerEvent::ItemAdded {
            previous_item_id: prev.clone(),
            item: wi.clone(),
        })
        .await?;
        self.emit(ServerEvent::ItemDone {
            previous_item_id: prev,
            item: wi,
        })
        .await?;
        Ok(Ok(()))
    }

    pub(super) fn convert_item(&self, item: ClientItem) -> Result<Item, Invalid> {
        let fresh = |id: Option<String>| id.unwrap_or_else(|| self.shared.new_id("item"));
        let fmt = self.settings.input_fmt;
        Ok(match item {
            ClientItem::Message {
                id, role, content, ..
            } => {
                let role = match role.as_str() {
                    "user" => Role::User,
                    "assistant" => Role::Assistant,
                    "system" => Role::System,
                    other => {
                        return Err(invalid(
                            "invalid_value",
                            format!("Invalid value: '{other}'. Supported values are: 'user', 'assistant', and 'system'."),
                            Some("item.role"),
                        ))
                    }
                };
                let mut parts = Vec::new();
                for c in content {
                    let part = match (role, c) {
                        (Role::User | Role::System, ClientContent::InputText { text }) => {
                            Content::InputText(text)
                        }
                        (Role::User, ClientContent::InputImage { .. }) => {
                            Content::InputText("[image]".into())
                        }
                        (Role::User, ClientContent::InputAudio { audio, transcript }) => {
                            let bytes = match audio.as_deref().map(audio::b64_decode) {
                                Some(Ok(b)) => b,
                                Some(Err(e)) => {
                                    return Err(invalid(
                                        "invalid_value",
                                        format!("Invalid 'audio': not base64 ({e})."),
                                        Some("item.content.audio"),
                                    ))
                                }
                                None => Vec::new(),
                            };
                            Content::InputAudio {
                                audio: Pcm::packed(fmt.decode(&bytes)),
                                transcript,
                            }
                        }
                        (Role::Assistant, ClientContent::OutputText { text }) => {
                            Content::OutputText(text)
                        }
                        (Role::Assistant, ClientContent::OutputAudio { audio, transcript }) => {
                            if audio.is_some() {
                                return Err(invalid(
                                    "invalid_value",
                                    "Assistant audio cannot be added to the conversation; send its transcript instead.",
                                    Some("item.content.audio"),
                                ));
                            }
                            Content::OutputAudio {
                                audio: Pcm::default(),
                                transcript: transcript.unwrap_or_default(),
                            }
                        }
                        (role, other) => {
                            return Err(invalid(
                                "invalid_value",
                                format!(
                                    "Content {other:?} is not allowed in a {} message.",
                                    role.as_str()
                                ),
                                Some("item.content"),
                            ))
                        }
                    };
                    parts.push(part);
                }
                Item {
                    id: fresh(id),
                    kind: ItemKind::Message {
                        role,
                        content: parts,
                    },
                    status: "completed",
                }
            }
            ClientItem::FunctionCall {
                id,
                call_id,
                name,
                arguments,
                ..
            } => Item {
                id: fresh(id),
                kind: ItemKind::FunctionCall {
                    call_id: call_id.unwrap_or_else(|| self.shared.new_id("call")),
                    name,
                    arguments,
                },
                status: "completed",
            },
            ClientItem::FunctionCallOutput {
                id,
                call_id,
                output,
                ..
            } => Item {
                id: fresh(id),
                kind: ItemKind::FunctionCallOutput { call_id, output },
                status: "completed",
            },
        })
    }

    pub(super) async fn truncate(
        &mut self,
        item_id: String,
        content_index: u32,
        audio_end_ms: u64,
    ) -> Result<Result<(), Invalid>, End> {
        let streaming = matches!(&self.run, Some(Run { cur: Some(Cur::Say { item_id: i, .. }), .. }) if *i == item_id);
        if streaming {
            self.cancel_run("client_cancelled").await?;
        }
        let Some(item) = self.items.iter_mut().find(|i| i.id == item_id) else {
            return Ok(Err(not_found(&item_id)));
        };
        let ItemKind::Message {
            role: Role::Assistant,
            content,
        } = &mut item.kind
        else {
            return Ok(Err(invalid(
                "invalid_value",
                "Only assistant messages with audio can be truncated.",
                Some("item_id"),
            )));
        };
        let Some(Content::OutputAudio { audio, transcript }) =
            content.get_mut(content_index as usize)
        else {
            return Ok(Err(invalid(
                "invalid_value",
                format!("Content index {content_index} is not audio."),
                Some("content_index"),
            )));
        };
        let dur = audio::samples_to_ms(audio.len(), INTERNAL_RATE);
        if audio_end_ms > dur {
            return Ok(Err(invalid(
                "invalid_value",
                format!("Audio content of {dur}ms is shorter than {audio_end_ms}ms."),
                Some("audio_end_ms"),
            )));
        }
        let keep = audio::ms_to_samples(audio_end_ms, INTERNAL_RATE).min(audio.len());
        // GA: truncation deletes the server-side transcript, so that no text the user did not
        // hear stays in the context.
        transcript.clear();
        *audio = audio.slice(0, keep);
        item.status = "incomplete";
        self.emit(ServerEvent::ItemTruncated {
            item_id,
            content_index,
            audio_end_ms,
        })
        .await?;
        Ok(Ok(()))
    }
}

pub(super) fn not_found(item_id: &str) -> Invalid {
    invalid(
        "item_not_found",
        format!("Item with item_id not found: {item_id}"),
        Some("item_id"),
    )
}

/// The wire form of an item (audio bytes only when `with_audio`).
pub(super) fn wire_item(item: &Item, with_audio: bool, fmt: WireAudio) -> WireItem {
    // Audio the session has let go of (see `ServerConfig::conversation_audio_ms`) is left out.
    let enc = |a: &Pcm| {
        with_audio
            .then(|| a.samples().map(|s| audio::b64_encode(&fmt.encode(&s))))
            .flatten()
    };
    let base = WireItem {
        id: item.id.clone(),
        kind: "message",
        object: "realtime.item",
        status: item.status,
        role: None,
        content: None,
        call_id: None,
        name: None,
        arguments: None,
        output: None,
    };
    match &item.kind {
        ItemKind::Message { role, content } => WireItem {
            role: Some(role.as_str()),
            content: Some(
                content
                    .iter()
                    .map(|c| match c {
                        Content::InputText(t) => WireContent::InputText { text: t.clone() },
                        Content::InputAudio { audio, transcript } => WireContent::InputAudio {
                            audio: enc(audio),
                            transcript: transcript.clone(),
                        },
                        Content::OutputText(t) => WireContent::OutputText { text: t.clone() },
                        Content::OutputAudio { audio, transcript } => WireContent::OutputAudio {
                            audio: enc(audio),
                            transcript: transcript.clone(),
                        },
                    })
                    .collect(),
            ),
            ..base
        },
        ItemKind::FunctionCall {
            call_id,
            name,
            arguments,
        } => WireItem {
            kind: "function_call",
            call_id: Some(call_id.clone()),
            name: Some(name.clone()),
            arguments: Some(arguments.clone()),
            ..base
        },
        ItemKind::FunctionCallOutput { call_id, output } => WireItem {
            kind: "function_call_output",
            call_id: Some(call_id.clone()),
            output: Some(output.clone()),
            ..base
        },
    }
}
