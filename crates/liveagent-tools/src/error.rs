//! [`ToolError`]: what a tool function returns when it fails.

use std::fmt;

/// The error a tool function returns. The executor turns it into the text of an error
/// result (`ToolResult.output = Err(text)`) that the model reads and can react to.
///
/// Any `std::error::Error` converts into it, so `?` works inside tools:
///
/// ```
/// use liveagent_tools::ToolError;
/// fn parse(s: &str) -> Result<i64, ToolError> {
///     Ok(s.parse::<i64>()?)
/// }
/// assert!(parse("x").unwrap_err().message().contains("invalid digit"));
/// assert_eq!(ToolError::msg("no such city").to_string(), "no such city");
/// ```
pub struct ToolError {
    message: String,
}

impl ToolError {
    /// An error with the given text (what the model will read).
    pub fn msg(message: impl fmt::Display) -> Self {
        ToolError {
            message: message.to_string(),
        }
    }

    /// The text of the error.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The text of the error, by value.
    pub fn into_message(self) -> String {
        self.message
    }
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ToolError({:?})", self.message)
    }
}

// `ToolError` deliberately does not implement `std::error::Error`, so that this blanket
// conversion (the one `?` uses) does not overlap with `From<T> for T`.
impl<E: std::error::Error + Send + Sync + 'static> From<E> for ToolError {
    fn from(error: E) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        ToolError { message }
    }
}

impl From<ToolError> for liveagent_core::LiveError {
    fn from(error: ToolError) -> Self {
        liveagent_core::LiveError::new(liveagent_core::ErrorKind::Tool, error.message)
    }
}
