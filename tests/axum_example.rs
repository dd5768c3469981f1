//! `examples/axum.rs` driven through its router: the extractor, the per-route scope, the
//! route that works with or without a token, and per-user data keyed by (`iss`, `sub`).

#[path = "../examples/axum.rs"]
mod example;

use axum::body::Body;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_jwt_auth::TokenIssuer;

fn issuer() -> TokenIssuer {
    TokenIssuer::builder()
        .hs256(b"axum-example-test-secret-32-bytes")
        .issuer("axum-demo")
        .audience("notes")
        .build()
        .unwrap()
}

async fn send(
    app: &axum::Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn the_axum_example_authenticates_authorizes_and_greets() {
    let issuer = issuer();
    let app = example::app(issuer.layer().optional().build().unwrap());
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
