//! A JWKS provider on loopback that misbehaves: a body that drips, a body over the cap,
//! invalid JSON, keys of the wrong type or size, a redirect, a storm of 500s, a TLS handshake
//! that fails. Through each, the service stays up and answers correctly: tokens of keys it
//! already has pass, others get `401`, and with no keys at all `503` with `Retry-After`.

#![cfg(feature = "jwks")]

mod common;

use std::{
    convert::Infallible,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower_jwt_auth::{JwtAuthLayer, StandardClaims, jwks::JwksSource};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Good,
    /// Headers at once, then one byte every 100 ms.
    Drip,
    /// 2 MiB of JSON whitespace around the document (the cap is 1 MiB).
    Oversize,
    InvalidJson,
    /// Only keys that cannot verify anything: a P-256 JWK labelled ES384, a 256-bit RSA
    /// modulus, an X448 key.
    WrongKeys,
    /// `302 Found` to the real document.
    Redirect,
    ServerError,
}

struct State {
    mode: Mode,
    keys: Vec<Value>,
    hits: usize,
}

async fn start(keys: Vec<Value>, mode: Mode) -> (String, Arc<Mutex<State>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let state = Arc::new(Mutex::new(State {
        mode,
        keys,
        hits: 0,
    }));
    let shared = state.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let state = shared.clone();
            let svc = hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(&state)) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    (url, state)
}

fn answer(state: &Mutex<State>) -> Response<BoxBody<Bytes, Infallible>> {
    let (mode, document) = {
        let mut s = state.lock().unwrap();
        s.hits += 1;
        (s.mode, json!({ "keys": s.keys }).to_string())
    };
    let json = |body: BoxBody<Bytes, Infallible>| {
        Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .unwrap()
    };
    let full = |s: String| Full::new(Bytes::from(s)).boxed();
    match mode {
        Mode::Good => json(full(document)),
        Mode::Drip => json(
            Drip {
                data: document.into_bytes(),
                sleep: Box::pin(tokio::time::sleep(Duration::from_millis(100))),
            }
            .boxed(),
        ),
        Mode::Oversize => json(full(format!("{}{document}", " ".repeat(2 << 20)))),
        Mode::InvalidJson => json(full(format!("{{\"keys\": [{document}"))),
        Mode::WrongKeys => json(full(json!({ "keys": wrong_keys() }).to_string())),
        Mode::Redirect => Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, "/jwks.json")
            .body(full(String::new()))
            .unwrap(),
        Mode::ServerError => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(full("oops".into()))
            .unwrap(),
    }
}

/// A body that sends one byte per tick.
struct Drip {
    data: Vec<u8>,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Body for Drip {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.data.is_empty() {
            return Poll::Ready(None);
        }
        std::task::ready!(self.sleep.as_mut().poll(cx));
        let next = tokio::time::Instant::now() + Duration::from_millis(100);
        self.sleep.as_mut().reset(next);
        let byte = self.data.remove(0);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![byte])))))
    }
}

fn wrong_keys() -> Vec<Value> {
    let mut mislabelled = Jwk::from_encoding_key(
        &EncodingKey::from_ec_pem(&fixture("ec-256.pem")).unwrap(),
        Algorithm::ES256,
    )
    .unwrap();
    mislabelled.common.key_algorithm = Some(jsonwebtoken::jwk::KeyAlgorithm::ES384);
    mislabelled.common.key_id = Some("mislabelled".into());
    vec![
        serde_json::to_value(mislabelled).unwrap(),
        // A 256-bit modulus: far below what anyone may sign with.
        json!({"kty": "RSA", "kid": "tiny", "alg": "RS256", "e": "AQAB",
               "n": "wH3wGbCRpqyqs5K9H5CUzz0VqpsxTFQ7cW1yZ7qV1Ts"}),
        json!({"kty": "OKP", "kid": "x448", "crv": "X448", "x": "AAAA"}),
    ]
}

/// A symmetric key: parsed, but never trusted from a JWKS unless HMAC is allowed explicitly.
fn hmac_key() -> Value {
    json!({"kty": "oct", "kid": "hmac", "alg": "HS256",
           "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"})
}

/// An Ed25519 key and its JWK under `kid`.
fn signer(pem: &str, kid: &str) -> (EncodingKey, Value) {
    let key = EncodingKey::from_ed_pem(&fixture(pem)).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA).unwrap();
    jwk.common.key_id = Some(kid.into());
    (key, serde_json::to_value(jwk).unwrap())
}

fn token(key: &EncodingKey, alg: Algorithm, kid: &str) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    mint_with(&header, &good_claims(), key)
}

fn layer(source: JwksSource) -> JwtAuthLayer<StandardClaims> {
    JwtAuthLayer::<StandardClaims>::builder()
        .key_source(source)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap()
}

fn source(url: &str) -> JwksSource {
    JwksSource::builder(url)
        .timeout(Duration::from_millis(500))
        .cooldown(Duration::from_millis(200))
        .build()
        .unwrap()
}

