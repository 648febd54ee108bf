//! What every stage shares: the [`Endpoint`] (provider, base URL, key, timeout) with the
//! builder methods every stage type gets from [`endpoint_builders!`], sending a request with
//! the key redacted from every error, turning an error response into a typed [`LiveError`]
//! whatever the provider's error shape, reading a streamed body (raw bytes or server-sent
//! events) with a stall timeout, multipart form bodies, WAV files and sample carries.
//!
//! Requests made one after the other share a keep-alive connection ([`Lease`]), so a
//! cascade's per-sentence TTS requests (and its STT and LLM requests to the same host)
//! reuse one TCP (and TLS) connection instead of paying a handshake per sentence.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, LocalBoxStream, Stream, StreamExt};
use liveagent_agent::sse::{SseDecoder, SseEvent};
use liveagent_core::{ErrorKind, LiveError, Secret, TlsRoots};
use serde_json::Value;

/// The largest error body read (64 KiB) and the largest SSE event (4 MiB).
const MAX_ERROR_BODY: usize = 64 * 1024;
const MAX_EVENT: usize = 4 << 20;

/// A response body being read.
pub(crate) type Body = Pin<Box<dyn Stream<Item = Result<Bytes, awc::error::PayloadError>>>>;

/// A client with one keep-alive connection at most, leased to one request at a time (its
/// `eof` flag then belongs to that request's connection: see `crate::cut`). Leases come
/// from the idle clients of this thread's actix system with the same timeout, so requests
/// made one after the other (a cascade's per-sentence TTS requests, its STT and LLM
/// requests to the same host) reuse one TCP (and TLS) connection instead of paying a
/// handshake each; concurrent requests get a client each. Outside an actix system a
/// fresh client that is never reused.
pub(crate) struct Lease {
    /// `None` outside an actix system (not kept).
    system: Option<usize>,
    timeout: Duration,
    tls: TlsRoots,
    pub(crate) client: awc::Client,
    pub(crate) eof: Arc<std::sync::atomic::AtomicBool>,
}

thread_local! {
    /// Idle leased clients (only the current system's: a pool holds sockets of its
    /// system's runtime).
    static IDLE: std::cell::RefCell<Vec<Lease>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The most idle clients a thread keeps.
const MAX_IDLE: usize = 32;

impl Lease {
    pub(crate) fn take(timeout: Duration, tls: &TlsRoots) -> Lease {
        let system = actix_rt::System::try_current().map(|s| s.id());
        let idle = system.and_then(|system| {
            IDLE.try_with(|idle| {
                let mut idle = idle.borrow_mut();
                idle.retain(|l| l.system == Some(system));
                let pos = idle
                    .iter()
                    .position(|l| l.timeout == timeout && l.tls == *tls)?;
                Some(idle.swap_remove(pos))
            })
            .ok()
            .flatten()
        });
        if let Some(lease) = idle {
            lease.eof.store(false, std::sync::atomic::Ordering::Relaxed);
            return lease;
        }
        let eof = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let client = awc::Client::builder()
            .connector(
                awc::Connector::new()
                    .connector(crate::cut::watched(eof.clone()))
                    .rustls_0_23(tls.client_config())
                    .limit(1)
                    .timeout(timeout),
            )
            .timeout(timeout.saturating_mul(60))
            .disable_redirects()
            .finish();
        Lease {
            system,
            timeout,
            tls: tls.clone(),
            client,
            eof,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.system.is_none() {
            return;
        }
        let mut lease = Some(Lease {
            system: self.system.take(),
            timeout: self.timeout,
            tls: self.tls.clone(),
            client: self.client.clone(),
            eof: self.eof.clone(),
        });
        let _ = IDLE.try_with(|idle| {
            if let Ok(mut idle) = idle.try_borrow_mut() {
                if idle.len() < MAX_IDLE {
                    idle.extend(lease.take());
                }
            }
        });
        if let Some(mut not_kept) = lease {
            not_kept.system = None; // dropped for good, not offered again
        }
    }
}

/// A provider's defaults: base URL, where its key comes from and how it is sent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Provider {
    /// `openai`, `elevenlabs`, `mistral`.
    pub name: &'static str,
    /// The default base URL.
    pub base_url: &'static str,
    /// The environment variable the key is read from when none is given.
    pub key_env: &'static str,
    /// How to send the key: `None` for `Authorization: Bearer`, or a header name.
    pub key_header: Option<&'static str>,
}

/// Where and how one stage talks to its provider (HTTP or WebSocket).
#[derive(Clone)]
pub(crate) struct Endpoint {
    /// `openai-stt`, `elevenlabs-tts`...: the error source.
    pub source: &'static str,
    /// The API base URL, without a trailing `/`.
    pub base_url: Arc<str>,
    pub key: Option<Secret>,
    /// How to send the key: `Bearer` or a header name (`xi-api-key`).
    pub key_header: Option<&'static str>,
    /// Bounds the wait for the response head and for each body chunk or message.
    pub timeout: Duration,
    /// The certificate authorities trusted for `https://` and `wss://`.
    pub tls_roots: TlsRoots,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("source", &self.source)
            .field("base_url", &self.base_url)
            .field("key", &self.key)
            .field("timeout", &self.timeout)
            .field("tls_roots", &self.tls_roots)
            .finish()
    }
}

