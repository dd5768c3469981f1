//! The layer in the stacks users put it in: `ServiceBuilder` + `service_fn`, an axum
//! `Router` (with the `Claims` extractor), and a hyper server over a real TCP socket.
//! Plus the tower contract: Send/Sync/Clone, readiness, errors stay the inner service's.

mod common;

use std::{
    convert::Infallible,
    future::poll_fn,
    task::{Context, Poll, Waker},
};

#[cfg(feature = "axum")]
use axum::{Router, routing::get as axum_get};
use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
    service::TowerToHyperService,
};
use serde_json::json;
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
#[cfg(feature = "axum")]
use tower_jwt_auth::Claims;
use tower_jwt_auth::{
    Authorize, JwtAuth, JwtAuthLayer, JwtAuthLayerBuilder, RequireScope, StandardClaims, require,
};

fn configured() -> JwtAuthLayerBuilder<StandardClaims> {
    JwtAuthLayer::builder()
        .hs256(SECRET)
        .issuer(ISSUER)
        .audience(AUDIENCE)
}

fn auth() -> JwtAuthLayer<StandardClaims> {
    configured().build().unwrap()
}

fn token_with_scope(scope: &str) -> String {
    mint(&claims_with(|c| {
        c.insert("scope".into(), json!(scope));
    }))
}

