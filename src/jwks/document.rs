//! Parsing what identity providers serve: JWKS documents, discovery documents, and the
//! `max-age` of `Cache-Control`.

use std::time::Duration;

use http::{HeaderMap, header};
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use serde::Deserialize;

use crate::VerificationKey;

/// The keys of a JWKS document that this crate can verify with. Keys that do not parse, are
/// meant for encryption, or repeat a `kid` are skipped with a warning, so one exotic key does
/// not take the whole set down.
pub(crate) fn parse_jwks(body: &[u8]) -> Result<Vec<VerificationKey>, &'static str> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        json_object(body).ok_or("the JWKS is not a JSON object with `keys`")?;
    let mut keys: Vec<VerificationKey> = Vec::with_capacity(document.keys.len());
    for value in document.keys {
        let kid = value
            .get("kid")
            .and_then(|k| k.as_str())
            .unwrap_or("")
            .to_owned();
        let jwk: Jwk = match serde_json::from_value(value) {
            Ok(jwk) => jwk,
            Err(_) => {
                tracing::warn!(%kid, "skipping a JWK that does not parse");
                continue;
            }
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        match VerificationKey::from_jwk(&jwk) {
            Ok(key)
                if key
                    .kid()
                    .is_some_and(|k| keys.iter().any(|o| o.kid() == Some(k))) =>
            {
                tracing::warn!(%kid, "skipping a JWK whose kid repeats an earlier one");
            }
            Ok(key) => keys.push(key),
            Err(e) => tracing::warn!(%kid, error = %e, "skipping an unusable JWK"),
        }
    }
    Ok(keys)
}

/// The `jwks_uri` of a discovery document, after checking that its `issuer` is exactly the
/// one configured (OpenID Connect Discovery 1.0, section 4.3).
pub(crate) fn parse_discovery(body: &[u8], expected_issuer: &str) -> Result<String, &'static str> {
    #[derive(Deserialize)]
    struct Discovery {
        issuer: String,
        jwks_uri: String,
    }
    let doc: Discovery =
        json_object(body).ok_or("the discovery document lacks `issuer` or `jwks_uri`")?;
    if doc.issuer != expected_issuer {
        return Err("the discovery document names another issuer");
    }
    Ok(doc.jwks_uri)
}

/// `body` as `T`, when it is a JSON object (RFC 7517 section 5, OpenID Connect Discovery
/// section 4.2) of valid UTF-8 throughout. serde alone would also take a JSON array for a
/// struct, and skips members it ignores without checking their UTF-8 (both found by fuzzing).
fn json_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    let text = std::str::from_utf8(body).ok()?;
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).ok()?;
    serde_json::from_value(serde_json::Value::Object(object)).ok()
}

/// `max-age` from `Cache-Control`, ignoring `no-cache`/`no-store` (the caller's bounds apply).
///
/// Hand-written: `max-age` is the only directive read, and a typed-header crate would be a
/// dependency for ten lines.
pub(crate) fn max_age(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|directive| {
            let (name, value) = directive.trim().split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("max-age")
                .then(|| value.trim().trim_matches('"').parse().ok())?
        })
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn documents_are_json_objects_of_valid_utf8() {
        // Fuzzing finds: an array read as a struct, invalid UTF-8 in an ignored member.
        assert!(parse_jwks(b"[[]]").is_err());
        assert!(parse_jwks(br#"{"keys":[]}"#).is_ok());
        assert!(parse_jwks(b"{\"keys\":[],\"x\":\"\x85\"}").is_err());
        let discovery = |body: &[u8]| parse_discovery(body, "https://idp.example");
        assert!(discovery(br#"["https://idp.example","https://idp.example/jwks"]"#).is_err());
        assert!(discovery(b"{\"issuer\":\"https://idp.example\",\"jwks\":\"\x85\",\"jwks_uri\":\"https://idp.example/j\"}").is_err());
        assert_eq!(
            discovery(br#"{"issuer":"https://idp.example","jwks_uri":"https://idp.example/j"}"#),
            Ok("https://idp.example/j".to_owned())
        );
    }

    #[test]
    fn max_age_is_read_from_any_position() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=600, must-revalidate"),
        );
        assert_eq!(max_age(&h), Some(Duration::from_secs(600)));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        assert_eq!(max_age(&h), None);
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=abc"),
        );
        assert_eq!(max_age(&h), None);
    }

    #[test]
    fn discovery_issuer_must_match_exactly() {
        let doc = br#"{"issuer":"https://idp.example/","jwks_uri":"https://idp.example/jwks"}"#;
        assert_eq!(
            parse_discovery(doc, "https://idp.example/").unwrap(),
            "https://idp.example/jwks"
        );
        assert!(parse_discovery(doc, "https://idp.example").is_err());
    }

    #[test]
    fn unusable_keys_are_skipped() {
        let doc = br#"{"keys":[
            {"kty":"weird","kid":"a"},
            {"kty":"oct","kid":"b","k":"c2hvcnQ"},
            {"kty":"OKP","crv":"Ed25519","kid":"c","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"OKP","crv":"Ed25519","kid":"c","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
        ]}"#;
        let keys = parse_jwks(doc).unwrap();
        assert_eq!(
            keys.iter().map(|k| k.kid().unwrap()).collect::<Vec<_>>(),
            ["c"]
        );
        assert!(parse_jwks(b"[]").is_err());
    }
}
