//! Gemini Live (BidiGenerateContent) over WebSocket.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::server::Shared;

/// The WebSocket route.
pub(crate) async fn ws_route(
    _req: HttpRequest,
    _body: web::Payload,
    _shared: web::Data<Shared>,
) -> Result<HttpResponse, actix_web::Error> {
    Ok(HttpResponse::NotImplemented().finish())
}
