//! Gemini reports errors by closing the WebSocket with a close code and a reason text
//! (for example `1007` "API key not valid. Please pass a valid API key." or `1008`
//! "models/x is not found for API version v1beta ..."). [`classify_close`] turns that into a
//! typed [`LiveError`].

use liveagent_core::{ErrorKind, LiveError};

/// Classifies a close frame from the Gemini server. `None` for a normal closure (code 1000
/// or 1001 without a reason, or no code at all with no reason).
///
/// The reason texts are matched loosely (case-insensitive substrings) because Google does not
/// document them; the close code decides when the text says nothing known.
///
/// ```
/// use liveagent_core::ErrorKind;
/// use liveagent_gemini::classify_close;
/// let e = classify_close(Some(1007), "API key not valid. Please pass a valid API key.").unwrap();
/// assert_eq!(e.kind, ErrorKind::Auth);
/// assert!(classify_close(Some(1000), "").is_none());
/// ```
pub fn classify_close(code: Option<u16>, reason: &str) -> Option<LiveError> {
    let text = reason.trim();
    let lower = text.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    if text.is_empty() && matches!(code, None | Some(1000) | Some(1001)) {
        return None;
    }
    let kind = if has(&[
        "api key",
        "api_key",
        "apikey",
        "permission_denied",
        "permission denied",
        "unauthenticated",
        "unregistered callers",
        "authentication",
        "credential",
        "access token",
    ]) {
        ErrorKind::Auth
    } else if has(&[
        "quota",
        "resource_exhausted",
        "resource exhausted",
        "billing",
    ]) {
        ErrorKind::Quota
    } else if has(&[
        "not found",
        "not_found",
        "is not supported for bidigeneratecontent",
        "unsupported model",
        "model is not supported",
    ]) {
        ErrorKind::NotFound
    } else if has(&[
        "invalid argument",
        "invalid_argument",
        "invalid json",
        "unknown name",
        "cannot find field",
        "invalid value",
        "request contains an invalid",
    ]) {
        ErrorKind::InvalidRequest
    } else if has(&[
        "internal",
        "unavailable",
        "deadline",
        "overloaded",
        "try again",
        "aborted",
    ]) {
        ErrorKind::Provider
    } else {
        match code {
            Some(1007) | Some(1003) => ErrorKind::InvalidRequest,
            Some(1008) => ErrorKind::InvalidRequest,
            Some(1011) | Some(1012) | Some(1013) | Some(1014) => ErrorKind::Provider,
            _ => ErrorKind::Connection,
        }
    };
    let message = match code {
        Some(c) if text.is_empty() => format!("the server closed the connection (code {c})"),
        Some(c) => format!("the server closed the connection (code {c}): {text}"),
        None => format!("the server closed the connection: {text}"),
    };
    let err = LiveError::new(kind, message);
    Some(match code {
        Some(c) => err.with_code(c.to_string()),
        None => err,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let k = |code, r: &str| classify_close(code, r).map(|e| e.kind);
        assert_eq!(k(Some(1000), ""), None);
        assert_eq!(k(None, ""), None);
        assert_eq!(
            k(
                Some(1007),
                "API key not valid. Please pass a valid API key."
            ),
            Some(ErrorKind::Auth)
        );
        assert_eq!(
            k(Some(1008), "Method doesn't allow unregistered callers"),
            Some(ErrorKind::Auth)
        );
        assert_eq!(
            k(Some(1008), "models/foo is not found for API version v1beta, or is not supported for bidiGenerateContent."),
            Some(ErrorKind::NotFound)
        );
        assert_eq!(
            k(Some(1011), "You exceeded your current quota"),
            Some(ErrorKind::Quota)
        );
        assert_eq!(
            k(
                Some(1007),
                "Invalid JSON payload received. Unknown name \"foo\""
            ),
            Some(ErrorKind::InvalidRequest)
        );
        assert_eq!(
            k(Some(1011), "Internal error encountered."),
            Some(ErrorKind::Provider)
        );
        assert_eq!(k(Some(1011), ""), Some(ErrorKind::Provider));
        assert_eq!(k(Some(1006), ""), Some(ErrorKind::Connection));
        let e = classify_close(Some(1008), "x").unwrap();
        assert_eq!(e.code.as_deref(), Some("1008"));
        assert!(e.message.contains("1008"));
    }
}
