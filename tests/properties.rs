//! Properties of the layer over generated inputs (proptest):
//!
//! - changing any byte of a valid token is a rejection, or (base64url's unused bits) the very
//!   same claims;
//! - a token signed by a key outside the trusted set is never accepted, whatever its header
//!   says (algorithm, `kid`, embedded keys, an HMAC "signed" with the public key);
//! - the `Authorization` header is accepted exactly in RFC 6750's syntax;
//! - scopes round-trip through `scope` and `scp`.

mod common;

use std::{
    convert::Infallible,
    future::Future,
    pin::pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use bytes::Bytes;
use common::*;
use http::{HeaderValue, Request, Response, StatusCode, header};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::Layer;
use tower_jwt_auth::{Claims, JwtAuthLayer, KeySet, Scopes, StandardClaims, VerificationKey};

/// What one request came to: the status, the `error` of the challenge, and the claims and
/// scopes that reached the inner service (if it was called).
#[derive(Debug)]
struct Outcome {
    status: StatusCode,
    challenge: Option<String>,
    reached: Option<(StandardClaims, Vec<String>)>,
}

/// Sends `value` as the `Authorization` header through `layer`, polling once: the keys are
/// static, so every future is ready at once.
fn send(layer: &JwtAuthLayer<StandardClaims>, value: HeaderValue) -> Outcome {
    let reached = Arc::new(Mutex::new(None));
    let seen = reached.clone();
    let inner = tower::service_fn(move |req: Request<()>| {
        let claims = req.extensions().get::<Claims<StandardClaims>>().cloned();
        let scopes = req
            .extensions()
            .get::<Scopes>()
            .cloned()
            .unwrap_or_default();
        *seen.lock().unwrap() = claims.map(|c| {
            (
                StandardClaims::clone(&c),
                scopes.iter().map(String::from).collect(),
            )
        });
        async { Ok::<_, Infallible>(Response::new(Bytes::new())) }
    });
    let req = Request::builder()
        .header(header::AUTHORIZATION, value)
        .body(())
        .unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    let res = match pin!(tower::Service::call(&mut layer.layer(inner), req)).poll(&mut cx) {
        Poll::Ready(Ok(res)) => res,
        _ => panic!("a layer over static keys answers at once"),
    };
    let challenge = res
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    let reached = reached.lock().unwrap().take();
    Outcome {
        status: res.status(),
        challenge,
        reached,
    }
}

fn bearer(token: &str) -> HeaderValue {
    HeaderValue::try_from(format!("Bearer {token}")).unwrap()
}

fn fixture_key(alg: Algorithm, name: &str) -> EncodingKey {
    let pem = fixture(name);
    match alg {
        Algorithm::RS256 | Algorithm::PS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_ed_pem(&pem),
    }
    .unwrap()
}

/// The trusted set: an HS256 secret (`kid` "hs") and an Ed25519 key (`kid` "ed").
fn trusted() -> JwtAuthLayer<StandardClaims> {
    let keys = KeySet::new([
        VerificationKey::hmac(Algorithm::HS256, SECRET)
            .unwrap()
            .with_kid("hs"),
        VerificationKey::from_pem(Algorithm::EdDSA, &fixture("ed25519.pub.pem"))
            .unwrap()
            .with_kid("ed"),
    ])
    .unwrap();
    JwtAuthLayer::builder()
        .key_source(keys)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap()
}

fn valid_token(alg: Algorithm) -> String {
    let (kid, key) = match alg {
        Algorithm::HS256 => ("hs", EncodingKey::from_secret(SECRET).unwrap()),
        _ => ("ed", fixture_key(Algorithm::EdDSA, "ed25519.pem")),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    mint_with(&header, &good_claims(), &key)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any single-byte change of a valid token: rejected, or the same claims exactly (the
    /// last base64url character of a part carries bits that decoding ignores).
    #[test]
    fn changing_any_byte_is_a_rejection_or_the_same_claims(
        eddsa in any::<bool>(),
        position in any::<prop::sample::Index>(),
        byte in b'!'..=b'~',
    ) {
        let token = valid_token(if eddsa { Algorithm::EdDSA } else { Algorithm::HS256 });
        let layer = trusted();
        let original = send(&layer, bearer(&token));
        prop_assert_eq!(original.status, StatusCode::OK);
        let original = original.reached.unwrap();

        let mut changed = token.clone().into_bytes();
        let i = position.index(changed.len());
        prop_assume!(changed[i] != byte);
        changed[i] = byte;
        let changed = String::from_utf8(changed).unwrap();
        let outcome = send(&layer, bearer(&changed));
        match outcome.reached {
            None => prop_assert_eq!(outcome.status, StatusCode::UNAUTHORIZED),
            Some(reached) => prop_assert_eq!(reached, original, "{} accepted", changed),
        }
    }

    /// Whatever the header claims, a token signed with a key outside the trusted set never
    /// reaches the service.
    #[test]
    fn a_token_signed_outside_the_trusted_set_is_never_accepted(
        signer in 0..6usize,
        kid in prop_oneof![Just(None), Just(Some("hs")), Just(Some("ed")), Just(Some("other"))],
        typ in prop_oneof![Just(None), Just(Some("JWT")), Just(Some("at+jwt"))],
        embed_jwk in any::<bool>(),
    ) {
        let ed_public = fixture("ed25519.pub.pem");
        // The attacker's keys, and the classic confusion: the trusted public key as an HMAC
        // secret.
        let (alg, key) = match signer {
            0 => (Algorithm::HS256, EncodingKey::from_secret(b"attacker-secret-attacker-secret!").unwrap()),
            1 => (Algorithm::HS256, EncodingKey::from_secret(&ed_public).unwrap()),
            2 => (Algorithm::EdDSA, fixture_key(Algorithm::EdDSA, "ed25519-b.pem")),
            3 => (Algorithm::RS256, fixture_key(Algorithm::RS256, "rsa.pem")),
            4 => (Algorithm::ES256, fixture_key(Algorithm::ES256, "ec-256.pem")),
            _ => (Algorithm::HS512, EncodingKey::from_secret(SECRET).unwrap()),
        };
        let mut header = Header::new(alg);
        header.kid = kid.map(String::from);
        header.typ = typ.map(String::from);
        if embed_jwk {
            header.jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, alg).ok();
        }
        let token = mint_with(&header, &good_claims(), &key);
        let outcome = send(&trusted(), bearer(&token));
        prop_assert!(outcome.reached.is_none(), "accepted {}", token);
        prop_assert_eq!(outcome.status, StatusCode::UNAUTHORIZED);
    }

    /// RFC 6750 section 2.1: `credentials = "Bearer" 1*SP b64token`, the scheme in any case.
    /// Exactly that syntax, with a valid token, is admitted; `Bearer` alone is a malformed
    /// request (400); another scheme is no credentials (401 without an error code); anything
    /// else after `Bearer ` is an invalid token (401 `invalid_token`).
    #[test]
    fn authorization_is_accepted_exactly_in_rfc_6750_syntax(
        scheme in prop_oneof![
            Just("Bearer".to_owned()), Just("bearer".to_owned()), Just("BEARER".to_owned()),
            Just("bEaReR".to_owned()), Just("Basic".to_owned()), Just("Bearerx".to_owned()),
            "[A-Za-z]{1,8}",
        ],
        spaces in 0..4usize,
        body in prop_oneof![
            Just(Body::Valid),
            Just(Body::Empty),
            "[A-Za-z0-9._~+/-]{1,40}=*".prop_map(Body::B64),
            "[ -~]{1,40}".prop_map(Body::Any),
        ],
    ) {
        let token = match &body {
            Body::Valid => valid_token(Algorithm::HS256),
            Body::Empty => String::new(),
            Body::B64(s) | Body::Any(s) => s.clone(),
        };
        let value = format!("{scheme}{}{token}", " ".repeat(spaces));
        let Ok(header) = HeaderValue::try_from(value.clone()) else { return Ok(()) };
        let outcome = send(&trusted(), header);
        let is_bearer = scheme.eq_ignore_ascii_case("bearer");
        let rest = value[scheme.len()..].to_owned();
        let expected = if !is_bearer || (!rest.is_empty() && !rest.starts_with(' ')) {
            // Another scheme (or a longer word that merely starts with "bearer").
            Expect::NoCredentials
        } else if rest.trim_start_matches(' ').is_empty() {
            Expect::MalformedRequest
        } else if matches!(body, Body::Valid) && spaces > 0 {
            Expect::Admitted
        } else {
            Expect::InvalidToken
        };
        match expected {
            Expect::Admitted => prop_assert!(outcome.reached.is_some(), "{}", value),
            Expect::MalformedRequest => prop_assert_eq!(outcome.status, StatusCode::BAD_REQUEST, "{}", value),
            Expect::NoCredentials => {
                prop_assert_eq!(outcome.status, StatusCode::UNAUTHORIZED, "{}", value);
                prop_assert_eq!(outcome.challenge.as_deref(), Some("Bearer realm=\"api\""));
            }
            Expect::InvalidToken => {
                prop_assert_eq!(outcome.status, StatusCode::UNAUTHORIZED, "{}", value);
                let challenge = outcome.challenge.unwrap();
                prop_assert!(challenge.contains("error=\"invalid_token\""), "{}: {}", value, challenge);
            }
        }
    }

    /// Scopes round-trip: a list of scope-tokens sent as `scope` (space-separated) or as an
    /// `scp` array reaches the service as the same list.
    #[test]
    fn scopes_round_trip_through_scope_and_scp(
        scopes in prop::collection::vec("[!#-\\[\\]-~]{1,12}", 0..6),
        as_array in any::<bool>(),
    ) {
        let claims = claims_with(|c| {
            c.remove("scope");
            if as_array {
                c.insert("scp".into(), json!(scopes));
            } else {
                c.insert("scope".into(), Value::String(scopes.join(" ")));
            }
        });
        let outcome = send(&trusted(), bearer(&mint_with(
            &{ let mut h = Header::new(Algorithm::HS256); h.kid = Some("hs".into()); h },
            &claims,
            &EncodingKey::from_secret(SECRET).unwrap(),
        )));
        let (_, reached) = outcome.reached.expect("a valid token");
        prop_assert_eq!(reached, scopes);
    }
}

#[derive(Debug, Clone)]
enum Body {
    Valid,
    Empty,
    B64(String),
    Any(String),
}

enum Expect {
    Admitted,
    MalformedRequest,
    NoCredentials,
    InvalidToken,
}

/// The unused bits of base64url are real: this is why the first property allows "the same
/// claims" rather than demanding a rejection for every change.
#[test]
fn base64_unused_bits_exist() {
    let token = valid_token(Algorithm::HS256);
    let sig = token.rsplit('.').next().unwrap();
    let decoded = URL_SAFE_NO_PAD.decode(sig).unwrap();
    assert_eq!(decoded.len(), 32);
    assert_eq!(sig.len(), 43, "43 characters carry 258 bits for 256");
}
