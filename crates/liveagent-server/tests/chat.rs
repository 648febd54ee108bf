//! `POST /v1/chat/completions` against the local server.

mod common;

use liveagent_server::{LocalServer, Scenario, ServerConfig};
use serde_json::{json, Value};

async fn post(url: &str, key: Option<&str>, body: &str) -> (u16, Value) {
    common::crypto();
    let client = awc::Client::default();
    let mut req = client
        .post(format!("{url}/v1/chat/completions"))
        .insert_header(("content-type", "application/json"));
    if let Some(k) = key {
        req = req.insert_header(("authorization", format!("Bearer {k}")));
    }
    let mut resp = req.send_body(body.to_owned()).await.expect("request");
    let status = resp.status().as_u16();
    let body = resp.body().await.expect("body");
    (status, serde_json::from_slice(&body).expect("json"))
}

#[actix_rt::test]
async fn echo_answers_the_last_user_message() {
    let server = LocalServer::start(ServerConfig::default()).await.unwrap();
    let (status, v) = post(
        &server.http_url(),
        None,
        &json!({"model": "gpt-4o-mini", "messages": [
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "echo: first"},
            {"role": "user", "content": [{"type": "text", "text": "second"}]}]})
        .to_string(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "echo: second");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);
    server.stop().await;
}

#[actix_rt::test]
async fn auth_and_bad_bodies() {
    let server = LocalServer::start(ServerConfig::default().with_api_key("k1"))
        .await
        .unwrap();
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let (status, v) = post(&server.http_url(), Some("nope"), &body).await;
    assert_eq!(status, 401);
    assert_eq!(v["error"]["code"], "invalid_api_key");
    let (status, _) = post(&server.http_url(), None, &body).await;
    assert_eq!(status, 401);
    let (status, v) = post(&server.http_url(), Some("k1"), "{broken").await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let (status, v) = post(&server.http_url(), Some("k1"), &body).await;
    assert_eq!(status, 200);
    assert_eq!(v["choices"][0]["message"]["content"], "echo: hi");
    server.stop().await;
}

#[actix_rt::test]
async fn scripted_tool_call_round() {
    let scenario = Scenario::from_toml(
        r#"
        [[turn]]
        call = "transfer_to_billing"
        args = { reason = "refund" }
        then_say = "Billing says: {output}"
        "#,
    )
    .unwrap();
    let server = LocalServer::start(ServerConfig::default().with_scenario("handoff", scenario))
        .await
        .unwrap();
    let url = server.http_url_for("handoff");
    let (status, v) = post(
        &url,
        None,
        &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "I want a refund"}],
                "tools": [{"type": "function", "function": {"name": "transfer_to_billing", "parameters": {"type": "object"}}}]})
        .to_string(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "transfer_to_billing");
    assert_eq!(call["function"]["arguments"], r#"{"reason":"refund"}"#);
    let (status, v) = post(
        &url,
        None,
        &json!({"model": "gpt-4o-mini", "messages": [
            {"role": "user", "content": "I want a refund"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "refund issued"}]})
        .to_string(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Billing says: refund issued"
    );
    server.stop().await;
}
