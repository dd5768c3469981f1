//! Claims forwarded to the upstream as headers: what the inner service received, for each
//! kind of claim, a client's own copy of those headers, and values that cannot be headers.

mod common;

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use common::*;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::json;
use tower::{Layer, ServiceExt};
use tower_jwt_auth::{ConfigError, ForwardClaimsLayer, JwtAuthLayer, StandardClaims};

fn forward() -> ForwardClaimsLayer<StandardClaims> {
    ForwardClaimsLayer::builder()
        .claim("sub", "x-auth-subject")
        .claim("iss", "x-auth-issuer")
        .claim("scope", "x-auth-scopes")
        .claim("/realm_access/roles", "x-auth-roles")
        .claim("tenant_id", "x-auth-tenant")
        .claim("admin", "x-auth-admin")
        .separator(",")
        .build()
        .unwrap()
}

/// Sends `token` with `extra` headers: the status, and the headers the upstream got.
async fn send(token: &str, extra: &[(&str, &str)]) -> (StatusCode, Option<HeaderMap>, Reply) {
    let seen = Arc::new(Mutex::new(None));
    let upstream = {
        let seen = seen.clone();
        tower::service_fn(move |req: Request<Full<Bytes>>| {
            *seen.lock().unwrap() = Some(req.headers().clone());
            async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
        })
    };
    let auth = JwtAuthLayer::<StandardClaims>::builder()
        .hs256(SECRET)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    let service = auth.layer(forward().layer(upstream));
    let mut req = Request::builder().header(header::AUTHORIZATION, format!("Bearer {token}"));
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let res = service
        .oneshot(req.body(Full::default()).unwrap())
        .await
        .unwrap();
    let reply = read(res).await;
    let headers = seen.lock().unwrap().take();
    (reply.status, headers, reply)
}

#[tokio::test]
async fn claims_of_each_kind_reach_the_upstream_as_headers() {
    let token = mint(&claims_with(|c| {
        c.insert(
            "realm_access".into(),
            json!({"roles": ["reader", "writer"]}),
        );
        c.insert("tenant_id".into(), json!(42));
        c.insert("admin".into(), json!(false));
    }));
    let (status, headers, _) = send(&token, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let headers = headers.unwrap();
    assert_eq!(headers["x-auth-subject"], "alice");
    assert_eq!(headers["x-auth-issuer"], ISSUER);
    assert_eq!(headers["x-auth-scopes"], "todos:read todos:write");
    assert_eq!(headers["x-auth-roles"], "reader,writer");
    assert_eq!(headers["x-auth-tenant"], "42");
    assert_eq!(headers["x-auth-admin"], "false");
}

#[tokio::test]
async fn a_clients_own_copy_of_the_headers_never_reaches_the_upstream() {
    // The token has no roles or tenant: those headers are removed, not kept.
    let (status, headers, _) = send(
        &mint(&good_claims()),
        &[
            ("x-auth-subject", "root"),
            ("x-auth-roles", "admin"),
            ("X-Auth-Tenant", "1"),
            ("x-other", "kept"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let headers = headers.unwrap();
    assert_eq!(
        headers.get_all("x-auth-subject").iter().collect::<Vec<_>>(),
        ["alice"]
    );
    assert!(headers.get("x-auth-roles").is_none());
    assert!(headers.get("x-auth-tenant").is_none());
    assert_eq!(headers["x-other"], "kept");
}

#[tokio::test]
async fn a_value_that_cannot_be_a_header_refuses_the_request() {
    for (claim, value) in [
        ("tenant_id", json!("line\r\nX-Injected: 1")),
        ("tenant_id", json!({"nested": "object"})),
        ("admin", json!([{"not": "scalar"}])),
        ("tenant_id", json!("caf\u{e9}")),
    ] {
        let token = mint(&claims_with(|c| {
            c.insert(claim.into(), value.clone());
        }));
        let (status, headers, reply) = send(&token, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{value}");
        assert!(headers.is_none(), "{value} reached the upstream");
        assert_eq!(reply.json()["error"], "invalid_token");
    }
}

#[test]
fn mistakes_are_reported_by_build() {
    let builder = || ForwardClaimsLayer::<StandardClaims>::builder();
    for bad in [
        builder().claim("sub", "not a header"),
        builder().claim("sub", "x-a").claim("iss", "X-A"),
        builder().claim("", "x-a"),
        builder().claim("sub", "x-a").separator("\n"),
    ] {
        assert!(matches!(bad.build(), Err(ConfigError::InvalidValue(_))));
    }
}
