//! DPoP (RFC 9449) and certificate-bound tokens (RFC 8705) at the layer: one test per rule
//! of section 4.3, per downgrade, and per answer of the README's table, each asserting the
//! status, the challenges and what reached the inner service.

mod common;
#[path = "support/proof.rs"]
mod proof;

use proof::ath;

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use bytes::Bytes;
use common::*;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tower::{Layer, ServiceBuilder, ServiceExt};
use tower_jwt_auth::{
    ClientCertificate, ConfigError, Dpop, DpopMode, JwtAuthLayer, JwtAuthLayerBuilder,
    RequireScope, SenderConstraint, StandardClaims, TrustedIssuer, VerificationKey,
};

const ORIGIN: &str = "https://api.example.com";
const HTU: &str = "https://api.example.com/secure-todos";

/// A client's proof key, making proofs for `GET HTU`.
struct ProofKey(proof::ProofKey);

impl std::ops::Deref for ProofKey {
    type Target = proof::ProofKey;
    fn deref(&self) -> &proof::ProofKey {
        &self.0
    }
}

impl ProofKey {
    fn es256() -> Self {
        Self(proof::ProofKey::es256())
    }

    fn ed25519(name: &'static str) -> Self {
        Self(proof::ProofKey::ed25519(name))
    }

    fn proof_with(
        &self,
        token: &str,
        edit: impl FnOnce(&mut Map<String, Value>, &mut Map<String, Value>),
    ) -> String {
        self.0.proof_for("GET", HTU, Some(token), edit)
    }

    fn proof(&self, token: &str) -> String {
        self.proof_with(token, |_, _| {})
    }
}

/// A token bound to `jkt`.
fn bound_to(jkt: &str) -> String {
    mint(&claims_with(|c| {
        c.insert("cnf".into(), json!({ "jkt": jkt }));
    }))
}

fn configured() -> JwtAuthLayerBuilder<StandardClaims> {
    JwtAuthLayer::builder()
        .hs256(SECRET)
        .issuer(ISSUER)
        .audience(AUDIENCE)
}

fn dpop_layer() -> JwtAuthLayer<StandardClaims> {
    configured().dpop(Dpop::new(ORIGIN)).build().unwrap()
}

/// What a client sees of a response, with every challenge.
#[derive(Debug)]
struct Seen {
    status: StatusCode,
    challenges: Vec<String>,
    /// The challenges as an independent parser (the `http-auth` crate) reads all the
    /// `WWW-Authenticate` lines joined (RFC 9110 section 5.3): scheme, then each parameter
    /// unescaped.
    parsed: Vec<(String, Vec<(String, String)>)>,
    headers: HeaderMap,
    body: Bytes,
    /// How the inner service saw the request's binding; `None` if it was not reached.
    reached: Option<Option<SenderConstraint>>,
}

impl Seen {
    fn error(&self) -> Value {
        serde_json::from_slice::<Value>(&self.body).unwrap()["error"].clone()
    }
}

async fn send(layer: &JwtAuthLayer<StandardClaims>, req: Request<Full<Bytes>>) -> Seen {
    let reached = Arc::new(Mutex::new(None));
    let seen = reached.clone();
    let inner = tower::service_fn(move |req: Request<Full<Bytes>>| {
        *seen.lock().unwrap() = Some(req.extensions().get::<SenderConstraint>().cloned());
        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok")))) }
    });
    let res = layer.layer(inner).oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let reached = reached.lock().unwrap().take();
    let challenges: Vec<String> = parts
        .headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let joined = challenges.join(", ");
    let parsed = match joined.as_str() {
        "" => Vec::new(),
        joined => http_auth::parse_challenges(joined)
            .unwrap_or_else(|e| panic!("{joined:?} does not parse: {e}")),
    };
    let parsed = parsed
        .into_iter()
        .map(|c| {
            let params = c.params.iter();
            let params = params.map(|(k, v)| ((*k).to_owned(), v.to_unescaped()));
            (c.scheme.to_owned(), params.collect())
        })
        .collect();
    Seen {
        status: parts.status,
        challenges,
        parsed,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
        reached,
    }
}

