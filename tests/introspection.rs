//! Opaque tokens through introspection (RFC 7662), against a scripted authorization server on
//! loopback whose answers, delays and outages each test sets: every check of an answer, the
//! cache (bound, TTL, keyed by hash), the single flight, outages and the breaker. What the
//! client sees (status, challenge, body) and what reached the inner service are asserted.
//! `tests/introspection_interop.rs` runs the same layer against node's `oidc-provider`.
#![cfg(feature = "jwks")]

mod common;

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};
use tower_jwt_auth::{
    AuthError, ConfigError, JwtAuthLayer, JwtAuthLayerBuilder, RequireScope, SenderConstraint,
    StandardClaims, introspect::Introspection,
};

const OPAQUE: &str = "2YotnFZFEjr1zMsPHEZBF1fYvN3H6S8JpWxN";

/// What the scripted server answers, changeable while it runs.
struct Script {
    /// The answer per token; other tokens are `{"active": false}`.
    answers: HashMap<String, Value>,
    status: StatusCode,
    /// A body sent as is instead of the answer.
    raw: Option<&'static str>,
    delay: Duration,
    /// Every request's form and `Authorization` header.
    seen: Vec<(HashMap<String, String>, Option<String>)>,
}

#[derive(Clone)]
struct Server {
    url: String,
    script: Arc<Mutex<Script>>,
}

impl Server {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let script = Arc::new(Mutex::new(Script {
            answers: HashMap::new(),
            status: StatusCode::OK,
            raw: None,
            delay: Duration::ZERO,
            seen: Vec::new(),
        }));
        let state = script.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let state = state.clone();
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(answer(&state, req).await) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc),
                );
            }
        });
        Self { url, script }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Script) -> T) -> T {
        f(&mut self.script.lock().unwrap())
    }

    fn answer(&self, token: &str, answer: Value) {
        self.with(|s| s.answers.insert(token.to_owned(), answer));
    }

    fn calls(&self) -> usize {
        self.with(|s| s.seen.len())
    }

    fn endpoint(&self) -> String {
        format!("{}/introspect", self.url)
    }
}

async fn answer(
    script: &Mutex<Script>,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap();
    let (status, body, delay) = {
        let mut s = script.lock().unwrap();
        let token = form.get("token").cloned().unwrap_or_default();
        s.seen.push((form, auth));
        let body = match s.raw {
            Some(raw) => raw.to_owned(),
            None => s
                .answers
                .get(&token)
                .cloned()
                .unwrap_or(json!({"active": false}))
                .to_string(),
        };
        (s.status, body, s.delay)
    };
    tokio::time::sleep(delay).await;
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    res
}

/// An active answer for alice, with `f` applied.
fn active(f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut answer = json!({
        "active": true,
        "sub": "alice",
        "client_id": "todo-web",
        "scope": "todos:read todos:write",
        "aud": AUDIENCE,
        "iat": now(),
        "exp": now() + 300,
    });
    f(answer.as_object_mut().unwrap());
    answer
}

fn introspection(server: &Server) -> tower_jwt_auth::introspect::IntrospectionBuilder {
    Introspection::builder(ISSUER, &server.endpoint()).client_secret_basic("todo api", "s3cr:t&")
}

fn layer_with(introspection: Introspection) -> JwtAuthLayerBuilder<StandardClaims> {
    JwtAuthLayer::builder()
        .hs256(SECRET)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .introspection(introspection)
}

/// What one request saw: the reply, and the claims and binding the inner service got.
async fn send(
    layer: &JwtAuthLayer<StandardClaims>,
    scheme: &str,
    token: &str,
) -> (Reply, Option<Seen>, Option<SenderConstraint>) {
    let rec = Recorder::default();
    let binding = Arc::new(Mutex::new(None));
    let seen_binding = binding.clone();
    let inner = rec.service();
    let inner = tower::service_fn(move |req: Request<Full<Bytes>>| {
        *seen_binding.lock().unwrap() = req.extensions().get::<SenderConstraint>().cloned();
        inner.clone().oneshot(req)
    });
    let req = Request::builder()
        .uri("/secure-todos")
        .header(header::AUTHORIZATION, format!("{scheme} {token}"))
        .body(Full::default())
        .unwrap();
    let res = layer.layer(inner).oneshot(req).await.unwrap();
    let reply = read(res).await;
    let seen = (rec.calls() > 0).then(|| rec.last());
    let binding = binding.lock().unwrap().take();
    (reply, seen, binding)
}