/// The builder methods every stage type shares (`base_url`, `api_key`, `timeout`), for a
/// type with an `ep: Endpoint` field. `$base` documents the base URL's form.
macro_rules! endpoint_builders {
    ($ty:ty, $base:literal) => {
        impl $ty {
            #[doc = concat!("The API base URL (", $base, "). `http(s)://` and `ws(s)://` both work.")]
            pub fn base_url(mut self, url: impl AsRef<str>) -> Self {
                self.ep.base_url = url.as_ref().trim_end_matches('/').into();
                self
            }

            /// The API key (instead of the provider's environment variable). It never
            /// appears in `Debug` output, logs or errors.
            pub fn api_key(mut self, key: impl Into<liveagent_core::Secret>) -> Self {
                self.ep.key = Some(key.into());
                self
            }

            /// How long to wait for the connection, the response and each piece of it
            /// (default 30 s).
            pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
                self.ep.timeout = timeout;
                self
            }

            /// The certificate authorities trusted for `https://` and `wss://` (default:
            /// the bundled public roots); add a private CA for a server with a
            /// self-signed or corporate certificate.
            pub fn tls_roots(mut self, roots: liveagent_core::TlsRoots) -> Self {
                self.ep.tls_roots = roots;
                self
            }
        }
    };
}
pub(crate) use endpoint_builders;

impl Endpoint {
    /// The endpoint of `provider`'s stage `source`, key from the provider's variable.
    pub(crate) fn new(provider: &Provider, source: &'static str) -> Self {
        Endpoint {
            source,
            base_url: provider.base_url.into(),
            key: Secret::from_env(provider.key_env),
            key_header: provider.key_header,
            timeout: Duration::from_secs(30),
            tls_roots: TlsRoots::default(),
        }
    }

    /// `path` (starting with `/`) under the base URL, as an HTTP URL.
    pub(crate) fn url(&self, path: &str) -> String {
        let base = &*self.base_url;
        let base = match base.split_once("://") {
            Some(("ws", rest)) => format!("http://{rest}"),
            Some(("wss", rest)) => format!("https://{rest}"),
            _ => base.to_owned(),
        };
        format!("{base}{path}")
    }

    /// `path` (starting with `/`) under the base URL, as a WebSocket URL.
    pub(crate) fn ws_url(&self, path: &str) -> String {
        let base = &*self.base_url;
        let base = match base.split_once("://") {
            Some(("http", rest)) => format!("ws://{rest}"),
            Some(("https", rest)) => format!("wss://{rest}"),
            _ => base.to_owned(),
        };
        format!("{base}{path}")
    }

