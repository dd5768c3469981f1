//! The checks behind `fuzz/` (built with `--cfg fuzzing` by `cargo fuzz`), and the replay of
//! the committed corpus as ordinary unit tests on stable. Not part of the public API.
//!
//! Each function takes arbitrary bytes and panics only when the crate misbehaves: a panic
//! inside the crate, a server error, or a token accepted without a valid signature.

use std::{
    convert::Infallible,
    future::Future,
    pin::pin,
    sync::OnceLock,
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use jsonwebtoken::{Algorithm, DecodingKey};
use tower_layer::Layer;
use tower_service::Service;

use crate::{JwtAuthLayer, KeySet, StandardClaims, TrustedIssuer, VerificationKey};

/// The HS256 secret of the fuzzing key set; the seed corpus is signed with it.
pub const SECRET: &[u8] = b"fuzzing-secret-fuzzing-secret-32";

const RSA_PUBLIC: &[u8] = include_bytes!("../tests/fixtures/rsa.pub.pem");
const EC_PUBLIC: &[u8] = include_bytes!("../tests/fixtures/ec-256.pub.pem");
const ED_PUBLIC: &[u8] = include_bytes!("../tests/fixtures/ed25519.pub.pem");

/// The keys, by `kid`, with what `jsonwebtoken` verifies each with independently.
struct Layers {
    set: Vec<(VerificationKey, DecodingKey)>,
    mixed: JwtAuthLayer<StandardClaims>,
    mixed_cookie: JwtAuthLayer<StandardClaims>,
    two_issuers: JwtAuthLayer<StandardClaims>,
}

fn keys() -> &'static Layers {
    static KEYS: OnceLock<Layers> = OnceLock::new();
    KEYS.get_or_init(|| {
        let set = vec![
            (
                VerificationKey::hmac(Algorithm::HS256, SECRET)
                    .unwrap()
                    .with_kid("hs"),
                DecodingKey::from_secret(SECRET).unwrap(),
            ),
            (
                VerificationKey::from_pem(Algorithm::RS256, RSA_PUBLIC)
                    .unwrap()
                    .with_kid("rs"),
                DecodingKey::from_rsa_pem(RSA_PUBLIC).unwrap(),
            ),
            (
                VerificationKey::from_pem(Algorithm::ES256, EC_PUBLIC)
                    .unwrap()
                    .with_kid("es"),
                DecodingKey::from_ec_pem(EC_PUBLIC).unwrap(),
            ),
            (
                VerificationKey::from_pem(Algorithm::EdDSA, ED_PUBLIC)
                    .unwrap()
                    .with_kid("ed"),
                DecodingKey::from_ed_pem(ED_PUBLIC).unwrap(),
            ),
        ];
        let key_set = KeySet::new(set.iter().map(|(k, _)| k.clone())).unwrap();
        let mixed = JwtAuthLayer::builder()
            .key_source(key_set.clone())
            .any_audience()
            .build()
            .unwrap();
        let mixed_cookie = JwtAuthLayer::builder()
            .key_source(key_set.clone())
            .any_audience()
            .token_from_cookie("jwt")
            .build()
            .unwrap();
        let two_issuers = JwtAuthLayer::builder()
            .trusting([
                TrustedIssuer::new("one", key_set).any_audience(),
                TrustedIssuer::new("two", set[0].0.clone())
                    .audience("api")
                    .typ("at+jwt"),
            ])
            .build()
            .unwrap();
        Layers {
            set,
            mixed,
            mixed_cookie,
            two_issuers,
        }
    })
}

/// The inner service: `200` for whatever reaches it.
#[derive(Clone)]
struct Admit;

impl Service<Request<()>> for Admit {
    type Response = Response<Bytes>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Bytes>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        std::future::ready(Ok(Response::new(Bytes::new())))
    }
}

/// Sends `req` through `layer` into a service that answers `200`; every future here is ready
/// at once (static keys), so it is polled with a no-op waker.
fn status(layer: &JwtAuthLayer<StandardClaims>, req: Request<()>) -> StatusCode {
    let mut svc = layer.layer(Admit);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let res = match pin!(svc.call(req)).poll(&mut cx) {
        Poll::Ready(Ok(res)) => res,
        Poll::Ready(Err(never)) => match never {},
        Poll::Pending => panic!("a layer over static keys never waits"),
    };
    let status = res.status();
    assert!(
        matches!(status.as_u16(), 200 | 400 | 401),
        "unexpected status {status}"
    );
    if status != StatusCode::OK {
        let challenge = res.headers().get(header::WWW_AUTHENTICATE);
        assert!(challenge.is_some(), "a rejection without a challenge");
    }
    status
}

