//! `session.update`: validating an update and deriving the runtime settings from the
//! effective session configuration (the shape `session.created`/`session.updated` echo).

use std::time::Duration;

use serde_json::{json, Map, Value};

use super::*;
use crate::audio::WireAudio;
use crate::items::{Content, ItemKind, Role};
use crate::vad::VadConfig;

impl OaSession {
    pub(super) fn apply_update(&mut self, update: Value) -> Result<(), Invalid> {
        // Validate everything first: an update is applied whole or not at all.
        let audio_spoken = self.items.iter().any(|i| {
            matches!(&i.kind, ItemKind::Message { role: Role::Assistant, content }
                if content.iter().any(|c| matches!(c, Content::OutputAudio { audio, .. } if !audio.is_empty())))
        });
        super::super::schema::check_session(
            &update,
            Some(&self.config["audio"]["output"]["voice"]),
            audio_spoken,
        )?;
        let Value::Object(update) = update else {
            return Err(invalid(
                "invalid_type",
                "'session' must be an object.",
                Some("session"),
            ));
        };
        let mut next = self.config.clone();
        for (k, v) in update {
            match k.as_str() {
                "model" | "type" => {}
                "audio" => {
                    let Value::Object(audio) = v else {
                        return Err(invalid(
                            "invalid_type",
                            "'audio' must be an object.",
                            Some("session.audio"),
                        ));
                    };
                    for (dir, fields) in audio {
                        let Value::Object(fields) = fields else {
                            return Err(invalid(
                                "invalid_type",
                                format!("'audio.{dir}' must be an object."),
                                Some(&format!("session.audio.{dir}")),
                            ));
                        };
                        let slot = &mut next["audio"][dir.as_str()];
                        if !slot.is_object() {
                            *slot = Value::Object(Map::new());
                        }
                        for (fk, fv) in fields {
                            slot[fk.as_str()] = fv;
                        }
                    }
                }
                _ => {
                    next[k.as_str()] = v;
                }
            }
        }
        fill_turn_detection(&mut next, &self.shared.cfg.vad);
        let settings = derive_settings(&next, &self.shared.cfg.vad)?;
        if let Some(td) = &settings.turn {
            self.vad.set_config(td.vad.clone());
        }
        self.config = next;
        self.settings = settings;
        Ok(())
    }
}

pub(super) fn default_session(shared: &Shared, sid: u64, model: &str) -> Value {
    let v = &shared.cfg.vad;
    json!({
        "type": "realtime",
        "object": "realtime.session",
        "id": format!("sess_local_{sid:04}"),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": null,
                "noise_reduction": null,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": v.threshold,
                    "prefix_padding_ms": v.prefix_padding_ms,
                    "silence_duration_ms": v.silence_duration_ms,
                    "idle_timeout_ms": null,
                    "create_response": true,
                    "interrupt_response": true
                }
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "voice": "marin",
                "speed": 1.0
            }
        },
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "truncation": "auto",
        "expires_at": 0
    })
}

/// Fills the defaults of a replaced `turn_detection` object.
pub(super) fn fill_turn_detection(cfg: &mut Value, defaults: &VadConfig) {
    let td = &mut cfg["audio"]["input"]["turn_detection"];
    let Value::Object(map) = td else { return };
    let kind = map
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("server_vad")
        .to_owned();
    let mut put = |k: &str, v: Value| {
        map.entry(k.to_owned()).or_insert(v);
    };
    put("type", json!(kind));
    put("create_response", json!(true));
    put("interrupt_response", json!(true));
    if kind == "server_vad" {
        put("threshold", json!(defaults.threshold));
        put("prefix_padding_ms", json!(defaults.prefix_padding_ms));
        put("silence_duration_ms", json!(defaults.silence_duration_ms));
        put("idle_timeout_ms", Value::Null);
    } else {
        put("eagerness", json!("auto"));
    }
}