/// `GET /secure-todos` with `Authorization: <scheme> <token>` and these `DPoP` headers.
fn request(scheme: &str, token: &str, proofs: &[&str]) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .uri("/secure-todos?page=2")
        .header(header::AUTHORIZATION, format!("{scheme} {token}"));
    for proof in proofs {
        builder = builder.header("dpop", *proof);
    }
    builder.body(Full::default()).unwrap()
}

const ALGS: &str = "algs=\"ES256 ES384 PS256 RS256 EdDSA Ed25519\"";

fn dpop_error(code: &str, description: &str) -> String {
    format!("DPoP realm=\"api\", error=\"{code}\", error_description=\"{description}\", {ALGS}")
}

async fn assert_bad_proof(
    layer: &JwtAuthLayer<StandardClaims>,
    req: Request<Full<Bytes>>,
    description: &str,
) {
    let seen = send(layer, req).await;
    assert_eq!(seen.status, StatusCode::UNAUTHORIZED, "{description}");
    assert_eq!(
        seen.challenges[0],
        dpop_error("invalid_dpop_proof", description)
    );
    assert_eq!(seen.challenges[1], "Bearer realm=\"api\"");
    assert_eq!(seen.error(), "invalid_dpop_proof");
    assert!(
        seen.reached.is_none(),
        "{description}: the inner service was reached"
    );
}

#[tokio::test]
async fn a_bound_token_with_a_valid_proof_passes_and_the_handler_sees_the_key() {
    let layer = dpop_layer();
    for key in [
        ProofKey::es256(),
        ProofKey::ed25519("EdDSA"),
        ProofKey::ed25519("Ed25519"),
    ] {
        let token = bound_to(&key.jkt);
        let seen = send(&layer, request("DPoP", &token, &[&key.proof(&token)])).await;
        assert_eq!(
            seen.status,
            StatusCode::OK,
            "{}: {:?}",
            key.name,
            seen.challenges
        );
        assert_eq!(
            seen.reached,
            Some(Some(SenderConstraint::Dpop {
                jkt: key.jkt.as_str().into()
            }))
        );
    }
}

