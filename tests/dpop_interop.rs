//! DPoP against implementations we did not write: node's `oidc-provider` issues DPoP-bound
//! JWT access tokens (client credentials with a proof at its token endpoint), and panva's
//! npm `dpop` library makes the proofs, with ES256 and Ed25519 keys. The layer fetches the
//! provider's keys over loopback like any JWKS.
//!
//! Needs `node` and `npm ci` in `tests/interop/node` (`.ci/run` does it). Without them the
//! test says why and returns, except in CI (`CI=true`), where that is a failure.
#![cfg(feature = "jwks")]

#[path = "support/node.rs"]
mod node;

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use tower::{Layer, ServiceExt};
use tower_jwt_auth::{Dpop, JwtAuthLayer, SenderConstraint, StandardClaims, jwks::JwksSource};

/// The resource the provider issues tokens for (their `aud`), and where proofs point.
const RESOURCE: &str = "http://127.0.0.1:9999/";
const ORIGIN: &str = "http://127.0.0.1:9999";
const URL: &str = "http://127.0.0.1:9999/todos";

async fn send(
    layer: &JwtAuthLayer<StandardClaims>,
    scheme: &str,
    token: &str,
    proof: Option<&str>,
) -> (StatusCode, Option<String>, Option<Option<SenderConstraint>>) {
    let reached = Arc::new(Mutex::new(None));
    let seen = reached.clone();
    let inner = tower::service_fn(move |req: Request<Full<Bytes>>| {
        *seen.lock().unwrap() = Some(req.extensions().get::<SenderConstraint>().cloned());
        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
    });
    let mut req = Request::builder()
        .uri("/todos")
        .header(header::AUTHORIZATION, format!("{scheme} {token}"));
    if let Some(proof) = proof {
        req = req.header("dpop", proof);
    }
    let res = layer
        .layer(inner)
        .oneshot(req.body(Full::default()).unwrap())
        .await
        .unwrap();
    let challenge = res
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    let reached = reached.lock().unwrap().take();
    (res.status(), challenge, reached)
}

#[tokio::test]
async fn oidc_provider_tokens_and_dpop_library_proofs_pass_and_their_misuse_does_not() {
    if !node::ready(
        "oidc_provider_tokens_and_dpop_library_proofs",
        &["oidc-provider", "dpop"],
    ) {
        return;
    }
    let provider = node::Provider::start(&[("RESOURCE", RESOURCE)]);
    let jwks = JwksSource::builder(&format!("{}/jwks", provider.issuer))
        .allow_http()
        .build()
        .unwrap();
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .key_source(jwks)
        .issuer(&provider.issuer)
        .audience(RESOURCE)
        .typ("at+jwt")
        .dpop(Dpop::new(ORIGIN))
        .build()
        .unwrap();
    for alg in ["ES256", "Ed25519"] {
        let got = provider.client(URL, "GET", alg, &[("RESOURCE", RESOURCE)]);
        let (token, proof, proof2) = (
            got["token"].as_str().unwrap(),
            got["proof"].as_str().unwrap(),
            got["proof2"].as_str().unwrap(),
        );
        assert_eq!(got["token_type"], "DPoP");
        let jkt = got["jkt"].as_str().unwrap();
        // The provider's token with the library's proof: accepted, bound to the client's key.
        let (status, challenge, reached) = send(&layer, "DPoP", token, Some(proof)).await;
        assert_eq!(status, StatusCode::OK, "{alg}: {challenge:?}");
        assert_eq!(
            reached,
            Some(Some(SenderConstraint::Dpop { jkt: jkt.into() })),
            "{alg}"
        );
        // The same proof again: a replay.
        let (status, challenge, reached) = send(&layer, "DPoP", token, Some(proof)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{alg}");
        assert!(
            challenge
                .unwrap()
                .contains("the proof has been used before")
        );
        assert!(reached.is_none());
        // A second proof of the same key: accepted.
        assert_eq!(
            send(&layer, "DPoP", token, Some(proof2)).await.0,
            StatusCode::OK,
            "{alg}"
        );
        // The token as a bearer token, or without a proof: refused.
        let (status, challenge, _) = send(&layer, "Bearer", token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(challenge.unwrap().contains("bound to a DPoP key"));
        let (status, challenge, _) = send(&layer, "DPoP", token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(challenge.unwrap().contains("invalid_dpop_proof"));
    }
}
