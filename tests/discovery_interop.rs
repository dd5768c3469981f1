//! Issuers discovered on demand, against two instances of node's `oidc-provider` as two
//! tenants: each one's tokens pass once its discovery document and JWKS have been fetched
//! through the layer's rule, and a third instance outside the rule is refused.
//!
//! Needs `node` and `npm ci` in `tests/interop/node` (`.ci/run` does it). Without them the
//! test says why and returns, except in CI (`CI=true`), where that is a failure.
#![cfg(feature = "jwks")]

#[path = "support/node.rs"]
mod node;

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use tower::{Layer, ServiceExt};
use tower_jwt_auth::{Claims, DiscoveredIssuers, JwtAuthLayer, StandardClaims};

const RESOURCE: &str = "http://127.0.0.1:9999/";

/// The status, and the issuer the inner service saw.
async fn send(layer: &JwtAuthLayer<StandardClaims>, token: &str) -> (StatusCode, Option<String>) {
    let inner = tower::service_fn(|req: Request<Full<Bytes>>| async move {
        let iss = req
            .extensions()
            .get::<Claims<StandardClaims>>()
            .and_then(|c| c.iss.clone());
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
            iss.unwrap_or_default(),
        ))))
    });
    let req = Request::builder()
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    let res = layer.layer(inner).oneshot(req).await.unwrap();
    let status = res.status();
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    (
        status,
        (status == StatusCode::OK).then(|| String::from_utf8(body.to_vec()).unwrap()),
    )
}

#[tokio::test]
async fn two_oidc_provider_instances_are_two_discovered_tenants() {
    if !node::ready(
        "two_oidc_provider_instances_are_two_discovered_tenants",
        &["oidc-provider"],
    ) {
        return;
    }
    let env = [("RESOURCE", RESOURCE), ("DPOP_BOUND", "0")];
    let tenants = [node::Provider::start(&env), node::Provider::start(&env)];
    let outsider = node::Provider::start(&env);
    let allowed: Vec<String> = tenants.iter().map(|t| t.issuer.clone()).collect();
    let issuers = DiscoveredIssuers::matching(move |iss| allowed.iter().any(|a| a == iss))
        .audience(RESOURCE)
        .typ("at+jwt");
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .discover_issuers(issuers.clone())
        .build()
        .unwrap();
    let client = [("RESOURCE", RESOURCE)];
    for tenant in &tenants {
        let got = tenant.client("http://127.0.0.1:9999/", "GET", "none", &client);
        let token = got["token"].as_str().unwrap();
        assert_eq!(token.matches('.').count(), 2, "a JWT");
        for _ in 0..3 {
            assert_eq!(
                send(&layer, token).await,
                (StatusCode::OK, Some(tenant.issuer.clone()))
            );
        }
    }
    assert_eq!(issuers.issuers().len(), 2);
    let got = outsider.client("http://127.0.0.1:9999/", "GET", "none", &client);
    let (status, _) = send(&layer, got["token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        issuers.issuers().len(),
        2,
        "the outsider was not discovered"
    );
}