async fn bearer(layer: &JwtAuthLayer<StandardClaims>, token: &str) -> (Reply, Option<Seen>) {
    let (reply, seen, _) = send(layer, "Bearer", token).await;
    (reply, seen)
}

#[tokio::test]
async fn an_active_opaque_token_fills_the_claims_and_scopes_like_a_jwt() {
    let server = Server::start().await;
    server.answer(OPAQUE, active(|_| {}));
    let layer = layer_with(introspection(&server).build().unwrap())
        .build()
        .unwrap();
    let (reply, seen) = bearer(&layer, OPAQUE).await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = seen.expect("the inner service was reached");
    let claims = seen.claims.unwrap();
    // The answer had no `iss`: the issuer's identifier is filled in.
    assert_eq!(claims.principal(), Some((ISSUER, "alice")));
    assert_eq!(claims.extra["client_id"], "todo-web");
    assert_eq!(seen.scopes.unwrap(), ["todos:read", "todos:write"]);

    // RFC 7662 section 2.1: a form POST with the token and a hint, and HTTP Basic with each
    // part form-urlencoded first (RFC 6749 section 2.3.1).
    let (form, auth) = server.with(|s| s.seen[0].clone());
    assert_eq!(form["token"], OPAQUE);
    assert_eq!(form["token_type_hint"], "access_token");
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("todo+api:s3cr%3At%26");
    assert_eq!(auth.as_deref(), Some(format!("Basic {basic}").as_str()));

    // JWTs still go to the keys, never to the endpoint.
    let (reply, _) = bearer(&layer, &mint(&good_claims())).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(server.calls(), 1);
}

#[tokio::test]
async fn a_client_credentials_token_without_sub_is_the_client() {
    let server = Server::start().await;
    server.answer(
        OPAQUE,
        active(|a| {
            a.remove("sub");
            a.insert("iss".into(), json!(ISSUER));
        }),
    );
    let layer = layer_with(introspection(&server).build().unwrap())
        .require_claim("sub")
        .build()
        .unwrap();
    let (reply, seen) = bearer(&layer, OPAQUE).await;
    assert_eq!(reply.status, StatusCode::OK);
    let claims = seen.unwrap().claims.unwrap();
    assert_eq!(claims.principal(), Some((ISSUER, "todo-web")));
}

