//! Helpers shared by the integration tests: minting tokens and a recording inner service.
#![allow(dead_code)]

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use serde_json::{Value, json};
use tower_jwt_auth::{Claims, Scopes, StandardClaims};

pub const SECRET: &[u8] = b"test-secret-test-secret-test-secret!";
pub const ISSUER: &str = "todo-server";
pub const AUDIENCE: &str = "todo-api";

pub fn now() -> u64 {
    get_current_timestamp()
}

/// Claims a well-behaved issuer would produce, valid for five minutes.
pub fn good_claims() -> Value {
    json!({
        "sub": "alice",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now(),
        "exp": now() + 300,
        "scope": "todos:read todos:write",
    })
}

/// Signs `claims` with HS256 and the test secret.
pub fn mint(claims: &Value) -> String {
    mint_with(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET).unwrap(),
    )
}

pub fn mint_with(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    encode(header, claims, key).unwrap()
}

/// `good_claims` with `f` applied.
pub fn claims_with(f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut claims = good_claims();
    f(claims.as_object_mut().unwrap());
    claims
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// What the inner service saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub claims: Option<StandardClaims>,
    /// The injected extension itself, to tell shared claims from copies.
    pub shared: Option<Claims<StandardClaims>>,
    pub scopes: Option<Vec<String>>,
}

/// An inner service that records what reached it and answers `200` with the subject.
#[derive(Clone, Default)]
pub struct Recorder(pub Arc<Mutex<Vec<Seen>>>);

impl Recorder {
    pub fn service<B>(
        &self,
    ) -> impl tower::Service<
        Request<B>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future: Send,
    > + Clone
    + Send
    + use<B> {
        let seen = self.0.clone();
        tower::service_fn(move |req: Request<B>| {
            let shared = req.extensions().get::<Claims<StandardClaims>>().cloned();
            let claims: Option<StandardClaims> = shared.as_deref().cloned();
            let scopes = req
                .extensions()
                .get::<Scopes>()
                .map(|s| s.iter().map(String::from).collect());
            let sub = claims
                .as_ref()
                .and_then(|c: &StandardClaims| c.sub.clone())
                .unwrap_or_default();
            seen.lock().unwrap().push(Seen {
                claims,
                shared,
                scopes,
            });
            async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(sub)))) }
        })
    }

    pub fn calls(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub fn last(&self) -> Seen {
        self.0
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the inner service was called")
    }
}

pub fn get(token: Option<&str>) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().uri("/secure-todos");
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    builder.body(Full::default()).unwrap()
}

/// A response reduced to what a client sees.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub challenge: Option<String>,
    pub content_type: Option<String>,
    pub retry_after: Option<String>,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

pub async fn read<B>(res: Response<B>) -> Reply
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = res.into_parts();
    let text = |name| {
        parts
            .headers
            .get(name)
            .map(|v: &http::HeaderValue| v.to_str().unwrap().to_owned())
    };
    Reply {
        status: parts.status,
        challenge: text(header::WWW_AUTHENTICATE),
        content_type: text(header::CONTENT_TYPE),
        retry_after: text(header::RETRY_AFTER),
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// Sends `token` through `layer` into a fresh [`Recorder`]: what the client saw, and how many
/// requests reached the inner service.
pub async fn through(
    layer: &tower_jwt_auth::JwtAuthLayer<StandardClaims>,
    token: &str,
) -> (Reply, usize) {
    use tower::{Layer, ServiceExt};
    let rec = Recorder::default();
    let res = layer
        .layer(rec.service())
        .oneshot(get(Some(token)))
        .await
        .unwrap();
    (read(res).await, rec.calls())
}
