//! What the revocation check adds to a request, measured A/B: the same HS256 request through
//! `JwtAuthLayer` without revocations (A) and with a set of 100k revoked `jti`s and 10k
//! revoked subjects that does not hold the token (B), alternating batches of 2,000 requests
//! for 400 rounds so that both see the same machine. Criterion's separate runs of `layer`
//! and `layer_revoked_check` (benches/validate.rs) differ by more than the check costs on a
//! shared machine; alternating cancels most of that. Prints the median and the 10th
//! percentile of the per-request time of each, and their differences, for the uncached
//! layer and the cached one.
//!
//! `cargo bench --bench revocation_ab`

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use std::{
    convert::Infallible,
    future::Future,
    pin::pin,
    task::{Context, Poll, Waker},
    time::Instant,
};
use tower::{Layer, Service, service_fn};
use tower_jwt_auth::{JwtAuthLayer, StandardClaims, VerificationKey};

#[path = "support/revocations.rs"]
mod support;
use support::revocations;
const SECRET: &[u8] = b"bench-secret-bench-secret-bench-secret!!";
fn call<S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>, B>(
    svc: &mut S,
    token: &str,
) {
    let req = Request::builder()
        .uri("/x")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(svc.call(req)).poll(&mut cx) {
        Poll::Ready(Ok(r)) => assert!(r.status().is_success()),
        _ => panic!(),
    }
}
fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let now = get_current_timestamp();
    let claims = serde_json::json!({"sub":"alice","iss":"todo-server","aud":"todo-api","iat":now,"exp":now+3600,"jti":"0123456789abcdef"});
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap();
    let key = VerificationKey::hmac(Algorithm::HS256, SECRET).unwrap();
    let plain = JwtAuthLayer::<StandardClaims>::builder()
        .key_source(key)
        .issuer("todo-server")
        .audience("todo-api");
    let r = revocations();
    for cached in [false, true] {
        let (pa, pb) = if cached {
            (
                plain.clone().cache(1000).build().unwrap(),
                plain
                    .clone()
                    .cache(1000)
                    .revocations(r.clone())
                    .build()
                    .unwrap(),
            )
        } else {
            (
                plain.clone().build().unwrap(),
                plain.clone().revocations(r.clone()).build().unwrap(),
            )
        };
        let noop = || {
            service_fn(|_r: Request<Full<Bytes>>| async {
                Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
            })
        };
        let (mut a, mut b) = (pa.layer(noop()), pb.layer(noop()));
        let n = 2000;
        let (mut ta, mut tb) = (Vec::new(), Vec::new());
        for round in 0..400 {
            let first_a = round % 2 == 0;
            for pass in 0..2 {
                let t = Instant::now();
                if (pass == 0) == first_a {
                    for _ in 0..n {
                        call(&mut a, &token)
                    }
                    ta.push(t.elapsed().as_nanos() as f64 / n as f64)
                } else {
                    for _ in 0..n {
                        call(&mut b, &token)
                    }
                    tb.push(t.elapsed().as_nanos() as f64 / n as f64)
                }
            }
        }
        ta.sort_by(|x, y| x.partial_cmp(y).unwrap());
        tb.sort_by(|x, y| x.partial_cmp(y).unwrap());
        let med = |v: &Vec<f64>| v[v.len() / 2];
        let p10 = |v: &Vec<f64>| v[v.len() / 10];
        println!(
            "cached={cached} layer median {:.0} ns (p10 {:.0}); with 100k revocations median {:.0} ns (p10 {:.0}); diff median {:+.0} ns, p10 {:+.0} ns",
            med(&ta),
            p10(&ta),
            med(&tb),
            p10(&tb),
            med(&tb) - med(&ta),
            p10(&tb) - p10(&ta)
        );
    }
}