/// Each answer is refused with the same error a JWT with those claims would get, and
/// nothing reaches the inner service.
#[tokio::test]
async fn every_check_of_an_answer_refuses_what_it_should() {
    let server = Server::start().await;
    let cases: Vec<(&str, Value, AuthError)> = vec![
        (
            "inactive",
            json!({"active": false, "sub": "alice"}),
            AuthError::Inactive,
        ),
        (
            "active-as-string",
            active(|a| {
                a.insert("active".into(), json!("true"));
            }),
            AuthError::Inactive,
        ),
        (
            "no-active",
            active(|a| {
                a.remove("active");
            }),
            AuthError::Inactive,
        ),
        (
            "expired",
            active(|a| {
                a.insert("exp".into(), json!(now() - 3600));
            }),
            AuthError::Expired,
        ),
        (
            "not-yet",
            active(|a| {
                a.insert("nbf".into(), json!(now() + 3600));
            }),
            AuthError::NotYetValid,
        ),
        (
            "other-issuer",
            active(|a| {
                a.insert("iss".into(), json!("https://evil.example"));
            }),
            AuthError::InvalidIssuer,
        ),
        (
            "other-audience",
            active(|a| {
                a.insert("aud".into(), json!(["someone-else"]));
            }),
            AuthError::InvalidAudience,
        ),
        (
            "exp-not-a-number",
            active(|a| {
                a.insert("exp".into(), json!("soon"));
            }),
            AuthError::InvalidClaims,
        ),
        (
            "dpop-without-key",
            active(|a| {
                a.insert("token_type".into(), json!("DPoP"));
            }),
            AuthError::Binding("the token is of type DPoP but names no key (`cnf.jkt`)"),
        ),
        (
            "bound-to-a-key",
            active(|a| {
                a.insert(
                    "cnf".into(),
                    json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
                );
            }),
            AuthError::Binding(
                "the token is bound to a DPoP key: send it with the DPoP scheme and a proof",
            ),
        ),
    ];
    for (token, answer, _) in &cases {
        server.answer(token, answer.clone());
    }
    let layer = layer_with(introspection(&server).build().unwrap())
        .build()
        .unwrap();
    for (token, _, error) in &cases {
        let (reply, seen) = bearer(&layer, token).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{token}");
        assert!(seen.is_none(), "{token} reached the inner service");
        let body = reply.json();
        assert_eq!(body["error"], "invalid_token", "{token}");
        assert_eq!(
            body["error_description"],
            error.description().as_ref(),
            "{token}"
        );
        let challenge = reply.challenge.unwrap();
        assert!(
            challenge.starts_with("Bearer realm=\"api\", error=\"invalid_token\""),
            "{challenge}"
        );
    }
    // An answer without `aud` or `exp` is fine: both are optional in RFC 7662.
    server.answer("minimal", json!({"active": true, "sub": "bob"}));
    let (reply, seen) = bearer(&layer, "minimal").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(seen.unwrap().claims.unwrap().sub.as_deref(), Some("bob"));
}

