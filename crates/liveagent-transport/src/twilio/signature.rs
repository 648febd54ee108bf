//! `X-Twilio-Signature`: base64(HMAC-SHA1(auth token, URL + sorted params)), as Twilio's
//! `RequestValidator` computes it (with the JSON-body variant: `bodySHA256` in the URL), and the per-call stream token the webhook hands to the
//! media stream in a `<Parameter>`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::hmac;

/// The signature of a request to `url` with form `params` (any order, duplicates allowed).
///
/// ```
/// use liveagent_transport::twilio::signature::compute;
/// let params = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+12349013030"),
///     ("Digits", "1234"), ("From", "+12349013030"), ("To", "+18005551212")];
/// assert_eq!(
///     compute("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", &params),
///     "0/KCTR6DLpKmkAf8muzZqo1nDgQ=",
/// );
/// ```
pub fn compute<K: AsRef<str>, V: AsRef<str>>(
    auth_token: &str,
    url: &str,
    params: &[(K, V)],
) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut s = String::from(url);
    for (k, v) in pairs {
        s.push_str(k);
        s.push_str(v);
    }
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes());
    B64.encode(hmac::sign(&key, s.as_bytes()).as_ref())
}

/// True when `signature` is valid for `url` with form `params`, compared in constant time.
///
/// Like Twilio's helper libraries (`RequestValidator.validate` in twilio-python,
/// `validateRequest` in twilio-node), the URL is tried without its port (any port) and with
/// the scheme's default port added when it has none (`:443` for `https`/`wss`, `:80`
/// otherwise, which the libraries also add to `wss` URLs), because Twilio's own signing is
/// inconsistent about ports.
///
/// A URL whose query has `bodySHA256` is a JSON-bodied request: use
/// [`validate_with_body`] for it, which also checks the body's hash.
pub fn validate<K: AsRef<str>, V: AsRef<str>>(
    auth_token: &str,
    url: &str,
    params: &[(K, V)],
    signature: &str,
) -> bool {
    let signature = signature.trim();
    // Every variant is computed and compared, so the time taken does not say which matched.
    url_variants(url).iter().fold(false, |ok, u| {
        let expected = compute(auth_token, u, params);
        crate::limits::constant_time_eq(expected.as_bytes(), signature.as_bytes()) | ok
    })
}

/// True when a JSON-bodied request (Twilio adds `bodySHA256=<hex SHA-256 of the body>` to
/// the URL's query for `application/json` webhooks) is valid: the signature is computed over
/// the URL (including `bodySHA256`) with no parameters, and the raw `body`'s SHA-256 must
/// equal the query's `bodySHA256` (lowercase hex, as Twilio sends it).
///
/// ```
/// use liveagent_transport::twilio::signature::validate_with_body;
/// // twilio-python's test vector.
/// let url = "https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256=\
///            0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
/// let body = br#"{"property": "value", "boolean": true}"#;
/// assert!(validate_with_body("12345", url, body, "a9nBmqA0ju/hNViExpshrM61xv4="));
/// assert!(!validate_with_body("12345", url, b"{}", "a9nBmqA0ju/hNViExpshrM61xv4="));
/// ```
pub fn validate_with_body(auth_token: &str, url: &str, body: &[u8], signature: &str) -> bool {
    let Some(expected_hash) = body_sha256_param(url) else {
        return false;
    };
    let none: [(&str, &str); 0] = [];
    let signed = validate(auth_token, url, &none, signature);
    let hash_ok =
        crate::limits::constant_time_eq(body_sha256(body).as_bytes(), expected_hash.as_bytes());
    signed & hash_ok
}

/// The `bodySHA256` query parameter of `url`, if it has one.
pub fn body_sha256_param(url: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "bodySHA256")
        .map(|(_, v)| v)
}

/// Lowercase hex SHA-256 of `body` (what Twilio puts in `bodySHA256`).
pub fn body_sha256(body: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The URL forms Twilio's validators accept: without a port, and with the default port
/// added when there is none.
fn url_variants(url: &str) -> Vec<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return vec![url.to_owned()];
    };
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    // The host without a port (IPv6 literals keep their brackets).
    let (host, has_port) = match hostport.rfind(':') {
        Some(i) if !hostport[i..].contains(']') => (&hostport[..i], true),
        _ => (hostport, false),
    };
    let mut out = vec![format!("{scheme}://{userinfo}{host}{tail}")];
    if has_port {
        out.push(url.to_owned());
    } else {
        let scheme_lc = scheme.to_ascii_lowercase();
        let mut ports = vec![if scheme_lc == "https" { "443" } else { "80" }];
        if scheme_lc == "wss" {
            ports.push("443");
        }
        for port in ports {
            out.push(format!("{scheme}://{userinfo}{host}:{port}{tail}"));
        }
    }
    out
}

