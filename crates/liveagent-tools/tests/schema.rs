//! Tool schemas are what providers accept: one inline object, described from doc comments.

use liveagent_tools::{schema_for, NoArgs, Tool, ToolError};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

/// A place.
#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
struct Place {
    /// The city.
    city: String,
    /// The ISO country code.
    country: Option<String>,
}

/// Units.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum Units {
    /// Degrees Celsius.
    Metric,
    /// Degrees Fahrenheit.
    Imperial,
}

/// Plain units.
#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
enum Plain {
    A,
    B,
}

/// Forecast request.
#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
struct ForecastArgs {
    /// Where.
    place: Place,
    /// Other places to compare with.
    others: Vec<Place>,
    /// Which units.
    units: Option<Units>,
    plain: Plain,
    /// How many days ahead.
    days: u32,
    /// Precision.
    ratio: f64,
}

fn walk(v: &Value, f: &mut impl FnMut(&str, &Value)) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                f(k, x);
                walk(x, f);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| walk(x, f)),
        _ => {}
    }
}

#[test]
fn nested_types_are_inlined_and_cleaned() {
    let s = schema_for::<ForecastArgs>();
    let mut bad = Vec::new();
    walk(&s, &mut |k, v| {
        if matches!(
            k,
            "$ref" | "$defs" | "$schema" | "title" | "const" | "oneOf" | "anyOf"
        ) {
            bad.push(k.to_owned());
        }
        if k == "type" && v.is_array() {
            bad.push(format!("type array {v}"));
        }
        if k == "format" && v.as_str().is_some_and(|f| f.starts_with('u')) {
            bad.push(format!("format {v}"));
        }
    });
    assert!(bad.is_empty(), "{bad:?} in {s:#}");
    assert_eq!(s["type"], "object");
    assert_eq!(s["description"], "Forecast request.");
    assert_eq!(
        s["required"],
        json!(["place", "others", "plain", "days", "ratio"])
    );
    let p = &s["properties"];
    assert_eq!(p["place"]["type"], "object");
    assert_eq!(p["place"]["description"], "Where.");
    assert_eq!(p["place"]["properties"]["city"]["description"], "The city.");
    assert_eq!(p["place"]["properties"]["country"]["type"], "string");
    assert_eq!(p["place"]["required"], json!(["city"]));
    assert_eq!(p["others"]["items"]["properties"]["city"]["type"], "string");
    assert_eq!(p["units"]["type"], "string");
    assert_eq!(p["units"]["enum"], json!(["metric", "imperial"]));
    assert!(p["units"]["description"]
        .as_str()
        .unwrap()
        .contains("`metric`: Degrees Celsius."));
    assert_eq!(p["plain"]["enum"], json!(["A", "B"]));
    assert_eq!(p["days"]["type"], "integer");
    assert_eq!(p["ratio"]["format"], "double");
}

#[test]
fn no_args_is_an_empty_object() {
    let t = Tool::new("now", "The time.", |_: NoArgs| async {
        Ok::<_, ToolError>(0)
    });
    assert_eq!(t.parameters()["type"], "object");
    assert_eq!(t.parameters()["properties"], json!({}));
    let schema = t.schema();
    assert_eq!(schema.name, "now");
    assert_eq!(schema.description, "The time.");
}

#[test]
fn raw_schemas_are_cleaned_too() {
    let t = Tool::raw(
        "raw",
        "A raw tool.",
        json!({"$schema": "x", "title": "T", "type": "object",
               "properties": {"title": {"type": ["string", "null"], "title": "kept as a property"}}}),
        |args, _cx| async move { Ok(args) },
    );
    let p = t.parameters();
    assert!(p.get("$schema").is_none() && p.get("title").is_none());
    // A property that happens to be called "title" stays.
    assert_eq!(p["properties"]["title"]["type"], "string");
}
