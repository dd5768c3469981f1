//! Token validation on the request path, for HS256, RS256, ES256 and EdDSA:
//!
//! - `validate/<alg>/jsonwebtoken`: the raw `jsonwebtoken::decode` into `StandardClaims`
//!   with the same settings (issuer, audience, `nbf`, leeway): what a hand-rolled check costs;
//! - `validate/<alg>/no_auth`: the same request through the no-op service alone (the floor);
//! - `validate/<alg>/layer`: through `JwtAuthLayer` (extract, verify, check, decode, inject);
//! - `validate/<alg>/layer_cached`: the same with the validated-token cache, token seen before;
//! - `validate/hs256/layer_revoked_check` and `validate/hs256/layer_cached_revoked_check`:
//!   `layer` and `layer_cached` with a revocation set holding 100k revoked `jti`s and 10k
//!   revoked subjects (the token is in neither): what the revocation check adds;
//!   `revocations/is_revoked_100k/{miss,hit}`, the public check alone on that set, which
//!   reads the clock as the layer does once per request anyway: `revocations/clock` is that
//!   read alone, so `miss - clock` is what the layer pays for a token that is not revoked;
//! - `validate/opaque/layer_cached`: an opaque token whose introspection (RFC 7662, against
//!   a loopback endpoint, made once before measuring) is in the layer's results cache, and
//!   `validate/opaque/jwt_layer_cached`, an HS256 JWT in the token cache, in the same group:
//!   what a cached introspected token costs against a cached JWT;
//! - `validate/<alg>/reject_bad_signature`, `validate/<alg>/reject_missing`: the 401 paths;
//! - `metrics/hs256/{layer,layer_recorded,layer_cached,layer_cached_recorded}/{1..4}`: the
//!   layer without a metrics recorder and with a Prometheus one, in four interleaved rounds
//!   (the machine's noise between rounds is as large as the difference; compare the
//!   medians): what recording costs (the feature is on in both: without a recorder it is
//!   the no-op);
//! - `contention/hs256/{1,2}` and `contention/hs256_cached/{1,2}`: one layer shared by one
//!   and two threads, in requests per second (two threads should reach about twice one);
//!   `contention/jsonwebtoken/{1,2}`, the raw decode on as many threads, is the machine's
//!   own scaling to compare with.
//!
//! `cargo bench --bench validate`; compare IDs of one run, the machine being shared. Requests
//! are polled directly with a no-op waker (every future here is ready at once), so no async
//! runtime's cost is mixed into the figures.

use std::{
    convert::Infallible,
    future::Future,
    hint::black_box,
    pin::pin,
    sync::Barrier,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{BenchmarkGroup, Criterion, Throughput, measurement::WallTime};
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode, get_current_timestamp,
};
use tower::{Layer, Service, service_fn};
use tower_jwt_auth::{JwtAuthLayer, JwtAuthLayerBuilder, StandardClaims, VerificationKey};

#[path = "support/revocations.rs"]
mod support;
use support::revocations;

const SECRET: &[u8] = b"bench-secret-bench-secret-bench-secret!!";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// One algorithm's keys: what signs, what `jsonwebtoken` verifies with, what the layer has.
struct Keys {
    name: &'static str,
    alg: Algorithm,
    signer: EncodingKey,
    decoding: DecodingKey,
    verification: VerificationKey,
    /// A key of the same algorithm that did not sign the bench token.
    other_signer: EncodingKey,
}

