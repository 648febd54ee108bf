//! `X-Twilio-Signature` on everything Twilio sends when an auth token is configured: the
//! Media Streams WebSocket upgrade (signed over the `wss://` URL of the `<Stream>`), the
//! opt-in per-call token instead of it, and JSON-bodied webhooks (`bodySHA256` in the URL).
//! Signatures are computed here with the published algorithm (checked against
//! twilio-python's vectors in `signature`'s unit tests).

mod support;

use liveagent_server::Pacing;
use liveagent_transport::twilio::signature;
use liveagent_transport::TwilioTransport;
use serde_json::{json, Value};
use support::*;

const STREAM: &str = "MZ0123456789abcdef0123456789abcdef";
const CALL: &str = "CA0123456789abcdef0123456789abcdef";
const TOKEN: &str = "12345";
const NONE: [(&str, &str); 0] = [];

/// Opens a media stream with upgrade `headers` and sends `connected` + `start` with
/// `params`; `Err(status)` when the upgrade is refused.
async fn open_stream(url: &str, headers: &[(&str, &str)], params: Value) -> Result<Ws, u16> {
    let mut ws = ws_connect(url, headers).await?;
    ws.send(&json!({"event":"connected","protocol":"Call","version":"1.0.0"}))
        .await;
    ws.send(&json!({
        "event": "start", "sequenceNumber": "1",
        "start": {
            "accountSid": "AC0123456789abcdef0123456789abcdef", "streamSid": STREAM,
            "callSid": CALL, "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": params
        },
        "streamSid": STREAM
    }))
    .await;
    Ok(ws)
}

async fn hang_up(ws: &mut Ws) {
    ws.send(
        &json!({"event":"stop","sequenceNumber":"2","streamSid":STREAM,
        "stop":{"accountSid":"AC0123456789abcdef0123456789abcdef","callSid":CALL}}),
    )
    .await;
}

/// With an auth token, a media stream upgrade without a valid signature is refused with 403
/// before any conversation starts; a correctly signed one (over the public `wss://` URL, with
/// or without the default port, or over the request's own URL without a public URL) runs.
#[actix_rt::test]
async fn media_stream_upgrade_is_signature_checked() {
    let server = local_server(None, Pacing::AsFastAsPossible).await;
    let agent = agent_builder(&server).build().unwrap();
    let public = TwilioTransport::new(agent.clone())
        .path("/pub/")
        .auth_token(TOKEN)
        .public_url("https://agent.example.com");
    let derived = TwilioTransport::new(agent).path("/own/").auth_token(TOKEN);
    let (p, d) = (public.clone(), derived.clone());
    let (port, handle) = serve(move |cfg| {
        p.config(cfg);
        d.config(cfg);
    });
    let media = format!("ws://127.0.0.1:{port}/pub/media");
    let good = signature::compute(TOKEN, "wss://agent.example.com/pub/media", &NONE);

    let refused: Vec<(&str, String)> = vec![
        ("unsigned", String::new()),
        ("empty", " ".into()),
        (
            "another token",
            signature::compute("54321", "wss://agent.example.com/pub/media", &NONE),
        ),
        (
            "another path",
            signature::compute(TOKEN, "wss://agent.example.com/other/media", &NONE),
        ),
        (
            "another host",
            signature::compute(TOKEN, "wss://evil.example.com/pub/media", &NONE),
        ),
        // twilio-aspnet#162: Twilio signs the wss:// URL, not https://.
        (
            "https instead of wss",
            signature::compute(TOKEN, "https://agent.example.com/pub/media", &NONE),
        ),
        (
            "the webhook's signature",
            signature::compute(TOKEN, "https://agent.example.com/pub/voice", &NONE),
        ),
        ("garbage", "not base64 at all ===".into()),
    ];
    for (what, sig) in &refused {
        let headers: Vec<(&str, &str)> = if sig.is_empty() {
            vec![]
        } else {
            vec![("X-Twilio-Signature", sig.as_str())]
        };
        assert_eq!(
            open_stream(&media, &headers, json!({})).await.err(),
            Some(403),
            "{what}"
        );
    }
    assert_eq!(public.conversations(), 0);
    assert!(
        server.sessions().is_empty(),
        "no provider session for a refused stream"
    );

    // Signed: the call runs. Header names are case-insensitive (Twilio sends lowercase).
    let mut call = open_stream(
        &media,
        &[("x-twilio-signature", &good)],
        json!({"From": "+14155550100"}),
    )
    .await
    .expect("signed upgrade");
    wait_for("the signed call to start", || {
        public.conversations() == 1 && server.sessions().iter().any(|s| s.connected)
    })
    .await;
    hang_up(&mut call).await;
    wait_for("the call to end", || public.conversations() == 0).await;

    // The official validators also accept the URL with the default port.
    let with_port = signature::compute(TOKEN, "wss://agent.example.com:443/pub/media", &NONE);
    let mut call = open_stream(&media, &[("X-Twilio-Signature", &with_port)], json!({}))
        .await
        .expect("signed with :443");
    wait_for("the call to start", || public.conversations() == 1).await;
    hang_up(&mut call).await;
    wait_for("the call to end", || public.conversations() == 0).await;

    // Without a public URL the signed URL is the request's own (scheme ws on plain HTTP).
    let own = format!("ws://127.0.0.1:{port}/own/media");
    assert_eq!(open_stream(&own, &[], json!({})).await.err(), Some(403));
    let sig = signature::compute(TOKEN, &own, &NONE);
    let mut call = open_stream(&own, &[("X-Twilio-Signature", &sig)], json!({}))
        .await
        .expect("signed over the request URL");
    wait_for("the call to start", || derived.conversations() == 1).await;
    hang_up(&mut call).await;
    wait_for("the call to end", || derived.conversations() == 0).await;

    handle.stop(true).await;
    server.stop().await;
}

