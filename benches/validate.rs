//! Token-validation throughput: the layer against the raw `jsonwebtoken::decode` with the same
//! settings, and a bare request through a no-op service as the floor.
//!
//! `cargo bench --bench validate`; compare the IDs of one group from one run.

use std::{convert::Infallible, hint::black_box};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, header};
use http_body_util::Full;
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode, get_current_timestamp,
};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_jwt_auth::{JwtAuthLayer, StandardClaims, VerificationKey};

const SECRET: &[u8] = b"bench-secret-bench-secret-bench-secret!!";

fn token() -> String {
    let claims = serde_json::json!({
        "sub": "alice", "iss": "todo-server", "aud": "todo-api",
        "iat": get_current_timestamp(), "exp": get_current_timestamp() + 3600,
        "scope": "todos:read todos:write", "jti": "0123456789abcdef",
    });
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap()
}

fn request(token: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .uri("/secure-todos")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::default())
        .unwrap()
}

fn noop()
-> impl Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
+ Clone {
    service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::default()))
    })
}

/// `layer`: a request through `layer` into a no-op service, asserting it was admitted.
fn bench_layer(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    layer: &JwtAuthLayer<StandardClaims>,
    token: &str,
) {
    let svc = layer.layer(noop());
    group.bench_function("layer", |b| {
        b.iter_batched(
            || request(token),
            |req| {
                let res = rt.block_on(svc.clone().oneshot(req)).unwrap();
                assert!(res.status().is_success());
                res
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

fn bench_hs256(c: &mut Criterion) {
    let token = token();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("validate/hs256");

    // The baseline: what a hand-rolled check with jsonwebtoken costs.
    let key = DecodingKey::from_secret(SECRET).unwrap();
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&["todo-server"]);
    validation.set_audience(&["todo-api"]);
    validation.validate_nbf = true;
    validation.leeway = 30;
    group.bench_function("jsonwebtoken", |b| {
        b.iter(|| decode::<StandardClaims>(black_box(&token), &key, &validation).unwrap())
    });

    // The layer: extraction, validation, claims and scopes injected, the inner call.
    let layer = JwtAuthLayer::<StandardClaims>::hs256(SECRET)
        .unwrap()
        .issuer("todo-server")
        .audience("todo-api");
    bench_layer(&mut group, &rt, &layer, &token);

    // The floor: the same request through the no-op service without authentication.
    let bare = noop();
    group.bench_function("no_auth", |b| {
        b.iter_batched(
            || request(&token),
            |req| rt.block_on(bare.clone().oneshot(req)).unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// EdDSA with a `kid` picked from a two-key set: the header is read before `decode`, as for
/// any identity provider's tokens.
fn bench_eddsa_kid(c: &mut Criterion) {
    let fixture = |name: &str| {
        std::fs::read(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let signer = EncodingKey::from_ed_pem(&fixture("ed25519.pem")).unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("ed-1".into());
    let claims = serde_json::json!({
        "sub": "alice", "iss": "todo-server", "aud": "todo-api",
        "exp": get_current_timestamp() + 3600, "scope": "todos:read",
    });
    let token = encode(&header, &claims, &signer).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("validate/eddsa_kid");

    let key = DecodingKey::from_ed_pem(&fixture("ed25519.pub.pem")).unwrap();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&["todo-server"]);
    validation.set_audience(&["todo-api"]);
    group.bench_function("jsonwebtoken", |b| {
        b.iter(|| decode::<StandardClaims>(black_box(&token), &key, &validation).unwrap())
    });

    let keys = tower_jwt_auth::KeySet::new([
        VerificationKey::from_pem(Algorithm::EdDSA, &fixture("ed25519.pub.pem"))
            .unwrap()
            .with_kid("ed-1"),
        VerificationKey::from_pem(Algorithm::RS256, &fixture("rsa.pub.pem"))
            .unwrap()
            .with_kid("rsa-1"),
    ])
    .unwrap();
    let layer = JwtAuthLayer::<StandardClaims>::from_keys(keys)
        .issuer("todo-server")
        .audience("todo-api");
    bench_layer(&mut group, &rt, &layer, &token);
    group.finish();
}

criterion_group!(benches, bench_hs256, bench_eddsa_kid);
criterion_main!(benches);
