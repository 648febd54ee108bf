//! `X-Twilio-Signature`: base64(HMAC-SHA1(auth token, URL + sorted params)), as Twilio's
//! `RequestValidator` computes it, and the per-call stream token the webhook hands to the
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

/// True when `signature` is valid for `url` (also tried with and without the scheme's
/// default port, as Twilio's SDKs do), compared in constant time.
pub fn validate<K: AsRef<str>, V: AsRef<str>>(
    auth_token: &str,
    url: &str,
    params: &[(K, V)],
    signature: &str,
) -> bool {
    url_variants(url).iter().any(|u| {
        let expected = compute(auth_token, u, params);
        crate::limits::constant_time_eq(expected.as_bytes(), signature.trim().as_bytes())
    })
}

fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return out;
    };
    let default_port = match scheme {
        "https" | "wss" => "443",
        "http" | "ws" => "80",
        _ => return out,
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let with_port = format!(":{default_port}");
    if let Some(host) = authority.strip_suffix(&with_port) {
        out.push(format!("{scheme}://{host}{tail}"));
    } else if !authority.contains(':') {
        out.push(format!("{scheme}://{authority}{with_port}{tail}"));
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
}