/// `accept_stream_token(true)`: an unsigned upgrade is let in, but its `start` must carry
/// the per-call token the signed webhook handed out, else the stream closes with 1008 and no
/// conversation starts.
#[actix_rt::test]
async fn opt_in_per_call_token_instead_of_an_upgrade_signature() {
    let server = local_server(None, Pacing::AsFastAsPossible).await;
    let transport = TwilioTransport::new(agent_builder(&server).build().unwrap())
        .auth_token(TOKEN)
        .public_url("https://agent.example.com")
        .accept_stream_token(true);
    let mount = transport.clone();
    let (port, handle) = serve(move |cfg| mount.config(cfg));
    let media = format!("ws://127.0.0.1:{port}/twilio/media");

    for params in [
        json!({}),
        json!({"liveagent_token": "forged"}),
        json!({"liveagent_token": signature::stream_token(TOKEN, "CAother")}),
    ] {
        let mut ws = open_stream(&media, &[], params).await.expect("upgrade");
        let (close, _) = ws.until_close().await;
        assert_eq!(close.map(|c| c.0), Some(1008));
    }
    assert!(server.sessions().is_empty());
    let token = signature::stream_token(TOKEN, CALL);
    let mut ws = open_stream(&media, &[], json!({"liveagent_token": token}))
        .await
        .expect("upgrade");
    wait_for("the call to start", || transport.conversations() == 1).await;
    hang_up(&mut ws).await;
    wait_for("the call to end", || transport.conversations() == 0).await;
    handle.stop(true).await;
    server.stop().await;
}

async fn post_json(url: &str, body: &str, signature: Option<&str>) -> (u16, String) {
    crypto();
    let mut req = awc::Client::default()
        .post(url)
        .insert_header(("Content-Type", "application/json"));
    if let Some(s) = signature {
        req = req.insert_header(("X-Twilio-Signature", s));
    }
    let mut resp = req.send_body(body.to_owned()).await.expect("post");
    let bytes = resp.body().await.expect("body");
    (
        resp.status().as_u16(),
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// A JSON-bodied webhook: Twilio adds `bodySHA256` (hex SHA-256 of the raw body) to the URL
/// and signs the URL alone. The signature and the body's hash must both match; the JSON
/// fields then reach the TwiML like form fields.
#[actix_rt::test]
async fn json_webhook_with_body_sha256() {
    let server = local_server(None, Pacing::AsFastAsPossible).await;
    let transport = TwilioTransport::new(agent_builder(&server).build().unwrap())
        .auth_token(TOKEN)
        .public_url("https://agent.example.com");
    let mount = transport.clone();
    let (port, handle) = serve(move |cfg| mount.config(cfg));

    let body = format!(
        r#"{{"CallSid":"{CALL}","From":"+14155550100","To":"+14155550199","Direction":"inbound"}}"#
    );
    let hash = signature::body_sha256(body.as_bytes());
    let query = format!("?bodySHA256={hash}");
    let local = format!("http://127.0.0.1:{port}/twilio/voice{query}");
    let signed_url = format!("https://agent.example.com/twilio/voice{query}");
    let sig = signature::compute(TOKEN, &signed_url, &NONE);

    let (status, xml) = post_json(&local, &body, Some(&sig)).await;
    assert_eq!(status, 200, "{xml}");
    assert!(
        xml.contains(r#"<Parameter name="From" value="+14155550100" />"#),
        "{xml}"
    );
    assert!(xml.contains(r#"name="liveagent_token""#), "{xml}");

    // Tampered body under the signed URL; a URL with the tampered body's hash under the old
    // signature; no signature; JSON without bodySHA256; the form-style signature over the
    // body's fields.
    let evil = body.replace("+14155550100", "+19005550000");
    assert_eq!(
        post_json(&local, &evil, Some(&sig)).await.0,
        403,
        "tampered body"
    );
    let evil_url = format!(
        "http://127.0.0.1:{port}/twilio/voice?bodySHA256={}",
        signature::body_sha256(evil.as_bytes())
    );
    assert_eq!(
        post_json(&evil_url, &evil, Some(&sig)).await.0,
        403,
        "re-hashed body"
    );
    assert_eq!(post_json(&local, &body, None).await.0, 403, "unsigned");
    let plain = format!("http://127.0.0.1:{port}/twilio/voice");
    let fields = [
        ("CallSid", CALL),
        ("Direction", "inbound"),
        ("From", "+14155550100"),
        ("To", "+14155550199"),
    ];
    let form_sig = signature::compute(TOKEN, "https://agent.example.com/twilio/voice", &fields);
    assert_eq!(
        post_json(&plain, &body, Some(&form_sig)).await.0,
        403,
        "no bodySHA256"
    );
    assert_eq!(
        post_json(&local, "{not json", Some(&sig)).await.0,
        400,
        "bad JSON"
    );
    // The default-port variant of the signed URL is accepted too.
    let sig443 = signature::compute(
        TOKEN,
        &format!("https://agent.example.com:443/twilio/voice{query}"),
        &NONE,
    );
    assert_eq!(post_json(&local, &body, Some(&sig443)).await.0, 200);
    assert_eq!(transport.conversations(), 0);
    handle.stop(true).await;
    server.stop().await;
}