fn keys() -> Vec<Keys> {
    let pem = |alg, private: &str, public: &str, other: &str| {
        let signer = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&fixture(private)),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&fixture(private)),
            _ => EncodingKey::from_ed_pem(&fixture(private)),
        }
        .unwrap();
        let other_signer = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&fixture(other)),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&fixture(other)),
            _ => EncodingKey::from_ed_pem(&fixture(other)),
        }
        .unwrap();
        let decoding = match alg {
            Algorithm::RS256 => DecodingKey::from_rsa_pem(&fixture(public)),
            Algorithm::ES256 => DecodingKey::from_ec_pem(&fixture(public)),
            _ => DecodingKey::from_ed_pem(&fixture(public)),
        }
        .unwrap();
        let verification = VerificationKey::from_pem(alg, &fixture(public)).unwrap();
        (signer, decoding, verification, other_signer)
    };
    let mut all = vec![Keys {
        name: "hs256",
        alg: Algorithm::HS256,
        signer: EncodingKey::from_secret(SECRET).unwrap(),
        decoding: DecodingKey::from_secret(SECRET).unwrap(),
        verification: VerificationKey::hmac(Algorithm::HS256, SECRET).unwrap(),
        other_signer: EncodingKey::from_secret(&[b'x'; 40]).unwrap(),
    }];
    for (name, alg, private, public, other) in [
        (
            "rs256",
            Algorithm::RS256,
            "rsa.pem",
            "rsa.pub.pem",
            "rsa2.pem",
        ),
        (
            "es256",
            Algorithm::ES256,
            "ec-256.pem",
            "ec-256.pub.pem",
            "ec-256-b.pem",
        ),
        (
            "eddsa",
            Algorithm::EdDSA,
            "ed25519.pem",
            "ed25519.pub.pem",
            "ed25519-b.pem",
        ),
    ] {
        let (signer, decoding, verification, other_signer) = pem(alg, private, public, other);
        all.push(Keys {
            name,
            alg,
            signer,
            decoding,
            verification,
            other_signer,
        });
    }
    all
}

/// A token like the example server's: registered claims, scopes and a `jti`.
fn token(alg: Algorithm, key: &EncodingKey) -> String {
    let now = get_current_timestamp();
    let claims = serde_json::json!({
        "sub": "alice", "iss": "todo-server", "aud": "todo-api",
        "iat": now, "exp": now + 3600,
        "scope": "todos:read todos:write", "jti": "0123456789abcdef",
    });
    encode(&Header::new(alg), &claims, key).unwrap()
}

fn request(token: Option<&str>) -> Request<Full<Bytes>> {
    let mut req = Request::builder().uri("/secure-todos");
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    req.body(Full::default()).unwrap()
}

fn noop()
-> impl Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone
{
    service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::default()))
    })
}

fn layer(key: &VerificationKey) -> JwtAuthLayerBuilder<StandardClaims> {
    JwtAuthLayer::builder()
        .key(key.clone())
        .issuer("todo-server")
        .audience("todo-api")
}

/// Calls `svc` once and returns the status; every future here completes on its first poll.
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

/// `name`: requests with `token` through `svc`, each answered `expected`.
fn bench_requests<S, B>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    mut svc: S,
    token: Option<&str>,
    expected: StatusCode,
) where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
{
    assert_eq!(status(&mut svc, request(token)), expected, "{name}");
    // The request is built inside the measured loop, so `no_auth` carries that cost too
    // and `layer - no_auth` is what authentication adds.
    group.bench_function(name, |b| b.iter(|| status(&mut svc, request(token))));
}

