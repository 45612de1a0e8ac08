//! Where webhooks and HTTP executors may send: the URL rule, the address rule and the
//! secret rule. Pure. The address rule is applied again after DNS resolution by
//! `crate::integrations::client`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use url::{Host, Url};

/// The longest URL accepted, in characters.
pub const MAX_URL_CHARS: usize = 2_000;
/// The prefix of a secret, as Standard Webhooks writes it.
pub const SECRET_PREFIX: &str = "whsec_";
/// The shortest decoded secret, in bytes.
pub const MIN_SECRET_BYTES: usize = 24;
/// The longest decoded secret, in bytes.
pub const MAX_SECRET_BYTES: usize = 64;

/// Checks a destination URL: trimmed, at most 2,000 characters, absolute, http or https,
/// with a host and without user or password. Returns the normalised URL. Errors never
/// repeat the input (it may hold credentials).
pub fn check_url(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err("url must not be empty".to_owned());
    }
    if trimmed.chars().count() > MAX_URL_CHARS {
        return Err(format!("url must be at most {MAX_URL_CHARS} characters"));
    }
    let url = Url::parse(trimmed).map_err(|e| format!("url is not a valid absolute URL ({e})"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err("url must start with http:// or https://".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "url must not contain a user or password; put credentials in the secret".to_owned(),
        );
    }
    match url.host() {
        None => return Err("url must have a host".to_owned()),
        Some(Host::Domain("")) => return Err("url must have a host".to_owned()),
        Some(_) => {}
    }
    let normalised = url.to_string();
    if normalised.chars().count() > MAX_URL_CHARS {
        return Err(format!("url must be at most {MAX_URL_CHARS} characters"));
    }
    Ok(normalised)
}

/// Why an address is refused, for people. Names the address, which is never secret.
pub fn blocked_message(ip: IpAddr) -> String {
    format!(
        "address {ip} is not allowed (loopback, private or link-local); \
         set SHIPLOG_WEBHOOK_ALLOW_PRIVATE=true to allow it"
    )
}

/// Whether an address must not be sent to: loopback, private, link-local, unspecified,
/// "this network" (0/8), shared (100.64/10), broadcast, multicast. IPv6 forms that carry
/// an IPv4 address (mapped, compatible, NAT64 64:ff9b::/96) are judged by that address.
pub fn is_blocked(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_blocked_v4(v4),
        IpAddr::V6(v6) => is_blocked_v6(v6),
    }
}

