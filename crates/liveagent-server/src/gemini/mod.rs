//! Gemini Live (BidiGenerateContent) over WebSocket:
//! `/ws/google.ai.generativelanguage.{v1beta|v1|v1alpha}.GenerativeService.BidiGenerateContent`.
//!
//! Vertex AI's path, `/ws/google.cloud.aiplatform.{v1beta1|v1}.LlmBidiService/BidiGenerateContent`,
//! speaks the same protocol with an OAuth `Authorization: Bearer` token (the server's API key
//! stands for it) and a model named `projects/{p}/locations/{l}/publishers/google/models/{m}`.
//!
//! Auth: when the server has an API key, the key must come in the `x-goog-api-key` header or
//! the `key` query parameter (`BidiGenerateContentConstrained` on v1alpha also takes it as
//! `access_token` or `Authorization: Token …`). `BidiGenerateContentConstrained` takes the
//! ephemeral tokens minted at `POST /v1alpha/auth_tokens` (see [`crate::tokens`]): an expired
//! or used-up one is refused whether the server has a key or not, and a minted token is
//! refused on the other paths. A wrong or missing key is answered like the provider does: the
//! upgrade succeeds and the server closes with code 1008 and a reason.

mod session;
mod wire;

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::server::{query_param, Shared};
use crate::tokens::{Provider, Refusal};

const VERSIONS: &[&str] = &["v1beta", "v1", "v1alpha"];

fn method_ok(method: &str) -> bool {
    let Some(rest) = method.strip_prefix("google.ai.generativelanguage.") else {
        return false;
    };
    let Some((version, m)) = rest.split_once('.') else {
        return false;
    };
    VERSIONS.contains(&version)
        && (m == "GenerativeService.BidiGenerateContent"
            || (version == "v1alpha" && m == "GenerativeService.BidiGenerateContentConstrained"))
}

/// Vertex AI's service path segment: `google.cloud.aiplatform.{v1beta1|v1}.LlmBidiService`.
fn vertex_service_ok(service: &str, method: &str) -> bool {
    matches!(
        service,
        "google.cloud.aiplatform.v1beta1.LlmBidiService"
            | "google.cloud.aiplatform.v1.LlmBidiService"
    ) && method == "BidiGenerateContent"
}

fn presented_key(req: &HttpRequest) -> Option<String> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    header("x-goog-api-key")
        .or_else(|| query_param(req, "key"))
        .or_else(|| query_param(req, "access_token"))
        .or_else(|| {
            header("authorization").and_then(|v| v.strip_prefix("Token ").map(str::to_owned))
        })
}

/// The WebSocket route (also under `/s/{scenario}/ws/{method}`).
pub(crate) async fn ws_route(
    req: HttpRequest,
    body: web::Payload,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, actix_web::Error> {
    let shared: Arc<Shared> = shared.into_inner();
    let method = req.match_info().get("method").unwrap_or_default();
    let vertex = match req.match_info().get("service") {
        Some(service) => {
            if !vertex_service_ok(service, method) {
                return Ok(HttpResponse::NotFound().json(json!({
                    "error": {"code": 404, "status": "NOT_FOUND",
                              "message": format!("Method not found: {service}/{method}")}
                })));
            }
            true
        }
        None => {
            if !method_ok(method) {
                return Ok(HttpResponse::NotFound().json(json!({
                    "error": {"code": 404, "status": "NOT_FOUND",
                              "message": format!("Method not found: {method}")}
                })));
            }
            false
        }
    };
    let constrained = method.ends_with(".BidiGenerateContentConstrained");
    let key = req
        .match_info()
        .get("scenario")
        .map(str::to_owned)
        .or_else(|| query_param(&req, "scenario"));
    let selected = match shared.select(key.as_deref(), None) {
        Ok(s) => s,
        Err(msg) => {
            return Ok(HttpResponse::NotFound().json(json!({
                "error": {"code": 404, "status": "NOT_FOUND", "message": msg}
            })))
        }
    };
    if selected.state.take_refusal() {
        tracing::info!("refusing a Gemini connection (scenario asks for it)");
        return Ok(HttpResponse::ServiceUnavailable().json(json!({
            "error": {"code": 503, "status": "UNAVAILABLE",
                      "message": "The server is refusing connections (scripted)."}
        })));
    }
    let authorized = authorize(&shared, &req, vertex, constrained);
    let (response, ws, stream) = actix_ws::handle(&req, body)?;
    let stream = stream
        .max_frame_size(shared.cfg.max_frame_bytes)
        .aggregate_continuations()
        .max_continuation_size(shared.cfg.max_frame_bytes);
    let sock = crate::guard::socket_of(&req);
    actix_rt::spawn(session::run(
        shared,
        ws,
        stream,
        selected,
        key.is_some(),
        authorized,
        vertex,
        sock,
    ));
    Ok(response)
}

/// Checks the credential of a new connection: an OAuth bearer (the server's key) on Vertex,
/// a minted auth token (or the key) on the constrained method, the key elsewhere.
fn authorize(
    shared: &Shared,
    req: &HttpRequest,
    vertex: bool,
    constrained: bool,
) -> Result<(), Refusal> {
    let bad = || Err(Refusal::bad_key(Provider::Gemini));
    if vertex {
        return if shared.key_ok(crate::server::bearer(req).as_deref()) {
            Ok(())
        } else {
            Err(Refusal {
                code: "invalid_api_key",
                message: "Request had invalid authentication credentials (expected an OAuth 2 \
                          access token)."
                    .into(),
            })
        };
    }
    let presented = presented_key(req);
    if let Some(token) = presented.as_deref() {
        if constrained {
            if let Some(verdict) = shared.tokens.admit(Provider::Gemini, token) {
                return verdict;
            }
        } else if shared.tokens.knows(Provider::Gemini, token) {
            // Ephemeral tokens only open the constrained method.
            return bad();
        }
    }
    if shared.key_ok(presented.as_deref()) {
        Ok(())
    } else {
        bad()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn methods() {
        assert!(super::method_ok(
            "google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
        ));
        assert!(super::method_ok(
            "google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent"
        ));
        assert!(!super::method_ok(
            "google.ai.generativelanguage.v2.GenerativeService.BidiGenerateContent"
        ));
        assert!(!super::method_ok("foo"));
    }
}
