//! Opaque cursors. Clients must not parse them; we keep them versioned and base64url
//! so that their form can change without breaking anyone who followed that rule.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use uuid::Uuid;

use super::error::ApiError;
use crate::store::DeploymentKey;

const DEPLOYMENT: &str = "d1:";
const EVENT: &str = "e1:";
const DELIVERY: &str = "w1:";

pub fn deployment(key: DeploymentKey) -> String {
    URL_SAFE_NO_PAD.encode(format!("{DEPLOYMENT}{}:{}", key.created_at_ms, key.id))
}

pub fn event(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{EVENT}{seq}"))
}

pub fn delivery(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{DELIVERY}{seq}"))
}

/// Reads a webhook delivery cursor given as argument `field`.
pub fn parse_delivery(field: &str, cursor: &str) -> Result<i64, ApiError> {
    decode(cursor, DELIVERY)
        .and_then(|rest| rest.parse::<i64>().ok())
        .filter(|seq| *seq >= 0)
        .ok_or_else(|| malformed(field))
}

/// Reads a deployment cursor given as argument `field`.
pub fn parse_deployment(field: &str, cursor: &str) -> Result<DeploymentKey, ApiError> {
    decode(cursor, DEPLOYMENT)
        .and_then(|rest| {
            let (ms, id) = rest.split_once(':')?;
            Some(DeploymentKey {
                created_at_ms: ms.parse().ok()?,
                id: Uuid::parse_str(id).ok()?,
            })
        })
        .ok_or_else(|| malformed(field))
}

/// Reads an event cursor given as argument `field`: the event's sequence number.
pub fn parse_event(field: &str, cursor: &str) -> Result<i64, ApiError> {
    decode(cursor, EVENT)
        .and_then(|rest| rest.parse::<i64>().ok())
        .filter(|seq| *seq >= 0)
        .ok_or_else(|| malformed(field))
}

fn decode(cursor: &str, prefix: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.strip_prefix(prefix).map(str::to_owned)
}

fn malformed(field: &str) -> ApiError {
    ApiError::bad_input(field, "is not a valid cursor")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let key = DeploymentKey {
            created_at_ms: 1_780_000_000_123,
            id: Uuid::now_v7(),
        };
        assert_eq!(parse_deployment("after", &deployment(key)).ok(), Some(key));
        assert_eq!(parse_event("after", &event(42)).ok(), Some(42));
    }

    #[test]
    fn malformed_or_foreign_cursors_are_refused() {
        let key = DeploymentKey {
            created_at_ms: 1,
            id: Uuid::nil(),
        };
        for bad in ["", "abc", "!!!", &event(3)] {
            assert!(parse_deployment("after", bad).is_err(), "{bad:?}");
        }
        for bad in [
            "",
            "zzz",
            &deployment(key),
            &URL_SAFE_NO_PAD.encode("e1:-4"),
        ] {
            assert!(parse_event("after", bad).is_err(), "{bad:?}");
        }
    }
}
