//! Keyset paging tokens (`$skiptoken`). A token holds the last row's sort values and id, is
//! signed with the database's paging secret (so every server process on the database accepts it
//! and no client can forge one), and is bound to the query it came from.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use remediate_domain::query::After;
use remediate_domain::Value;
use serde_json::{json, Value as Json};

use crate::error::ApiError;

/// A fingerprint of a request's path and query options other than `$skiptoken` and `$skip`.
pub fn query_fingerprint(path: &str, raw_query: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (
                decode(name).trim_start_matches('$').to_ascii_lowercase(),
                decode(value),
            )
        })
        .filter(|(name, _)| name != "skiptoken" && name != "skip")
        .collect();
    pairs.sort();
    let text = format!("{path}?{pairs:?}");
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12])
}

fn sign(secret: &[u8], payload: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    URL_SAFE_NO_PAD.encode(&ring::hmac::sign(&key, payload).as_ref()[..16])
}

pub fn encode(secret: &[u8], fingerprint: &str, after: &After) -> String {
    let values: Vec<Json> = after
        .values
        .iter()
        .map(|v| match v {
            Value::Str(s) => Json::String(s.clone()),
            Value::Int(i) => json!(i),
            _ => Json::Null,
        })
        .collect();
    let payload = json!({"k": values, "id": after.id, "q": fingerprint}).to_string();
    let body = URL_SAFE_NO_PAD.encode(payload.as_bytes());
    format!("{body}.{}", sign(secret, body.as_bytes()))
}

pub fn decode(secret: &[u8], fingerprint: &str, token: &str) -> Result<After, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "The $skiptoken is not valid: use the @odata.nextLink exactly as returned.",
        )
    };
    let (body, signature) = token.split_once('.').ok_or_else(invalid)?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let expected = URL_SAFE_NO_PAD.decode(signature).map_err(|_| invalid())?;
    let full = ring::hmac::sign(&key, body.as_bytes());
    if expected.len() != 16 || ring::constant_time_verify(&full.as_ref()[..16], &expected).is_err()
    {
        return Err(invalid());
    }
    let payload: Json =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).map_err(|_| invalid())?)
            .map_err(|_| invalid())?;
    if payload["q"].as_str() != Some(fingerprint) {
        return Err(ApiError::bad_request(
            "The $skiptoken belongs to a different query: follow the @odata.nextLink unchanged (same path and query options).",
        ));
    }
    let id = payload["id"].as_str().ok_or_else(invalid)?.to_owned();
    let values = payload["k"]
        .as_array()
        .ok_or_else(invalid)?
        .iter()
        .map(|v| match v {
            Json::String(s) => Value::Str(s.clone()),
            Json::Number(n) => n.as_i64().map_or(Value::Null, Value::Int),
            _ => Value::Null,
        })
        .collect();
    Ok(After { values, id })
}

mod ring {
    pub use ::ring::{digest, hmac};

    /// Constant-time comparison of two byte strings.
    pub fn constant_time_verify(a: &[u8], b: &[u8]) -> Result<(), ()> {
        if a.len() != b.len() {
            return Err(());
        }
        let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
        if diff == 0 {
            Ok(())
        } else {
            Err(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_resist_tampering_and_replay() {
        let after = After {
            values: vec![Value::Int(3), Value::Null, Value::Str("ä".into())],
            id: "s:d".into(),
        };
        let q = query_fingerprint("/a", "$top=2&$filter=x");
        let token = encode(b"secret", &q, &after);
        assert_eq!(decode(b"secret", &q, &token).unwrap(), after);
        assert!(decode(b"other", &q, &token).is_err());
        let q2 = query_fingerprint("/a", "$top=2&$filter=y");
        assert!(decode(b"secret", &q2, &token)
            .unwrap_err()
            .message
            .contains("different query"));
        let mut forged = token.clone();
        forged.insert(3, 'A');
        assert!(decode(b"secret", &q, &forged).is_err());
        // The skiptoken itself and $skip do not change the fingerprint.
        assert_eq!(
            q,
            query_fingerprint("/a", "%24filter=x&$top=2&$skiptoken=abc&$skip=4")
        );
    }
}
