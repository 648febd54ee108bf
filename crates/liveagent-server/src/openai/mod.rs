//! OpenAI Realtime GA over WebSocket: `GET /v1/realtime?model=…`. With
//! `?intent=transcription` it is a transcription-only session, served by
//! `crate::cascade::openai_realtime`.
//!
//! Auth: when the server has an API key, a missing or wrong `Authorization: Bearer` key is
//! answered the way the provider does it in-band: the upgrade succeeds, the server sends an
//! `error` event (`invalid_request_error` / `invalid_api_key`) and closes with code 1008.
//! An ephemeral client secret minted at `POST /v1/realtime/client_secrets` (see
//! [`crate::tokens`]) is a valid Bearer until it expires; an expired one is refused the same
//! way (whether the server has a key or not).

mod schema;
mod session;
mod wire;

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::server::{bearer, query_param, Shared};
use crate::tokens::{Provider, Refusal};

/// The WebSocket route (also under `/s/{scenario}/v1/realtime`).
pub(crate) async fn ws_route(
    req: HttpRequest,
    body: web::Payload,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, actix_web::Error> {
    if query_param(&req, "intent").as_deref() == Some("transcription") {
        return crate::cascade::openai_realtime::route(req, body, shared).await;
    }
    let shared: Arc<Shared> = shared.into_inner();
    let model = query_param(&req, "model").unwrap_or_else(|| "gpt-realtime".to_owned());
    let key = req
        .match_info()
        .get("scenario")
        .map(str::to_owned)
        .or_else(|| query_param(&req, "scenario"));
    let selected = match shared.select(key.as_deref(), Some(&model)) {
        Ok(s) => s,
        Err(msg) => {
            return Ok(HttpResponse::NotFound().json(json!({
                "error": {"type": "invalid_request_error", "code": "not_found", "message": msg}
            })))
        }
    };
    if selected.state.take_refusal() {
        tracing::info!("refusing an OpenAI connection (scenario asks for it)");
        return Ok(HttpResponse::ServiceUnavailable().json(json!({
            "error": {"type": "server_error", "code": "unavailable",
                      "message": "The server is refusing connections (scripted)."}
        })));
    }
    if req.headers().contains_key("openai-beta") {
        tracing::warn!("client sent an OpenAI-Beta header; this server speaks the GA protocol");
    }
    let token = bearer(&req);
    let authorized = match token
        .as_deref()
        .and_then(|t| shared.tokens.admit(Provider::OpenAi, t))
    {
        Some(verdict) => verdict,
        None if shared.key_ok(token.as_deref()) => Ok(()),
        None => Err(Refusal::bad_key(Provider::OpenAi)),
    };
    let (response, ws, stream) = actix_ws::handle(&req, body)?;
    let stream = stream
        .max_frame_size(shared.cfg.max_frame_bytes)
        .aggregate_continuations()
        .max_continuation_size(shared.cfg.max_frame_bytes);
    let sock = crate::guard::socket_of(&req);
    actix_rt::spawn(session::run(
        shared, ws, stream, selected, model, authorized, sock,
    ));
    Ok(response)
}
