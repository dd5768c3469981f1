//! `examples/axum.rs` as a user runs it, over TCP: the extractor, the per-route scope, the
//! route that works with or without a token, and per-user data keyed by (`iss`, `sub`).

#![cfg(feature = "axum")]

#[path = "support/example.rs"]
#[allow(dead_code)]
mod example;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower_jwt_auth::TokenIssuer;

const SECRET: &str = "axum-example-test-secret-32-bytes";

/// Tokens as the example's own issuer makes them (same secret, `iss` and `aud`).
fn issuer() -> TokenIssuer {
    TokenIssuer::builder()
        .hs256(SECRET)
        .issuer("axum-demo")
        .audience("notes")
        .build()
        .unwrap()
}

async fn send(
    app: &std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (StatusCode, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{app}{path}"));
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http();
    let res = client.request(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn the_axum_example_authenticates_authorizes_and_greets() {
    let issuer = issuer();
    let server = example::Example::start(
        "axum",
        &[("AXUM_ADDR", "127.0.0.1:0"), ("AXUM_JWT_SECRET", SECRET)],
    );
    let app = server.addr;
    let writer = issuer
        .issue("alice", "notes:read notes:write")
        .unwrap()
        .access_token;
    let reader = issuer.issue("bob", "notes:read").unwrap().access_token;

    // With or without a token.
    assert_eq!(
        send(&app, "GET", "/hello", None, "").await,
        (StatusCode::OK, "hello, stranger".into())
    );
    assert_eq!(
        send(&app, "GET", "/hello", Some(&writer), "").await,
        (StatusCode::OK, "hello, alice".into())
    );
    // An invalid token is refused even where none is needed.
    assert_eq!(
        send(&app, "GET", "/hello", Some("not.a.jwt"), "").await.0,
        StatusCode::UNAUTHORIZED
    );

    // The extractor needs claims.
    assert_eq!(
        send(&app, "GET", "/notes", None, "").await.0,
        StatusCode::UNAUTHORIZED
    );
    // Writing needs the scope; reading does not.
    assert_eq!(
        send(&app, "POST", "/notes", Some(&writer), "milk").await.0,
        StatusCode::CREATED
    );
    let (status, body) = send(&app, "POST", "/notes", Some(&reader), "eggs").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("insufficient_scope"), "{body}");
    assert_eq!(
        send(&app, "GET", "/notes", Some(&reader), "").await,
        (StatusCode::OK, "[]".into())
    );
    assert_eq!(
        send(&app, "GET", "/notes", Some(&writer), "").await,
        (StatusCode::OK, "[\"milk\"]".into())
    );
    // Unknown paths are still 404, not 403.
    assert_eq!(
        send(&app, "GET", "/nowhere", Some(&reader), "").await.0,
        StatusCode::NOT_FOUND
    );
}
