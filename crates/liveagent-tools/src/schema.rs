//! Provider-friendly JSON schemas for tool arguments.
//!
//! Realtime providers accept a subset of JSON Schema for function parameters (Gemini's is
//! the OpenAPI 3 subset). [`schema_for`] generates the schema of a
//! `schemars::JsonSchema` type and rewrites it into the shape both providers accept:
//!
//! - one self-contained object: subschemas are inlined, no `$ref` / `$defs` (except for
//!   recursive types, which cannot be inlined);
//! - no `$schema` or `title` keywords;
//! - the root is `{"type": "object", "properties": {..}, "required": [..]}`, with the
//!   descriptions taken from the doc comments of the struct and its fields;
//! - `Option<T>` fields are plain `T` (they are simply not `required`), not `["T", "null"]`
//!   or `anyOf [T, null]`;
//! - enums of documented unit variants (`oneOf` of `const`s) become `enum`;
//! - non-standard integer formats (`uint32`, `uint8`...) are dropped; `int32`, `int64`,
//!   `float`, `double` and the string formats stay.

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{Map, Value};

/// The provider-friendly JSON schema of `T` (see the [module docs](self)).
///
/// ```
/// use liveagent_tools::schema_for;
/// use schemars::JsonSchema;
///
/// /// Arguments of `get_weather`.
/// #[derive(serde::Deserialize, JsonSchema)]
/// struct WeatherArgs {
///     /// The city, e.g. "Paris".
///     city: String,
///     /// Days ahead (0 = today).
///     days: Option<u8>,
/// }
///
/// let schema = schema_for::<WeatherArgs>();
/// assert_eq!(schema["type"], "object");
/// assert_eq!(schema["required"], serde_json::json!(["city"]));
/// assert_eq!(schema["properties"]["city"]["description"], "The city, e.g. \"Paris\".");
/// assert_eq!(schema["properties"]["days"]["type"], "integer");
/// assert!(schema.get("$schema").is_none() && schema.get("title").is_none());
/// ```
pub fn schema_for<T: JsonSchema>() -> Value {
    let mut value = exact_schema_for::<T>();
    provider_friendly(&mut value);
    value
}

/// The schema of `T` as schemars generates it (draft 2020-12, subschemas inlined), before
/// the provider-friendly rewrite: what arguments are validated against (it still says,
/// for example, that an `Option` field may be `null`).
pub(crate) fn exact_schema_for<T: JsonSchema>() -> Value {
    let settings = SchemaSettings::draft2020_12()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .for_deserialize();
    settings
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// Rewrites a JSON schema in place into the provider-friendly shape described in the
/// [module docs](self). [`schema_for`] calls it; use it for hand-written schemas too.
pub fn provider_friendly(schema: &mut Value) {
    let keep_defs = contains_ref(schema);
    clean(schema);
    if let Value::Object(root) = schema {
        root.remove("title");
        if !keep_defs {
            root.remove("$defs");
            root.remove("definitions");
        }
        let is_object = match root.get("type") {
            Some(Value::String(t)) => t == "object",
            None => !root.contains_key("anyOf") && !root.contains_key("oneOf"),
            _ => false,
        };
        if is_object {
            root.insert("type".into(), Value::String("object".into()));
            root.entry("properties")
                .or_insert_with(|| Value::Object(Map::new()));
        } else {
            tracing::warn!(
                "tool argument schema is not an object; providers expect a struct with named fields"
            );
        }
    }
}

fn contains_ref(value: &Value) -> bool {
    match value {
        Value::Object(m) => m.contains_key("$ref") || m.values().any(contains_ref),
        Value::Array(a) => a.iter().any(contains_ref),
        _ => false,
    }
}

const KEPT_FORMATS: &[&str] = &[
    "int32",
    "int64",
    "float",
    "double",
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "uri",
    "uuid",
    "hostname",
    "ipv4",
    "ipv6",
];

fn is_null_schema(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("null")
}

/// Cleans one schema object (not a property map).
fn clean(schema: &mut Value) {
    let Value::Object(map) = schema else { return };
    map.remove("$schema");
    // Nested titles are type names, noise for the model.
    map.remove("title");

    // type: ["T", "null"] -> "T"
    if let Some(Value::Array(types)) = map.get("type") {
        let non_null: Vec<Value> = types
            .iter()
            .filter(|t| t.as_str() != Some("null"))
            .cloned()
            .collect();
        if non_null.len() == 1 {
            map.insert("type".into(), non_null[0].clone());
        } else if non_null.len() < types.len() {
            map.insert("type".into(), Value::Array(non_null));
        }
    }
    // anyOf: [X, {type: null}] -> X merged in (keeping this level's description).
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(variants)) = map.get(key) {
            if variants.len() == 2 && variants.iter().any(is_null_schema) {
                if let Some(Value::Object(inner)) =
                    variants.iter().find(|v| !is_null_schema(v)).cloned()
                {
                    map.remove(key);
                    for (k, v) in inner {
                        map.entry(k).or_insert(v);
                    }
                }
            }
        }
    }
    // oneOf of string consts (documented unit enum variants) -> enum
    if let Some(Value::Array(variants)) = map.get("oneOf") {
        let consts: Option<Vec<Vec<Value>>> = variants
            .iter()
            .map(|v| match (v.get("const"), v.get("enum")) {
                (Some(c @ Value::String(_)), _) => Some(vec![c.clone()]),
                (None, Some(Value::Array(e))) if e.iter().all(Value::is_string) => Some(e.clone()),
                _ => None,
            })
            .collect();
        if let Some(consts) = consts {
            let all: Vec<Value> = consts.into_iter().flatten().collect();
            let described: Vec<String> = variants
                .iter()
                .filter_map(|v| {
                    let d = v.get("description")?.as_str()?;
                    let name = v
                        .get("const")
                        .or_else(|| v.get("enum").and_then(|e| e.get(0)))?
                        .as_str()?;
                    Some(format!("`{name}`: {d}"))
                })
                .collect();
            map.remove("oneOf");
            map.insert("type".into(), Value::String("string".into()));
            map.insert("enum".into(), Value::Array(all));
            if !described.is_empty() {
                let list = described.join("; ");
                let text = match map.get("description").and_then(Value::as_str) {
                    Some(d) => format!("{d} ({list})"),
                    None => list,
                };
                map.insert("description".into(), Value::String(text));
            }
        }
    }
    // const "x" -> enum ["x"] (Gemini has no const)
    if let Some(c) = map.remove("const") {
        map.insert("enum".into(), Value::Array(vec![c]));
    }
    if let Some(Value::String(f)) = map.get("format") {
        if !KEPT_FORMATS.contains(&f.as_str()) {
            map.remove("format");
        }
    }

    // Recurse into subschemas.
    for key in ["properties", "$defs", "definitions", "patternProperties"] {
        if let Some(Value::Object(props)) = map.get_mut(key) {
            props.values_mut().for_each(clean);
        }
    }
    for key in [
        "items",
        "additionalProperties",
        "not",
        "contains",
        "unevaluatedProperties",
    ] {
        if let Some(sub) = map.get_mut(key) {
            clean(sub);
        }
    }
    for key in ["anyOf", "oneOf", "allOf", "prefixItems"] {
        if let Some(Value::Array(subs)) = map.get_mut(key) {
            subs.iter_mut().for_each(clean);
        }
    }
}
