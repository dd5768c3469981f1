//! The validated-token cache (`JwtAuthLayer::cache`): what a client and the inner service see
//! when tokens are presented again, tampered with, expire, or lose their key.
#![cfg(feature = "cache")]

mod common;

use std::{sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use common::*;
use http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tower::{Layer, ServiceBuilder, ServiceExt};
use tower_jwt_auth::{
    JwtAuthLayer, JwtAuthLayerBuilder, KeySet, RequireScope, StandardClaims, VerificationKey,
};

fn configured() -> JwtAuthLayerBuilder<StandardClaims> {
    JwtAuthLayer::builder()
        .hs256(SECRET)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .cache(1000)
}

fn cached() -> JwtAuthLayer<StandardClaims> {
    configured().build().unwrap()
}

/// Sends `token` through `svc`'s layer into `rec`.
async fn send(layer: &JwtAuthLayer<StandardClaims>, rec: &Recorder, token: &str) -> Reply {
    read(
        layer
            .layer(rec.service())
            .oneshot(get(Some(token)))
            .await
            .unwrap(),
    )
    .await
}

/// Waits until the clock's whole second is past `t`.
async fn wait_past(t: u64) {
    while now() <= t {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_token_seen_again_shares_its_claims() {
    let token = mint(&good_claims());
    for (layer, shared) in [
        (cached(), true),
        (configured().cache(0).build().unwrap(), false),
    ] {
        let rec = Recorder::default();
        assert_eq!(send(&layer, &rec, &token).await.status, StatusCode::OK);
        assert_eq!(send(&layer, &rec, &token).await.body, "alice");
        let seen = rec.0.lock().unwrap();
        let (a, b) = (
            seen[0].shared.as_ref().unwrap(),
            seen[1].shared.as_ref().unwrap(),
        );
        assert_eq!(a, b, "the same claims either way");
        assert_eq!(
            Arc::ptr_eq(&a.0, &b.0),
            shared,
            "shared only from the cache"
        );
        assert_eq!(
            seen[1].scopes.as_deref().unwrap(),
            ["todos:read", "todos:write"]
        );
    }
}

#[tokio::test]
async fn a_changed_token_never_hits() {
    let layer = cached();
    let rec = Recorder::default();
    let token = mint(&good_claims());
    assert_eq!(send(&layer, &rec, &token).await.status, StatusCode::OK);

    // Same header and signature, another payload: the cache is keyed by the whole token.
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    let forged = claims_with(|c| {
        c.insert("sub".into(), json!("mallory"));
    });
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
    let res = send(&layer, &rec, &parts.join(".")).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.json()["error_description"],
        "the token's signature is invalid"
    );

    // Same payload, another signature.
    let mut other_sig = token.clone();
    let last = other_sig.pop().unwrap();
    other_sig.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(
        send(&layer, &rec, &other_sig).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(rec.calls(), 1, "only the genuine token reached the service");
}

#[tokio::test]
async fn a_cached_token_expires_at_exp_plus_leeway() {
    let layer = configured().leeway(Duration::from_secs(1)).build().unwrap();
    let rec = Recorder::default();
    let exp = now() + 1;
    let token = mint(&claims_with(|c| {
        c.insert("exp".into(), json!(exp));
    }));
    assert_eq!(send(&layer, &rec, &token).await.status, StatusCode::OK);
    wait_past(exp + 1).await;
    let res = send(&layer, &rec, &token).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.json()["error_description"], "the token has expired");
    assert_eq!(rec.calls(), 1);
}

#[tokio::test]
async fn a_rejection_is_never_cached() {
    let layer = configured().leeway(Duration::ZERO).build().unwrap();
    let rec = Recorder::default();
    let nbf = now() + 1;
    let token = mint(&claims_with(|c| {
        c.insert("nbf".into(), json!(nbf));
    }));
    let res = send(&layer, &rec, &token).await;
    assert_eq!(
        res.json()["error_description"],
        "the token is not valid yet"
    );
    wait_past(nbf).await;
    assert_eq!(send(&layer, &rec, &token).await.status, StatusCode::OK);
}

#[tokio::test]
async fn rotating_the_key_out_ends_its_cached_tokens() {
    let key = |secret: &[u8], kid: &str| {
        VerificationKey::hmac(Algorithm::HS256, secret)
            .unwrap()
            .with_kid(kid)
    };
    let keys = KeySet::new([key(SECRET, "old"), key(&[7; 32], "next")]).unwrap();
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .key_source(keys.clone())
        .audience(AUDIENCE)
        .cache(100)
        .build()
        .unwrap();
    let rec = Recorder::default();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("old".into());
    let token = mint_with(
        &header,
        &good_claims(),
        &EncodingKey::from_secret(SECRET).unwrap(),
    );
    assert_eq!(send(&layer, &rec, &token).await.status, StatusCode::OK);

    assert!(keys.remove("old"));
    let res = send(&layer, &rec, &token).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.json()["error_description"],
        "the token's key id is not known"
    );

    // A new key under the old `kid` does not bring the cached verdict back.
    keys.insert(key(&[9; 32], "old")).unwrap();
    let res = send(&layer, &rec, &token).await;
    assert_eq!(
        res.json()["error_description"],
        "the token's signature is invalid"
    );
    assert_eq!(rec.calls(), 1);
}

#[tokio::test]
async fn scope_requirements_run_on_every_hit() {
    let token = mint(&claims_with(|c| {
        c.insert("scope".into(), json!("todos:read"));
    }));
    let auth = cached();
    let rec = Recorder::default();
    let svc = ServiceBuilder::new()
        .layer(auth.clone())
        .layer(RequireScope::all(["todos:write"]))
        .service(rec.service());
    for _ in 0..3 {
        let res = read(svc.clone().oneshot(get(Some(&token))).await.unwrap()).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN);
        assert_eq!(res.json()["error"], "insufficient_scope");
    }
    // The token is cached all the while: the same layer admits it where it suffices.
    assert_eq!(send(&auth, &rec, &token).await.status, StatusCode::OK);
    assert_eq!(rec.calls(), 1);
}

#[tokio::test]
async fn a_changed_configuration_does_not_inherit_cached_tokens() {
    let base = cached();
    let rec = Recorder::default();
    let token = mint(&good_claims());
    assert_eq!(send(&base, &rec, &token).await.status, StatusCode::OK);

    // Built from the same settings plus a claim the token lacks: its own, empty cache.
    let stricter = configured().require_claim("tenant").build().unwrap();
    let res = send(&stricter, &rec, &token).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.json()["error_description"],
        "the token lacks the required claim `tenant`"
    );
    // The original keeps its own cache and configuration.
    assert_eq!(send(&base, &rec, &token).await.status, StatusCode::OK);
}

#[tokio::test]
async fn many_tokens_stay_within_capacity_and_are_all_accepted() {
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .hs256(SECRET)
        .audience(AUDIENCE)
        .cache(8)
        .build()
        .unwrap();
    let rec = Recorder::default();
    for i in 0..200 {
        let token = mint(&claims_with(|c| {
            c.insert("sub".into(), json!(format!("user-{i}")));
        }));
        let res = send(&layer, &rec, &token).await;
        assert_eq!(res.body, format!("user-{i}"));
    }
    assert_eq!(rec.calls(), 200);
}
