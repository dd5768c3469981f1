//! `JwksSource` against a JWKS provider started inside the test on loopback (hyper): rotation,
//! unknown-kid floods, provider outages and slowness, OIDC discovery, several issuers.

#![cfg(feature = "jwks")]

mod common;

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower_jwt_auth::{
    JwtAuthLayer, StandardClaims, TrustedIssuer, VerificationKey, jwks::JwksSource,
};

/// What the provider serves, changeable while it runs.
struct ProviderState {
    keys: Vec<Value>,
    up: bool,
    delay: Duration,
    max_age: Option<u64>,
    discovery_issuer: String,
    /// The `jwks_uri` the discovery document names, when not this provider's own.
    jwks_uri: Option<String>,
    jwks_hits: usize,
}

#[derive(Clone)]
struct Provider {
    url: String,
    state: Arc<Mutex<ProviderState>>,
}

impl Provider {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(ProviderState {
            keys: Vec::new(),
            up: true,
            delay: Duration::ZERO,
            max_age: None,
            discovery_issuer: url.clone(),
            jwks_uri: None,
            jwks_hits: 0,
        }));
        let provider = Self {
            url: url.clone(),
            state: state.clone(),
        };
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let state = state.clone();
                let url = url.clone();
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let state = state.clone();
                    let url = url.clone();
                    async move { Ok::<_, Infallible>(serve(&state, &url, req.uri().path()).await) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc),
                );
            }
        });
        provider
    }

    fn with<T>(&self, f: impl FnOnce(&mut ProviderState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    fn jwks_url(&self) -> String {
        format!("{}/jwks.json", self.url)
    }
}

async fn serve(state: &Mutex<ProviderState>, url: &str, path: &str) -> Response<Full<Bytes>> {
    let (up, delay) = {
        let mut s = state.lock().unwrap();
        if path == "/jwks.json" {
            s.jwks_hits += 1;
        }
        (s.up, s.delay)
    };
    tokio::time::sleep(delay).await;
    if !up {
        return Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .body(Full::default())
            .unwrap();
    }
    let s = state.lock().unwrap();
    let (body, max_age) = match path {
        "/jwks.json" => (json!({ "keys": s.keys }), s.max_age),
        "/.well-known/openid-configuration" => (
            json!({
                "issuer": s.discovery_issuer,
                "jwks_uri": s.jwks_uri.clone().unwrap_or_else(|| format!("{url}/jwks.json")),
            }),
            None,
        ),
        _ => {
            return Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Full::default())
                .unwrap();
        }
    };
    let mut res = Response::builder().header(header::CONTENT_TYPE, "application/json");
    if let Some(max_age) = max_age {
        res = res.header(header::CACHE_CONTROL, format!("public, max-age={max_age}"));
    }
    res.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

/// An Ed25519 signing key with its public JWK under `kid`.
struct Signer {
    key: EncodingKey,
    jwk: Value,
    kid: String,
}

fn signer(pem: &str, kid: &str) -> Signer {
    // The test signs with jsonwebtoken directly, before any key of this crate selects a
    // crypto provider; with both backends compiled (`--all-features`) one must be chosen.
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    let key = EncodingKey::from_ed_pem(&fixture(pem)).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA).unwrap();
    jwk.common.key_id = Some(kid.into());
    Signer {
        key,
        jwk: serde_json::to_value(jwk).unwrap(),
        kid: kid.into(),
    }
}

impl Signer {
    fn token(&self, iss: &str) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let claims = claims_with(|c| {
            c.insert("iss".into(), json!(iss));
        });
        mint_with(&header, &claims, &self.key)
    }
}

fn source(url: &str) -> tower_jwt_auth::jwks::JwksBuilder {
    JwksSource::builder(url)
        .timeout(Duration::from_millis(500))
        .cooldown(Duration::from_millis(300))
}

async fn send(layer: &JwtAuthLayer<StandardClaims>, token: &str) -> Reply {
    through(layer, token).await.0
}

async fn status(layer: &JwtAuthLayer<StandardClaims>, token: &str) -> StatusCode {
    send(layer, token).await.status
}