#[tokio::test]
async fn results_are_cached_within_their_bound_and_inactive_ones_briefly() {
    let server = Server::start().await;
    server.answer(OPAQUE, active(|_| {}));
    let opaque = introspection(&server)
        .cache_ttl(Duration::from_secs(1))
        .inactive_ttl(Duration::from_secs(1))
        .build()
        .unwrap();
    // Built under a recorder of its own: the cache's hit and miss handles record there.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let layer =
        metrics::with_local_recorder(&recorder, || layer_with(opaque.clone()).build().unwrap());
    for _ in 0..1000 {
        assert_eq!(bearer(&layer, OPAQUE).await.0.status, StatusCode::OK);
    }
    assert_eq!(server.calls(), 1, "1000 requests with one token");
    assert_eq!(opaque.introspections(), 1);
    let scrape = recorder.handle().render();
    let count = |result: &str| {
        let series = format!("tower_jwt_auth_introspection_cache_total{{result=\"{result}\"}} ");
        let line = scrape.lines().find_map(|l| l.strip_prefix(series.as_str()));
        line.unwrap_or_else(|| panic!("no {result} in {scrape}"))
            .parse::<u64>()
            .unwrap()
    };
    let (hits, misses) = (count("hit"), count("miss"));
    assert!(
        hits >= 999 && misses >= 1 && hits + misses <= 1001,
        "{hits} hits, {misses} misses"
    );

    // Revoked at the provider: refused once the bound has passed.
    server.answer(OPAQUE, json!({"active": false}));
    assert_eq!(bearer(&layer, OPAQUE).await.0.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (reply, _) = bearer(&layer, OPAQUE).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(server.calls(), 2);
    // The inactive result is remembered for a while too.
    for _ in 0..100 {
        assert_eq!(
            bearer(&layer, OPAQUE).await.0.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(server.calls(), 2);

    // An active result is never kept past the token's own `exp`.
    let server = Server::start().await;
    server.answer(
        OPAQUE,
        active(|a| {
            a.insert("exp".into(), json!(now() + 1));
        }),
    );
    let layer = layer_with(introspection(&server).build().unwrap())
        .leeway(Duration::ZERO)
        .build()
        .unwrap();
    assert_eq!(bearer(&layer, OPAQUE).await.0.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (reply, _) = bearer(&layer, OPAQUE).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.json()["error_description"], "the token has expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_new_token_make_one_introspection() {
    let server = Server::start().await;
    server.with(|s| s.delay = Duration::from_millis(300));
    let mut tokens: Vec<String> = (0..50).map(|i| format!("token-{i}")).collect();
    for token in &tokens {
        server.answer(token, active(|_| {}));
    }
    let layer = layer_with(introspection(&server).build().unwrap())
        .build()
        .unwrap();
    // 1000 requests: 50 new tokens at once, 20 requests each.
    tokens = tokens.iter().cycle().take(1000).cloned().collect();
    let requests = tokens.iter().map(|token| {
        let layer = layer.clone();
        let token = token.clone();
        tokio::spawn(async move { bearer(&layer, &token).await.0.status })
    });
    for request in requests.collect::<Vec<_>>() {
        assert_eq!(request.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(server.calls(), 50, "one introspection per new token");
}

#[tokio::test]
async fn an_unreachable_or_failing_server_is_503_never_401_and_the_breaker_stops_asking() {
    // Answers that are not an introspection response.
    for (status, raw) in [
        (StatusCode::INTERNAL_SERVER_ERROR, Some("{}")),
        (
            StatusCode::UNAUTHORIZED,
            Some(r#"{"error":"invalid_client"}"#),
        ),
        (StatusCode::OK, Some("<html>maintenance</html>")),
        (StatusCode::OK, Some("[true]")),
        (StatusCode::OK, Some("")),
    ] {
        let server = Server::start().await;
        server.answer(OPAQUE, active(|_| {}));
        server.with(|s| {
            s.status = status;
            s.raw = raw;
        });
        let layer = layer_with(introspection(&server).build().unwrap())
            .build()
            .unwrap();
        let (reply, seen) = bearer(&layer, OPAQUE).await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{status} {raw:?}"
        );
        assert_eq!(reply.retry_after.as_deref(), Some("5"));
        assert_eq!(reply.json()["error"], "temporarily_unavailable");
        assert!(seen.is_none());
        // JWTs are still served.
        assert_eq!(
            bearer(&layer, &mint(&good_claims())).await.0.status,
            StatusCode::OK
        );
    }

    // Slower than the timeout.
    let server = Server::start().await;
    server.answer(OPAQUE, active(|_| {}));
    server.with(|s| s.delay = Duration::from_secs(3));
    let opaque = introspection(&server)
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let layer = layer_with(opaque).build().unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        bearer(&layer, OPAQUE).await.0.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // Nobody listening; after three failures the breaker opens and nothing is sent.
    let server = Server::start().await;
    server.answer(OPAQUE, active(|_| {}));
    server.with(|s| s.status = StatusCode::BAD_GATEWAY);
    let opaque = introspection(&server)
        .breaker(3, Duration::from_secs(1))
        .build()
        .unwrap();
    let layer = layer_with(opaque.clone()).build().unwrap();
    assert!(layer.readiness().is_ready(), "{}", layer.readiness());
    for i in 0..3 {
        assert_eq!(
            bearer(&layer, &format!("t{i}")).await.0.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    assert_eq!(server.calls(), 3);
    // The open breaker is what readiness reports, naming the introspected issuer.
    let readiness = layer.readiness();
    let failing: Vec<_> = readiness.failing().collect();
    assert_eq!(failing.len(), 1, "{readiness}");
    assert_eq!(failing[0].part, "introspection");
    assert_eq!(failing[0].issuer.as_deref(), Some(ISSUER));
    for i in 0..100 {
        assert_eq!(
            bearer(&layer, &format!("u{i}")).await.0.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    assert_eq!(server.calls(), 3, "the breaker is open: no request");
    // Back up: after the pause, one request is tried and the token is served.
    server.with(|s| s.status = StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(bearer(&layer, OPAQUE).await.0.status, StatusCode::OK);
    assert_eq!(opaque.introspections(), 4);
    assert!(layer.readiness().is_ready(), "{}", layer.readiness());

    let refused = Introspection::builder(ISSUER, "http://127.0.0.1:1/introspect")
        .build()
        .unwrap();
    let layer = layer_with(refused).build().unwrap();
    assert_eq!(
        bearer(&layer, OPAQUE).await.0.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn discovery_finds_the_endpoint_and_refuses_a_document_for_another_issuer() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // A provider whose discovery document points to the scripted endpoint.
    let server = Server::start().await;
    server.answer(OPAQUE, active(|_| {}));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let claimed = Arc::new(Mutex::new(issuer.clone()));
    let fetches = Arc::new(AtomicUsize::new(0));
    {
        let (claimed, fetches, endpoint) = (claimed.clone(), fetches.clone(), server.endpoint());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (claimed, fetches, endpoint) =
                    (claimed.clone(), fetches.clone(), endpoint.clone());
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    assert_eq!(req.uri().path(), "/.well-known/openid-configuration");
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let doc = json!({
                        "issuer": *claimed.lock().unwrap(),
                        "introspection_endpoint": endpoint,
                    });
                    async move {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(doc.to_string()))))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc),
                );
            }
        });
    }
    let layer = |issuer: &str| {
        JwtAuthLayer::<StandardClaims>::builder()
            .hs256(SECRET)
            .issuer(issuer)
            .audience(AUDIENCE)
            .introspection(Introspection::discover(issuer).build().unwrap())
            .build()
            .unwrap()
    };
    let good = layer(&issuer);
    let (reply, seen) = bearer(&good, OPAQUE).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        seen.unwrap().claims.unwrap().iss.as_deref(),
        Some(issuer.as_str())
    );
    assert_eq!(
        bearer(&good, "another").await.0.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "the endpoint is found once"
    );

    // Mix-up: the document names another issuer; no token is ever sent.
    *claimed.lock().unwrap() = "https://evil.example".into();
    let calls = server.calls();
    let mixed = layer(&issuer);
    assert_eq!(
        bearer(&mixed, OPAQUE).await.0.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        server.calls(),
        calls,
        "a token went to an endpoint of another issuer"
    );
}

#[cfg(feature = "revocation")]
#[tokio::test]
async fn revocations_and_scopes_apply_to_introspected_tokens() {
    let server = Server::start().await;
    server.answer(
        OPAQUE,
        active(|a| {
            a.insert("jti".into(), json!("t-1"));
        }),
    );
    server.answer(
        "reader",
        active(|a| {
            a.insert("scope".into(), json!("todos:read"));
        }),
    );
    let revocations = tower_jwt_auth::Revocations::builder().in_memory();
    let layer = layer_with(introspection(&server).build().unwrap())
        .revocations(revocations.clone())
        .build()
        .unwrap();
    assert_eq!(bearer(&layer, OPAQUE).await.0.status, StatusCode::OK);
    revocations.revoke_token(ISSUER, "t-1", now() + 300);
    let (reply, _) = bearer(&layer, OPAQUE).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.json()["error_description"],
        "the token has been revoked"
    );

    let rec = Recorder::default();
    let service = layer.layer(RequireScope::all(["todos:write"]).layer(rec.service()));
    let req = Request::builder()
        .header(header::AUTHORIZATION, "Bearer reader")
        .body(Full::<Bytes>::default())
        .unwrap();
    let res = read(service.oneshot(req).await.unwrap()).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(res.challenge.unwrap().contains("scope=\"todos:write\""));
    assert_eq!(rec.calls(), 0);
}

#[tokio::test]
async fn a_certificate_bound_answer_needs_its_certificate() {
    let server = Server::start().await;
    server.answer(
        OPAQUE,
        active(|a| {
            a.insert(
                "cnf".into(),
                json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}),
            );
        }),
    );
    let layer = layer_with(introspection(&server).build().unwrap())
        .build()
        .unwrap();
    let (reply, seen) = bearer(&layer, OPAQUE).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(seen.is_none());
}

#[test]
fn mistakes_are_reported_by_build_and_debug_hides_the_secret() {
    let build = |b: tower_jwt_auth::introspect::IntrospectionBuilder| b.build().map(|_| ());
    let base = || Introspection::builder(ISSUER, "https://login.example.com/introspect");
    assert!(matches!(
        build(Introspection::builder(
            ISSUER,
            "http://login.example.com/introspect"
        )),
        Err(ConfigError::InsecureUrl(_))
    ));
    assert!(
        build(Introspection::builder(ISSUER, "http://login.example.com/introspect").allow_http())
            .is_ok()
    );
    assert!(matches!(
        build(Introspection::builder(ISSUER, "not a url")),
        Err(ConfigError::InvalidValue(_))
    ));
    assert!(matches!(
        build(Introspection::discover("http://login.example.com")),
        Err(ConfigError::InsecureUrl(_))
    ));
    for bad in [
        base().cache_ttl(Duration::ZERO),
        base().cache_ttl(Duration::from_secs(7200)),
        base()
            .cache_ttl(Duration::from_secs(10))
            .inactive_ttl(Duration::from_secs(11)),
        base().capacity(0),
        base().max_in_flight(0),
        base().timeout(Duration::ZERO),
        base().breaker(0, Duration::from_secs(1)),
    ] {
        assert!(matches!(build(bad), Err(ConfigError::OutOfRange(_))));
    }
    let opaque = base()
        .client_secret_basic("todo-api", "very-secret-value")
        .build()
        .unwrap();
    let debug = format!(
        "{opaque:?} {:?}",
        base().client_secret_basic("todo-api", "very-secret-value")
    );
    assert!(!debug.contains("very-secret-value"), "{debug}");
    assert!(debug.contains("todo-api"), "{debug}");
}

#[cfg(feature = "redis")]
#[path = "support/redis_server.rs"]
mod redis_server;

/// Two instances sharing a real `redis-server`: one introspection serves both, an inactive
/// answer too; with Redis down each instance asks the authorization server itself.
#[cfg(feature = "redis")]
#[tokio::test]
async fn instances_sharing_redis_make_one_introspection_and_go_on_without_it() {
    let Some(mut redis) = redis_server::RedisServer::start_in_memory(
        "instances_sharing_redis_make_one_introspection_and_go_on_without_it",
    ) else {
        return;
    };
    let server = Server::start().await;
    server.answer(OPAQUE, active(|_| {}));
    let client = redis::Client::open(redis.url()).unwrap();
    let instance = || {
        let opaque = introspection(&server)
            .redis(client.clone())
            .redis_key_prefix("test:introspection");
        layer_with(opaque.build().unwrap()).build().unwrap()
    };
    let (a, b) = (instance(), instance());
    let (reply, seen) = bearer(&a, OPAQUE).await;
    assert_eq!(reply.status, StatusCode::OK);
    let (reply, seen_b) = bearer(&b, OPAQUE).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(server.calls(), 1, "B used A's result");
    // B checked the shared answer itself: the same claims.
    assert_eq!(seen.unwrap().claims, seen_b.unwrap().claims);
    assert_eq!(
        bearer(&a, "never-issued").await.0.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        bearer(&b, "never-issued").await.0.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(server.calls(), 2, "the inactive answer is shared too");
    // The keys name the hash, never the token.
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2);
    assert!(
        keys.iter()
            .all(|k| k.starts_with("test:introspection:") && !k.contains(OPAQUE))
    );

    redis.kill();
    server.answer("second", active(|_| {}));
    assert_eq!(bearer(&a, "second").await.0.status, StatusCode::OK);
    assert_eq!(bearer(&b, "second").await.0.status, StatusCode::OK);
    assert_eq!(server.calls(), 4, "without Redis each instance introspects");
}
