//! `#[tool]` turns a documented async fn into a `Tool` with the right schema and behaviour.

use std::time::Duration;

use liveagent_core::ToolCall;
use liveagent_tools::{tool, Tool, ToolContext, ToolError, Toolbox};
use serde_json::json;

/// Sum two numbers.
///
/// # Arguments
/// * `a` - The first number.
/// * `b` - The second number,
///   which may be negative.
#[tool]
async fn sum_numbers(a: i64, b: i64) -> Result<i64, ToolError> {
    Ok(a + b)
}

struct Greeting(String);

/// Greets someone.
///
/// Uses the configured greeting.
///
/// # Arguments
/// - `name`: Who to greet.
/// - `shout`: Whether to shout.
///
/// # Examples
/// This section is not for the model.
#[tool(name = "greet", timeout_ms = 1500)]
pub async fn greet_person(
    name: String,
    shout: Option<bool>,
    cx: ToolContext,
) -> Result<String, ToolError> {
    let greeting = cx.dep::<Greeting>()?;
    let text = format!("{} {name} ({})", greeting.0, cx.call_id());
    Ok(if shout.unwrap_or(false) {
        text.to_uppercase()
    } else {
        text
    })
}

/// The answer to everything.
#[tool]
async fn answer() -> u32 {
    42
}

fn call(id: &str, name: &str, arguments: serde_json::Value) -> ToolCall {
    ToolCall {
        call_id: id.into(),
        name: name.into(),
        arguments,
        response_id: None,
    }
}

#[test]
fn the_schema_comes_from_the_signature_and_doc_comment() {
    let t: Tool = sum_numbers();
    assert_eq!(&**t.name(), "sum_numbers");
    assert_eq!(t.description(), "Sum two numbers.");
    let p = t.parameters();
    assert_eq!(p["type"], "object");
    assert_eq!(p["required"], json!(["a", "b"]));
    assert_eq!(p["properties"]["a"]["type"], "integer");
    assert_eq!(p["properties"]["a"]["description"], "The first number.");
    assert_eq!(
        p["properties"]["b"]["description"],
        "The second number, which may be negative."
    );

    let g = greet_person();
    assert_eq!(&**g.name(), "greet");
    assert_eq!(
        g.description(),
        "Greets someone.\n\nUses the configured greeting."
    );
    assert_eq!(g.timeout_override(), Some(Duration::from_millis(1500)));
    let p = g.parameters();
    assert_eq!(p["required"], json!(["name"]));
    assert_eq!(p["properties"]["shout"]["type"], "boolean");
    assert_eq!(p["properties"]["shout"]["description"], "Whether to shout.");
    assert!(p["properties"].get("cx").is_none());

    let a = answer();
    assert_eq!(a.parameters()["properties"], json!({}));
}

#[actix_rt::test]
async fn generated_tools_run_with_context_and_dependencies() {
    let toolbox = Toolbox::new()
        .tool(sum_numbers())
        .tool(greet_person())
        .tool(answer())
        .dependency(Greeting("Hello".into()));
    assert_eq!(
        toolbox
            .run(call("c1", "sum_numbers", json!({"a": 2, "b": -5})), None)
            .await,
        Ok(json!(-3))
    );
    assert_eq!(
        toolbox
            .run(
                call("c2", "greet", json!({"name": "Ada", "shout": true})),
                None
            )
            .await,
        Ok(json!("HELLO ADA (C2)"))
    );
    assert_eq!(
        toolbox
            .run(call("c3", "greet", json!({"name": "Bob"})), None)
            .await,
        Ok(json!("Hello Bob (c3)"))
    );
    assert_eq!(
        toolbox.run(call("c4", "answer", json!({})), None).await,
        Ok(json!(42))
    );
    let err = toolbox
        .run(call("c5", "sum_numbers", json!({"a": 1})), None)
        .await
        .unwrap_err();
    assert!(err.contains("\"b\" is a required property"), "{err}");
    // Without the dependency: a clear error result.
    let bare = Toolbox::new().tool(greet_person());
    let err = bare
        .run(call("c6", "greet", json!({"name": "Ada"})), None)
        .await
        .unwrap_err();
    assert!(err.contains("Greeting"), "{err}");
}