#[tokio::test]
async fn service_builder_with_scope_and_claim_requirements() {
    let rec = Recorder::default();
    let svc = ServiceBuilder::new()
        .layer(auth())
        .layer(RequireScope::all(["todos:read", "todos:write"]))
        .layer(require(|c: &StandardClaims| {
            c.sub.as_deref() != Some("mallory")
        }))
        .service(rec.service());

    let ok = read(
        svc.clone()
            .oneshot(get(Some(&token_with_scope("todos:read todos:write"))))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);

    let res = read(
        svc.clone()
            .oneshot(get(Some(&token_with_scope("todos:read"))))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(
        res.challenge.as_deref(),
        Some(
            "Bearer realm=\"api\", error=\"insufficient_scope\", \
             error_description=\"the token does not grant the required scope\", scope=\"todos:read todos:write\""
        )
    );
    assert_eq!(res.json()["error"], "insufficient_scope");

    let mallory = mint(&claims_with(|c| {
        c.insert("sub".into(), json!("mallory"));
    }));
    let res = read(svc.clone().oneshot(get(Some(&mallory))).await.unwrap()).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(
        res.challenge
            .unwrap()
            .contains("error=\"insufficient_scope\"")
    );

    // Authentication still comes first: no token is 401, not 403.
    let res = read(svc.oneshot(get(None)).await.unwrap()).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(rec.calls(), 1);
}

#[tokio::test]
async fn any_of_scopes_and_scp_arrays() {
    let rec = Recorder::default();
    let svc = ServiceBuilder::new()
        .layer(auth())
        .layer(RequireScope::any(["admin", "todos:read"]))
        .service(rec.service());
    let scp = mint(&claims_with(|c| {
        c.remove("scope");
        c.insert("scp".into(), json!(["todos:read"]));
    }));
    assert_eq!(
        svc.clone().oneshot(get(Some(&scp))).await.unwrap().status(),
        StatusCode::OK
    );
    let none = mint(&claims_with(|c| {
        c.remove("scope");
    }));
    assert_eq!(
        svc.oneshot(get(Some(&none))).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn requirement_without_authentication_is_401() {
    let rec = Recorder::default();
    // Optional authentication globally, a requirement on this route only.
    let svc = ServiceBuilder::new()
        .layer(configured().optional().build().unwrap())
        .layer(RequireScope::all(["todos:read"]))
        .service(rec.service());
    let res = read(svc.oneshot(get(None)).await.unwrap()).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.challenge.as_deref(), Some("Bearer realm=\"api\""));
    assert_eq!(rec.calls(), 0);
}

#[cfg(feature = "axum")]
async fn whoami(Claims(claims): Claims<StandardClaims>) -> String {
    claims.sub.clone().unwrap_or_default()
}

#[cfg(feature = "axum")]
async fn maybe(claims: Option<Claims<StandardClaims>>) -> String {
    claims
        .and_then(|c| c.sub.clone())
        .unwrap_or_else(|| "anonymous".into())
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn axum_router_with_extractor_and_per_route_scope() {
    let app = Router::new()
        .route("/me", axum_get(whoami))
        .route(
            "/admin",
            axum_get(whoami).layer(RequireScope::all(["admin"])),
        )
        .layer(auth());

    let req = |path: &str, token: Option<&str>| {
        let mut r = Request::builder().uri(path);
        if let Some(t) = token {
            r = r.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        r.body(axum::body::Body::empty()).unwrap()
    };
    let token = mint(&good_claims());
    let res = read(app.clone().oneshot(req("/me", Some(&token))).await.unwrap()).await;
    assert_eq!((res.status, &res.body[..]), (StatusCode::OK, &b"alice"[..]));
    let res = read(
        app.clone()
            .oneshot(req("/admin", Some(&token)))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = read(app.oneshot(req("/me", None)).await.unwrap()).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn axum_extractor_without_layer_is_401_and_option_is_none() {
    let app = Router::new()
        .route("/me", axum_get(whoami))
        .route("/maybe", axum_get(maybe));
    let res = read(
        app.clone()
            .oneshot(Request::get("/me").body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.challenge.as_deref(), Some("Bearer realm=\"api\""));
    let res = read(
        app.oneshot(
            Request::get("/maybe")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(res.body, "anonymous");
}

#[tokio::test]
async fn hyper_server_over_tcp() {
    let rec = Recorder::default();
    let svc = ServiceBuilder::new().layer(auth()).service(rec.service());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let svc = TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let url = format!("http://{addr}/secure-todos");
    let res = client
        .request(Request::get(&url).body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()[header::WWW_AUTHENTICATE],
        "Bearer realm=\"api\""
    );
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["error_description"],
        "a bearer token is required"
    );

    let req = Request::get(&url)
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", mint(&good_claims())),
        )
        .body(Full::default())
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "alice");
    assert_eq!(rec.calls(), 1);
    server.abort();
}

#[test]
fn traits() {
    fn assert_send_sync_clone<T: Send + Sync + Clone>() {}
    type Inner =
        tower::util::BoxCloneSyncService<Request<Full<Bytes>>, Response<Full<Bytes>>, Infallible>;
    assert_send_sync_clone::<JwtAuthLayer<StandardClaims>>();
    assert_send_sync_clone::<JwtAuth<Inner, StandardClaims>>();
    assert_send_sync_clone::<Authorize<Inner, RequireScope>>();
    fn assert_send<T: Send>(_: &T) {}
    let mut svc = tower::Layer::layer(
        &auth(),
        service_fn(|_: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
        }),
    );
    assert_send(&svc.call(get(None)));
}

/// A service that is ready only once `open` is set, and fails with its own error type.
#[derive(Clone)]
struct Gate {
    open: bool,
}

impl Service<Request<Full<Bytes>>> for Gate {
    type Response = Response<Full<Bytes>>;
    type Error = &'static str;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.open {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, _: Request<Full<Bytes>>) -> Self::Future {
        std::future::ready(Err("inner failure"))
    }
}

#[tokio::test]
async fn readiness_is_the_inner_services_and_errors_pass_through() {
    let mut svc = tower::Layer::layer(&auth(), Gate { open: false });
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_pending());
    svc.get_mut().open = true;
    poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    // A valid request reaches the inner service, whose error is returned as is...
    assert_eq!(
        svc.call(get(Some(&mint(&good_claims()))))
            .await
            .unwrap_err(),
        "inner failure"
    );
    // ...while a rejection is a response, never an error.
    poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    assert_eq!(
        svc.call(get(None)).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

/// A gRPC request (`content-type: application/grpc*`) is refused the way a gRPC client reads:
/// HTTP 200 with `grpc-status` 16 (UNAUTHENTICATED) or 7 (PERMISSION_DENIED) and a
/// `grpc-message`, the challenge kept; a plain HTTP request to the same stack gets RFC 6750.
#[tokio::test]
async fn grpc_requests_get_grpc_shaped_rejections() {
    let rec = Recorder::default();
    let svc = ServiceBuilder::new()
        .layer(auth())
        .layer(RequireScope::all(["todos:write"]))
        .service(rec.service());
    let grpc = |token: Option<String>| {
        let mut req = Request::post("/todo.Todos/Create")
            .header(header::CONTENT_TYPE, "application/grpc+proto");
        if let Some(token) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        req.body(Full::<Bytes>::default()).unwrap()
    };
    for (token, code, message) in [
        (None, "16", "a bearer token is required"),
        (
            Some("not.a.jwt".to_owned()),
            "16",
            "the token is not a well-formed JWT",
        ),
        (
            Some(token_with_scope("todos:read")),
            "7",
            "the token does not grant the required scope",
        ),
    ] {
        let res = svc.clone().oneshot(grpc(token)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/grpc");
        assert_eq!(res.headers()["grpc-status"], code);
        assert_eq!(res.headers()["grpc-message"], message);
        assert!(res.headers().contains_key(header::WWW_AUTHENTICATE));
    }
    let res = svc
        .clone()
        .oneshot(grpc(Some(token_with_scope("todos:write"))))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!res.headers().contains_key("grpc-status"));
    assert_eq!(rec.calls(), 1);
    // The same stack, plain HTTP: RFC 6750.
    let res = svc.oneshot(get(None)).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}