    /// The auth header (name, value) to send, if there is a key.
    pub(crate) fn auth_header(&self) -> Option<(&'static str, String)> {
        let key = self.key.as_ref()?;
        Some(match self.key_header {
            None => ("authorization", format!("Bearer {}", key.expose())),
            Some(h) => (h, key.expose().to_owned()),
        })
    }

    pub(crate) fn err(&self, kind: ErrorKind, message: impl AsRef<str>) -> LiveError {
        LiveError::new(
            kind,
            format!("{}: {}", self.source, self.redact(message.as_ref())),
        )
    }

    pub(crate) fn redact(&self, text: &str) -> String {
        match &self.key {
            Some(k) => k.redact(text),
            None => text.to_owned(),
        }
    }

    /// Sends a request; returns the streaming body of a 2xx response and its content type.
    pub(crate) async fn send(
        &self,
        url: &str,
        content_type: &str,
        accept: &str,
        body: Vec<u8>,
    ) -> Result<(Body, String), LiveError> {
        // A client (and its connection) of this thread's idle ones, its socket watched for
        // the server's close so that a body cut short is an error (see `crate::cut`); it
        // goes back to the idle ones when the body is dropped. HTTP/1.1 only, as every
        // client of ours (the TLS configuration's ALPN).
        let lease = Lease::take(self.timeout, &self.tls_roots);
        let client = lease.client.clone();
        let eof = lease.eof.clone();
        let mut req = client
            .post(url)
            .insert_header(("content-type", content_type))
            .insert_header(("accept", accept));
        if let Some(header) = self.auth_header() {
            req = req.insert_header(header);
        }
        let shown_url = self.redact(url);
        let mut resp = match tokio::time::timeout(self.timeout, req.send_body(body)).await {
            Err(_) => {
                return Err(self
                    .err(
                        ErrorKind::Connection,
                        format!("no response from {shown_url}"),
                    )
                    .with_code("timeout"))
            }
            Ok(Err(e)) => {
                return Err(self.err(
                    ErrorKind::Connection,
                    format!("request to {shown_url} failed: {e}"),
                ))
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if !status.is_success() {
            let body = tokio::time::timeout(self.timeout, resp.body().limit(MAX_ERROR_BODY))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            return Err(self.http_error(status.as_u16(), &body));
        }
        let headers = resp.headers();
        let chunked = headers
            .get("transfer-encoding")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let framed = resp.version() <= awc::http::Version::HTTP_11
            && (chunked || headers.contains_key("content-length"));
        let body: Body = Box::pin(resp);
        let body = crate::cut::CutBody::new(body, eof, framed).map(move |item| {
            let _lease = &lease;
            item
        });
        Ok((Box::pin(body), ctype))
    }

    /// An error response as a typed error. Understands OpenAI's `{"error": {...}}`,
    /// ElevenLabs' `{"detail": {"status", "message"}}` and 422 `{"detail": [...]}`, and
    /// Mistral's `{"message": ...}` / `{"detail": "..."}`.
    pub(crate) fn http_error(&self, status: u16, body: &[u8]) -> LiveError {
        let (message, code) = error_text(body);
        let kind = match status {
            401 | 403 => ErrorKind::Auth,
            404 => ErrorKind::NotFound,
            429 if code.as_deref() == Some("insufficient_quota")
                || code.as_deref() == Some("quota_exceeded") =>
            {
                ErrorKind::Quota
            }
            400 | 409 | 413 | 422 => ErrorKind::InvalidRequest,
            _ => ErrorKind::Provider,
        };
        self.err(kind, format!("HTTP {status}: {message}"))
            .with_code(self.redact(&code.unwrap_or_else(|| status.to_string())))
    }

    /// The body as raw byte chunks, each wait bounded by the timeout.
    pub(crate) fn bytes(&self, body: Body) -> LocalBoxStream<'static, Result<Bytes, LiveError>> {
        let ep = self.clone();
        stream::unfold(Some(body), move |body| {
            let ep = ep.clone();
            async move {
                let mut body = body?;
                match tokio::time::timeout(ep.timeout, body.next()).await {
                    Err(_) => Some((
                        Err(ep
                            .err(ErrorKind::Connection, "the response stream stalled")
                            .with_code("timeout")),
                        None,
                    )),
                    Ok(None) => None,
                    Ok(Some(Ok(b))) => Some((Ok(b), Some(body))),
                    Ok(Some(Err(e))) => Some((
                        Err(ep.err(
                            ErrorKind::Connection,
                            format!("the response stream broke: {e}"),
                        )),
                        None,
                    )),
                }
            }
        })
        .boxed_local()
    }

    /// The body as server-sent events. The stream ends with the body (or an error).
    pub(crate) fn events(
        &self,
        body: Body,
    ) -> LocalBoxStream<'static, Result<SseEvent, LiveError>> {
        let ep = self.clone();
        let mut decoder = SseDecoder::new(MAX_EVENT);
        let mut ended = false;
        self.bytes(body)
            .map(Some)
            .chain(stream::iter([None]))
            .flat_map(move |chunk| {
                let items: Vec<Result<SseEvent, LiveError>> = match chunk {
                    _ if ended => Vec::new(),
                    Some(Ok(bytes)) => match decoder.push(&bytes) {
                        Ok(events) => events.into_iter().map(Ok).collect(),
                        Err(e) => {
                            ended = true;
                            vec![Err(ep.err(ErrorKind::Protocol, e.to_string()))]
                        }
                    },
                    Some(Err(e)) => {
                        ended = true;
                        vec![Err(e)]
                    }
                    None => decoder.finish().into_iter().map(Ok).collect(),
                };
                stream::iter(items)
            })
            .boxed_local()
    }
}

