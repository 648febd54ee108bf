//! [`ConversationId`], the key a conversation is stored under, and [`ResumeToken`], the
//! secret a client shows to take a conversation over on another instance.
//!
//! Both arrive from the network (a page reconnecting, a load balancer routing by id), so both
//! are parsed, never trusted: an id is 1 to 64 characters of `[A-Za-z0-9_-]` (safe in a Redis
//! key, a URL and a log line), and a token is compared in constant time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest accepted [`ConversationId`].
pub const MAX_ID_LEN: usize = 64;

/// The id a conversation is stored under.
///
/// ```
/// use liveagent_store::ConversationId;
/// let id: ConversationId = "call-42".parse().unwrap();
/// assert_eq!(id.as_str(), "call-42");
/// assert!("../etc/passwd".parse::<ConversationId>().is_err());
/// assert_eq!(ConversationId::generate().as_str().len(), 32);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConversationId(String);

/// A conversation id or resume token that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {reason}")]
pub struct InvalidId {
    what: &'static str,
    reason: &'static str,
}

fn random_hex(bytes: usize) -> String {
    // `rand::random` draws from the thread-local CSPRNG (ChaCha, seeded by the OS).
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

impl ConversationId {
    /// A new random id (128 bits, 32 hex digits).
    pub fn generate() -> Self {
        ConversationId(random_hex(16))
    }

    /// Parses an id: 1 to [`MAX_ID_LEN`] characters of `[A-Za-z0-9_-]`.
    pub fn parse(text: &str) -> Result<Self, InvalidId> {
        let invalid = |reason| InvalidId {
            what: "conversation id",
            reason,
        };
        if text.is_empty() {
            return Err(invalid("empty"));
        }
        if text.len() > MAX_ID_LEN {
            return Err(invalid("longer than 64 characters"));
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid("only letters, digits, '-' and '_' are allowed"));
        }
        Ok(ConversationId(text.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ConversationId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConversationId::parse(s)
    }
}

impl TryFrom<String> for ConversationId {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ConversationId::parse(&s)
    }
}

impl From<ConversationId> for String {
    fn from(id: ConversationId) -> String {
        id.0
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The secret a client (a browser page) holds to resume its conversation on any instance.
/// `Debug` never prints it; [`matches`](Self::matches) compares in constant time.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResumeToken(String);

impl ResumeToken {
    /// A new random token (256 bits, 64 hex digits).
    pub fn generate() -> Self {
        ResumeToken(random_hex(32))
    }

    /// Parses a token a client sent: 16 to 128 characters of `[A-Za-z0-9_-]`.
    pub fn parse(text: &str) -> Result<Self, InvalidId> {
        let invalid = |reason| InvalidId {
            what: "resume token",
            reason,
        };
        if !(16..=128).contains(&text.len()) {
            return Err(invalid("must be 16 to 128 characters"));
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid("only letters, digits, '-' and '_' are allowed"));
        }
        Ok(ResumeToken(text.to_owned()))
    }

    /// The token, to hand to the client. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when `presented` is this token (constant time in the token's length).
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl TryFrom<String> for ResumeToken {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ResumeToken::parse(&s)
    }
}

impl From<ResumeToken> for String {
    fn from(t: ResumeToken) -> String {
        t.0
    }
}

impl fmt::Debug for ResumeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResumeToken(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        assert!(ConversationId::parse("").is_err());
        assert!(ConversationId::parse(&"a".repeat(65)).is_err());
        assert!(ConversationId::parse("a b").is_err());
        assert!(ConversationId::parse("a:b").is_err());
        assert!(ConversationId::parse("a}b").is_err());
        assert!(ConversationId::parse("Abc_1-2").is_ok());
        let json = serde_json::to_string(&ConversationId::parse("x1").unwrap()).unwrap();
        assert_eq!(json, "\"x1\"");
        assert!(serde_json::from_str::<ConversationId>("\"a b\"").is_err());
    }

    #[test]
    fn tokens_never_print_and_compare() {
        let t = ResumeToken::generate();
        assert_eq!(t.expose().len(), 64);
        assert!(!format!("{t:?}").contains(t.expose()));
        assert!(t.matches(t.expose()));
        assert!(!t.matches(&t.expose()[1..]));
        assert!(!t.matches(&"0".repeat(64)));
        assert!(ResumeToken::parse("short").is_err());
    }
}
