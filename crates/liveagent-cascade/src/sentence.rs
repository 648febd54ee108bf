//! [`SentenceBuffer`]: cuts the LLM's token stream into pieces worth synthesizing, so speech
//! starts on the first sentence instead of after the whole answer (AG2's `SentenceBuffer`
//! with `TTSObserver(min_chars)`).
//!
//! A piece ends at a sentence end (`.`, `!`, `?`, `…`, `;`, `:` or a newline, followed by
//! whitespace) once it holds at least `min_chars` characters; shorter sentences are joined
//! with the next one so the synthesizer does not get one-word requests. Decimal points
//! (`3.5`) and a sentence end not yet followed by anything are not cuts.
//!
//! ```
//! use liveagent_cascade::SentenceBuffer;
//! let mut b = SentenceBuffer::new(10);
//! assert!(b.push("Hi. It is 21.5").is_empty());
//! assert_eq!(b.push(" degrees. And"), vec!["Hi. It is 21.5 degrees.".to_string()]);
//! assert_eq!(b.flush().as_deref(), Some("And"));
//! ```

/// Accumulates streamed text and yields complete sentences. See the [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct SentenceBuffer {
    text: String,
    min_chars: usize,
}

impl SentenceBuffer {
    /// A buffer that yields pieces of at least `min_chars` characters (except the last).
    pub fn new(min_chars: usize) -> Self {
        SentenceBuffer {
            text: String::new(),
            min_chars,
        }
    }

    /// Adds a delta; returns the pieces it completed, trimmed.
    pub fn push(&mut self, delta: &str) -> Vec<String> {
        self.text.push_str(delta);
        let mut out = Vec::new();
        while let Some(cut) = self.find_cut() {
            let rest = self.text.split_off(cut);
            let piece = std::mem::replace(&mut self.text, rest);
            let piece = piece.trim();
            if !piece.is_empty() {
                out.push(piece.to_owned());
            }
        }
        out
    }

    /// Returns whatever is left (the end of the answer), trimmed, or `None`.
    pub fn flush(&mut self) -> Option<String> {
        let piece = std::mem::take(&mut self.text);
        let piece = piece.trim();
        (!piece.is_empty()).then(|| piece.to_owned())
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.text.trim().is_empty()
    }

    /// Byte offset just after the first sentence end (and its whitespace) at or after
    /// `min_chars` characters.
    fn find_cut(&self) -> Option<usize> {
        let mut chars = self.text.char_indices().peekable();
        let mut count = 0;
        while let Some((_, c)) = chars.next() {
            count += 1;
            let ends = matches!(
                c,
                '.' | '!' | '?' | '…' | ';' | ':' | '\n' | '。' | '！' | '？'
            );
            if !ends || count < self.min_chars {
                continue;
            }
            match chars.peek() {
                Some(&(i, next)) if next.is_whitespace() => {
                    return Some(i + next.len_utf8());
                }
                _ if c == '\n' => return chars.peek().map(|&(i, _)| i),
                _ => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_only_after_whitespace_and_min_chars() {
        let mut b = SentenceBuffer::new(1);
        assert!(b.push("Hello.").is_empty());
        assert_eq!(b.push(" World! x"), vec!["Hello.", "World!"]);
        assert_eq!(b.flush().as_deref(), Some("x"));
        assert_eq!(b.flush(), None);
    }

    #[test]
    fn token_by_token_equals_whole() {
        let text = "It's 21 degrees. Sunny, with a light breeze! Anything else? ok";
        let mut whole = SentenceBuffer::new(8);
        let mut a = whole.push(text);
        a.extend(whole.flush());
        let mut tok = SentenceBuffer::new(8);
        let mut b = Vec::new();
        for ch in text.chars() {
            b.extend(tok.push(&ch.to_string()));
        }
        b.extend(tok.flush());
        assert_eq!(a, b);
        assert_eq!(a.len(), 4);
    }
}
