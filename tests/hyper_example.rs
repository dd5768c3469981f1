//! `examples/hyper.rs` as a user runs it, over TCP: its own token is accepted, a request
//! without one is `401`, a token without the scope `403`, and the handler sees the claims.

#[path = "support/example.rs"]
#[allow(dead_code)]
mod example;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower_jwt_auth::TokenIssuer;

const SECRET: &str = "hyper-example-test-secret-32-bytes";

async fn get(addr: std::net::SocketAddr, token: Option<&str>) -> (StatusCode, String) {
    let mut req = Request::get(format!("http://{addr}/hello"));
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let client = Client::builder(TokioExecutor::new()).build_http();
    let res = client
        .request(req.body(Full::<Bytes>::default()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn the_hyper_example_issues_and_checks_tokens() {
    let server = example::Example::start(
        "hyper",
        &[("HYPER_ADDR", "127.0.0.1:0"), ("HYPER_JWT_SECRET", SECRET)],
    );
    // The token the example printed.
    let output = server.output();
    let printed = output
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .expect("the example prints a token");
    assert_eq!(
        get(server.addr, Some(printed)).await,
        (StatusCode::OK, "hello, alice\n".into())
    );

    let (status, _) = get(server.addr, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Same issuer, another scope: authenticated, not authorized.
    let issuer = TokenIssuer::builder()
        .hs256(SECRET)
        .issuer("hyper-demo")
        .audience("greetings")
        .build()
        .unwrap();
    let reader = issuer.issue("bob", "read").unwrap().access_token;
    let (status, body) = get(server.addr, Some(&reader)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("insufficient_scope"), "{body}");

    // Another secret: refused.
    let forged = TokenIssuer::builder()
        .hs256("another-secret-another-secret-32!!")
        .issuer("hyper-demo")
        .audience("greetings")
        .build()
        .unwrap()
        .issue("alice", "greet")
        .unwrap()
        .access_token;
    assert_eq!(
        get(server.addr, Some(&forged)).await.0,
        StatusCode::UNAUTHORIZED
    );
}
