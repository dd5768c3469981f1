//! Issuers discovered on demand: a scripted multi-tenant identity provider on loopback
//! serves `/{tenant}/.well-known/openid-configuration` and `/{tenant}/jwks` and counts every
//! fetch. Asserted: tokens of allowed tenants pass after one discovery each; an issuer outside
//! the rule costs no request; a flood of random tenants is bounded in fetches and memory and
//! does not evict a tenant in use; a discovery document naming another issuer is refused.
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
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tower_jwt_auth::{DiscoveredIssuers, JwtAuthLayer, StandardClaims, TokenIssuer};

/// The provider: one signing key per tenant, and the fetches per path.
#[derive(Clone)]
struct Idp {
    url: String,
    tenants: Arc<Mutex<HashMap<String, TokenIssuer>>>,
    fetches: Arc<Mutex<Vec<String>>>,
    /// Tenants whose discovery document names another issuer.
    mixed_up: Arc<Mutex<Vec<String>>>,
}

impl Idp {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let idp = Self {
            url: format!("http://{}", listener.local_addr().unwrap()),
            tenants: Arc::default(),
            fetches: Arc::default(),
            mixed_up: Arc::default(),
        };
        let server = idp.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let idp = server.clone();
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let res = idp.serve(req.uri().path());
                    async move { Ok::<_, Infallible>(res) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc),
                );
            }
        });
        idp
    }

    fn serve(&self, path: &str) -> Response<Full<Bytes>> {
        self.fetches.lock().unwrap().push(path.to_owned());
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        let tenant = parts.next().unwrap_or_default().to_owned();
        let rest = parts.next().unwrap_or_default();
        let issuer = self.issuer(&tenant);
        let body = match rest {
            ".well-known/openid-configuration" => {
                let named = match self.mixed_up.lock().unwrap().contains(&tenant) {
                    true => self.issuer("someone-else"),
                    false => issuer.clone(),
                };
                json!({"issuer": named, "jwks_uri": format!("{issuer}/jwks")})
            }
            "jwks" => {
                let tenants = self.tenants.lock().unwrap();
                let keys: Vec<_> = tenants
                    .get(&tenant)
                    .and_then(|t| t.public_jwk())
                    .into_iter()
                    .collect();
                json!({ "keys": keys })
            }
            _ => json!({}),
        };
        Response::new(Full::new(Bytes::from(body.to_string())))
    }

    fn issuer(&self, tenant: &str) -> String {
        format!("{}/{tenant}", self.url)
    }

    /// A tenant with its own key; a token it issued.
    fn token(&self, tenant: &str) -> String {
        let mut tenants = self.tenants.lock().unwrap();
        let issuer = tenants.entry(tenant.to_owned()).or_insert_with(|| {
            let pem = fixture(if tenant.len().is_multiple_of(2) {
                "ed25519.pem"
            } else {
                "ec-256.pem"
            });
            TokenIssuer::builder()
                .issuer(self.issuer(tenant))
                .audience(AUDIENCE)
                .private_key_pem(pem)
                .build()
                .unwrap()
        });
        issuer.issue("alice", "todos:read").unwrap().access_token
    }

    fn fetches(&self) -> usize {
        self.fetches.lock().unwrap().len()
    }

    fn fetches_of(&self, tenant: &str) -> usize {
        let prefix = format!("/{tenant}/");
        self.fetches
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.starts_with(&prefix))
            .count()
    }
}

fn rule(idp: &Idp, allowed: &'static [&'static str]) -> DiscoveredIssuers {
    DiscoveredIssuers::template(&format!("{}/{{tenant}}", idp.url), move |t| {
        allowed.contains(&t)
    })
    .audience(AUDIENCE)
}

