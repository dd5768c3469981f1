//! Opaque tokens against an authorization server we did not write: node's `oidc-provider`
//! issues opaque client-credentials tokens (bearer and DPoP-bound) and introspects them
//! (RFC 7662) for the layer, which finds the endpoint by discovery and authenticates as its
//! own client. A token revoked at the provider (RFC 7009) is refused once the cache bound
//! has passed; a read-only token gets `403` from `RequireScope`.
//!
//! Needs `node` and `npm ci` in `tests/interop/node` (`.ci/run` does it). Without them the
//! test says why and returns, except in CI (`CI=true`), where that is a failure.
#![cfg(feature = "jwks")]

#[path = "support/node.rs"]
mod node;

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tower::{Layer, ServiceExt};
use tower_jwt_auth::{
    Claims, Dpop, JwtAuthLayer, RequireScope, Scopes, SenderConstraint, StandardClaims,
    introspect::Introspection, jwks::JwksSource,
};

/// The resource the provider issues tokens for (their `aud`), and where proofs point.
const RESOURCE: &str = "http://127.0.0.1:9999/";
const ORIGIN: &str = "http://127.0.0.1:9999";
const URL: &str = "http://127.0.0.1:9999/todos";

/// What reached the inner service: the claims, the scopes, the binding.
type Reached = (Arc<StandardClaims>, Vec<String>, Option<SenderConstraint>);

/// One request through `layer` and `RequireScope::all([scope])`: status, body, and what
/// reached the inner service.
async fn send(
    layer: &JwtAuthLayer<StandardClaims>,
    scope: &str,
    authorization: &str,
    proof: Option<&str>,
) -> (StatusCode, Value, Option<Reached>) {
    let reached = Arc::new(Mutex::new(None));
    let seen = reached.clone();
    let inner = tower::service_fn(move |req: Request<Full<Bytes>>| {
        let ext = req.extensions();
        *seen.lock().unwrap() = Some((
            ext.get::<Claims<StandardClaims>>().unwrap().0.clone(),
            ext.get::<Scopes>()
                .unwrap()
                .iter()
                .map(String::from)
                .collect(),
            ext.get::<SenderConstraint>().cloned(),
        ));
        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
    });
    let service = layer.layer(RequireScope::all([scope]).layer(inner));
    let mut req = Request::builder()
        .uri("/todos")
        .header(header::AUTHORIZATION, authorization);
    if let Some(proof) = proof {
        req = req.header("dpop", proof);
    }
    let res = service
        .oneshot(req.body(Full::default()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let reached = reached.lock().unwrap().take();
    (status, body, reached)
}

#[tokio::test]
async fn oidc_provider_opaque_tokens_are_introspected_cached_and_refused_once_revoked() {
    if !node::ready(
        "oidc_provider_opaque_tokens_are_introspected",
        &["oidc-provider", "dpop"],
    ) {
        return;
    }
    let env = [
        ("RESOURCE", RESOURCE),
        ("AT_FORMAT", "opaque"),
        ("DPOP_BOUND", "0"),
        ("SCOPES", "todos:read todos:write"),
    ];
    let provider = node::Provider::start(&env);
    let opaque = Introspection::discover(&provider.issuer)
        .client_secret_basic("rs-api", "rs-api-secret")
        .cache_ttl(Duration::from_secs(1))
        .build()
        .unwrap();
    let jwks = JwksSource::builder(&format!("{}/jwks", provider.issuer))
        .build()
        .unwrap();
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .key_source(jwks)
        .issuer(&provider.issuer)
        .audience(RESOURCE)
        .dpop(Dpop::new(ORIGIN))
        .introspection(opaque.clone())
        .build()
        .unwrap();

    // A read-only bearer token: opaque, introspected, its scopes enforced.
    let client_env = [("RESOURCE", RESOURCE), ("SCOPE", "todos:read")];
    let got = provider.client(URL, "GET", "none", &client_env);
    let token = got["token"].as_str().unwrap();
    assert!(!token.contains('.'), "not an opaque token: {token}");
    let bearer = format!("Bearer {token}");
    let (status, body, reached) = send(&layer, "todos:read", &bearer, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (claims, scopes, binding) = reached.unwrap();
    // A client's own token: the principal is (iss, client_id).
    assert_eq!(
        claims.principal(),
        Some((provider.issuer.as_str(), "rs-test"))
    );
    assert_eq!(scopes, ["todos:read"]);
    assert_eq!(binding, None);
    let (status, body, reached) = send(&layer, "todos:write", &bearer, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "insufficient_scope");
    assert!(reached.is_none());
    for _ in 0..100 {
        assert_eq!(
            send(&layer, "todos:read", &bearer, None).await.0,
            StatusCode::OK
        );
    }
    assert_eq!(opaque.introspections(), 1, "102 requests with one token");

    // Revoked at the provider: served from the cache within its bound, then refused.
    provider.revoke(token);
    assert_eq!(
        send(&layer, "todos:read", &bearer, None).await.0,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body, _) = send(&layer, "todos:read", &bearer, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error_description"], "the token is not active");
    assert_eq!(opaque.introspections(), 2);

    // A string the provider never issued.
    let (status, body, _) = send(&layer, "todos:read", "Bearer made-up-token", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error_description"], "the token is not active");

    // A DPoP-bound opaque token: the introspection's `cnf.jkt` binds it like a JWT's.
    let got = provider.client(URL, "GET", "ES256", &[("RESOURCE", RESOURCE)]);
    let token = got["token"].as_str().unwrap();
    assert!(!token.contains('.'), "not an opaque token: {token}");
    let proof = got["proof"].as_str().unwrap();
    let dpop = format!("DPoP {token}");
    let (status, body, reached) = send(&layer, "todos:read", &dpop, Some(proof)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let jkt = got["jkt"].as_str().unwrap();
    assert_eq!(
        reached.unwrap().2,
        Some(SenderConstraint::Dpop { jkt: jkt.into() })
    );
    // The same token as a bearer token, or with its proof again, is refused.
    let (status, _, reached) = send(&layer, "todos:read", &format!("Bearer {token}"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(reached.is_none());
    let (status, body, _) = send(&layer, "todos:read", &dpop, Some(proof)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_dpop_proof");
}