#[tokio::test]
async fn rotation_to_a_new_kid_is_picked_up_on_first_sight() {
    let provider = Provider::start().await;
    let k1 = signer("ed25519.pem", "k1");
    let k2 = signer("ed25519-b.pem", "k2");
    provider.with(|s| s.keys = vec![k1.jwk.clone()]);
    let jwks = source(&provider.jwks_url()).build().unwrap();
    assert!(jwks.ready().await);
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .key_source(jwks.clone())
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    assert_eq!(status(&layer, &k1.token(ISSUER)).await, StatusCode::OK);

    // The provider rotates; the first k2 token waits for one refresh and passes.
    tokio::time::sleep(Duration::from_millis(350)).await; // past the cooldown of the first fetch
    provider.with(|s| s.keys = vec![k1.jwk.clone(), k2.jwk.clone()]);
    let before = provider.with(|s| s.jwks_hits);
    assert_eq!(status(&layer, &k2.token(ISSUER)).await, StatusCode::OK);
    assert_eq!(provider.with(|s| s.jwks_hits), before + 1);
    assert_eq!(jwks.kids(), ["k1", "k2"]);
    // Known kids cost no fetch.
    assert_eq!(status(&layer, &k1.token(ISSUER)).await, StatusCode::OK);
    assert_eq!(provider.with(|s| s.jwks_hits), before + 1);
}

