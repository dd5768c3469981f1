//! The same HS256 token through jwt-authorizer's layer and through ours, in one run, each
//! against the same inner service (`no_auth`): `layer - no_auth` is what authentication
//! adds. jwt-authorizer has no token cache; `ours_cached` is ours with one.
//!
//! `cargo bench --manifest-path benches/peer/Cargo.toml`

use std::{convert::Infallible, hint::black_box, time::Duration};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, StatusCode, header};
use jwt_authorizer::{IntoLayer, JwtAuthorizer, Validation};
use serde::Deserialize;
use tower_jwt_auth::{
    JwtAuthLayer,
    jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp},
};
use tower_layer::Layer;
use tower_service::Service;

const SECRET: &str = "peer-benchmark-secret-of-32-bytes!!";

/// What both layers decode the token into.
#[derive(Clone, Debug, Deserialize)]
#[allow(dead_code)]
struct AppClaims {
    sub: String,
    iss: String,
    aud: String,
    exp: u64,
    #[serde(default)]
    scope: String,
}

type Inner = tower::util::ServiceFn<
    fn(Request<String>) -> std::future::Ready<Result<axum07::response::Response, Infallible>>,
>;

fn inner() -> Inner {
    fn ok(
        _: Request<String>,
    ) -> std::future::Ready<Result<axum07::response::Response, Infallible>> {
        std::future::ready(Ok(axum07::response::Response::new(
            axum07::body::Body::empty(),
        )))
    }
    tower::service_fn(ok as fn(_) -> _)
}

fn request(token: &str) -> Request<String> {
    Request::get("/")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(String::new())
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let now = get_current_timestamp();
    let claims = serde_json::json!({
        "sub": "alice", "iss": "todo-server", "aud": "todo-api",
        "iat": now, "exp": now + 3600, "scope": "todos:read",
    });
    let token = encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap();

    let theirs = runtime
        .block_on(
            JwtAuthorizer::<AppClaims>::from_secret(SECRET)
                .validation(Validation::new().iss(&["todo-server"]).aud(&["todo-api"]))
                .build(),
        )
        .unwrap()
        .into_layer();
    let ours = |cache| {
        JwtAuthLayer::<AppClaims>::builder()
            .hs256(SECRET)
            .issuer("todo-server")
            .audience("todo-api")
            .cache(cache)
            .build()
            .unwrap()
    };

    let mut group = c.benchmark_group("peer/hs256");
    group.measurement_time(Duration::from_secs(3));
    macro_rules! run {
        ($name:expr, $svc:expr) => {{
            let mut svc = $svc;
            // Both answer 200 for this token: nothing is measured on a refusal.
            let res = runtime.block_on(svc.call(request(&token))).unwrap();
            assert_eq!(res.status(), StatusCode::OK, $name);
            group.bench_function($name, |b| {
                b.iter(|| {
                    runtime
                        .block_on(svc.call(black_box(request(&token))))
                        .unwrap()
                })
            });
        }};
    }
    run!("no_auth", inner());
    run!("jwt_authorizer", theirs.layer(inner()));
    run!("ours", ours(0).layer(inner()));
    run!("ours_cached", ours(10_000).layer(inner()));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
