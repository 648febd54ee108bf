//! Prompts: a list of parts (AG2 `prompt=[...]`), each a template string or a hook (sync or
//! async, given the conversation's context), and the template syntax.
//!
//! ## Template syntax
//!
//! `{name}` is replaced by the variable `name` when `name` is a plain identifier (letters,
//! digits, `_`, `-`, `.`) right inside the braces. Every other brace is literal, so a JSON
//! example (`{"city": "Lisbon"}`), a lone `{` or `}` or code need no escaping. A
//! placeholder naming no variable is an error whose message says how to write it literally
//! (`{{name}}`): a typo never reaches the model as `{nmae}`. `{{` and `}}` always stand for
//! one literal brace.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use liveagent_core::ConversationContext;

use crate::BuildError;

type HookFn = dyn Fn(ConversationContext) -> LocalBoxFuture<'static, String> + Send + Sync;

/// One part of an agent's prompt.
#[derive(Clone)]
pub enum PromptPart {
    /// A template (see the [module docs](self)).
    Text(String),
    /// A hook resolved when a conversation opens, against its context (variables,
    /// dependencies...): AG2's prompt hooks. Its text is used as it is (not a template).
    Hook(Arc<HookFn>),
}

impl std::fmt::Debug for PromptPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PromptPart::Text(t) => f.debug_tuple("Text").field(t).finish(),
            PromptPart::Hook(_) => f.write_str("Hook(..)"),
        }
    }
}

impl PromptPart {
    /// An async hook: `|ctx| async move { format!(...) }`.
    pub fn hook<F, Fut>(f: F) -> Self
    where
        F: Fn(ConversationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = String> + 'static,
    {
        PromptPart::Hook(Arc::new(move |ctx| Box::pin(f(ctx))))
    }

    /// A sync hook: `|ctx| format!(...)`.
    pub fn hook_sync<F>(f: F) -> Self
    where
        F: Fn(&ConversationContext) -> String + Send + Sync + 'static,
    {
        PromptPart::Hook(Arc::new(move |ctx| {
            let text = f(&ctx);
            Box::pin(std::future::ready(text))
        }))
    }
}

impl From<&str> for PromptPart {
    fn from(s: &str) -> Self {
        PromptPart::Text(s.to_owned())
    }
}

impl From<String> for PromptPart {
    fn from(s: String) -> Self {
        PromptPart::Text(s)
    }
}

/// Resolves `parts` for one conversation: templates rendered with `variables`, hooks called
/// with `context`; non-empty parts joined with a blank line.
pub(crate) async fn resolve(
    parts: &[PromptPart],
    variables: &BTreeMap<String, String>,
    context: &ConversationContext,
) -> Result<String, BuildError> {
    let mut out: Vec<String> = Vec::with_capacity(parts.len());
    for part in parts {
        let text = match part {
            PromptPart::Text(t) => render_prompt(t, variables)?,
            PromptPart::Hook(h) => h(context.clone()).await,
        };
        if !text.trim().is_empty() {
            out.push(text);
        }
    }
    Ok(out.join("\n\n"))
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// Fills `{name}` placeholders in `template` from `variables` (see the
/// [module docs](self) for the syntax).
///
/// ```
/// use std::collections::BTreeMap;
/// let vars = BTreeMap::from([("user".to_string(), "Ada".to_string())]);
/// let prompt = liveagent::render_prompt(
///     r#"Greet {user}. Answer as JSON: {"ok": true}. {{user}} is literal."#, &vars).unwrap();
/// assert_eq!(prompt, r#"Greet Ada. Answer as JSON: {"ok": true}. {user} is literal."#);
/// let err = liveagent::render_prompt("Hi {nobody}", &vars).unwrap_err();
/// assert!(err.to_string().contains("{{nobody}}"));
/// ```
pub fn render_prompt(
    template: &str,
    variables: &BTreeMap<String, String>,
) -> Result<String, BuildError> {
    let mut out = String::with_capacity(template.len());
    let mut i = 0;
    let bytes = template.as_bytes();
    while i < template.len() {
        let rest = &template[i..];
        if rest.starts_with("{{") || rest.starts_with("}}") {
            out.push(bytes[i] as char);
            i += 2;
            continue;
        }
        if let Some(after) = rest.strip_prefix('{') {
            if let Some(end) = after.find(['}', '{']) {
                let inner = &after[..end];
                if after[end..].starts_with('}') && is_name(inner) {
                    match variables.get(inner) {
                        Some(value) => out.push_str(value),
                        None => return Err(BuildError::MissingVariable(inner.to_owned())),
                    }
                    i += end + 2;
                    continue;
                }
            }
            out.push('{');
            i += 1;
            continue;
        }
        let c = rest.chars().next().expect("non-empty");
        out.push(c);
        i += c.len_utf8();
    }
    Ok(out)
}