/// With the token cache on: a refresh that serves the same key keeps its tokens cached (the
/// claims stay shared), one that drops the key ends them.
#[cfg(feature = "cache")]
#[tokio::test]
async fn a_jwks_refresh_keeps_cached_tokens_of_unchanged_keys_and_ends_dropped_ones() {
    let provider = Provider::start().await;
    let k1 = signer("ed25519.pem", "k1");
    let k2 = signer("ed25519-b.pem", "k2");
    provider.with(|s| s.keys = vec![k1.jwk.clone()]);
    let jwks = source(&provider.jwks_url()).build().unwrap();
    assert!(jwks.ready().await);
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .key_source(jwks.clone())
        .audience(AUDIENCE)
        .issuer(ISSUER)
        .cache(100)
        .build()
        .unwrap();
    let rec = Recorder::default();
    let send = |token: String| {
        let svc = tower::Layer::layer(&layer, rec.service());
        async move {
            read(
                tower::ServiceExt::oneshot(svc, get(Some(&token)))
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let t1 = k1.token(ISSUER);
    assert_eq!(send(t1.clone()).await.status, StatusCode::OK);

    // A refresh (for k2's first token) that still serves k1 unchanged.
    tokio::time::sleep(Duration::from_millis(350)).await;
    provider.with(|s| s.keys = vec![k1.jwk.clone(), k2.jwk.clone()]);
    assert_eq!(send(k2.token(ISSUER)).await.status, StatusCode::OK);
    assert_eq!(send(t1.clone()).await.status, StatusCode::OK);
    {
        let seen = rec.0.lock().unwrap();
        let first = seen[0].shared.as_ref().unwrap();
        let again = seen[2].shared.as_ref().unwrap();
        assert!(Arc::ptr_eq(&first.0, &again.0), "still the cached claims");
    }

    // A refresh that drops k1: its cached token is refused.
    tokio::time::sleep(Duration::from_millis(350)).await;
    provider.with(|s| s.keys = vec![k2.jwk.clone()]);
    let k3 = signer("ed25519.pem", "k3"); // an unknown kid triggers the refresh
    assert_eq!(
        send(k3.token(ISSUER)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(jwks.kids(), ["k2"]);
    let res = send(t1).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.json()["error_description"],
        "the token's key id is not known"
    );
    assert_eq!(rec.calls(), 3);
}

#[tokio::test]
async fn unknown_kid_flood_causes_at_most_one_fetch_per_cooldown() {
    let provider = Provider::start().await;
    let k1 = signer("ed25519.pem", "k1");
    provider.with(|s| s.keys = vec![k1.jwk.clone()]);
    let jwks = JwksSource::builder(&provider.jwks_url())
        .cooldown(Duration::from_secs(60))
        .build()
        .unwrap();
    assert!(jwks.ready().await);
    let hits_before = provider.with(|s| s.jwks_hits);
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .key_source(jwks.clone())
        .audience(AUDIENCE)
        .build()
        .unwrap();

    // 200 concurrent requests, each with a random kid, arriving after the cooldown started.
    let attacker = signer("ed25519-b.pem", "x");
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let layer = layer.clone();
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some(format!("random-{i}"));
            let token = mint_with(&header, &good_claims(), &attacker.key);
            tokio::spawn(async move { send(&layer, &token).await })
        })
        .collect();
    for task in tasks {
        let res = task.await.unwrap();
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            res.json()["error_description"],
            "the token's key id is not known"
        );
    }
    assert_eq!(
        provider.with(|s| s.jwks_hits),
        hits_before,
        "the cooldown of the first fetch holds"
    );
    assert_eq!(status(&layer, &k1.token(ISSUER)).await, StatusCode::OK);
}

#[tokio::test]
async fn unknown_kid_flood_after_cooldown_coalesces_into_one_fetch() {
    let provider = Provider::start().await;
    let k1 = signer("ed25519.pem", "k1");
    provider.with(|s| {
        s.keys = vec![k1.jwk.clone()];
    });
    let jwks = source(&provider.jwks_url()).build().unwrap();
    assert!(jwks.ready().await);
    tokio::time::sleep(Duration::from_millis(350)).await;
    // A slow provider keeps the one refresh in flight while the flood arrives.
    provider.with(|s| s.delay = Duration::from_millis(200));
    let hits_before = provider.with(|s| s.jwks_hits);
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .key_source(jwks.clone())
        .audience(AUDIENCE)
        .build()
        .unwrap();
    let attacker = signer("ed25519-b.pem", "x");
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let layer = layer.clone();
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some(format!("random-{i}"));
            let token = mint_with(&header, &good_claims(), &attacker.key);
            tokio::spawn(async move { status(&layer, &token).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        provider.with(|s| s.jwks_hits),
        hits_before + 1,
        "one coalesced fetch for 100 unknown kids"
    );
}

#[tokio::test]
async fn provider_down_after_start_keeps_serving_cached_keys() {
    let provider = Provider::start().await;
    let k1 = signer("ed25519.pem", "k1");
    provider.with(|s| {
        s.keys = vec![k1.jwk.clone()];
        s.max_age = Some(1);
    });
    let jwks = source(&provider.jwks_url())
        .ttl_bounds(Duration::from_secs(1), Duration::from_secs(1))
        .build()
        .unwrap();
    assert!(jwks.ready().await);
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .key_source(jwks.clone())
        .audience(AUDIENCE)
        .build()
        .unwrap();
    provider.with(|s| s.up = false);
    let before = provider.with(|s| s.jwks_hits);
    // Past the TTL: the background refresher tries, fails, and the cached key still serves.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(
        provider.with(|s| s.jwks_hits) > before,
        "the background refresher kept trying"
    );
    assert_eq!(status(&layer, &k1.token(ISSUER)).await, StatusCode::OK);
}

#[tokio::test]
async fn keys_staler_than_allowed_answer_503_until_the_provider_is_back() {
    let provider = Provider::start().await;
    let k1 = signer("ed25519.pem", "k1");
    provider.with(|s| s.keys = vec![k1.jwk.clone()]);
    let jwks = source(&provider.jwks_url())
        .ttl_bounds(Duration::from_secs(1), Duration::from_secs(1))
        .max_stale(Duration::from_millis(500))
        .build()
        .unwrap();
    assert!(jwks.ready().await);
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .key_source(jwks)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    provider.with(|s| s.up = false);
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let res = send(&layer, &k1.token(ISSUER)).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        res.challenge.is_none(),
        "a 503 does not challenge the client's credentials"
    );
    assert_eq!(res.json()["error"], "temporarily_unavailable");
    provider.with(|s| s.up = true);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(status(&layer, &k1.token(ISSUER)).await, StatusCode::OK);
}

