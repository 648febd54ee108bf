//! Raw provider overrides (unstable escape hatches): JSON merged last into what a provider
//! session sends, for options liveagent has no typed setting for yet.

use serde_json::Value;

use crate::error::LiveError;

/// Merges `patch` into `base`: objects merge key by key (recursively), a `null` removes the
/// key, anything else replaces.
///
/// ```
/// use serde_json::json;
/// let mut base = json!({"a": {"b": 1, "c": 2}, "d": 3});
/// liveagent_core::raw::merge_json(&mut base, &json!({"a": {"b": 9, "c": null}, "e": true}));
/// assert_eq!(base, json!({"a": {"b": 9}, "d": 3, "e": true}));
/// ```
pub fn merge_json(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else if let Some(slot) = b.get_mut(k) {
                    merge_json(slot, v);
                } else {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
        (base, patch) => *base = patch.clone(),
    }
}

/// Checks that `raw` is a JSON object whose keys are all in `known` (`what` names it in
/// the error, which lists the keys allowed).
pub fn check_object(what: &str, raw: &Value, known: &[&str]) -> Result<(), LiveError> {
    let Some(map) = raw.as_object() else {
        return Err(LiveError::config(format!(
            "{what} must be a JSON object, not {raw}"
        )));
    };
    for key in map.keys() {
        if !known.contains(&key.as_str()) {
            return Err(LiveError::config(format!(
                "{what}: unknown field `{key}`; the fields allowed are: {}",
                known.join(", ")
            )));
        }
    }
    Ok(())
}