/// Arbitrary bytes as a bearer token, through a layer with HS256, RS256, ES256 and EdDSA keys
/// and through a two-issuer layer: never a panic, and never an accepted token whose signature
/// does not verify with the key its header names.
pub fn token(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(value) = HeaderValue::try_from(format!("Bearer {token}")) else {
        return;
    };
    let keys = keys();
    for layer in [&keys.mixed, &keys.two_issuers] {
        let req = Request::builder()
            .header(header::AUTHORIZATION, value.clone())
            .body(())
            .unwrap();
        if status(layer, req) == StatusCode::OK {
            // `Bearer 1*SP token`: the spaces are the header's, not the token's.
            assert!(
                signature_verifies(token.trim_start_matches(' ')),
                "accepted a token whose signature does not verify: {token:?}"
            );
        }
    }
}

/// The independent oracle: `jsonwebtoken` itself checks the signature with the key the
/// header names.
fn signature_verifies(token: &str) -> bool {
    let Ok(header) = jsonwebtoken::decode_header(token) else {
        return false;
    };
    let Some((signing_input, signature)) = token.rsplit_once('.') else {
        return false;
    };
    keys()
        .set
        .iter()
        .filter(|(key, _)| header.kid.as_deref() == key.kid() && key.algorithm() == header.alg)
        .any(|(_, decoding)| {
            jsonwebtoken::crypto::verify(signature, signing_input.as_bytes(), decoding, header.alg)
                .unwrap_or(false)
        })
}

/// Arbitrary bytes as the `Authorization` header (and as a cookie for a cookie-reading
/// layer): a clear `400` or `401`, never a panic or a server error.
pub fn authorization(data: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let keys = keys();
    let req = Request::builder()
        .header(header::AUTHORIZATION, value.clone())
        .body(())
        .unwrap();
    status(&keys.mixed, req);
    let req = Request::builder()
        .header(header::COOKIE, value)
        .body(())
        .unwrap();
    status(&keys.mixed_cookie, req);
}

/// Arbitrary bytes as a JWKS document: no panic, and the keys it yields form a valid key set
/// (no `kid` twice), none of them taken from an encryption key.
pub fn jwks(data: &[u8]) {
    #[cfg(feature = "jwks")]
    if let Ok(keys) = crate::jwks::parse_jwks(data) {
        let kids: Vec<_> = keys
            .iter()
            .filter_map(|k| k.kid().map(String::from))
            .collect();
        assert!(crate::keys::KeySnapshot::new(keys).is_ok(), "a kid repeats");
        // Every kid comes from a JWK that is not an encryption key.
        let doc: serde_json::Value = serde_json::from_slice(data).unwrap();
        let jwks = doc["keys"].as_array().unwrap();
        for kid in &kids {
            assert!(
                jwks.iter()
                    .any(|k| k["kid"] == kid.as_str() && k["use"] != "enc"),
                "key {kid} taken from an encryption JWK"
            );
        }
    }
    #[cfg(not(feature = "jwks"))]
    let _ = data;
}

/// Arbitrary bytes as an OpenID Connect discovery document: no panic, and a `jwks_uri` only
/// from a document whose `issuer` is exactly the one expected.
pub fn discovery(data: &[u8]) {
    #[cfg(feature = "jwks")]
    if crate::jwks::parse_discovery(data, "https://idp.example").is_ok() {
        let doc: serde_json::Value = serde_json::from_slice(data).unwrap();
        assert_eq!(doc["issuer"], "https://idp.example");
    }
    #[cfg(not(feature = "jwks"))]
    let _ = data;
}

#[cfg(test)]
mod seeds {
    //! `cargo test --lib write_seed_corpus -- --ignored` rewrites the seed files of
    //! `fuzz/corpus/` (real tokens and documents); the fuzzer adds its own finds beside them.

    use std::path::Path;