pub(super) fn parse_format(v: &Value, param: &str) -> Result<WireAudio, Invalid> {
    match v.get("type").and_then(Value::as_str) {
        Some("audio/pcm") => {
            let rate = v.get("rate").and_then(Value::as_u64).unwrap_or(24000);
            if rate != 24000 {
                return Err(invalid(
                    "invalid_value",
                    format!("Invalid 'rate': {rate}. Only 24000 is supported for audio/pcm."),
                    Some(&format!("{param}.rate")),
                ));
            }
            Ok(WireAudio::Pcm(24000))
        }
        Some("audio/pcmu") => Ok(WireAudio::Pcmu),
        Some("audio/pcma") => Ok(WireAudio::Pcma),
        None if v.is_null() => Ok(WireAudio::Pcm(24000)),
        other => Err(invalid(
            "invalid_value",
            format!(
                "Invalid value: {}. Supported values are: 'audio/pcm', 'audio/pcmu', and 'audio/pcma'.",
                other.map(|s| format!("'{s}'")).unwrap_or_else(|| v.to_string())
            ),
            Some(param),
        )),
    }
}

pub(super) fn derive_settings(cfg: &Value, defaults: &VadConfig) -> Result<Settings, Invalid> {
    let modalities: Vec<String> = match cfg.get("output_modalities") {
        None | Some(Value::Null) => vec!["audio".into()],
        Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
            invalid(
                "invalid_type",
                "'output_modalities' must be an array of strings.",
                Some("session.output_modalities"),
            )
        })?,
    };
    let text_only = match modalities.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["audio"] | [] => false,
        ["text"] => true,
        _ => {
            return Err(invalid(
                "invalid_value",
                "Invalid 'output_modalities': use either ['audio'] or ['text'].",
                Some("session.output_modalities"),
            ))
        }
    };
    let input = &cfg["audio"]["input"];
    let input_fmt = parse_format(&input["format"], "session.audio.input.format")?;
    let output_fmt = parse_format(
        &cfg["audio"]["output"]["format"],
        "session.audio.output.format",
    )?;
    let transcription = input.get("transcription").is_some_and(|t| t.is_object());
    let td = &input["turn_detection"];
    let turn = match td {
        Value::Null => None,
        Value::Object(m) => {
            let kind = m
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("server_vad");
            let flag = |k: &str| m.get(k).and_then(Value::as_bool).unwrap_or(true);
            let mut vad = defaults.clone();
            match kind {
                "server_vad" => {
                    if let Some(t) = m.get("threshold").and_then(Value::as_f64) {
                        if !(0.0..=1.0).contains(&t) {
                            return Err(invalid(
                                "invalid_value",
                                format!("Invalid 'threshold': {t}. Expected a value between 0 and 1."),
                                Some("session.audio.input.turn_detection.threshold"),
                            ));
                        }
                        vad.threshold = t as f32;
                    }
                    if let Some(p) = m.get("prefix_padding_ms").and_then(Value::as_u64) {
                        vad.prefix_padding_ms = p as u32;
                    }
                    if let Some(p) = m.get("silence_duration_ms").and_then(Value::as_u64) {
                        vad.silence_duration_ms = p as u32;
                    }
                }
                "semantic_vad" => {
                    vad.silence_duration_ms =
                        match m.get("eagerness").and_then(Value::as_str).unwrap_or("auto") {
                            "high" => 300,
                            "low" => 1000,
                            _ => 500,
                        };
                }
                other => {
                    return Err(invalid(
                        "invalid_value",
                        format!("Invalid value: '{other}'. Supported values are: 'server_vad' and 'semantic_vad'."),
                        Some("session.audio.input.turn_detection.type"),
                    ))
                }
            }
            Some(TurnDetection {
                vad,
                create_response: flag("create_response"),
                interrupt_response: flag("interrupt_response"),
                idle_timeout: m
                    .get("idle_timeout_ms")
                    .and_then(Value::as_u64)
                    .filter(|_| kind == "server_vad")
                    .map(Duration::from_millis),
            })
        }
        _ => {
            return Err(invalid(
                "invalid_type",
                "'turn_detection' must be an object or null.",
                Some("session.audio.input.turn_detection"),
            ))
        }
    };
    Ok(Settings {
        text_only,
        turn,
        transcription,
        input_fmt,
        output_fmt,
    })
}
