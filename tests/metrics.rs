//! What the library records, read back from a real Prometheus scrape
//! (`metrics-exporter-prometheus`, installed once as this process's recorder).
//!
//! Each test reads series that no other test of this binary touches: the counts are the
//! process's.

#![cfg(all(feature = "metrics", feature = "jwks", feature = "password"))]

mod common;

use std::{
    convert::Infallible,
    net::IpAddr,
    sync::{Arc, OnceLock},
    time::Duration,
};

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};
use tower_jwt_auth::{
    JwtAuthLayer, RequireScope, StandardClaims, jwks::JwksSource, password::Passwords,
    throttle::LoginThrottle,
};

fn scrape() -> String {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .install_recorder()
                .expect("the first recorder of this process");
            tower_jwt_auth::metrics::describe();
            handle
        })
        .render()
}

/// The value of the series `name` whose labels include every one of `labels`, if scraped.
fn value(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
        if metric != name {
            return None;
        }
        let all = labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        all.then(|| value.parse().unwrap())
    })
}

fn requests(scrape: &str, outcome: &str, reason: &str) -> f64 {
    let labels = [("outcome", outcome), ("reason", reason)];
    value(scrape, "tower_jwt_auth_requests_total", &labels).unwrap_or(0.0)
}

#[tokio::test]
async fn a_mixed_run_is_counted_by_outcome_and_reason_and_the_scrape_holds_no_token() {
    scrape();
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .hs256(SECRET)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .cache(1000)
        .build()
        .unwrap();
    let good = mint(&good_claims());
    let needs_admin = RequireScope::all(["admin"]);
    let mut tokens_sent = vec![good.clone()];
    let send = async |token: Option<&str>, scoped: bool| {
        let rec = Recorder::default();
        let res = match scoped {
            false => layer.layer(rec.service()).oneshot(get(token)).await,
            true => {
                let svc = needs_admin.layer(rec.service());
                return layer.layer(svc).oneshot(get(token)).await.unwrap().status();
            }
        };
        res.unwrap().status()
    };
    // 32 good ones (1 miss, 31 hits), on this one thread: the duration histogram times at
    // least 2 of them.
    for _ in 0..32 {
        assert_eq!(send(Some(&good), false).await, StatusCode::OK);
    }
    let expired = mint(&claims_with(|c| {
        c.insert("exp".into(), json!(now() - 3600));
    }));
    let stranger = mint(&claims_with(|c| {
        c.insert("iss".into(), json!("https://stranger.example"));
    }));
    let other_secret = EncodingKey::from_secret(b"another-secret-another-secret-32").unwrap();
    let forged = mint_with(
        &Header::new(Algorithm::HS256),
        &good_claims(),
        &other_secret,
    );
    assert_eq!(send(Some(&expired), false).await, StatusCode::UNAUTHORIZED);
    assert_eq!(send(Some(&stranger), false).await, StatusCode::UNAUTHORIZED);
    assert_eq!(send(Some(&forged), false).await, StatusCode::UNAUTHORIZED);
    assert_eq!(send(None, false).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        send(Some("not.a.jwt"), false).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(send(Some(&good), true).await, StatusCode::FORBIDDEN);
    tokens_sent.extend([expired, stranger, forged]);

    let scrape = scrape();
    // 32 good, and the one RequireScope refused after authentication.
    assert_eq!(requests(&scrape, "accepted", "valid"), 33.0, "{scrape}");
    assert_eq!(requests(&scrape, "rejected", "expired"), 1.0);
    assert_eq!(requests(&scrape, "rejected", "wrong_issuer"), 1.0);
    assert_eq!(requests(&scrape, "rejected", "bad_signature"), 1.0);
    assert_eq!(requests(&scrape, "rejected", "missing_token"), 1.0);
    assert_eq!(requests(&scrape, "rejected", "malformed"), 1.0);
    assert_eq!(requests(&scrape, "rejected", "insufficient_scope"), 1.0);
    // Every reason is a series from the first request on, at zero until it happens.
    assert_eq!(requests(&scrape, "rejected", "revoked"), 0.0);
    assert!(
        value(
            &scrape,
            "tower_jwt_auth_requests_total",
            &[("reason", "revoked")]
        )
        .is_some()
    );
    // The cache: the first good token and the four bad JWTs missed; 32 hits.
    let cache = |result| {
        value(
            &scrape,
            "tower_jwt_auth_token_cache_total",
            &[("result", result)],
        )
    };
    assert_eq!(cache("hit"), Some(32.0));
    assert_eq!(cache("miss"), Some(5.0));
    // Timed: at least two of the accepted ones on this thread (one in 16).
    let timed = value(
        &scrape,
        "tower_jwt_auth_duration_seconds_count",
        &[("outcome", "accepted")],
    );
    assert!(timed.is_some_and(|n| n >= 2.0), "{scrape}");
    assert!(scrape.contains("# HELP tower_jwt_auth_requests_total"));
    // Nothing of a token, and no subject, in any label.
    for token in &tokens_sent {
        for part in token.split('.') {
            assert!(!scrape.contains(part), "a token part in the scrape");
        }
    }
    assert!(!scrape.contains("alice"));
}

/// A JWKS endpoint on loopback serving one Ed25519 key.
async fn jwks_endpoint() -> (String, EncodingKey) {
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    let key = EncodingKey::from_ed_pem(&fixture("ed25519.pem")).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA).unwrap();
    jwk.common.key_id = Some("k1".into());
    let body = Arc::new(json!({ "keys": [jwk] }).to_string());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let body = body.clone();
            let svc = hyper::service::service_fn(move |_: Request<hyper::body::Incoming>| {
                let body = Bytes::from(body.to_string());
                async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    (url, key)
}

#[tokio::test]
async fn key_fetches_are_counted_per_issuer_with_unchanged_keys_as_not_modified() {
    scrape();
    let (url, key) = jwks_endpoint().await;
    let jwks = JwksSource::builder(&url)
        .cooldown(Duration::from_millis(100))
        .build()
        .unwrap();
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .key_source(jwks)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    let fetches = |result| {
        let labels = [("issuer", url.as_str()), ("result", result)];
        value(&scrape(), "tower_jwt_auth_key_fetches_total", &labels)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while fetches("success").is_none() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fetches("success"), Some(1.0));
    // An unknown `kid` after the cooldown fetches again: the same key comes back.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("k2".into());
    let (reply, _) = through(&layer, &mint_with(&header, &good_claims(), &key)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(fetches("not_modified"), Some(1.0), "{}", scrape());
    assert_eq!(fetches("failure"), None);
    let took = value(
        &scrape(),
        "tower_jwt_auth_key_fetch_duration_seconds_count",
        &[("issuer", url.as_str())],
    );
    assert_eq!(took, Some(2.0));
}

#[tokio::test]
async fn lockouts_and_busy_password_workers_are_counted() {
    scrape();
    let throttle = LoginThrottle::builder().max_failures(2).build().unwrap();
    let client: IpAddr = "192.0.2.9".parse().unwrap();
    for _ in 0..2 {
        drop(throttle.begin("mallory", client).await.unwrap());
    }
    assert!(throttle.begin("mallory", client).await.is_err());
    assert!(throttle.begin("mallory", client).await.is_err());
    let lockouts = value(&scrape(), "tower_jwt_auth_login_lockouts_total", &[]);
    assert_eq!(lockouts, Some(2.0));

    let passwords = Passwords::new().max_concurrent(1).unwrap().max_queue(1);
    let running: Vec<_> = (0..2)
        .map(|i| {
            let p = passwords.clone();
            tokio::spawn(async move { p.hash(&format!("pw{i}")).await })
        })
        .collect();
    // One hashes, one waits: the gauge shows the one waiting, and a third is refused.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let depth = || value(&scrape(), "tower_jwt_auth_password_queue_depth", &[]);
    while depth() != Some(1.0) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(depth(), Some(1.0));
    assert!(passwords.hash("third").await.is_err());
    assert_eq!(
        value(&scrape(), "tower_jwt_auth_password_busy_total", &[]),
        Some(1.0)
    );
    for task in running {
        assert!(task.await.unwrap().is_ok());
    }
    assert_eq!(depth(), Some(0.0));
}