fn bench_validate(c: &mut Criterion) {
    for keys in keys() {
        let good = token(keys.alg, &keys.signer);
        let forged = token(keys.alg, &keys.other_signer);
        let mut group = c.benchmark_group(format!("validate/{}", keys.name));

        let mut validation = Validation::new(keys.alg);
        validation.set_issuer(&["todo-server"]);
        validation.set_audience(&["todo-api"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        group.bench_function("jsonwebtoken", |b| {
            b.iter(|| {
                decode::<StandardClaims>(black_box(&good), &keys.decoding, &validation).unwrap()
            })
        });

        let ok = StatusCode::OK;
        let unauthorized = StatusCode::UNAUTHORIZED;
        bench_requests(&mut group, "no_auth", noop(), Some(&good), ok);
        let plain = layer(&keys.verification);
        let built = plain.clone().build().unwrap();
        bench_requests(&mut group, "layer", built.layer(noop()), Some(&good), ok);
        let cached = plain.clone().cache(10_000).build().unwrap();
        bench_requests(
            &mut group,
            "layer_cached",
            cached.layer(noop()),
            Some(&good),
            ok,
        );
        if keys.alg == Algorithm::HS256 {
            let revoked = revocations();
            let checked = plain.clone().revocations(revoked.clone()).build().unwrap();
            bench_requests(
                &mut group,
                "layer_revoked_check",
                checked.layer(noop()),
                Some(&good),
                ok,
            );
            let checked = plain
                .clone()
                .cache(10_000)
                .revocations(revoked)
                .build()
                .unwrap();
            bench_requests(
                &mut group,
                "layer_cached_revoked_check",
                checked.layer(noop()),
                Some(&good),
                ok,
            );
        }
        let svc = built.layer(noop());
        bench_requests(
            &mut group,
            "reject_bad_signature",
            svc,
            Some(&forged),
            unauthorized,
        );
        bench_requests(
            &mut group,
            "reject_missing",
            built.layer(noop()),
            None,
            unauthorized,
        );
        group.finish();
    }
}

fn bench_revocations(c: &mut Criterion) {
    let revoked = revocations();
    let now = Some(get_current_timestamp());
    let hit = format!("{:032x}", 7u128.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut group = c.benchmark_group("revocations");
    group.bench_function("clock", |b| b.iter(get_current_timestamp));
    group.bench_function("is_revoked_100k/miss", |b| {
        b.iter(|| {
            revoked.is_revoked(
                "todo-server",
                black_box(Some("0123456789abcdef")),
                Some("alice"),
                now,
            )
        })
    });
    assert!(revoked.is_revoked("todo-server", Some(&hit), None, now));
    group.bench_function("is_revoked_100k/hit", |b| {
        b.iter(|| revoked.is_revoked("todo-server", black_box(Some(&hit)), Some("alice"), now))
    });
    group.finish();
}

/// One layer shared by `threads` threads, each sending its own valid HS256 token (as
/// different clients do); reported as requests per second so that 1 and 2 threads compare
/// directly. `contention/jsonwebtoken` runs the raw decode the same way: how far two
/// threads scale on this machine when nothing at all is shared.
fn bench_contention(c: &mut Criterion) {
    let hs256 = keys().remove(0);
    let tokens: Vec<String> = (0..2).map(|_| token(hs256.alg, &hs256.signer)).collect();
    let plain = layer(&hs256.verification);
    let mut validation = Validation::new(hs256.alg);
    validation.set_issuer(&["todo-server"]);
    validation.set_audience(&["todo-api"]);
    let decode_once = |token: &str| {
        black_box(decode::<StandardClaims>(token, &hs256.decoding, &validation).unwrap());
    };
    let mut group = c.benchmark_group("contention/jsonwebtoken");
    for threads in [1, 2] {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function(threads.to_string(), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &tokens, |_| (), |_, t| decode_once(t))
            })
        });
    }
    group.finish();
    for (name, layer) in [
        ("hs256", plain.clone().build().unwrap()),
        ("hs256_cached", plain.cache(10_000).build().unwrap()),
    ] {
        let mut group = c.benchmark_group(format!("contention/{name}"));
        for threads in [1, 2] {
            group.throughput(Throughput::Elements(threads as u64));
            group.bench_function(threads.to_string(), |b| {
                b.iter_custom(|iters| {
                    run_threads(
                        threads,
                        iters,
                        &tokens,
                        |_| layer.layer(noop()),
                        |svc, token| {
                            black_box(status(svc, request(Some(token))));
                        },
                    )
                })
            });
        }
        group.finish();
    }
}

/// `iters` requests (each built in the loop, as `no_auth` shows what that costs) on each of
/// `threads` threads at once, thread `i` sending `tokens[i]`; the wall time of the slowest.
fn run_threads<S>(
    threads: usize,
    iters: u64,
    tokens: &[String],
    setup: impl Fn(usize) -> S + Sync,
    one: impl Fn(&mut S, &str) + Sync,
) -> Duration {
    let start = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|i| {
                let (start, setup, one) = (&start, &setup, &one);
                let token = tokens[i].as_str();
                scope.spawn(move || {
                    let mut state = setup(i);
                    start.wait();
                    let begin = Instant::now();
                    for _ in 0..iters {
                        one(&mut state, token);
                    }
                    begin.elapsed()
                })
            })
            .collect();
        start.wait();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .max()
            .unwrap()
    })
}

