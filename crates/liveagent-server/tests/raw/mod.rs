//! A byte-level WebSocket client for the hardening tests: it controls what awc hides (the
//! exact handshake headers, the socket's receive buffer, when the client reads, what it does
//! after a close frame) so that a test can behave like a hostile or lazy peer.
#![allow(dead_code)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The guard against a hung test (not a timing assertion: a passing test never waits for it).
pub const HANG: Duration = Duration::from_secs(20);

/// One frame from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
    /// The server closed the TCP connection (or reset it).
    Eof,
}

pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// The reply to a handshake.
pub enum Opened {
    Upgraded(Raw),
    /// The HTTP status and body of a refused upgrade.
    Refused(u16, String),
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Opened::Upgraded(_) => write!(f, "Upgraded"),
            Opened::Refused(s, b) => write!(f, "Refused({s}, {b:?})"),
        }
    }
}

impl Opened {
    pub fn expect_upgraded(self) -> Raw {
        match self {
            Opened::Upgraded(r) => r,
            Opened::Refused(s, b) => panic!("upgrade refused: HTTP {s}: {b}"),
        }
    }
    pub fn status(&self) -> u16 {
        match self {
            Opened::Upgraded(_) => 101,
            Opened::Refused(s, _) => *s,
        }
    }
}

/// Opens a TCP connection (with a small receive buffer when `rcvbuf` is set).
pub async fn tcp(addr: std::net::SocketAddr, rcvbuf: Option<u32>) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    if let Some(n) = rcvbuf {
        sock.set_recv_buffer_size(n).unwrap();
    }
    sock.connect(addr).await.unwrap()
}

/// Sends a plain HTTP request and returns (status, body). `host` None = `127.0.0.1:PORT`.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut s = tcp(addr, None).await;
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(HANG, s.read_to_end(&mut out))
        .await
        .expect("HTTP reply hung");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_owned();
    (status, body)
}

/// Performs a WebSocket handshake on `path` with extra `headers`.
pub async fn open(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    rcvbuf: Option<u32>,
) -> Opened {
    let mut stream = tcp(addr, rcvbuf).await;
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(HANG, stream.read(&mut chunk))
            .await
            .expect("handshake hung")
            .unwrap();
        if n == 0 {
            return Opened::Refused(0, "connection closed during the handshake".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let rest = buf[head_end..].to_vec();
    if status != 101 {
        let mut body = rest;
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut body)).await;
        return Opened::Refused(status, String::from_utf8_lossy(&body).into_owned());
    }
    Opened::Upgraded(Raw { stream, buf: rest })
}

fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n < 65536 {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

impl Raw {
    pub async fn send_text(&mut self, s: &str) -> std::io::Result<()> {
        self.stream.write_all(&frame(0x1, s.as_bytes())).await
    }
    pub async fn send_json(&mut self, v: &serde_json::Value) -> std::io::Result<()> {
        self.send_text(&v.to_string()).await
    }
    pub async fn send_ping(&mut self, payload: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(&frame(0x9, payload)).await
    }
    pub async fn send_close(&mut self, code: u16) -> std::io::Result<()> {
        self.stream
            .write_all(&frame(0x8, &code.to_be_bytes()))
            .await
    }
    /// Writes raw bytes (several frames at once, for floods).
    pub async fn send_bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(b).await
    }
    /// A ready-made masked ping frame.
    pub fn ping_frame(payload: &[u8]) -> Vec<u8> {
        frame(0x9, payload)
    }
    /// A ready-made masked text frame (to send many times with `send_bytes`).
    pub fn text_frame(text: &str) -> Vec<u8> {
        frame(0x1, text.as_bytes())
    }
    /// A ready-made masked close frame with `code`.
    pub fn close_frame(code: u16) -> Vec<u8> {
        frame(0x8, &code.to_be_bytes())
    }
    /// The TCP stream, for a client that reads and writes from separate tasks (frames
    /// already buffered are dropped).
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    async fn fill(&mut self, want: usize) -> bool {
        while self.buf.len() < want {
            let mut chunk = vec![0u8; 64 * 1024];
            let n = tokio::time::timeout(HANG, self.stream.read(&mut chunk))
                .await
                .expect("read hung")
                .unwrap_or_default();
            if n == 0 {
                return false;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        true
    }

    /// Whether the server has already closed the TCP connection, checked without waiting:
    /// true on EOF or reset, false when nothing has arrived yet (or data is pending).
    pub fn eof_now(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut b = [0u8; 1];
        match self.stream.try_read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(_) => true,
        }
    }

    /// The next frame from the server (continuations are not used by the server).
    pub async fn next(&mut self) -> Frame {
        if !self.fill(2).await {
            return Frame::Eof;
        }
        let op = self.buf[0] & 0x0f;
        let len7 = (self.buf[1] & 0x7f) as usize;
        let (hdr, len) = match len7 {
            126 => {
                if !self.fill(4).await {
                    return Frame::Eof;
                }
                (4, u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize)
            }
            127 => {
                if !self.fill(10).await {
                    return Frame::Eof;
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.buf[2..10]);
                (10, u64::from_be_bytes(b) as usize)
            }
            n => (2, n),
        };
        if !self.fill(hdr + len).await {
            return Frame::Eof;
        }
        let payload: Vec<u8> = self.buf[hdr..hdr + len].to_vec();
        self.buf.drain(..hdr + len);
        match op {
            0x1 => Frame::Text(String::from_utf8_lossy(&payload).into_owned()),
            0x2 => Frame::Binary(payload),
            0x8 => {
                let code =
                    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                let reason =
                    String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into_owned();
                Frame::Close(code, reason)
            }
            0x9 => Frame::Ping(payload),
            0xA => Frame::Pong(payload),
            other => panic!("unexpected opcode {other}"),
        }
    }

    /// The next text frame as JSON (skipping pings/pongs); panics on anything else.
    pub async fn json(&mut self) -> serde_json::Value {
        loop {
            match self.next().await {
                Frame::Text(t) => return serde_json::from_str(&t).unwrap(),
                Frame::Ping(_) | Frame::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Reads until a JSON frame whose `type` is `kind`; returns every JSON frame read.
    pub async fn until(&mut self, kind: &str) -> Vec<serde_json::Value> {
        let mut seen = Vec::new();
        loop {
            let v = self.json().await;
            let done = v["type"] == kind;
            seen.push(v);
            if done {
                return seen;
            }
        }
    }

    /// Reads frames until a close frame or EOF; returns the close frame and everything after
    /// it up to EOF (so a test can check that the TCP connection ends right after it).
    pub async fn until_close(&mut self) -> Vec<Frame> {
        let mut out = Vec::new();
        loop {
            let f = self.next().await;
            match f {
                Frame::Close(..) => {
                    out.push(f);
                    out.push(self.next().await);
                    return out;
                }
                Frame::Eof => {
                    out.push(f);
                    return out;
                }
                _ => {}
            }
        }
    }
}
