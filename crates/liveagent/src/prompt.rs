//! Prompt variables: `{name}` placeholders filled from the agent's variables.

use std::collections::BTreeMap;

use crate::BuildError;

/// Substitutes `{name}` placeholders in `template` with `variables`. `{{` and `}}` stand for
/// literal braces. A placeholder without a value is an error, so a typo never reaches the
/// model as a literal `{nmae}`.
///
/// ```
/// use std::collections::BTreeMap;
/// let vars = BTreeMap::from([("user".to_string(), "Ada".to_string())]);
/// let prompt = liveagent::render_prompt("Greet {user}. Use {{braces}}.", &vars).unwrap();
/// assert_eq!(prompt, "Greet Ada. Use {braces}.");
/// assert!(liveagent::render_prompt("Hi {nobody}", &vars).is_err());
/// ```
pub fn render_prompt(
    template: &str,
    variables: &BTreeMap<String, String>,
) -> Result<String, BuildError> {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if matches!(chars.peek(), Some((_, '{'))) => {
                chars.next();
                out.push('{');
            }
            '}' if matches!(chars.peek(), Some((_, '}'))) => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let rest = &template[i + 1..];
                let Some(end) = rest.find('}') else {
                    return Err(BuildError::MalformedPrompt(format!(
                        "unclosed `{{` at byte {i}"
                    )));
                };
                let name = rest[..end].trim();
                let valid = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '.');
                if !valid {
                    return Err(BuildError::MalformedPrompt(format!(
                        "`{{{}}}` at byte {i} is not a variable name (write `{{{{` for a literal brace)",
                        &rest[..end]
                    )));
                }
                match variables.get(name) {
                    Some(value) => out.push_str(value),
                    None => return Err(BuildError::MissingVariable(name.to_owned())),
                }
                for _ in 0..end + 1 {
                    chars.next();
                }
            }
            c => out.push(c),
        }
    }
    Ok(out)
}
