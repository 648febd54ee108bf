//! Gemini reports errors by closing the WebSocket with a close code and a reason text
//! (for example `1007` "API key not valid. Please pass a valid API key." or `1008`
//! "models/x is not found for API version v1beta ..."). [`classify_close`] turns that into a
//! typed [`LiveError`].

use liveagent_core::{ErrorKind, LiveError};

/// Classifies a close frame from the Gemini server. `None` for a normal closure: no code, or
/// code 1000/1001, with a reason that names no known error.
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
    let by_text = if has(&[
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
        Some(ErrorKind::Auth)
    } else if has(&[
        "quota",
        "resource_exhausted",
        "resource exhausted",
        "billing",
    ]) {
        Some(ErrorKind::Quota)
    } else if has(&[
        "not found",
        "not_found",
        "is not supported for bidigeneratecontent",
        "unsupported model",
        "model is not supported",
    ]) {
        Some(ErrorKind::NotFound)
    } else if has(&[
        "invalid argument",
        "invalid_argument",
        "invalid json",
        "unknown name",
        "cannot find field",
        "invalid value",
        "request contains an invalid",
    ]) {
        Some(ErrorKind::InvalidRequest)
    } else if has(&[
        "internal",
        "unavailable",
        "deadline",
        "overloaded",
        "try again",
        "aborted",
    ]) {
        Some(ErrorKind::Provider)
    } else {
        None
    };
    let kind = match (by_text, code) {
        (Some(k), _) => k,
        // A normal or going-away close whose reason says nothing known (e.g. the end of a
        // connection after `goAway`).
        (None, None | Some(1000) | Some(1001)) => return None,
        (None, Some(1007) | Some(1003) | Some(1008)) => ErrorKind::InvalidRequest,
        (None, Some(1011) | Some(1012) | Some(1013) | Some(1014)) => ErrorKind::Provider,
        (None, Some(_)) => ErrorKind::Connection,
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
        assert_eq!(k(Some(1001), "goAway: connection time limit reached"), None);
        assert_eq!(k(Some(1000), "API key expired"), Some(ErrorKind::Auth));
        assert_eq!(
            k(
                Some(1007),
                "Session resumption handle is invalid or expired."
            ),
            Some(ErrorKind::InvalidRequest)
        );
        let e = classify_close(Some(1008), "x").unwrap();
        assert_eq!(e.code.as_deref(), Some("1008"));
        assert!(e.message.contains("1008"));
    }
}
