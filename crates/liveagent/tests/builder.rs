//! Building a LiveAgent: validation errors are typed, variables reach the prompt, tools reach
//! the schema list.

use liveagent::{openai, BuildError, LiveAgent, Tool, ToolError};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct SumArgs {
    /// The first number.
    a: i64,
    /// The second number.
    b: i64,
}

fn sum_tool(name: &str) -> Tool {
    Tool::new(name, "Sum two numbers.", |a: SumArgs| async move {
        Ok::<_, ToolError>(a.a + a.b)
    })
}

fn config() -> openai::RealtimeConfig {
    openai::RealtimeConfig::new("gpt-realtime-2").api_key("sk-test")
}

#[test]
fn empty_name_is_a_typed_error() {
    let err = LiveAgent::builder("   ")
        .config(config())
        .build()
        .unwrap_err();
    assert_eq!(err, BuildError::EmptyName);
}

#[test]
fn missing_config_is_a_typed_error() {
    let err = LiveAgent::builder("assistant").build().unwrap_err();
    assert_eq!(err, BuildError::MissingConfig);
}

#[test]
fn unknown_prompt_variable_is_a_typed_error() {
    let err = LiveAgent::builder("assistant")
        .config(config())
        .prompt("Hello {user_name}")
        .variable("username", "Ada")
        .build()
        .unwrap_err();
    assert_eq!(err, BuildError::MissingVariable("user_name".into()));
}

#[test]
fn stray_braces_are_literal() {
    let agent = LiveAgent::builder("assistant")
        .config(config())
        .prompt("a { b } {\"json\": 1}")
        .build()
        .unwrap();
    assert_eq!(agent.instructions(), "a { b } {\"json\": 1}");
}

#[test]
fn duplicate_and_invalid_tool_names_are_typed_errors() {
    let err = LiveAgent::builder("assistant")
        .config(config())
        .tool(sum_tool("sum"))
        .tool(sum_tool("sum"))
        .build()
        .unwrap_err();
    assert_eq!(err, BuildError::DuplicateTool("sum".into()));

    let err = LiveAgent::builder("assistant")
        .config(config())
        .tool(sum_tool("sum numbers"))
        .build()
        .unwrap_err();
    assert_eq!(err, BuildError::InvalidToolName("sum numbers".into()));
}

#[test]
fn variables_are_substituted_and_tools_listed() {
    let agent = LiveAgent::builder("assistant")
        .config(config())
        .prompt("You help {user}. Literal {{braces}} stay.")
        .variable("user", "Ada")
        .tool(sum_tool("sum_numbers"))
        .build()
        .unwrap();
    assert_eq!(agent.instructions(), "You help Ada. Literal {braces} stay.");
    let schemas = agent.toolbox().schemas();
    assert_eq!(schemas.len(), 1);
    assert_eq!(schemas[0].name, "sum_numbers");
    assert_eq!(
        schemas[0].parameters["required"],
        serde_json::json!(["a", "b"])
    );
    // The API key never shows in Debug output.
    assert!(!format!("{agent:?}").contains("sk-test"));
}