#[tokio::test]
async fn each_check_of_section_4_3_refuses_the_proof() {
    let layer = dpop_layer();
    let key = ProofKey::es256();
    let token = bound_to(&key.jkt);
    let proof = key.proof(&token);
    type Edit = fn(&mut Map<String, Value>, &mut Map<String, Value>);
    let cases: &[(&str, Edit)] = &[
        ("the proof's typ is not dpop+jwt", |h, _| {
            h.insert("typ".into(), json!("jwt"));
        }),
        ("the proof's algorithm is not accepted", |h, _| {
            h.insert("alg".into(), json!("HS256"));
        }),
        ("the proof's algorithm is not accepted", |h, _| {
            h.insert("alg".into(), json!("none"));
        }),
        ("the proof's jwk does not fit its algorithm", |h, _| {
            h.insert("alg".into(), json!("ES384"));
        }),
        ("the proof's jwk is not a public key", |h, _| {
            h["jwk"]["d"] = json!("AAAA");
        }),
        ("the proof's jwk does not fit its algorithm", |h, _| {
            h["jwk"]["kty"] = json!("XX");
        }),
        ("the proof's jwk is not a valid key", |h, _| {
            h["jwk"]["x"] = json!("not base64!");
        }),
        ("the DPoP proof is not a well-formed JWT", |h, _| {
            h.remove("jwk");
        }),
        ("the DPoP proof is not a well-formed JWT", |h, _| {
            h.insert("crit".into(), json!(["exp"]));
        }),
        (
            "the DPoP proof lacks htm, htu, iat or jti, or one is malformed",
            |_, c| {
                c.remove("jti");
            },
        ),
        (
            "the DPoP proof lacks htm, htu, iat or jti, or one is malformed",
            |_, c| {
                c.remove("htu");
            },
        ),
        (
            "the DPoP proof lacks htm, htu, iat or jti, or one is malformed",
            |_, c| {
                c.insert("iat".into(), json!("now"));
            },
        ),
        ("the proof was made for another HTTP method", |_, c| {
            c.insert("htm".into(), json!("POST"));
        }),
        ("the proof was made for another URI", |_, c| {
            c.insert("htu".into(), json!("https://evil.example/secure-todos"));
        }),
        ("the proof was made for another URI", |_, c| {
            c.insert("htu".into(), json!("https://api.example.com/other"));
        }),
        ("the proof is too old", |_, c| {
            c.insert("iat".into(), json!(now() - 61));
        }),
        ("the proof is issued in the future", |_, c| {
            c.insert("iat".into(), json!(now() + 30));
        }),
        (
            "the proof's ath is not the hash of this access token",
            |_, c| {
                c.insert("ath".into(), json!(ath("another token")));
            },
        ),
        (
            "the proof's ath is not the hash of this access token",
            |_, c| {
                c.remove("ath");
            },
        ),
    ];
    for (description, edit) in cases {
        let bad = key.proof_with(&token, edit);
        assert_bad_proof(&layer, request("DPoP", &token, &[&bad]), description).await;
    }
    // Signed by another key than the one in its `jwk`.
    let other = ProofKey::es256();
    let forged = other.proof_with(&token, |h, _| {
        h.insert("jwk".into(), key.jwk.clone());
    });
    assert_bad_proof(
        &layer,
        request("DPoP", &token, &[&forged]),
        "the proof's signature does not verify with its jwk",
    )
    .await;
    // A valid proof by a key the token is not bound to.
    let theirs = other.proof(&token);
    assert_bad_proof(
        &layer,
        request("DPoP", &token, &[&theirs]),
        "the proof is signed by another key than the token is bound to",
    )
    .await;
    // Not one proof: none, two, or not a JWT.
    let one = "a DPoP request carries exactly one DPoP header";
    assert_bad_proof(&layer, request("DPoP", &token, &[]), one).await;
    assert_bad_proof(
        &layer,
        request("DPoP", &token, &[&proof, &key.proof(&token)]),
        one,
    )
    .await;
    assert_bad_proof(
        &layer,
        request("DPoP", &token, &["not-a-jwt"]),
        "the DPoP proof is not a well-formed JWT",
    )
    .await;
    // After all that, the untouched proof still passes: nothing above used it up.
    assert_eq!(
        send(&layer, request("DPoP", &token, &[&proof]))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_proof_is_accepted_once() {
    let layer = dpop_layer();
    let key = ProofKey::es256();
    let token = bound_to(&key.jkt);
    let proof = key.proof(&token);
    assert_eq!(
        send(&layer, request("DPoP", &token, &[&proof]))
            .await
            .status,
        StatusCode::OK
    );
    assert_bad_proof(
        &layer,
        request("DPoP", &token, &[&proof]),
        "the proof has been used before",
    )
    .await;
    // A clone of the layer shares the store.
    assert_bad_proof(
        &layer.clone(),
        request("DPoP", &token, &[&proof]),
        "the proof has been used before",
    )
    .await;
    assert_eq!(
        send(&layer, request("DPoP", &token, &[&key.proof(&token)]))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn htu_ignores_the_query_and_is_normalized() {
    let layer = dpop_layer();
    let key = ProofKey::es256();
    let token = bound_to(&key.jkt);
    for htu in [
        "HTTPS://API.example.com:443/secure-todos",
        "https://api.example.com/secure-%74odos?x=1#f",
    ] {
        let proof = key.proof_with(&token, |_, c| {
            c.insert("htu".into(), json!(htu));
        });
        assert_eq!(
            send(&layer, request("DPoP", &token, &[&proof]))
                .await
                .status,
            StatusCode::OK,
            "{htu}"
        );
    }
}

#[tokio::test]
async fn the_host_header_is_not_believed_unless_listed() {
    let layer = configured()
        .dpop(Dpop::for_hosts("https", ["api.example.com"]))
        .build()
        .unwrap();
    let key = ProofKey::es256();
    let token = bound_to(&key.jkt);
    for (host, status) in [
        ("api.example.com", StatusCode::OK),
        ("evil.example", StatusCode::UNAUTHORIZED),
    ] {
        let proof = key.proof_with(&token, |_, c| {
            c.insert("htu".into(), json!(format!("https://{host}/secure-todos")));
        });
        let mut req = request("DPoP", &token, &[&proof]);
        req.headers_mut()
            .insert(header::HOST, host.parse().unwrap());
        assert_eq!(send(&layer, req).await.status, status, "{host}");
    }
}

#[tokio::test]
async fn a_bound_token_is_never_a_bearer_token() {
    let key = ProofKey::es256();
    let token = bound_to(&key.jkt);
    let description = "the token is bound to a DPoP key: send it with the DPoP scheme and a proof";
    // With DPoP configured: refused with or without a proof, and told to use DPoP.
    let layer = dpop_layer();
    for proofs in [vec![], vec![key.proof(&token)]] {
        let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let seen = send(&layer, request("Bearer", &token, &proofs)).await;
        assert_eq!(seen.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            seen.challenges,
            [
                format!(
                    "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"{description}\""
                ),
                format!("DPoP realm=\"api\", {ALGS}"),
            ]
        );
        assert!(seen.reached.is_none());
    }
    // Without DPoP configured: refused all the same, and the DPoP scheme is not offered.
    let layer = configured().build().unwrap();
    let seen = send(&layer, request("Bearer", &token, &[])).await;
    assert_eq!(seen.status, StatusCode::UNAUTHORIZED);
    assert_eq!(seen.challenges.len(), 1);
    assert!(seen.challenges[0].contains(description));
    // ... and `Authorization: DPoP` is an unsupported scheme: a bare challenge.
    let seen = send(&layer, request("DPoP", &token, &[&key.proof(&token)])).await;
    assert_eq!(
        (seen.status, seen.challenges.as_slice()),
        (
            StatusCode::UNAUTHORIZED,
            &["Bearer realm=\"api\"".to_owned()][..]
        )
    );
    assert!(seen.reached.is_none());
}

#[tokio::test]
async fn an_unbound_token_is_refused_with_the_dpop_scheme() {
    let layer = dpop_layer();
    let key = ProofKey::es256();
    let token = mint(&good_claims());
    let seen = send(&layer, request("DPoP", &token, &[&key.proof(&token)])).await;
    assert_eq!(seen.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        seen.challenges[0],
        dpop_error(
            "invalid_token",
            "the token is not bound to a DPoP key: send it with the Bearer scheme"
        )
    );
    assert!(seen.reached.is_none());
    // The same token with the Bearer scheme is fine, and carries no binding.
    let seen = send(&layer, request("Bearer", &token, &[])).await;
    assert_eq!((seen.status, seen.reached), (StatusCode::OK, Some(None)));
}

#[tokio::test]
async fn a_token_bound_by_another_method_is_refused() {
    let layer = dpop_layer();
    let token = mint(&claims_with(|c| {
        c.insert("cnf".into(), json!({"jwk": {"kty": "EC"}}));
    }));
    for scheme in ["Bearer", "DPoP"] {
        let seen = send(&layer, request(scheme, &token, &[])).await;
        assert_eq!(seen.status, StatusCode::UNAUTHORIZED, "{scheme}");
        assert!(
            seen.challenges[0].contains("bound by a confirmation method this server cannot check")
        );
    }
}

fn challenge(scheme: &str, params: &[(&str, &str)]) -> (String, Vec<(String, String)>) {
    let params = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
    (scheme.to_owned(), params.collect())
}

#[tokio::test]
async fn a_bare_request_gets_both_challenges() {
    let seen = send(&dpop_layer(), Request::new(Full::default())).await;
    assert_eq!(seen.status, StatusCode::UNAUTHORIZED);
    let algs = ("algs", "ES256 ES384 PS256 RS256 EdDSA Ed25519");
    assert_eq!(
        seen.parsed,
        [
            challenge("Bearer", &[("realm", "api")]),
            challenge("DPoP", &[("realm", "api"), algs]),
        ]
    );
    assert_eq!(
        seen.challenges,
        [
            "Bearer realm=\"api\"".to_owned(),
            format!("DPoP realm=\"api\", {ALGS}")
        ]
    );
}

#[tokio::test]
async fn required_dpop_refuses_bearer_tokens_and_offers_only_dpop() {
    let layer = configured()
        .dpop(
            Dpop::new(ORIGIN)
                .mode(DpopMode::Required)
                .algorithms(["ES256"]),
        )
        .build()
        .unwrap();
    let seen = send(&layer, Request::new(Full::default())).await;
    assert_eq!(seen.challenges, ["DPoP realm=\"api\", algs=\"ES256\""]);
    let seen = send(&layer, request("Bearer", &mint(&good_claims()), &[])).await;
    assert_eq!(seen.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        seen.challenges,
        [
            "DPoP realm=\"api\", error=\"invalid_token\", error_description=\"this resource accepts only DPoP-bound tokens\", algs=\"ES256\""
        ]
    );
    // An algorithm outside the configured list is refused.
    let key = ProofKey::ed25519("EdDSA");
    let token = bound_to(&key.jkt);
    let seen = send(&layer, request("DPoP", &token, &[&key.proof(&token)])).await;
    assert_eq!(seen.status, StatusCode::UNAUTHORIZED);
    assert!(seen.challenges[0].contains("the proof's algorithm is not accepted"));
    let key = ProofKey::es256();
    let token = bound_to(&key.jkt);
    assert_eq!(
        send(&layer, request("DPoP", &token, &[&key.proof(&token)]))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn each_trusted_issuer_has_its_own_mode() {
    let key = VerificationKey::hmac(Algorithm::HS256, SECRET).unwrap();
    let other =
        VerificationKey::hmac(Algorithm::HS256, b"another-secret-another-secret-another").unwrap();
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .trusting([
            TrustedIssuer::new(ISSUER, key)
                .audience(AUDIENCE)
                .dpop(DpopMode::Required),
            TrustedIssuer::new("legacy", other)
                .audience(AUDIENCE)
                .dpop(DpopMode::Off),
        ])
        .dpop(Dpop::new(ORIGIN))
        .build()
        .unwrap();
    // The first issuer's bearer tokens are refused, its bound ones pass.
    let seen = send(&layer, request("Bearer", &mint(&good_claims()), &[])).await;
    assert_eq!(seen.status, StatusCode::UNAUTHORIZED);
    let proof_key = ProofKey::es256();
    let token = bound_to(&proof_key.jkt);
    assert_eq!(
        send(&layer, request("DPoP", &token, &[&proof_key.proof(&token)]))
            .await
            .status,
        StatusCode::OK
    );
    // The legacy issuer's tokens cannot use DPoP at all.
    let legacy = |claims: Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &EncodingKey::from_secret(b"another-secret-another-secret-another").unwrap(),
        )
        .unwrap()
    };
    let token = legacy(claims_with(|c| {
        c.insert("iss".into(), json!("legacy"));
        c.insert("cnf".into(), json!({"jkt": proof_key.jkt}));
    }));
    let seen = send(&layer, request("DPoP", &token, &[&proof_key.proof(&token)])).await;
    assert_eq!(seen.status, StatusCode::UNAUTHORIZED);
    assert!(
        seen.challenges[0].contains("not accepted with the DPoP scheme"),
        "{:?}",
        seen.challenges
    );
    let token = legacy(claims_with(|c| {
        c.insert("iss".into(), json!("legacy"));
    }));
    assert_eq!(
        send(&layer, request("Bearer", &token, &[])).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn server_nonces_are_asked_for_then_accepted_by_every_instance() {
    let secret = [5u8; 32];
    let layer = || {
        configured()
            .dpop(Dpop::new(ORIGIN).nonces(secret))
            .build()
            .unwrap()
    };
    let (a, b) = (layer(), layer());
    let key = ProofKey::es256();
    let token = bound_to(&key.jkt);
    // Without a nonce: 401 use_dpop_nonce, and a nonce to use.
    let seen = send(&a, request("DPoP", &token, &[&key.proof(&token)])).await;
    assert_eq!(seen.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        seen.challenges[0],
        dpop_error(
            "use_dpop_nonce",
            "the DPoP proof must carry the server's nonce"
        )
    );
    // As a client's challenge parser reads it (the description's apostrophe included).
    assert_eq!(
        seen.parsed[0],
        challenge(
            "DPoP",
            &[
                ("realm", "api"),
                ("error", "use_dpop_nonce"),
                (
                    "error_description",
                    "the DPoP proof must carry the server's nonce"
                ),
                ("algs", "ES256 ES384 PS256 RS256 EdDSA Ed25519"),
            ]
        )
    );
    assert_eq!(seen.parsed[1], challenge("Bearer", &[("realm", "api")]));
    let nonce = seen.headers["dpop-nonce"].to_str().unwrap().to_owned();
    // With it: accepted by this instance and by another one with the same secret.
    for layer in [&a, &b] {
        let proof = key.proof_with(&token, |_, c| {
            c.insert("nonce".into(), json!(nonce));
        });
        let seen = send(layer, request("DPoP", &token, &[&proof])).await;
        assert_eq!(seen.status, StatusCode::OK);
    }
    // A made-up nonce is answered like none.
    let proof = key.proof_with(&token, |_, c| {
        c.insert("nonce".into(), json!("AAAAAAAAAAA.forged"));
    });
    let seen = send(&a, request("DPoP", &token, &[&proof])).await;
    assert_eq!(seen.error(), "use_dpop_nonce");
    assert!(seen.headers.contains_key("dpop-nonce"));
}

#[tokio::test]
async fn insufficient_scope_on_a_dpop_request_is_a_dpop_challenge() {
    let key = ProofKey::es256();
    let token = bound_to(&key.jkt);
    let svc = ServiceBuilder::new()
        .layer(dpop_layer())
        .layer(RequireScope::all(["admin"]))
        .service(tower::service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }));
    let res = svc
        .oneshot(request("DPoP", &token, &[&key.proof(&token)]))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let challenge = res.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        challenge.starts_with("DPoP realm=\"api\", error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"admin\""), "{challenge}");
}

#[tokio::test]
async fn a_certificate_bound_token_needs_its_certificate() {
    let layer = configured().build().unwrap();
    let cert = ClientCertificate::new(b"a client certificate in DER".to_vec());
    let token = mint(&claims_with(|c| {
        c.insert("cnf".into(), json!({"x5t#S256": cert.thumbprint()}));
    }));
    let seen = send(&layer, request("Bearer", &token, &[])).await;
    assert_eq!(seen.status, StatusCode::UNAUTHORIZED);
    assert!(
        seen.challenges[0]
            .contains("bound to a client certificate this connection did not present")
    );
    let mut req = request("Bearer", &token, &[]);
    req.extensions_mut()
        .insert(ClientCertificate::new(b"another certificate".to_vec()));
    assert_eq!(send(&layer, req).await.status, StatusCode::UNAUTHORIZED);
    let mut req = request("Bearer", &token, &[]);
    req.extensions_mut().insert(cert.clone());
    let seen = send(&layer, req).await;
    assert_eq!(seen.status, StatusCode::OK);
    assert_eq!(
        seen.reached,
        Some(Some(SenderConstraint::Certificate {
            x5t_s256: cert.thumbprint().into()
        }))
    );
    // x5t#S256 is base64url(SHA-256(DER)), RFC 8705 section 3.1.
    assert_eq!(
        cert.thumbprint(),
        URL_SAFE_NO_PAD.encode(Sha256::digest(cert.der()))
    );
}

#[test]
fn dpop_mistakes_are_reported_by_build() {
    let build = |dpop: Dpop| configured().dpop(dpop).build().map(|_| ()).unwrap_err();
    assert!(matches!(
        build(Dpop::new("api.example.com")),
        ConfigError::InvalidValue(_)
    ));
    assert!(matches!(
        build(Dpop::new(ORIGIN).algorithms(["HS256"])),
        ConfigError::InvalidValue(_)
    ));
    assert_eq!(
        build(Dpop::new(ORIGIN).algorithms(Vec::<String>::new())),
        ConfigError::NoAlgorithms
    );
    assert!(matches!(
        build(Dpop::new(ORIGIN).proof_lifetime(Duration::from_secs(3600))),
        ConfigError::OutOfRange(_)
    ));
    assert!(matches!(
        build(Dpop::new(ORIGIN).nonces(b"short")),
        ConfigError::WeakSecret { .. }
    ));
    let key = VerificationKey::hmac(Algorithm::HS256, SECRET).unwrap();
    let err = JwtAuthLayer::<StandardClaims>::builder()
        .trusting([TrustedIssuer::new(ISSUER, key).dpop(DpopMode::Required)])
        .build()
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err, ConfigError::DpopNotConfigured);
    // Debug output never shows the nonce secret.
    let debug = format!("{:?}", Dpop::new(ORIGIN).nonces([0x41u8; 32]));
    assert!(
        !debug.contains("AAAA") && !debug.contains("65, 65"),
        "{debug}"
    );
}

#[cfg(feature = "redis")]
#[path = "support/redis_server.rs"]
mod redis_server;

/// The replay store shared through a real Redis: two layers stand for two instances.
#[cfg(feature = "redis")]
mod through_redis {
    use tower_jwt_auth::ReplayFallback;

    use super::*;
    use crate::redis_server::RedisServer;

    fn instance(redis: &RedisServer, fallback: ReplayFallback) -> JwtAuthLayer<StandardClaims> {
        let client = redis::Client::open(redis.url()).unwrap();
        configured()
            .dpop(
                Dpop::new(ORIGIN)
                    .redis(client)
                    .when_redis_unavailable(fallback),
            )
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn a_proof_used_on_one_instance_is_refused_on_every_other() {
        let Some(redis) =
            RedisServer::start("a_proof_used_on_one_instance_is_refused_on_every_other")
        else {
            return;
        };
        let (a, b) = (
            instance(&redis, ReplayFallback::Refuse),
            instance(&redis, ReplayFallback::Refuse),
        );
        let key = ProofKey::es256();
        let token = bound_to(&key.jkt);
        let proof = key.proof(&token);
        assert_eq!(
            send(&a, request("DPoP", &token, &[&proof])).await.status,
            StatusCode::OK
        );
        assert_bad_proof(
            &b,
            request("DPoP", &token, &[&proof]),
            "the proof has been used before",
        )
        .await;
        // A fresh proof passes on either.
        assert_eq!(
            send(&b, request("DPoP", &token, &[&key.proof(&token)]))
                .await
                .status,
            StatusCode::OK
        );
        // Bearer requests never wait on Redis.
        let bearer = mint(&good_claims());
        assert_eq!(
            send(&b, request("Bearer", &bearer, &[])).await.status,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn while_redis_is_down_dpop_is_refused_unless_told_to_check_locally() {
        let Some(mut redis) =
            RedisServer::start("while_redis_is_down_dpop_is_refused_unless_told_to_check_locally")
        else {
            return;
        };
        let refusing = instance(&redis, ReplayFallback::Refuse);
        let local = instance(&redis, ReplayFallback::Local);
        redis.kill();
        let key = ProofKey::es256();
        let token = bound_to(&key.jkt);
        // The default: 503 with Retry-After, the inner service not reached.
        let seen = send(&refusing, request("DPoP", &token, &[&key.proof(&token)])).await;
        assert_eq!(seen.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(seen.headers[header::RETRY_AFTER], "5");
        assert!(seen.reached.is_none());
        // Bearer tokens are served meanwhile.
        let bearer = mint(&good_claims());
        assert_eq!(
            send(&refusing, request("Bearer", &bearer, &[]))
                .await
                .status,
            StatusCode::OK
        );
        // Local: served, and a replay on the same instance is still refused.
        let proof = key.proof(&token);
        assert_eq!(
            send(&local, request("DPoP", &token, &[&proof]))
                .await
                .status,
            StatusCode::OK
        );
        assert_bad_proof(
            &local,
            request("DPoP", &token, &[&proof]),
            "the proof has been used before",
        )
        .await;
        // Redis back: the refusing instance serves DPoP again.
        redis.restart();
        let mut status = StatusCode::SERVICE_UNAVAILABLE;
        for _ in 0..50 {
            status = send(&refusing, request("DPoP", &token, &[&key.proof(&token)]))
                .await
                .status;
            if status == StatusCode::OK {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(status, StatusCode::OK);
    }
}
