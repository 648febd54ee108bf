//! [`Secret`]: a string (an API key, an ephemeral token) that never appears in logs,
//! `Debug` output or error messages.

use std::fmt;

/// A secret string. `Debug` and `Display` print `Secret(***)`; only [`Secret::expose`]
/// gives the value, and only the code that writes it on the wire should call it.
///
/// ```
/// use liveagent_core::Secret;
/// let key = Secret::new("sk-live-123");
/// assert_eq!(format!("{key:?}"), "Secret(***)");
/// assert_eq!(key.expose(), "sk-live-123");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// Reads a secret from an environment variable; `None` when it is unset or empty.
    pub fn from_env(var: &str) -> Option<Self> {
        std::env::var(var)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(Secret)
    }

    /// The secret value itself. Use it only to put the secret on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Replaces every occurrence of the secret in `text` with `***`, for error messages
    /// that might echo a URL or header.
    pub fn redact(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_owned()
        } else {
            text.replace(&self.0, "***")
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

/// True when `url` would carry data in cleartext (`ws://`, `http://`) to a host that is not
/// loopback (`localhost`, `127.0.0.0/8`, `::1`). Provider configurations refuse such a URL
/// when an API key is set, unless the user opts in with `allow_insecure_transport()`.
///
/// ```
/// use liveagent_core::secret::is_cleartext_to_remote;
/// assert!(is_cleartext_to_remote("ws://10.0.0.5/v1"));
/// assert!(is_cleartext_to_remote("http://api.example.com"));
/// assert!(!is_cleartext_to_remote("wss://api.openai.com/v1"));
/// assert!(!is_cleartext_to_remote("ws://127.0.0.1:8080/v1"));
/// assert!(!is_cleartext_to_remote("ws://localhost/v1"));
/// assert!(!is_cleartext_to_remote("ws://[::1]:9000"));
/// ```
pub fn is_cleartext_to_remote(url: &str) -> bool {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("ws://")
        .or_else(|| lower.strip_prefix("http://"))
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    let loopback = host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}