#[tokio::test]
async fn tokens_of_allowed_tenants_pass_after_one_discovery_each() {
    let idp = Idp::start().await;
    let issuers = rule(&idp, &["acme", "globex"]);
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .discover_issuers(issuers.clone())
        .build()
        .unwrap();
    for tenant in ["acme", "globex"] {
        for _ in 0..20 {
            let (reply, calls) = through(&layer, &idp.token(tenant)).await;
            assert_eq!(reply.status, StatusCode::OK, "{tenant}: {:?}", reply.body);
            assert_eq!(calls, 1);
        }
        // The discovery document and the JWKS, once.
        assert_eq!(idp.fetches_of(tenant), 2, "{tenant}");
    }
    let mut held = issuers.issuers();
    held.sort();
    assert_eq!(held, [idp.issuer("acme"), idp.issuer("globex")]);

    // A token naming globex, signed with another key, is refused.
    let forged_claims = claims_with(|c| {
        c.insert("iss".into(), json!(idp.issuer("globex")));
    });
    let (reply, calls) = through(&layer, &mint(&forged_claims)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(calls, 0);
}

#[tokio::test]
async fn an_issuer_outside_the_rule_costs_no_request() {
    let idp = Idp::start().await;
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .discover_issuers(rule(&idp, &["acme"]))
        .build()
        .unwrap();
    for tenant in ["globex", "ac", "acme/x", "..", "acme.evil"] {
        let token = idp.token(tenant);
        let (reply, calls) = through(&layer, &token).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{tenant}");
        assert_eq!(
            reply.json()["error_description"],
            "the token's issuer is not accepted"
        );
        assert_eq!(calls, 0);
    }
    assert_eq!(idp.fetches(), 0, "a refused issuer was fetched from");
}

#[tokio::test]
async fn a_flood_of_random_tenants_is_bounded_and_evicts_no_tenant_in_use() {
    let idp = Idp::start().await;
    let issuers = DiscoveredIssuers::matching({
        let prefix = format!("{}/", idp.url);
        move |iss| iss.starts_with(&prefix)
    })
    .audience(AUDIENCE)
    .capacity(8)
    .idle_timeout(Duration::from_secs(3600));
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .discover_issuers(issuers.clone())
        .build()
        .unwrap();
    let (reply, _) = through(&layer, &idp.token("acme")).await;
    assert_eq!(reply.status, StatusCode::OK);
    for i in 0..500 {
        let (reply, calls) = through(&layer, &idp.token(&format!("random-{i}"))).await;
        assert_eq!(calls, usize::from(reply.status == StatusCode::OK));
        if i >= 7 {
            // Every slot is in use: 503, not a fetch.
            assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "random-{i}");
        }
    }
    assert_eq!(issuers.issuers().len(), 8, "memory is bounded");
    // acme plus 7 random tenants, two fetches each.
    assert_eq!(idp.fetches(), 16);
    let (reply, _) = through(&layer, &idp.token("acme")).await;
    assert_eq!(reply.status, StatusCode::OK, "a tenant in use was evicted");

    // Idle slots make room.
    let idp = Idp::start().await;
    let issuers = rule(&idp, &["a1", "a2", "b1"])
        .capacity(2)
        .idle_timeout(Duration::from_millis(300));
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .discover_issuers(issuers.clone())
        .build()
        .unwrap();
    for tenant in ["a1", "a2"] {
        assert_eq!(
            through(&layer, &idp.token(tenant)).await.0.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        through(&layer, &idp.token("b1")).await.0.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        through(&layer, &idp.token("b1")).await.0.status,
        StatusCode::OK
    );
    assert_eq!(issuers.issuers(), [idp.issuer("b1")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_tokens_of_a_tenant_make_one_discovery() {
    let idp = Idp::start().await;
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .discover_issuers(rule(&idp, &["acme"]))
        .build()
        .unwrap();
    let token = idp.token("acme");
    let requests: Vec<_> = (0..50)
        .map(|_| {
            let (layer, token) = (layer.clone(), token.clone());
            tokio::spawn(async move { through(&layer, &token).await.0.status })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(idp.fetches_of("acme"), 2);
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_is_refused() {
    let idp = Idp::start().await;
    idp.mixed_up.lock().unwrap().push("acme".into());
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .discover_issuers(rule(&idp, &["acme"]))
        .build()
        .unwrap();
    let (reply, calls) = through(&layer, &idp.token("acme")).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls, 0);
    assert_eq!(idp.fetches_of("acme"), 1, "its JWKS was fetched after all");
}

#[tokio::test]
async fn fixed_issuers_keep_their_keys_beside_discovered_ones() {
    let idp = Idp::start().await;
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .hs256(SECRET)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .discover_issuers(rule(&idp, &["acme"]))
        .build()
        .unwrap();
    assert_eq!(
        through(&layer, &mint(&good_claims())).await.0.status,
        StatusCode::OK
    );
    assert_eq!(
        through(&layer, &idp.token("acme")).await.0.status,
        StatusCode::OK
    );
    // A JWT naming the fixed issuer is never checked with discovered keys, and the other
    // way round.
    let claims = claims_with(|c| {
        c.insert("iss".into(), json!(idp.issuer("acme")));
    });
    assert_eq!(
        through(&layer, &mint(&claims)).await.0.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(idp.fetches(), 2);
}

#[tokio::test]
async fn the_discovered_issuers_own_settings_apply() {
    let idp = Idp::start().await;
    // TokenIssuer types its tokens `at+jwt`: requiring `JWT` refuses them.
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .discover_issuers(rule(&idp, &["acme"]).typ("JWT"))
        .build()
        .unwrap();
    let (reply, _) = through(&layer, &idp.token("acme")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.json()["error_description"],
        "the token's type is not accepted"
    );
    // Another audience.
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .discover_issuers(
            DiscoveredIssuers::template(&format!("{}/{{tenant}}", idp.url), |_| true)
                .audience("someone-else"),
        )
        .build()
        .unwrap();
    let (reply, _) = through(&layer, &idp.token("acme")).await;
    assert_eq!(
        reply.json()["error_description"],
        "the token is not intended for this audience"
    );
    for bad in [
        rule(&idp, &["acme"]).typ(""),
        rule(&idp, &["acme"]).algorithms([]),
        rule(&idp, &["acme"]).capacity(0),
        DiscoveredIssuers::template("https://login.example.com/v2.0", |_| true),
    ] {
        let built = JwtAuthLayer::<StandardClaims>::builder()
            .discover_issuers(bad)
            .build();
        assert!(built.is_err());
    }
    // The layer's own keys with no issuer named would never be used.
    let built = JwtAuthLayer::<StandardClaims>::builder()
        .hs256(SECRET)
        .discover_issuers(rule(&idp, &["acme"]))
        .build();
    assert!(matches!(
        built,
        Err(tower_jwt_auth::ConfigError::InvalidValue(_))
    ));
}
