//! Ephemeral credentials, minted and checked like the providers do:
//!
//! - OpenAI: `POST /v1/realtime/client_secrets` (`{"expires_after": {"anchor":
//!   "created_at", "seconds": 10..=7200}, "session": {...}}`, default 600 s) returns
//!   `{"value": "ek_…", "expires_at": <unix s>, "session": {...}}`; the value is then the
//!   `Authorization: Bearer` of `/v1/realtime` until it expires (any number of sessions).
//! - Gemini: `POST /v1alpha/auth_tokens` (`{"uses": 1, "expireTime": RFC 3339,
//!   "newSessionExpireTime": RFC 3339, "bidiGenerateContentSetup": {...}}`; defaults: one
//!   use, 30 min, 1 min to open a session) returns `{"name": "auth_tokens/…", ...}`; the name
//!   is then the `access_token` query parameter (or `Authorization: Token …`) of
//!   `BidiGenerateContentConstrained` on v1alpha. Each session opened uses one use.
//!
//! Minting needs the server's API key when it has one (the guard asks for it, and an
//! ephemeral credential never mints another). At connect an expired, used-up or unknown
//! minted credential is refused in band, in each provider's error shape. The store is
//! bounded: past [`MAX_TOKENS`] live credentials minting is refused with 429.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use crate::server::Shared;

/// Most live (unexpired) credentials kept.
pub(crate) const MAX_TOKENS: usize = 10_000;

/// Which provider a credential is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Provider {
    OpenAi,
    Gemini,
}

#[derive(Debug)]
struct Entry {
    provider: Provider,
    expires: SystemTime,
    /// Gemini: sessions must start before this.
    new_session_until: Option<SystemTime>,
    /// Gemini: sessions left (`None`: unlimited).
    uses_left: Option<u32>,
}

/// Why a presented credential is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// OpenAI error code.
    pub code: &'static str,
    /// For people (and Gemini's close reason).
    pub message: String,
}

impl Refusal {
    pub(crate) fn bad_key(provider: Provider) -> Self {
        Refusal {
            code: "invalid_api_key",
            message: match provider {
                Provider::OpenAi => "Incorrect API key provided.".into(),
                Provider::Gemini => "API key not valid. Please pass a valid API key.".into(),
            },
        }
    }
}

/// The minted credentials.
#[derive(Debug, Default)]
pub(crate) struct TokenStore {
    tokens: Mutex<HashMap<String, Entry>>,
}

impl TokenStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, token: String, entry: Entry) -> Result<(), ()> {
        let mut map = self.lock();
        let now = SystemTime::now();
        if map.len() >= MAX_TOKENS {
            map.retain(|_, e| e.expires > now && e.uses_left != Some(0));
        }
        if map.len() >= MAX_TOKENS {
            return Err(());
        }
        map.insert(token, entry);
        Ok(())
    }

    /// Whether `token` is a credential this server minted (for `provider`).
    pub(crate) fn knows(&self, provider: Provider, token: &str) -> bool {
        self.lock()
            .get(token)
            .is_some_and(|e| e.provider == provider)
    }

    /// Checks `token` for a new session and, when it is good, uses one use. `None` when the
    /// server never minted it.
    pub(crate) fn admit(&self, provider: Provider, token: &str) -> Option<Result<(), Refusal>> {
        let mut map = self.lock();
        let entry = map.get_mut(token).filter(|e| e.provider == provider)?;
        let now = SystemTime::now();
        let refuse = |code, message: &str| {
            Some(Err(Refusal {
                code,
                message: message.to_owned(),
            }))
        };
        if now >= entry.expires {
            return match provider {
                Provider::OpenAi => refuse(
                    "invalid_api_key",
                    "The ephemeral client secret has expired; mint a new one.",
                ),
                Provider::Gemini => refuse(
                    "invalid_api_key",
                    "Unauthenticated: the access token (auth token) has expired.",
                ),
            };
        }
        if entry.new_session_until.is_some_and(|t| now >= t) {
            return refuse(
                "invalid_api_key",
                "Unauthenticated: the access token (auth token) can no longer start new sessions.",
            );
        }
        match &mut entry.uses_left {
            Some(0) => refuse(
                "invalid_api_key",
                "Unauthenticated: the access token (auth token) has no uses left.",
            ),
            Some(n) => {
                *n -= 1;
                Some(Ok(()))
            }
            None => Some(Ok(())),
        }
    }
}

