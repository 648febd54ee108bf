//! Issue 17 item 8, against the local server over real HTTP and WebSockets: ephemeral
//! credentials for both providers (minted at the server's `POST /v1/realtime/client_secrets`
//! and `POST /v1alpha/auth_tokens` with the API key, used by a conversation instead of the
//! key, refused when expired or used up, in the provider's error shape) and Gemini on
//! Vertex AI (the `LlmBidiService` path, an OAuth Bearer token, the full model resource
//! name). Credentials never show in events or `Debug` output.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use liveagent::{gemini, openai, ErrorKind, LiveAgent, LiveEvent};
use liveagent_e2e::*;
use liveagent_server::{LocalServer, Pacing, ServerConfig};
use serde_json::{json, Value};

const KEY: &str = "sk-local-GOOD-key";

async fn keyed_server() -> LocalServer {
    init_tracing();
    let mut config = ServerConfig::default()
        .with_api_key(KEY)
        .recording_in_memory();
    config.pacing = Pacing::AsFastAsPossible;
    config.min_client_secret_seconds = 1;
    LocalServer::start(config).await.expect("local server")
}

/// POSTs `body` to `url` with `headers`; the status and the JSON answer.
async fn post(url: &str, headers: &[(&str, String)], body: Value) -> (u16, Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut req = awc::Client::default().post(url);
    for (k, v) in headers {
        req = req.insert_header((*k, v.as_str()));
    }
    let mut resp = req.send_json(&body).await.expect("request");
    let status = resp.status().as_u16();
    let body = resp.body().await.expect("body");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn ready(run: &Run) {
    run.wait_count("session updated", 1, |e| {
        matches!(e, LiveEvent::SessionUpdated(_))
    })
    .await;
}

/// Waits for the conversation to end and returns its fatal errors.
async fn fatal_errors(run: &Run) -> Vec<liveagent::LiveError> {
    run.wait_count("session closed", 1, |e| {
        matches!(e, LiveEvent::SessionClosed(_))
    })
    .await;
    run.collect(|e| match e {
        LiveEvent::ErrorEvent(x) if x.fatal => Some(x.error.clone()),
        _ => None,
    })
}

#[actix_rt::test]
async fn openai_client_secrets_are_minted_used_and_expire() {
    let server = keyed_server().await;
    let mint = format!("{}/v1/realtime/client_secrets", server.http_url());
    let body = json!({
        "expires_after": {"anchor": "created_at", "seconds": 1},
        "session": {"type": "realtime", "model": "gpt-realtime"},
    });
    // Minting needs the API key.
    let (status, err) = post(&mint, &[], body.clone()).await;
    assert_eq!(status, 401, "{err}");
    assert_eq!(err["error"]["code"], "invalid_api_key");
    // Bad lifetimes are refused in OpenAI's error shape.
    let (status, err) = post(
        &mint,
        &[bearer(KEY)],
        json!({"expires_after": {"anchor": "created_at", "seconds": 7201}}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["param"], "expires_after.seconds");
    assert_eq!(err["error"]["type"], "invalid_request_error");

    let (status, secret) = post(&mint, &[bearer(KEY)], body.clone()).await;
    assert_eq!(status, 200, "{secret}");
    let value = secret["value"].as_str().unwrap().to_owned();
    assert!(value.starts_with("ek_"), "{value}");
    let expires = secret["expires_at"].as_u64().unwrap();
    assert!((now_s()..=now_s() + 2).contains(&expires), "{secret}");
    assert_eq!(secret["session"]["model"], "gpt-realtime");
    // An ephemeral secret does not mint another.
    let (status, _) = post(&mint, &[bearer(&value)], body.clone()).await;
    assert_eq!(status, 401);

    // The secret is the Bearer of a conversation while it lives.
    let config = openai::RealtimeConfig::new("gpt-realtime")
        .base_url(server.openai_url())
        .api_key(value.as_str());
    assert!(!format!("{config:?}").contains(&value));
    let run = Run::start(LiveAgent::builder("assistant").config(config.clone()));
    ready(&run).await;
    run.conversation.stop().await;

    // Expired: refused at connect with OpenAI's error, a fatal Auth error, no retries.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let run = Run::start(LiveAgent::builder("assistant").config(config));
    let fatal = fatal_errors(&run).await;
    assert_eq!(fatal.len(), 1, "{}", run.summary());
    assert_eq!(fatal[0].kind, ErrorKind::Auth);
    assert!(fatal[0].message.contains("expired"), "{}", fatal[0]);
    assert!(!format!("{:?}", run.events()).contains(&value));
    let refusal = server_frames(&server)
        .into_iter()
        .rfind(|f| f["type"] == "error")
        .expect("an error event");
    assert_eq!(refusal["error"]["code"], "invalid_api_key");
    assert!(!server
        .recording()
        .iter()
        .any(|l| l.contains(&value) || l.contains(KEY)));
    run.conversation.stop().await;
    server.stop().await;
}

fn rfc3339_in(d: Duration) -> String {
    // Seconds-precision UTC, as the server formats it.
    let t = SystemTime::now() + d;
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // civil_from_days (Howard Hinnant)
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn gemini_config(server: &LocalServer) -> gemini::RealtimeConfig {
    gemini::RealtimeConfig::new("gemini-live-test")
        .base_url(server.gemini_url())
        .output(gemini::TextOutput)
}

#[actix_rt::test]
async fn gemini_auth_tokens_are_single_use_constrained_and_expire() {
    let server = keyed_server().await;
    let mint = format!("{}/v1alpha/auth_tokens", server.http_url());
    let key = ("x-goog-api-key", KEY.to_owned());
    let (status, err) = post(&mint, &[], json!({})).await;
    assert_eq!(status, 401, "{err}");
    let (status, err) = post(
        &mint,
        std::slice::from_ref(&key),
        json!({"expireTime": "tomorrow"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");

    // Defaults: one use.
    let (status, token) = post(&mint, std::slice::from_ref(&key), json!({})).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["uses"], 1);
    let name = token["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("auth_tokens/"), "{name}");
    let config = gemini_config(&server).ephemeral_token(name.as_str());
    assert!(!format!("{config:?}").contains(&name));
    // The constrained method on v1alpha, the token as `access_token` (and only there: the
    // server refuses a minted token on the other paths, see below).
    assert!(config.url().ends_with(&format!(
        "/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained?access_token={name}"
    )));
    let run = Run::start(LiveAgent::builder("assistant").config(config.clone()));
    ready(&run).await;
    run.conversation.send_text("hello");
    run.wait_count("response done", 1, |e| {
        matches!(e, LiveEvent::ResponseDone(_))
    })
    .await;
    run.conversation.stop().await;
    validate_lines(&server.recording(), Protocol::Gemini);

    // Used up: a second session with the same token is refused (1008, an Auth error).
    let run = Run::start(LiveAgent::builder("assistant").config(config));
    let fatal = fatal_errors(&run).await;
    assert_eq!(fatal.len(), 1, "{}", run.summary());
    assert_eq!(fatal[0].kind, ErrorKind::Auth);
    assert!(fatal[0].message.contains("no uses left"), "{}", fatal[0]);
    assert!(!format!("{:?}", run.events()).contains(&name));
    run.conversation.stop().await;

    // Expired (a token that lives one second).
    let (_, token) = post(
        &mint,
        std::slice::from_ref(&key),
        json!({"uses": 5, "expireTime": rfc3339_in(Duration::from_secs(1)),
               "newSessionExpireTime": rfc3339_in(Duration::from_secs(1))}),
    )
    .await;
    let name = token["name"].as_str().expect("a token").to_owned();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let run = Run::start(
        LiveAgent::builder("assistant")
            .config(gemini_config(&server).ephemeral_token(name.as_str())),
    );
    let fatal = fatal_errors(&run).await;
    assert_eq!(fatal[0].kind, ErrorKind::Auth, "{}", run.summary());
    assert!(fatal[0].message.contains("expired"), "{}", fatal[0]);
    run.conversation.stop().await;

    // A minted token is not an API key for the unconstrained method.
    let (_, token) = post(&mint, &[key], json!({"uses": 3})).await;
    let name = token["name"].as_str().unwrap().to_owned();
    let run = Run::start(
        LiveAgent::builder("assistant").config(gemini_config(&server).api_key(name.as_str())),
    );
    let fatal = fatal_errors(&run).await;
    assert_eq!(fatal[0].kind, ErrorKind::Auth, "{}", run.summary());
    run.conversation.stop().await;
    assert!(!server.recording().iter().any(|l| l.contains(KEY)));
    server.stop().await;

    // Malformed tokens fail up front.
    let bad = LiveAgent::builder("a")
        .config(gemini::RealtimeConfig::new("m").ephemeral_token("not-a-token"))
        .build()
        .unwrap()
        .run();
    assert!(bad.unwrap_err().to_string().contains("auth_tokens/"));
}

#[actix_rt::test]
async fn gemini_on_vertex_ai_uses_a_bearer_token_and_the_full_model_name() {
    let server = keyed_server().await;
    let config = gemini_config(&server)
        .vertex("my-project", "us-central1")
        .access_token(KEY);
    assert!(!format!("{config:?}").contains(KEY));
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("Be brief.")
            .config(config),
    );
    ready(&run).await;
    run.conversation.send_text("hello");
    run.wait_count("response done", 1, |e| {
        matches!(e, LiveEvent::ResponseDone(_))
    })
    .await;
    let setup = client_frames(&server)
        .into_iter()
        .find(|f| f.get("setup").is_some())
        .expect("setup");
    assert_eq!(
        setup["setup"]["model"],
        "projects/my-project/locations/us-central1/publishers/google/models/gemini-live-test"
    );
    validate_lines(&server.recording(), Protocol::Gemini);
    run.conversation.stop().await;

    // A wrong token: refused (Auth, fatal), never shown.
    let run = Run::start(
        LiveAgent::builder("assistant").config(
            gemini_config(&server)
                .vertex("my-project", "us-central1")
                .access_token("ya29.WRONG-token"),
        ),
    );
    let fatal = fatal_errors(&run).await;
    assert_eq!(fatal.len(), 1, "{}", run.summary());
    assert_eq!(fatal[0].kind, ErrorKind::Auth);
    assert!(!format!("{:?}", run.events()).contains("WRONG-token"));
    run.conversation.stop().await;
    server.stop().await;

    // Against Google itself a token is required, and project/location are checked.
    let err = LiveAgent::builder("a")
        .config(gemini::RealtimeConfig::new("m").vertex("p", "us-central1"))
        .build()
        .unwrap()
        .run()
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth, "{err}");
    let err = LiveAgent::builder("a")
        .config(gemini::RealtimeConfig::new("m").vertex("my project", "us-central1"))
        .build()
        .unwrap()
        .run()
        .unwrap_err();
    assert!(err.to_string().contains("plain ids"), "{err}");
}