    use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp, jwk::Jwk};
    use serde_json::json;

    use super::*;

    fn write(target: &str, name: &str, data: &[u8]) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    }

    fn private(name: &str) -> Vec<u8> {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    #[ignore = "writes the seed corpus"]
    fn write_seed_corpus() {
        // Far-future expiry: the seeds stay valid tokens.
        let exp = get_current_timestamp() + 100 * 365 * 24 * 3600;
        let signers = [
            (
                "hs",
                Algorithm::HS256,
                EncodingKey::from_secret(SECRET).unwrap(),
            ),
            (
                "rs",
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(&private("rsa.pem")).unwrap(),
            ),
            (
                "es",
                Algorithm::ES256,
                EncodingKey::from_ec_pem(&private("ec-256.pem")).unwrap(),
            ),
            (
                "ed",
                Algorithm::EdDSA,
                EncodingKey::from_ed_pem(&private("ed25519.pem")).unwrap(),
            ),
        ];
        for (kid, alg, key) in &signers {
            let mut header = Header::new(*alg);
            header.kid = Some((*kid).into());
            for (case, claims) in [
                (
                    "valid",
                    json!({"sub": "alice", "iss": "one", "exp": exp, "scope": "a b"}),
                ),
                ("expired", json!({"sub": "alice", "iss": "one", "exp": 1})),
                (
                    "scp",
                    json!({"sub": "a", "iss": "one", "exp": exp, "scp": ["x", "y"], "nbf": 1.5}),
                ),
                (
                    "two",
                    json!({"sub": "a", "iss": "two", "aud": "api", "exp": exp}),
                ),
            ] {
                let token = encode(&header, &claims, key).unwrap();
                write("token", &format!("{kid}-{case}"), token.as_bytes());
                if case == "valid" {
                    write("authorization", kid, format!("Bearer {token}").as_bytes());
                }
            }
        }
        let mut typed = Header::new(Algorithm::HS256);
        typed.kid = Some("hs".into());
        typed.typ = Some("at+jwt".into());
        let token = encode(
            &typed,
            &json!({"sub": "a", "iss": "two", "aud": ["api", "x"], "exp": exp}),
            &signers[0].2,
        )
        .unwrap();
        write("token", "hs-two-typed", token.as_bytes());
        write(
            "token",
            "alg-none",
            b"eyJhbGciOiJub25lIn0.eyJleHAiOjk5OTk5OTk5OTl9.",
        );
        write("token", "garbage", b"not.a.jwt");
        for (name, value) in [
            ("basic", "Basic YWxpY2U6d29uZGVybGFuZA=="),
            ("bare", "Bearer"),
            ("spaces", "bearer    a.b.c"),
            ("comma", "Bearer a.b,c"),
            ("cookie", "theme=dark; jwt=a.b.c"),
        ] {
            write("authorization", name, value.as_bytes());
        }

        let jwk = |alg: Algorithm, key: &EncodingKey, kid: &str| {
            let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
            jwk.common.key_id = Some(kid.into());
            serde_json::to_value(jwk).unwrap()
        };
        let rs = jwk(Algorithm::RS256, &signers[1].2, "rs");
        let es = jwk(Algorithm::ES256, &signers[2].2, "es");
        let ed = jwk(Algorithm::EdDSA, &signers[3].2, "ed");
        let mut enc = ed.clone();
        enc["use"] = json!("enc");
        enc["kid"] = json!("enc");
        for (name, doc) in [
            ("all", json!({"keys": [rs, es, ed]})),
            ("duplicate-kid", json!({"keys": [ed, ed]})),
            ("encryption", json!({"keys": [enc, es]})),
            (
                "oct",
                json!({"keys": [{"kty": "oct", "alg": "HS256", "kid": "h", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}]}),
            ),
            (
                "junk-key",
                json!({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}, 7, null]}),
            ),
            ("empty", json!({"keys": []})),
        ] {
            write("jwks", name, doc.to_string().as_bytes());
        }
        for (name, doc) in [
            (
                "valid",
                json!({"issuer": "https://idp.example", "jwks_uri": "https://idp.example/jwks"}),
            ),
            (
                "other-issuer",
                json!({"issuer": "https://evil.example", "jwks_uri": "https://evil.example/jwks"}),
            ),
            ("missing", json!({"issuer": "https://idp.example"})),
            (
                "types",
                json!({"issuer": ["https://idp.example"], "jwks_uri": 7}),
            ),
        ] {
            write("discovery", name, doc.to_string().as_bytes());
        }
    }
}

#[cfg(test)]
mod replay {
    //! Every file of the committed corpus (`fuzz/corpus/<target>/`), replayed on stable.

    use std::path::Path;

    fn replay(target: &str, check: fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let mut files = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            check(&std::fs::read(&path).unwrap());
            files += 1;
        }
        assert!(files > 0, "no corpus in {}", dir.display());
    }

    #[test]
    fn token_corpus() {
        replay("token", super::token);
    }

    #[test]
    fn authorization_corpus() {
        replay("authorization", super::authorization);
    }

    #[test]
    #[cfg(feature = "jwks")]
    fn jwks_corpus() {
        replay("jwks", super::jwks);
    }

    #[test]
    #[cfg(feature = "jwks")]
    fn discovery_corpus() {
        replay("discovery", super::discovery);
    }
}