fn random_token(prefix: &str) -> String {
    let a: u128 = rand::random();
    let b: u64 = rand::random();
    format!("{prefix}{a:032x}{b:016x}")
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

fn openai_error(status: u16, param: Option<&str>, message: &str) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST),
    )
    .json(json!({"error": {
        "message": message,
        "type": "invalid_request_error",
        "param": param,
        "code": if status == 429 { "rate_limit_exceeded" } else { "invalid_value" },
    }}))
}

fn gemini_error(status: u16, message: &str) -> HttpResponse {
    let s = match status {
        429 => "RESOURCE_EXHAUSTED",
        _ => "INVALID_ARGUMENT",
    };
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST),
    )
    .json(json!({"error": {"code": status, "message": message, "status": s}}))
}

/// `POST /v1/realtime/client_secrets`.
pub(crate) async fn openai_client_secrets(
    shared: web::Data<Shared>,
    body: web::Bytes,
) -> HttpResponse {
    let req: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v @ Value::Object(_)) => v,
            _ => return openai_error(400, None, "The body must be a JSON object."),
        }
    };
    for key in req.as_object().into_iter().flat_map(|m| m.keys()) {
        if key != "expires_after" && key != "session" {
            return openai_error(400, Some(key), &format!("Unknown parameter: '{key}'."));
        }
    }
    let mut seconds = 600u64;
    if let Some(after) = req.get("expires_after").filter(|v| !v.is_null()) {
        match after.get("anchor").and_then(Value::as_str) {
            Some("created_at") => {}
            _ => {
                return openai_error(
                    400,
                    Some("expires_after.anchor"),
                    "expires_after.anchor must be 'created_at'.",
                )
            }
        }
        if let Some(s) = after.get("seconds").filter(|v| !v.is_null()) {
            let min = shared.cfg.min_client_secret_seconds.min(7200);
            match s.as_u64() {
                Some(n) if (min..=7200).contains(&n) => seconds = n,
                _ => {
                    return openai_error(
                        400,
                        Some("expires_after.seconds"),
                        &format!(
                            "expires_after.seconds must be an integer between {min} and 7200."
                        ),
                    )
                }
            }
        }
    }
    let mut session = req.get("session").cloned().unwrap_or_else(|| json!({}));
    if !session.is_object() {
        return openai_error(400, Some("session"), "session must be an object.");
    }
    match session.get("type").and_then(Value::as_str) {
        None => session["type"] = json!("realtime"),
        Some("realtime" | "transcription") => {}
        Some(_) => {
            return openai_error(
                400,
                Some("session.type"),
                "session.type must be 'realtime' or 'transcription'.",
            )
        }
    }
    if session["type"] == "realtime" && session.get("model").is_none() {
        session["model"] = json!("gpt-realtime");
    }
    let expires = SystemTime::now() + Duration::from_secs(seconds);
    let value = random_token("ek_");
    let entry = Entry {
        provider: Provider::OpenAi,
        expires,
        new_session_until: None,
        uses_left: None,
    };
    if shared.tokens.insert(value.clone(), entry).is_err() {
        return openai_error(429, None, "Too many live client secrets; try again later.");
    }
    tracing::info!(seconds, "minted an OpenAI client secret");
    HttpResponse::Ok().json(json!({
        "value": value,
        "expires_at": unix(expires),
        "session": session,
    }))
}

