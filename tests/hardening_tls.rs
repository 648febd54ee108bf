//! Every HTTP client of ours speaks HTTP/1.1 only, and trusts the roots it is given (issue
//! 13, item 9).
//!
//! A TLS front on 127.0.0.1, in this file, with a certificate signed by a CA generated at
//! test time (`rcgen`), offers ALPN `h2` first and `http/1.1` second, records the protocol
//! each connection negotiated, and pipes the decrypted bytes to the bundled local server.
//! The server side prefers `h2`, so a client that offered it would get it (and the local
//! server behind the front, which speaks HTTP/1.1, would not understand the request).
//! Through the public API, with the test CA added by `TlsRoots`:
//!
//! - the turn-based `Agent` (Chat Completions, plain and streamed),
//! - a cascade HTTP stage (`OpenAiTts`),
//! - the realtime WebSocket of a `LiveAgent` conversation (`SessionOptions::tls_roots`),
//!
//! each get their answer over `https://` / `wss://`, and every connection negotiated
//! `http/1.1`. Without the CA the same request fails with a connection error naming the
//! certificate problem, and never reaches the server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use liveagent::cascade::openai::OpenAiTts;
use liveagent::cascade::{Tts, TtsEvent};
use liveagent::{ErrorKind, LiveAgent, LiveEvent, SessionOptions, TlsRoots};
use liveagent_agent::wire::ChatMessage;
use liveagent_agent::{Agent, ChatStreamEvent};
use liveagent_e2e::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// What one TLS connection to the front did.
#[derive(Clone, Debug, PartialEq)]
enum Handshake {
    /// Completed; the ALPN protocol negotiated, if any.
    Done(Option<String>),
    /// Failed (the client refused the certificate, or spoke no TLS).
    Failed,
}

/// A TLS-terminating front for `backend` on 127.0.0.1.
struct TlsFront {
    addr: SocketAddr,
    /// The test CA's certificate, PEM.
    ca_pem: String,
    handshakes: Arc<Mutex<Vec<Handshake>>>,
}

impl TlsFront {
    async fn start(backend: SocketAddr) -> TlsFront {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        // A CA, and a certificate for 127.0.0.1 it signed: what a corporate CA or a local
        // server's self-made CA looks like.
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "liveagent test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();

        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![
                CertificateDer::from(leaf.der().to_vec()),
                CertificateDer::from(ca.der().to_vec()),
            ],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
        // The server's preference decides: h2 whenever the client offers it.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let record = handshakes.clone();
        actix_rt::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let record = record.clone();
                actix_rt::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        record.lock().unwrap().push(Handshake::Failed);
                        return;
                    };
                    let alpn = tls
                        .get_ref()
                        .1
                        .alpn_protocol()
                        .map(|p| String::from_utf8_lossy(p).into_owned());
                    record.lock().unwrap().push(Handshake::Done(alpn));
                    if let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    }
                });
            }
        });
        TlsFront {
            addr,
            ca_pem: ca.pem(),
            handshakes,
        }
    }

    /// The roots a client needs to trust the front.
    fn roots(&self) -> TlsRoots {
        TlsRoots::default()
            .with_pem(&self.ca_pem)
            .expect("the test CA")
    }

    fn handshakes(&self) -> Vec<Handshake> {
        self.handshakes.lock().unwrap().clone()
    }

    /// Every handshake completed with `http/1.1`, and there was at least one.
    fn assert_all_http1(&self) {
        let all = self.handshakes();
        assert!(!all.is_empty(), "no TLS connection reached the front");
        for h in &all {
            assert_eq!(h, &Handshake::Done(Some("http/1.1".into())), "{all:?}");
        }
    }
}

async fn local_server() -> liveagent_server::LocalServer {
    init_tracing();
    liveagent_server::LocalServer::start(
        liveagent_server::ServerConfig::default().recording_in_memory(),
    )
    .await
    .expect("local server")
}

fn agent(front: &TlsFront) -> Agent {
    Agent::new("helper", "You are a helpful assistant.", "gpt-4o-mini")
        .base_url(format!("https://{}/v1", front.addr))
        .without_api_key()
        .timeout(Duration::from_secs(10))
}

#[actix_rt::test]
async fn the_agent_trusts_an_added_ca_and_negotiates_http1_only() {
    let server = local_server().await;
    let front = TlsFront::start(server.local_addr()).await;
    let agent = agent(&front).tls_roots(front.roots());
    let reply = agent.ask("hello over tls").await.expect("an answer");
    assert_eq!(reply.text, "echo: hello over tls");
    // The streamed (SSE) request takes the same client.
    let mut stream = agent.stream_chat(vec![ChatMessage::user("streamed")], Vec::new());
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        if let ChatStreamEvent::Text(piece) = event.expect("a stream event") {
            text.push_str(&piece);
        }
    }
    assert_eq!(text, "echo: streamed");
    front.assert_all_http1();
    server.stop().await;
}

#[actix_rt::test]
async fn without_the_ca_the_agent_refuses_the_server() {
    let server = local_server().await;
    let front = TlsFront::start(server.local_addr()).await;
    let err = agent(&front)
        .ask("hello")
        .await
        .expect_err("an untrusted certificate");
    assert_eq!(err.kind, ErrorKind::Connection, "{err}");
    assert!(
        err.message.to_lowercase().contains("certificate"),
        "the error names the problem: {err}"
    );
    assert!(
        front.handshakes().iter().all(|h| *h == Handshake::Failed),
        "{:?}",
        front.handshakes()
    );
    server.stop().await;
}

#[actix_rt::test]
async fn a_cascade_http_stage_trusts_an_added_ca_and_negotiates_http1_only() {
    let server = local_server().await;
    let front = TlsFront::start(server.local_addr()).await;
    let tts = OpenAiTts::new("gpt-4o-mini-tts", "marin")
        .base_url(format!("https://{}/v1", front.addr))
        .api_key("local-key")
        .tls_roots(front.roots());
    let mut events = tts.synthesize("It is sunny.".into());
    let (mut samples, mut done) = (0, 0);
    while let Some(event) = events.next().await {
        match event.expect("synthesis") {
            TtsEvent::Audio(a) => samples += a.len(),
            TtsEvent::Done { .. } => done += 1,
        }
    }
    assert!(samples > 0 && done == 1, "{samples} samples, {done} done");
    front.assert_all_http1();
    server.stop().await;
}

#[actix_rt::test]
async fn the_realtime_websocket_trusts_an_added_ca_and_negotiates_http1_only() {
    let server = local_server().await;
    let front = TlsFront::start(server.local_addr()).await;
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("Test.")
            .config(
                liveagent::openai::RealtimeConfig::new("gpt-realtime")
                    .base_url(format!("wss://{}/v1", front.addr))
                    .api_key("local-key"),
            )
            .session_options(SessionOptions {
                tls_roots: front.roots(),
                ..SessionOptions::default()
            }),
    );
    run.wait_count("session updated", 1, |e| {
        matches!(e, LiveEvent::SessionUpdated(_))
    })
    .await;
    run.conversation.context().send_text("hello");
    run.wait_count("an answer", 1, |e| matches!(e, LiveEvent::ResponseDone(_)))
        .await;
    front.assert_all_http1();
    run.conversation.stop().await;
    server.stop().await;
}