/// The token the webhook puts in the stream's `<Parameter name="liveagent_token">` for call
/// `call_sid`; the media stream refuses a `start` without it when an auth token is set.
pub fn stream_token(auth_token: &str, call_sid: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes());
    B64.encode(hmac::sign(&key, format!("liveagent-stream:{call_sid}").as_bytes()).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_published_vectors() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let p = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
            ("Caller", "+14158675309"),
        ];
        assert_eq!(compute("12345", url, &p), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        assert_eq!(
            compute(
                "12345",
                "https://mycompany.com:443/myapp.php?foo=1&bar=2",
                &p
            ),
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        );
        assert!(validate("12345", url, &p, "kvajT1Ptam85bY51eRf/AJRuM3w="));
        assert!(!validate("12345", url, &p, "RSOYDt4T1cUTdK1PDd93/VVr8B8"));
        let dup = [
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
        ];
        assert_eq!(compute("12345", url, &dup), "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
        let none: [(&str, &str); 0] = [];
        assert_eq!(
            compute("12345", "wss://example.com/media", &none),
            "7PR3qMkpDyEJtMrVOY/LDyNq8J8="
        );
    }

    /// twilio-python's `test_request_validator.py`: ports are removed (any port) and the
    /// default port is added, for https and http alike.
    #[test]
    fn port_variants_match_the_official_validators() {
        let p = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
            ("Caller", "+14158675309"),
        ];
        let https = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let http = "http://mycompany.com/myapp.php?foo=1&bar=2";
        // Removes a port on https.
        assert!(validate(
            "12345",
            "https://mycompany.com:1234/myapp.php?foo=1&bar=2",
            &p,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        // Removes a port on http: signed with the port.
        assert!(validate(
            "12345",
            "http://mycompany.com:1234/myapp.php?foo=1&bar=2",
            &p,
            "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="
        ));
        // Adds :443 on https, :80 on http.
        assert!(validate("12345", https, &p, "kvajT1Ptam85bY51eRf/AJRuM3w="));
        assert!(validate("12345", http, &p, "0ZXoZLH/DfblKGATFgpif+LLRf4="));
        // But the signature still binds everything else.
        assert!(!validate("12345", http, &p, "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
        assert!(!validate(
            "54321",
            https,
            &p,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        assert!(!validate(
            "12345",
            https,
            &p[1..],
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        assert!(!validate("12345", https, &p, ""));
        // wss: with and without the default port.
        let none: [(&str, &str); 0] = [];
        let wss = compute("12345", "wss://example.com/media", &none);
        assert!(validate(
            "12345",
            "wss://example.com:443/media",
            &none,
            &wss
        ));
        let wss443 = compute("12345", "wss://example.com:443/media", &none);
        assert!(validate("12345", "wss://example.com/media", &none, &wss443));
        assert!(!validate("12345", "wss://example.com/other", &none, &wss));
        assert_eq!(
            url_variants("https://u:p@[::1]:8443/x?y=1"),
            ["https://u:p@[::1]/x?y=1", "https://u:p@[::1]:8443/x?y=1"]
        );
    }

    /// twilio-python's JSON-body vector, and what a forger could try.
    #[test]
    fn json_bodies_are_checked_by_their_hash() {
        let body = br#"{"property": "value", "boolean": true}"#;
        let hash = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
        assert_eq!(body_sha256(body), hash);
        let url = format!("https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256={hash}");
        let sig = "a9nBmqA0ju/hNViExpshrM61xv4=";
        assert!(validate_with_body("12345", &url, body, sig));
        assert_eq!(body_sha256_param(&url).as_deref(), Some(hash));
        // Another body under the same signed URL.
        assert!(!validate_with_body(
            "12345",
            &url,
            b"{\"property\": \"evil\"}",
            sig
        ));
        // No bodySHA256 in the URL: not a JSON-signed request.
        assert!(!validate_with_body(
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            body,
            sig
        ));
        // The hash must match the signed URL's: a forged hash breaks the signature.
        let forged = format!(
            "https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256={}",
            body_sha256(b"{}")
        );
        assert!(!validate_with_body("12345", &forged, b"{}", sig));
        // With a port variant.
        let with_port = url.replace(".com/", ".com:443/");
        assert!(validate_with_body("12345", &with_port, body, sig));
    }
}
