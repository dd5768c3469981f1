//! `examples/grpc.rs`, run as a user runs it, driven by a real tonic client over loopback: the bearer token travels as
//! `authorization` metadata, and the client sees `Code::Unauthenticated` and
//! `Code::PermissionDenied` with the layer's messages.

#[path = "support/example.rs"]
#[allow(dead_code)]
mod example;

use std::time::Duration;

use tonic::{Code, Request, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tower_jwt_auth::TokenIssuer;

const SECRET: &str = "grpc-test-secret-grpc-test-secret";

/// Tokens as the example's issuer makes them (its `iss`, `aud` and lifetime).
fn issuer_with(secret: &str) -> TokenIssuer {
    TokenIssuer::builder()
        .hs256(secret)
        .issuer("grpc-demo")
        .audience("health")
        .ttl(Duration::from_secs(600))
        .build()
        .unwrap()
}

async fn check(channel: &Channel, token: Option<&str>) -> Result<i32, tonic::Status> {
    let mut req = Request::new(HealthCheckRequest {
        service: String::new(),
    });
    if let Some(token) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    HealthClient::new(channel.clone())
        .check(req)
        .await
        .map(|res| res.into_inner().status)
}

#[tokio::test]
async fn a_tonic_client_is_authenticated_and_authorized_by_the_layers() {
    let server = example::Example::start(
        "grpc",
        &[("GRPC_ADDR", "127.0.0.1:0"), ("GRPC_JWT_SECRET", SECRET)],
    );
    let addr = server.addr;
    let issuer = issuer_with(SECRET);
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    // A token with the scope: the health service answers.
    let good = issuer.issue("alice", "health:read").unwrap().access_token;
    assert_eq!(
        check(&channel, Some(&good)).await.unwrap(),
        ServingStatus::Serving as i32
    );

    // No token: UNAUTHENTICATED, with the layer's message.
    let status = check(&channel, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "a bearer token is required");
    assert!(status.metadata().get("www-authenticate").is_some());

    // A forged token: UNAUTHENTICATED.
    let forged = issuer_with("another-secret-another-secret-32!")
        .issue("alice", "health:read")
        .unwrap()
        .access_token;
    let status = check(&channel, Some(&forged)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "the token's signature is invalid");

    // A valid token without the scope: PERMISSION_DENIED.
    let reader = issuer.issue("bob", "todos:read").unwrap().access_token;
    let status = check(&channel, Some(&reader)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(
        status.message(),
        "the token does not grant the required scope"
    );
}