/// The message and code of an error body, whatever the provider's shape.
pub(crate) fn error_text(body: &[u8]) -> (String, Option<String>) {
    let fallback = || {
        let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
        if text.trim().is_empty() {
            "no error message".to_owned()
        } else {
            text
        }
    };
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return (fallback(), None);
    };
    let s = |v: Option<&Value>| match v {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
        if let Some(m) = s(Some(e)) {
            // ElevenLabs' sockets: `{"error": "<code>", "message": "..."}`.
            return match s(v.get("message")) {
                Some(message) => (message, Some(m)),
                None => (m, None),
            };
        }
        let code = s(e.get("code")).or_else(|| s(e.get("type")));
        return (s(e.get("message")).unwrap_or_else(fallback), code);
    }
    match v.get("detail") {
        Some(Value::String(m)) => return (m.clone(), None),
        Some(Value::Array(items)) => {
            let msgs: Vec<String> = items
                .iter()
                .map(|i| {
                    let loc = i
                        .get("loc")
                        .and_then(Value::as_array)
                        .map(|l| {
                            l.iter()
                                .map(|x| x.to_string().trim_matches('"').to_owned())
                                .collect::<Vec<_>>()
                                .join(".")
                        })
                        .unwrap_or_default();
                    format!("{loc}: {}", s(i.get("msg")).unwrap_or_default())
                })
                .collect();
            return (msgs.join("; "), Some("validation_error".into()));
        }
        Some(d @ Value::Object(_)) => {
            return (
                s(d.get("message")).unwrap_or_else(fallback),
                s(d.get("status")).or_else(|| s(d.get("code"))),
            )
        }
        _ => {}
    }
    (
        s(v.get("message")).unwrap_or_else(fallback),
        s(v.get("code")),
    )
}

/// A `multipart/form-data` body.
pub(crate) struct Multipart {
    boundary: String,
    body: Vec<u8>,
}

