//! Opening the WebSocket, and turning connection failures into typed errors.

use std::time::Duration;

use actix_service::{Service, ServiceExt as _};
use actix_tls::connect::{ConnectError, ConnectInfo, Connection, ConnectorService};
use awc::error::WsClientError;
use awc::http::StatusCode;
use awc::http::Uri;
use awc::BoxedSocket;
use liveagent_core::{ConnectRequest, ErrorKind, LiveError, TlsRoots};
use tokio::net::TcpStream;

use crate::socket::LeanFramed;

/// An open provider connection (awc's socket and codec, without awc's buffers).
pub(crate) type WsFramed = LeanFramed<BoxedSocket>;

/// A TCP connector that turns Nagle's algorithm off on every connection it opens
/// (`TCP_NODELAY`).
///
/// A realtime session writes one small frame every 20-100 ms (a microphone chunk). With
/// Nagle on, a frame written while the previous one is unacknowledged waits for that ACK,
/// and the peer may delay its ACK by up to 40 ms (Linux's minimum delayed-ACK timeout;
/// 200 ms elsewhere): audio then reaches the provider in bursts, late. Browsers and the
/// providers' own SDKs set `TCP_NODELAY` for the same reason. awc's default connector
/// leaves the OS default (Nagle on).
///
/// With `nodelay` false the connection keeps the OS default
/// ([`SessionOptions::tcp_nodelay`](crate::SessionOptions::tcp_nodelay)).
pub(crate) fn nodelay_tcp_connector(
    nodelay: bool,
) -> impl Service<ConnectInfo<Uri>, Response = Connection<Uri, TcpStream>, Error = ConnectError> + Clone
{
    ConnectorService::default().map(move |conn: Connection<Uri, TcpStream>| {
        if !nodelay {
            return conn;
        }
        if let Err(e) = conn.io_ref().set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on the provider connection");
        }
        conn
    })
}

/// Opens the WebSocket described by `request` within `timeout`, trusting `roots`.
pub(crate) async fn connect(
    request: ConnectRequest,
    timeout: Duration,
    max_frame_size: usize,
    roots: TlsRoots,
    nodelay: bool,
) -> Result<WsFramed, LiveError> {
    // HTTP/1.1 only: the configuration's ALPN offers nothing else (a WebSocket upgrade is
    // an HTTP/1.1 request anyway).
    let tls = roots.client_config();
    let client = awc::Client::builder()
        .connector(
            awc::Connector::new()
                .connector(nodelay_tcp_connector(nodelay))
                .rustls_0_23(tls)
                .timeout(timeout),
        )
        .timeout(timeout)
        .finish();
    let mut ws = client
        .ws(request.url.as_str())
        .max_frame_size(max_frame_size);
    for (name, value) in &request.headers {
        ws = ws.set_header(name.as_str(), value.as_str());
    }
    match tokio::time::timeout(timeout, ws.connect()).await {
        Err(_) => Err(LiveError::connection(format!(
            "connecting timed out after {} ms",
            timeout.as_millis()
        ))),
        Ok(Err(err)) => Err(classify(&request, err)),
        Ok(Ok((_response, framed))) => Ok(LeanFramed::from_framed(framed, max_frame_size)),
    }
}

/// Maps a connection failure onto a [`LiveError`], with the secret redacted.
fn classify(request: &ConnectRequest, err: WsClientError) -> LiveError {
    let message = request.redact(&err.to_string());
    match err {
        WsClientError::InvalidResponseStatus(status) => match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                LiveError::new(ErrorKind::Auth, format!("the provider refused the credentials (HTTP {status})"))
                    .with_code(status.as_u16().to_string())
            }
            StatusCode::NOT_FOUND => LiveError::new(
                ErrorKind::NotFound,
                format!("the endpoint or model was not found (HTTP {status}): check the base URL and model"),
            )
            .with_code("404"),
            StatusCode::BAD_REQUEST => LiveError::new(ErrorKind::Config, format!("the provider rejected the connection request (HTTP {status})"))
                .with_code("400"),
            status if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() => {
                LiveError::new(ErrorKind::Provider, format!("the provider is unavailable (HTTP {status})"))
                    .with_code(status.as_u16().to_string())
            }
            status => LiveError::connection(format!("unexpected HTTP status {status} on connect"))
                .with_code(status.as_u16().to_string()),
        },
        _ => LiveError::connection(message),
    }
}
