//! What DPoP adds to a request (RFC 9449), ES256 and EdDSA proofs:
//!
//! - `validate/dpop_<alg>/layer`: a DPoP request through `JwtAuthLayer` (HS256 access token
//!   bound to the proof key, a fresh proof each time): extraction, the token check, and the
//!   whole proof check (parse, key from `jwk`, signature, `htm`, `htu` normalization, `iat`,
//!   `ath`, thumbprint, replay store);
//! - `validate/dpop_<alg>/raw`: the floor that cannot be avoided, with the same backend:
//!   `jsonwebtoken::decode` of the token plus `jsonwebtoken::decode` of the proof with the key
//!   built from its `jwk`.
//!
//! - `validate/dpop_replay/in_memory_{50,5000}_per_s`: the in-memory replay store's check and
//!   record of one new proof (a fresh `jti` each time, `iat` advancing 1 s per 50 or 5,000
//!   proofs, so generations rotate as they do under that load).
//!
//! `cargo bench --bench dpop`; compare IDs of one run. Each proof is made outside the timed
//! part (`iter_batched`): a proof is good once.

use std::{
    convert::Infallible,
    future::Future,
    pin::pin,
    task::{Context, Poll, Waker},
    time::Duration,
};

use bytes::Bytes;
use criterion::{BatchSize, Criterion};
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode, jwk::Jwk,
};
use tower::{Layer, Service, service_fn};
use tower_jwt_auth::{__bench::ReplayStore, Dpop, JwtAuthLayer, StandardClaims};

#[path = "../tests/support/proof.rs"]
mod proof;

const SECRET: &[u8] = b"bench-secret-bench-secret-bench-secret!!";
const HTU: &str = "https://api.example.com/secure-todos";

fn bench_dpop(c: &mut Criterion) {
    for (name, key) in [
        ("dpop_es256", proof::ProofKey::es256()),
        ("dpop_eddsa", proof::ProofKey::ed25519("EdDSA")),
    ] {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = serde_json::json!({
            "sub": "alice", "iss": "todo-server", "aud": "todo-api", "iat": now,
            "exp": now + 3600, "scope": "todos:read", "cnf": {"jkt": key.jkt},
        });
        let token = encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET).unwrap(),
        )
        .unwrap();
        let fresh = || key.proof_for("GET", HTU, Some(&token), |_, _| {});
        let mut group = c.benchmark_group(format!("validate/{name}"));

        let layer = JwtAuthLayer::<StandardClaims>::builder()
            .hs256(SECRET)
            .issuer("todo-server")
            .audience("todo-api")
            .dpop(Dpop::new("https://api.example.com"))
            .build()
            .unwrap();
        let mut svc = layer.layer(service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
        }));
        let request = |proof: String| {
            Request::builder()
                .uri("/secure-todos")
                .header(header::AUTHORIZATION, format!("DPoP {token}"))
                .header("dpop", proof)
                .body(Full::default())
                .unwrap()
        };
        assert_eq!(status(&mut svc, request(fresh())), StatusCode::OK);
        group.bench_function("layer", |b| {
            b.iter_batched(
                || request(fresh()),
                |req| status(&mut svc, req),
                BatchSize::SmallInput,
            )
        });

        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&["todo-server"]);
        validation.set_audience(&["todo-api"]);
        let hs = DecodingKey::from_secret(SECRET).unwrap();
        let mut proof_validation = Validation::new(if name == "dpop_es256" {
            Algorithm::ES256
        } else {
            Algorithm::EdDSA
        });
        proof_validation.required_spec_claims.clear();
        proof_validation.validate_exp = false;
        proof_validation.validate_aud = false;
        let jwk: Jwk = serde_json::from_value(key.jwk.clone()).unwrap();
        group.bench_function("raw", |b| {
            b.iter_batched(
                fresh,
                |proof| {
                    decode::<StandardClaims>(&token, &hs, &validation).unwrap();
                    let header = jsonwebtoken::decode_header(&proof).unwrap();
                    let jwk = header.jwk.unwrap_or_else(|| jwk.clone());
                    let key = DecodingKey::from_jwk(&jwk).unwrap();
                    decode::<serde_json::Value>(&proof, &key, &proof_validation).unwrap()
                },
                BatchSize::SmallInput,
            )
        });
        group.finish();
    }
}

fn bench_replay(c: &mut Criterion) {
    let jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
    let start = jsonwebtoken::get_current_timestamp();
    let mut group = c.benchmark_group("validate/dpop_replay");
    // 50 proofs a second keep the tables in the CPU's caches; 5,000 a second (what two
    // cores verify at most with ES256) keep 325,000 proofs live, 14 MiB of tables.
    for (name, per_second) in [("in_memory_50_per_s", 50), ("in_memory_5000_per_s", 5_000)] {
        let store = ReplayStore::new(1 << 20, Duration::from_secs(65));
        // A 22-character jti as clients make them, its last 16 characters a counter in
        // hex: the jti is in the cache, as the one of a proof just parsed is.
        let mut jti = *b"AAAAAA0000000000000000";
        let mut n = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                let mixed = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                for (i, digit) in jti[6..].iter_mut().enumerate() {
                    *digit = b"0123456789abcdef"[(mixed >> (60 - 4 * i)) as usize & 15];
                }
                let jti = std::str::from_utf8(&jti).unwrap();
                assert!(store.first_use(jkt, jti, start + n / per_second));
            })
        });
    }
    group.finish();
}

/// Calls `svc` once; every future here completes on its first poll.
fn status<S, B>(svc: &mut S, req: Request<Full<Bytes>>) -> StatusCode
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    match pin!(svc.call(req)).poll(&mut cx) {
        Poll::Ready(Ok(res)) => res.status(),
        _ => unreachable!("the bench services are always ready"),
    }
}

criterion::criterion_group!(benches, bench_dpop, bench_replay);
criterion::criterion_main!(benches);