/// A loopback introspection endpoint that says every token is active, on `runtime`.
fn introspection_endpoint(runtime: &tokio::runtime::Runtime) -> String {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/introspect", listener.local_addr().unwrap());
    runtime.spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let svc = hyper::service::service_fn(|_req| async {
                let now = get_current_timestamp();
                let answer = serde_json::json!({
                    "active": true, "sub": "alice", "aud": "todo-api",
                    "scope": "todos:read todos:write", "iat": now, "exp": now + 3600,
                });
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(answer.to_string()))))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc),
            );
        }
    });
    url
}

fn bench_opaque(c: &mut Criterion) {
    use tower::ServiceExt as _;
    use tower_jwt_auth::introspect::Introspection;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let endpoint = introspection_endpoint(&runtime);
    let key = VerificationKey::hmac(Algorithm::HS256, SECRET).unwrap();
    let opaque = Introspection::builder("todo-server", &endpoint)
        .build()
        .unwrap();
    let layer = layer(&key)
        .cache(10_000)
        .introspection(opaque.clone())
        .build()
        .unwrap();
    let token = "2YotnFZFEjr1zMsPHEZBF1fYvN3H6S8JpWxN";
    // The one introspection, before measuring.
    let first = runtime.block_on(layer.layer(noop()).oneshot(request(Some(token))));
    assert_eq!(first.unwrap().status(), StatusCode::OK);
    let _guard = runtime.enter();
    let mut group = c.benchmark_group("validate/opaque");
    let ok = StatusCode::OK;
    bench_requests(
        &mut group,
        "layer_cached",
        layer.layer(noop()),
        Some(token),
        ok,
    );
    let jwt = token_for_bench();
    bench_requests(
        &mut group,
        "jwt_layer_cached",
        layer.layer(noop()),
        Some(&jwt),
        ok,
    );
    group.finish();
    assert_eq!(
        opaque.introspections(),
        1,
        "the measured requests were all cache hits"
    );
}

/// The cost of the `metrics` feature's recording: HS256 layers built without a recorder
/// (the facade's no-op) and with a Prometheus recorder (`metrics-exporter-prometheus`,
/// in effect while the layer is built: its handles record there), in four interleaved rounds.
fn bench_metrics(c: &mut Criterion) {
    let key = VerificationKey::hmac(Algorithm::HS256, SECRET).unwrap();
    let good = token_for_bench();
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let ok = StatusCode::OK;
    let mut group = c.benchmark_group("metrics/hs256");
    let plain = layer(&key).build().unwrap();
    let cached = layer(&key).cache(10_000).build().unwrap();
    let (metered, metered_cached) = metrics::with_local_recorder(&recorder, || {
        let metered = layer(&key).build().unwrap();
        (metered, layer(&key).cache(10_000).build().unwrap())
    });
    for round in 1..=4 {
        let svc = plain.layer(noop());
        bench_requests(&mut group, &format!("layer/{round}"), svc, Some(&good), ok);
        let svc = metered.layer(noop());
        let name = format!("layer_recorded/{round}");
        bench_requests(&mut group, &name, svc, Some(&good), ok);
        let svc = cached.layer(noop());
        let name = format!("layer_cached/{round}");
        bench_requests(&mut group, &name, svc, Some(&good), ok);
        let svc = metered_cached.layer(noop());
        let name = format!("layer_cached_recorded/{round}");
        bench_requests(&mut group, &name, svc, Some(&good), ok);
    }
    group.finish();
    // What the recorder holds: the requests were counted there.
    let scrape = recorder.handle().render();
    assert!(
        scrape.contains("tower_jwt_auth_requests_total{outcome=\"accepted\",reason=\"valid\"}"),
        "{scrape}"
    );
}

fn token_for_bench() -> String {
    token(Algorithm::HS256, &EncodingKey::from_secret(SECRET).unwrap())
}

criterion::criterion_group!(
    benches,
    bench_validate,
    bench_opaque,
    bench_metrics,
    bench_revocations,
    bench_contention
);
criterion::criterion_main!(benches);