/// The provider turns to `mode` after serving good keys: known tokens still pass, a new
/// `kid` is refused within the fetch timeout, nothing crashes.
async fn keys_survive(mode: Mode) {
    let (k1, jwk1) = signer("ed25519.pem", "k1");
    let (k2, jwk2) = signer("ed25519-b.pem", "k2");
    let (url, state) = start(vec![jwk1], Mode::Good).await;
    let jwks = source(&url);
    assert!(jwks.ready().await, "{mode:?}: the first fetch");
    let layer = layer(jwks.clone());
    let good = token(&k1, Algorithm::EdDSA, "k1");
    assert_eq!(through(&layer, &good).await.0.status, StatusCode::OK);

    {
        let mut s = state.lock().unwrap();
        s.mode = mode;
        s.keys.push(jwk2); // what a correct provider would serve now
    }
    tokio::time::sleep(Duration::from_millis(250)).await; // past the cooldown
    let begin = Instant::now();
    let (res, calls) = through(&layer, &token(&k2, Algorithm::EdDSA, "k2")).await;
    assert_eq!(
        (res.status, calls),
        (StatusCode::UNAUTHORIZED, 0),
        "{mode:?}"
    );
    assert_eq!(
        res.json()["error_description"],
        "the token's key id is not known"
    );
    assert!(
        begin.elapsed() < Duration::from_secs(2),
        "{mode:?}: waited {:?}",
        begin.elapsed()
    );
    assert!(
        state.lock().unwrap().hits >= 2,
        "{mode:?}: a refresh was tried"
    );
    // The keys it had keep serving.
    assert_eq!(
        through(&layer, &good).await.0.status,
        StatusCode::OK,
        "{mode:?}"
    );
    assert_eq!(jwks.kids(), ["k1"], "{mode:?}");
}

/// The provider misbehaves from the start: no keys, so tokens get `503` with `Retry-After`.
async fn no_keys_is_503(mode: Mode) {
    let (k1, jwk1) = signer("ed25519.pem", "k1");
    let (url, _state) = start(vec![jwk1], mode).await;
    let jwks = source(&url);
    assert!(!jwks.ready().await, "{mode:?}");
    let res = through(&layer(jwks), &token(&k1, Algorithm::EdDSA, "k1"))
        .await
        .0;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{mode:?}");
    assert!(res.retry_after.is_some(), "{mode:?}");
}

#[tokio::test]
async fn a_dripping_body_times_out() {
    keys_survive(Mode::Drip).await;
    no_keys_is_503(Mode::Drip).await;
}

#[tokio::test]
async fn a_body_over_the_cap_is_refused() {
    keys_survive(Mode::Oversize).await;
    no_keys_is_503(Mode::Oversize).await;
}

#[tokio::test]
async fn invalid_json_keeps_the_cached_keys() {
    keys_survive(Mode::InvalidJson).await;
    no_keys_is_503(Mode::InvalidJson).await;
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    keys_survive(Mode::Redirect).await;
    no_keys_is_503(Mode::Redirect).await;
}

#[tokio::test]
async fn a_storm_of_500s_costs_one_fetch_per_cooldown() {
    keys_survive(Mode::ServerError).await;
    let (k1, jwk1) = signer("ed25519.pem", "k1");
    let (url, state) = start(vec![jwk1], Mode::Good).await;
    let jwks = source(&url);
    assert!(jwks.ready().await);
    state.lock().unwrap().mode = Mode::ServerError;
    let layer = layer(jwks);
    let good = token(&k1, Algorithm::EdDSA, "k1");
    let hits_before = state.lock().unwrap().hits;
    let begin = Instant::now();
    // Two seconds of requests with fresh kids, 50 at a time.
    while begin.elapsed() < Duration::from_secs(2) {
        let batch: Vec<_> = (0..50)
            .map(|i| {
                let layer = layer.clone();
                let token = token(&k1, Algorithm::EdDSA, &format!("new-{i}"));
                tokio::spawn(async move { through(&layer, &token).await.0.status })
            })
            .collect();
        for status in batch {
            assert_eq!(status.await.unwrap(), StatusCode::UNAUTHORIZED);
        }
        assert_eq!(through(&layer, &good).await.0.status, StatusCode::OK);
    }
    let fetches = state.lock().unwrap().hits - hits_before;
    // One per 200 ms cooldown at most (plus the one in flight when the loop ends).
    assert!(fetches <= 12, "{fetches} fetches in 2 s");
}

#[tokio::test]
async fn keys_of_the_wrong_type_or_size_are_skipped() {
    // A refresh that brings only unusable keys keeps the usable ones it had.
    keys_survive(Mode::WrongKeys).await;

    let (k1, jwk1) = signer("ed25519.pem", "k1");
    let mut keys = wrong_keys();
    keys.push(hmac_key());
    keys.push(jwk1);
    let (url, _state) = start(keys, Mode::Good).await;
    let jwks = source(&url);
    assert!(jwks.ready().await);
    assert_eq!(jwks.kids(), ["hmac", "k1"], "the unusable keys are skipped");
    let layer = layer(jwks);
    assert_eq!(
        through(&layer, &token(&k1, Algorithm::EdDSA, "k1"))
            .await
            .0
            .status,
        StatusCode::OK
    );
    // Tokens naming the skipped keys are refused, whatever they are signed with.
    let ec = EncodingKey::from_ec_pem(&fixture("ec-256.pem")).unwrap();
    let hmac = EncodingKey::from_secret(b"secret-secret-secret-secret-secret").unwrap();
    for token in [
        token(&ec, Algorithm::ES256, "mislabelled"),
        token(&hmac, Algorithm::HS256, "hmac"),
        token(&k1, Algorithm::EdDSA, "x448"),
    ] {
        let (res, calls) = through(&layer, &token).await;
        assert_eq!((res.status, calls), (StatusCode::UNAUTHORIZED, 0));
    }
}

/// An `https://` provider that does not speak TLS: the handshake fails, the service stays up.
#[tokio::test]
async fn a_failed_tls_handshake_is_a_failed_fetch() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\n\r\nthis is not TLS")
                .await;
        }
    });
    let jwks = JwksSource::builder(&format!("https://{addr}/jwks.json"))
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    assert!(!jwks.ready().await);
    let (k1, _) = signer("ed25519.pem", "k1");
    let res = through(&layer(jwks), &token(&k1, Algorithm::EdDSA, "k1"))
        .await
        .0;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
}