#[tokio::test]
async fn provider_down_at_start_then_up() {
    let provider = Provider::start().await;
    let k1 = signer("ed25519.pem", "k1");
    provider.with(|s| {
        s.keys = vec![k1.jwk.clone()];
        s.up = false;
    });
    // The service starts anyway.
    let jwks = source(&provider.jwks_url()).build().unwrap();
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .key_source(jwks.clone())
        .audience(AUDIENCE)
        .build()
        .unwrap();
    let res = send(&layer, &k1.token(ISSUER)).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.retry_after.clone(), Some("5".into()));
    // A readiness probe says so, and why.
    let readiness = layer.readiness();
    assert!(!readiness.is_ready(), "{readiness}");
    let body: Value = serde_json::from_str(&readiness.to_json()).unwrap();
    assert_eq!(body["ready"], false);
    assert_eq!(body["checks"][0]["part"], "keys");
    assert_eq!(body["checks"][0]["ready"], false);
    assert!(body["checks"][0]["detail"].is_string(), "{body}");
    provider.with(|s| s.up = true);
    // The next request after the cooldown fetches and passes.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(status(&layer, &k1.token(ISSUER)).await, StatusCode::OK);
    let readiness = layer.readiness();
    assert!(readiness.is_ready(), "{readiness}");
    assert_eq!(
        readiness.to_json(),
        r#"{"ready":true,"checks":[{"part":"keys","ready":true}]}"#
    );
}

#[tokio::test]
async fn readiness_names_the_issuer_whose_keys_are_missing() {
    let up = Provider::start().await;
    let down = Provider::start().await;
    let k1 = signer("ed25519.pem", "k1");
    up.with(|s| s.keys = vec![k1.jwk.clone()]);
    down.with(|s| s.up = false);
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .trusting([
            TrustedIssuer::new(
                "https://up.example",
                source(&up.jwks_url()).build().unwrap(),
            )
            .any_audience(),
            TrustedIssuer::new(
                "https://down.example",
                source(&down.jwks_url()).build().unwrap(),
            )
            .any_audience(),
        ])
        .build()
        .unwrap();
    // The background fetch of each source runs at start.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !layer.readiness().checks()[0].ready && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let readiness = layer.readiness();
    let checks = readiness.checks();
    assert_eq!(checks.len(), 2);
    assert_eq!(checks[0].issuer.as_deref(), Some("https://up.example"));
    assert!(checks[0].ready);
    assert_eq!(checks[1].issuer.as_deref(), Some("https://down.example"));
    assert!(!checks[1].ready);
    assert!(!readiness.is_ready());
    assert!(
        readiness
            .to_string()
            .contains("keys of https://down.example"),
        "{readiness}"
    );
}

