//! Standard Webhooks signatures: `v1,` + base64 of HMAC-SHA256 over `id.timestamp.body`.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The `webhook-signature` value for one request, signed with the decoded secret.
pub fn signature(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this never fails.
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(id: &str, ts: i64, sig: &str) -> axum::http::HeaderMap {
        let mut h = axum::http::HeaderMap::new();
        h.insert("webhook-id", id.parse().expect("header"));
        h.insert("webhook-timestamp", ts.to_string().parse().expect("header"));
        h.insert("webhook-signature", sig.parse().expect("header"));
        h
    }

    #[test]
    fn verified_by_the_reference_library() {
        let key = b"0123456789abcdef0123456789abcdef".to_vec();
        let now = chrono::Utc::now().timestamp();
        let body = br#"{"type":"deployment.created","data":{"x":"\u00e9"}}"#;
        let sig = signature(&key, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", now, body);
        assert!(sig.starts_with("v1,"));
        let wh = standardwebhooks::Webhook::from_bytes(key.clone()).expect("webhook");
        wh.verify(body, &headers("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", now, &sig))
            .expect("signature verifies");
        // Any change breaks it.
        assert!(wh
            .verify(
                b"{}",
                &headers("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", now, &sig)
            )
            .is_err());
        assert!(wh.verify(body, &headers("other", now, &sig)).is_err());
        let other = signature(b"another key of some length......", "m", now, body);
        assert!(wh.verify(body, &headers("m", now, &other)).is_err());
    }

    #[test]
    fn matches_the_reference_signer() {
        let key = vec![9u8; 24];
        let wh = standardwebhooks::Webhook::from_bytes(key.clone()).expect("webhook");
        let body = b"{\"a\":1}";
        let theirs = wh.sign("id-1", 1_700_000_000, body).expect("sign");
        assert_eq!(signature(&key, "id-1", 1_700_000_000, body), theirs);
    }

    #[test]
    fn known_vector() {
        // The example of the Standard Webhooks specification.
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .expect("key");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