impl Multipart {
    pub(crate) fn new() -> Self {
        let boundary = format!(
            "liveagent-{:016x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        );
        Multipart {
            boundary,
            body: Vec::new(),
        }
    }

    pub(crate) fn text(mut self, name: &str, value: &str) -> Self {
        self.body.extend_from_slice(
            format!(
                "--{}\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self
    }

    pub(crate) fn file(mut self, name: &str, filename: &str, ctype: &str, data: &[u8]) -> Self {
        self.body.extend_from_slice(
            format!(
                "--{}\r\ncontent-disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\ncontent-type: {ctype}\r\n\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self.body.extend_from_slice(data);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    /// The content type and the body.
    pub(crate) fn finish(mut self) -> (String, Vec<u8>) {
        self.body
            .extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        (
            format!("multipart/form-data; boundary={}", self.boundary),
            self.body,
        )
    }
}

/// A mono PCM16 WAV file.
pub(crate) fn wav(samples: &[i16], rate: u32) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut v = Vec::with_capacity(44 + data_len as usize);
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data_len).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * 2).to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        v.extend_from_slice(&s.to_le_bytes());
    }
    v
}

/// Turns byte chunks split anywhere into PCM16 samples, carrying an odd byte over.
#[derive(Debug, Default)]
pub(crate) struct Pcm16Carry(Option<u8>);

impl Pcm16Carry {
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<i16> {
        let mut out = Vec::with_capacity(bytes.len() / 2 + 1);
        let mut rest = bytes;
        if let (Some(lo), Some((&hi, r))) = (self.0, rest.split_first()) {
            out.push(i16::from_le_bytes([lo, hi]));
            self.0 = None;
            rest = r;
        }
        let mut chunks = rest.chunks_exact(2);
        out.extend(chunks.by_ref().map(|c| i16::from_le_bytes([c[0], c[1]])));
        if let [b] = chunks.remainder() {
            self.0 = Some(*b);
        }
        out
    }
}

/// Turns float32 LE byte chunks split anywhere into PCM16 samples, carrying partial samples.
#[derive(Debug, Default)]
pub(crate) struct F32Carry(Vec<u8>);

impl F32Carry {
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<i16> {
        self.0.extend_from_slice(bytes);
        let whole = self.0.len() / 4 * 4;
        let out = self.0[..whole]
            .chunks_exact(4)
            .map(|c| {
                let f = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                let f = if f.is_finite() {
                    f.clamp(-1.0, 1.0)
                } else {
                    0.0
                };
                (f * 32767.0).round() as i16
            })
            .collect();
        self.0.drain(..whole);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_odd_bytes_and_partial_floats() {
        let mut c = Pcm16Carry::default();
        assert_eq!(c.push(&[1, 0, 2]), vec![1]);
        assert_eq!(c.push(&[0, 3]), vec![2]);
        assert_eq!(c.push(&[0]), vec![3]);
        let mut f = F32Carry::default();
        let bytes: Vec<u8> = [0.0f32, 1.0, -1.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let mut out = f.push(&bytes[..5]);
        out.extend(f.push(&bytes[5..]));
        assert_eq!(out, vec![0, 32767, -32767]);
    }

    #[test]
    fn reads_every_error_shape() {
        assert_eq!(
            error_text(br#"{"error":{"message":"bad key","code":"invalid_api_key"}}"#),
            ("bad key".into(), Some("invalid_api_key".into()))
        );
        assert_eq!(
            error_text(br#"{"detail":{"status":"invalid_api_key","message":"no"}}"#),
            ("no".into(), Some("invalid_api_key".into()))
        );
        assert_eq!(
            error_text(
                br#"{"detail":[{"loc":["body","text"],"msg":"Field required","type":"missing"}]}"#
            )
            .0,
            "body.text: Field required"
        );
        assert_eq!(
            error_text(br#"{"message":"Unauthorized"}"#).0,
            "Unauthorized"
        );
        assert_eq!(error_text(b"").0, "no error message");
    }
}