#[tokio::test]
async fn slow_provider_hits_the_timeout() {
    let provider = Provider::start().await;
    let k1 = signer("ed25519.pem", "k1");
    provider.with(|s| {
        s.keys = vec![k1.jwk.clone()];
        s.delay = Duration::from_secs(30);
    });
    let jwks = JwksSource::builder(&provider.jwks_url())
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .key_source(jwks)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    // The request is answered (503) well before the provider would have answered.
    let res = tokio::time::timeout(Duration::from_secs(5), send(&layer, &k1.token(ISSUER)))
        .await
        .expect("no hang");
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn discovery_finds_the_jwks_and_refuses_a_mismatched_issuer() {
    let provider = Provider::start().await;
    let k1 = signer("ed25519.pem", "k1");
    provider.with(|s| s.keys = vec![k1.jwk.clone()]);
    let jwks = JwksSource::discover(&provider.url)
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    assert!(jwks.ready().await);
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .key_source(jwks)
        .audience(AUDIENCE)
        .issuer(provider.url.clone())
        .build()
        .unwrap();
    assert_eq!(
        status(&layer, &k1.token(&provider.url)).await,
        StatusCode::OK
    );

    // A discovery document that names another issuer is refused: no keys, ever.
    let evil = Provider::start().await;
    evil.with(|s| {
        s.keys = vec![k1.jwk.clone()];
        s.discovery_issuer = "https://impostor.example".into();
    });
    let jwks = JwksSource::discover(&evil.url)
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    assert!(!jwks.ready().await);
    assert_eq!(
        evil.with(|s| s.jwks_hits),
        0,
        "the JWKS of a mismatched issuer is never fetched"
    );
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .key_source(jwks)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    assert_eq!(
        status(&layer, &k1.token(&evil.url)).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn hmac_keys_in_a_jwks_are_not_trusted_by_default() {
    let provider = Provider::start().await;
    let secret = [5u8; 32];
    provider.with(|s| {
        s.keys = vec![json!({"kty": "oct", "kid": "h", "alg": "HS256", "k": base64_url(&secret)})]
    });
    let jwks = source(&provider.jwks_url()).build().unwrap();
    assert!(jwks.ready().await);
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .key_source(jwks)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("h".into());
    let token = mint_with(
        &header,
        &good_claims(),
        &EncodingKey::from_secret(&secret).unwrap(),
    );
    let res = send(&layer, &token).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.json()["error_description"],
        "the token's signing algorithm is not accepted"
    );
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn several_issuers_each_with_their_own_keys() {
    let provider = Provider::start().await;
    let idp = signer("ed25519.pem", "idp-1");
    provider.with(|s| s.keys = vec![idp.jwk.clone()]);
    let jwks = source(&provider.jwks_url()).build().unwrap();
    assert!(jwks.ready().await);
    let local = VerificationKey::hmac(Algorithm::HS256, SECRET).unwrap();
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .trusting([
            TrustedIssuer::new(ISSUER, local).audience(AUDIENCE),
            TrustedIssuer::new(provider.url.clone(), jwks).audience(AUDIENCE),
        ])
        .build()
        .unwrap();

    assert_eq!(
        status(&layer, &mint(&good_claims())).await,
        StatusCode::OK,
        "our own HS256 token"
    );
    assert_eq!(
        status(&layer, &idp.token(&provider.url)).await,
        StatusCode::OK,
        "the provider's EdDSA token"
    );
    // The provider's key cannot vouch for our issuer, nor our secret for the provider.
    assert_eq!(
        status(&layer, &idp.token(ISSUER)).await,
        StatusCode::UNAUTHORIZED
    );
    let forged = mint(&claims_with(|c| {
        c.insert("iss".into(), json!(provider.url));
    }));
    assert_eq!(status(&layer, &forged).await, StatusCode::UNAUTHORIZED);
    // An issuer nobody trusts is refused before any key is looked at.
    let res = send(&layer, &idp.token("https://elsewhere.example")).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.json()["error_description"],
        "the token's issuer is not accepted"
    );
}

#[tokio::test]
async fn a_custom_client_replaces_the_built_in_one() {
    // Any tower service works as the client: here one that answers from memory, as a
    // proxy-aware or custom-CA client would answer from the network.
    let k1 = signer("ed25519.pem", "k1");
    let body = Bytes::from(json!({ "keys": [k1.jwk] }).to_string());
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let client = tower::service_fn(move |req: Request<http_body_util::Empty<Bytes>>| {
        log.lock().unwrap().push(req.uri().to_string());
        let body = body.clone();
        async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
    });
    let jwks = JwksSource::builder("https://idp.invalid/keys")
        .client(client)
        .build()
        .unwrap();
    assert!(jwks.ready().await);
    assert_eq!(*seen.lock().unwrap(), ["https://idp.invalid/keys"]);
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .key_source(jwks)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    assert_eq!(status(&layer, &k1.token(ISSUER)).await, StatusCode::OK);
}

#[test]
fn building_outside_a_runtime_is_an_error_not_a_panic() {
    let err = JwksSource::builder("http://127.0.0.1:1/jwks.json")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("Tokio runtime"), "{err}");
    assert!(JwksSource::builder("not a url").build().is_err());
}

/// Security review, finding 4: keys over plain HTTP can be swapped by anyone on the path. A
/// non-loopback `http://` URL is refused when the source is built, and a discovery document
/// that points at one gets no fetch at all.
#[tokio::test]
async fn plain_http_key_urls_are_refused_unless_loopback() {
    for builder in [
        JwksSource::builder("http://idp.example.com/jwks.json"),
        JwksSource::discover("http://idp.example.com/realms/acme"),
    ] {
        let err = builder.build().unwrap_err();
        assert!(
            matches!(err, tower_jwt_auth::ConfigError::InsecureUrl(_)),
            "{err}"
        );
        assert!(err.to_string().contains("allow_http"), "{err}");
    }

    let provider = Provider::start().await;
    provider.with(|s| s.jwks_uri = Some("http://keys.example.com/jwks.json".into()));
    let jwks = JwksSource::discover(&provider.url)
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    assert!(!jwks.ready().await, "no keys from a plain-HTTP jwks_uri");
    assert_eq!(provider.with(|s| s.jwks_hits), 0);
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .key_source(jwks)
        .issuer(provider.url.clone())
        .audience(AUDIENCE)
        .build()
        .unwrap();
    let k1 = signer("ed25519.pem", "k1");
    assert_eq!(
        status(&layer, &k1.token(&provider.url)).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}
