//! OpenID Connect discovery and the JWKS over real HTTPS on loopback: a certificate generated
//! in the test (rcgen) for `localhost`, signed by a generated CA that only the test's client
//! trusts. The built-in client (feature `jwks-rustls`, public web roots) refuses the same
//! provider: the handshake fails and tokens wait for keys (`503`).

#![cfg(feature = "jwks-rustls")]

mod common;
#[path = "support/pki.rs"]
mod pki;

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode, header};
use http_body_util::{Empty, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tokio::net::TcpListener;
use tower_jwt_auth::{JwtAuthLayer, StandardClaims, jwks::JwksSource};

struct Tls {
    ca: CertificateDer<'static>,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn certificates() -> Tls {
    let pki = pki::Pki::localhost();
    Tls {
        ca: pki.ca.der().clone(),
        cert: pki.server.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key.serialize_der())),
    }
}

/// An identity provider on `https://localhost:{port}` serving discovery and its JWKS.
async fn provider(tls: &Tls, jwk: serde_json::Value) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![tls.cert.clone()], tls.key.clone_key())
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let discovery =
        json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks.json")}).to_string();
    let jwks = json!({"keys": [jwk]}).to_string();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let (discovery, jwks) = (discovery.clone(), jwks.clone());
            tokio::spawn(async move {
                // A client that refuses our certificate ends the handshake: nothing to serve.
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let body = match req.uri().path() {
                        "/.well-known/openid-configuration" => Some(discovery.clone()),
                        "/jwks.json" => Some(jwks.clone()),
                        _ => None,
                    };
                    async move {
                        Ok::<_, Infallible>(match body {
                            Some(body) => Response::builder()
                                .header(header::CONTENT_TYPE, "application/json")
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                            None => Response::builder()
                                .status(StatusCode::NOT_FOUND)
                                .body(Full::default())
                                .unwrap(),
                        })
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    issuer
}

/// A hyper-util client that trusts only `ca`, over HTTPS only: what an application passes to
/// `JwksBuilder::client` for a provider behind a private CA.
fn client_trusting(
    ca: &CertificateDer<'static>,
) -> Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(https)
}

fn signed_token(issuer: &str) -> (String, serde_json::Value) {
    let key = EncodingKey::from_ed_pem(&fixture("ed25519.pem")).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA).unwrap();
    jwk.common.key_id = Some("tls-key".into());
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("tls-key".into());
    let claims = claims_with(|c| {
        c.insert("iss".into(), json!(issuer));
    });
    (
        mint_with(&header, &claims, &key),
        serde_json::to_value(jwk).unwrap(),
    )
}

#[tokio::test]
async fn discovery_and_jwks_over_https_with_a_private_root() {
    let tls = certificates();
    // The token's issuer must be the provider's URL, known only once it listens: mint with a
    // placeholder first to get the JWK, then again.
    let (_, jwk) = signed_token("placeholder");
    let issuer = provider(&tls, jwk).await;
    let (token, _) = signed_token(&issuer);

    let jwks = JwksSource::discover(&issuer)
        .client(client_trusting(&tls.ca))
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    assert!(jwks.ready().await, "discovery and JWKS over TLS");
    assert_eq!(jwks.kids(), ["tls-key"]);
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .key_source(jwks)
        .issuer(issuer.clone())
        .audience(AUDIENCE)
        .build()
        .unwrap();
    let (res, calls) = through(&layer, &token).await;
    assert_eq!((res.status, calls), (StatusCode::OK, 1));

    // The built-in client trusts the public web roots only: the handshake fails.
    let untrusted = JwksSource::discover(&issuer)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    assert!(!untrusted.ready().await);
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .key_source(untrusted)
        .issuer(issuer)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    assert_eq!(
        through(&layer, &token).await.0.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}