/// `POST /v1alpha/auth_tokens`.
pub(crate) async fn gemini_auth_tokens(
    shared: web::Data<Shared>,
    body: web::Bytes,
) -> HttpResponse {
    let req: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v @ Value::Object(_)) => v,
            _ => return gemini_error(400, "Invalid JSON payload: the body must be an object."),
        }
    };
    const KNOWN: &[&str] = &[
        "uses",
        "expireTime",
        "newSessionExpireTime",
        "bidiGenerateContentSetup",
        "fieldMask",
        "name",
    ];
    for key in req.as_object().into_iter().flat_map(|m| m.keys()) {
        if !KNOWN.contains(&key.as_str()) {
            return gemini_error(
                400,
                &format!(
                    "Invalid JSON payload received. Unknown name \"{key}\": Cannot find field."
                ),
            );
        }
    }
    let now = SystemTime::now();
    let time = |field: &str, default: Duration| -> Result<SystemTime, Box<HttpResponse>> {
        match req.get(field).filter(|v| !v.is_null()) {
            None => Ok(now + default),
            Some(Value::String(s)) => parse_rfc3339(s).ok_or_else(|| {
                Box::new(gemini_error(
                    400,
                    &format!("Invalid value at '{field}': {s:?} is not an RFC 3339 timestamp."),
                ))
            }),
            Some(other) => Err(Box::new(gemini_error(
                400,
                &format!("Invalid value at '{field}': {other} is not a timestamp."),
            ))),
        }
    };
    let expires = match time("expireTime", Duration::from_secs(30 * 60)) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let new_session_until = match time("newSessionExpireTime", Duration::from_secs(60)) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    if expires <= now {
        return gemini_error(400, "expireTime must be in the future.");
    }
    if expires > now + Duration::from_secs(20 * 3600) {
        return gemini_error(400, "expireTime must be at most 20 hours from now.");
    }
    let uses = match req.get("uses").filter(|v| !v.is_null()) {
        None => 1,
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => n,
            None => return gemini_error(400, "Invalid value at 'uses': not a count."),
        },
    };
    let name = random_token("auth_tokens/");
    let entry = Entry {
        provider: Provider::Gemini,
        expires,
        new_session_until: Some(new_session_until),
        // 0 means "unlimited" on the wire, as in proto3 defaults.
        uses_left: (uses > 0).then_some(uses),
    };
    if shared.tokens.insert(name.clone(), entry).is_err() {
        return gemini_error(429, "Too many live auth tokens; try again later.");
    }
    tracing::info!(uses, "minted a Gemini auth token");
    let mut out = json!({
        "name": name,
        "uses": uses,
        "expireTime": format_rfc3339(expires),
        "newSessionExpireTime": format_rfc3339(new_session_until),
    });
    if let Some(setup) = req.get("bidiGenerateContentSetup") {
        out["bidiGenerateContentSetup"] = setup.clone();
    }
    HttpResponse::Ok().json(out)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
pub(crate) fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())
            .flatten()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos = 0u64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = frac[..digits].parse::<u64>().ok()? * 10u64.pow(9 - digits as u32);
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let oh: i64 = o[1..3].parse().ok()?;
            let om: i64 = o[4..6].parse().ok()?;
            let v = oh * 3600 + om * 60;
            if o.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo as u32, d as u32) * 86_400 + h * 3600 + mi * 60 + se - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(nanos))
}

/// Formats `t` as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub(crate) fn format_rfc3339(t: SystemTime) -> String {
    let secs = unix(t) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Inverse of days_from_civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        for secs in [
            0u64,
            951_782_400,
            1_700_000_000,
            1_798_761_599,
            4_102_444_800,
        ] {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            let s = format_rfc3339(t);
            assert_eq!(parse_rfc3339(&s), Some(t), "{s}");
        }
        assert_eq!(
            parse_rfc3339("2026-11-27T18:00:00.5+01:00"),
            Some(UNIX_EPOCH + Duration::from_millis(1_795_798_800_500))
        );
        for bad in [
            "",
            "2026-11-27",
            "2026-13-01T00:00:00Z",
            "2026-11-27T18:00:00",
            "x026-11-27T18:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn uses_and_expiry() {
        let store = TokenStore::default();
        let now = SystemTime::now();
        store
            .insert(
                "t1".into(),
                Entry {
                    provider: Provider::Gemini,
                    expires: now + Duration::from_secs(60),
                    new_session_until: Some(now + Duration::from_secs(60)),
                    uses_left: Some(1),
                },
            )
            .unwrap();
        assert_eq!(store.admit(Provider::Gemini, "t1"), Some(Ok(())));
        assert!(store.admit(Provider::Gemini, "t1").unwrap().is_err());
        assert_eq!(store.admit(Provider::OpenAi, "t1"), None);
        assert_eq!(store.admit(Provider::Gemini, "unknown"), None);
    }
}