fn is_blocked_v4(ip: Ipv4Addr) -> bool {
    let [a, b, _, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
}

fn is_blocked_v6(ip: Ipv6Addr) -> bool {
    if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() {
        return true;
    }
    let segments = ip.segments();
    let first = segments[0];
    // fc00::/7 unique local, fe80::/10 link-local, fec0::/10 (deprecated) site-local.
    if (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80 || (first & 0xffc0) == 0xfec0 {
        return true;
    }
    if let Some(v4) = embedded_v4(ip) {
        return is_blocked_v4(v4);
    }
    false
}

/// The IPv4 address an IPv6 address stands for: ::ffff:a.b.c.d (mapped), ::a.b.c.d
/// (compatible, deprecated) and 64:ff9b::a.b.c.d (NAT64).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let [.., a, b, c, d] = ip.octets();
    let v4 = Ipv4Addr::new(a, b, c, d);
    let mapped = s[..5] == [0, 0, 0, 0, 0] && s[5] == 0xffff;
    let compatible = s[..6] == [0, 0, 0, 0, 0, 0];
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    (mapped || compatible || nat64).then_some(v4)
}

/// Checks a signing secret: `whsec_` then standard base64 (padding optional) of 24 to
/// 64 bytes. Returns the decoded key. Errors never repeat the input.
pub fn check_secret(raw: &str) -> Result<Vec<u8>, String> {
    let Some(encoded) = raw.trim().strip_prefix(SECRET_PREFIX) else {
        return Err(format!("secret must start with {SECRET_PREFIX}"));
    };
    let engine = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let key = engine
        .decode(encoded)
        .map_err(|_| format!("secret must be {SECRET_PREFIX} followed by standard base64"))?;
    if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
        return Err(format!(
            "secret must decode to {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, not {}",
            key.len()
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let ok = [
            ("https://example.com/hook", "https://example.com/hook"),
            (
                "  http://Example.COM:8080/a?b=c  ",
                "http://example.com:8080/a?b=c",
            ),
            ("https://example.com", "https://example.com/"),
            ("http://127.0.0.1:9/x", "http://127.0.0.1:9/x"),
            ("http://[::1]/x", "http://[::1]/x"),
        ];
        for (raw, want) in ok {
            assert_eq!(check_url(raw).as_deref(), Ok(want), "{raw}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS));
        let bad = [
            "",
            "   ",
            "example.com/hook",
            "/relative",
            "ftp://example.com/",
            "file:///etc/passwd",
            "mailto:someone@example.com",
            "javascript:alert(1)",
            "http://",
            "https://user:hunter2@example.com/",
            "https://user@example.com/",
            "https://:hunter2@example.com/",
            "http://exa mple.com/",
            long.as_str(),
        ];
        for raw in bad {
            let err = check_url(raw).expect_err(raw);
            assert!(!err.contains("hunter2"), "{err}");
            assert!(!err.contains("user:") && !err.contains("user@"), "{err}");
        }
    }

    #[test]
    fn userinfo_error_names_the_rule() {
        let err = check_url("https://bob:s3cr3t@example.com/").unwrap_err();
        assert!(err.contains("user or password"), "{err}");
        assert!(!err.contains("s3cr3t"));
    }

    #[test]
    fn addresses() {
        let table: &[(&str, bool)] = &[
            ("127.0.0.1", true),
            ("127.8.9.10", true),
            ("10.0.0.1", true),
            ("10.255.255.255", true),
            ("172.16.0.1", true),
            ("172.31.255.254", true),
            ("172.32.0.1", false),
            ("172.15.255.255", false),
            ("192.168.1.1", true),
            ("192.169.0.1", false),
            ("169.254.169.254", true),
            ("0.0.0.0", true),
            ("0.1.2.3", true),
            ("100.64.0.1", true),
            ("100.127.255.255", true),
            ("100.128.0.1", false),
            ("100.63.255.255", false),
            ("255.255.255.255", true),
            ("224.0.0.1", true),
            ("8.8.8.8", false),
            ("93.184.216.34", false),
            ("::1", true),
            ("::", true),
            ("fc00::1", true),
            ("fd12:3456::1", true),
            ("fe80::1", true),
            ("febf::1", true),
            ("fec0::1", true),
            ("ff02::1", true),
            ("::ffff:127.0.0.1", true),
            ("::ffff:10.1.2.3", true),
            ("::ffff:169.254.1.1", true),
            ("::ffff:8.8.8.8", false),
            ("::127.0.0.1", true),
            ("::10.0.0.1", true),
            ("::8.8.8.8", false),
            ("64:ff9b::10.0.0.1", true),
            ("64:ff9b::8.8.8.8", false),
            ("2001:4860:4860::8888", false),
            ("2606:4700::1111", false),
        ];
        for (text, blocked) in table {
            let ip: IpAddr = text.parse().expect("test address");
            assert_eq!(is_blocked(ip), *blocked, "{text}");
        }
    }

    #[test]
    fn blocked_message_names_the_switch() {
        let m = blocked_message("127.0.0.1".parse().expect("test address"));
        assert_eq!(
            m,
            "address 127.0.0.1 is not allowed (loopback, private or link-local); \
             set SHIPLOG_WEBHOOK_ALLOW_PRIVATE=true to allow it"
        );
    }

    #[test]
    fn secrets() {
        let b64 = |n: usize, pad: bool| {
            let engine = if pad {
                base64::engine::general_purpose::STANDARD
            } else {
                base64::engine::general_purpose::STANDARD_NO_PAD
            };
            engine.encode(vec![7u8; n])
        };
        let ok: Vec<(String, usize)> = vec![
            (format!("whsec_{}", b64(24, true)), 24),
            (format!("whsec_{}", b64(32, true)), 32),
            (format!("whsec_{}", b64(32, false)), 32),
            (format!("whsec_{}", b64(64, true)), 64),
            (format!(" whsec_{} ", b64(25, false)), 25),
            ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(), 24),
        ];
        for (raw, len) in &ok {
            assert_eq!(check_secret(raw).map(|k| k.len()), Ok(*len), "{raw}");
        }
        let bad: Vec<String> = vec![
            String::new(),
            b64(32, true),
            format!("WHSEC_{}", b64(32, true)),
            format!("whsec_{}", b64(23, true)),
            format!("whsec_{}", b64(65, true)),
            "whsec_".to_owned(),
            "whsec_not base64!!".to_owned(),
            "whsec_c2VjcmV0LXRoYXQtaXMtbG9uZy1lbm91Z2gtdG8tcGFzcw==-_".to_owned(),
            format!("whsec_{}", b64(32, true).replace('c', "_")),
        ];
        for raw in &bad {
            let err = check_secret(raw).expect_err(raw);
            let body = raw.trim().trim_start_matches("whsec_");
            if !body.is_empty() {
                assert!(!err.contains(body), "{err}");
            }
        }
    }
}
