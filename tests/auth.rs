//! `JwtAuthLayer` in front of a recording inner service: one test per RFC 6750 / validation
//! rule, each asserting status, challenge, body and what reached the inner service.

mod common;

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use bytes::Bytes;
use common::*;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tower::{Layer, ServiceExt};
use tower_jwt_auth::{
    AuthError, ConfigError, JwtAuthLayer, JwtAuthLayerBuilder, StandardClaims, VerificationKey,
};

fn configured() -> JwtAuthLayerBuilder<StandardClaims> {
    JwtAuthLayer::builder()
        .hs256(SECRET)
        .issuer(ISSUER)
        .audience(AUDIENCE)
}

fn layer() -> JwtAuthLayer<StandardClaims> {
    configured().build().unwrap()
}

async fn send(
    layer: &JwtAuthLayer<StandardClaims>,
    rec: &Recorder,
    req: Request<Full<Bytes>>,
) -> Reply {
    read(layer.layer(rec.service()).oneshot(req).await.unwrap()).await
}

/// Sends `token` and expects `401 invalid_token` with `description`, and an untouched inner service.
async fn assert_invalid_token(
    layer: &JwtAuthLayer<StandardClaims>,
    token: &str,
    description: &str,
) {
    let rec = Recorder::default();
    let res = send(layer, &rec, get(Some(token))).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.challenge.as_deref(),
        Some(
            format!(
                "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"{description}\""
            )
            .as_str()
        )
    );
    assert_eq!(
        res.json(),
        json!({"error": "invalid_token", "error_description": description})
    );
    assert!(
        !String::from_utf8_lossy(&res.body).contains(token),
        "the body echoes the token"
    );
    assert_eq!(rec.calls(), 0, "the inner service must not be called");
}

#[tokio::test]
async fn valid_token_reaches_inner_service_with_claims_and_scopes() {
    let rec = Recorder::default();
    let res = send(&layer(), &rec, get(Some(&mint(&good_claims())))).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body, "alice");
    let seen = rec.last();
    let claims = seen.claims.unwrap();
    assert_eq!(claims.sub.as_deref(), Some("alice"));
    assert!(claims.has_audience(AUDIENCE));
    assert_eq!(seen.scopes.unwrap(), ["todos:read", "todos:write"]);
}

#[tokio::test]
async fn no_token_is_401_without_error_code() {
    let rec = Recorder::default();
    let res = send(&layer(), &rec, get(None)).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.challenge.as_deref(), Some("Bearer realm=\"api\""));
    assert_eq!(res.content_type.as_deref(), Some("application/json"));
    assert_eq!(rec.calls(), 0);
}

#[tokio::test]
async fn other_scheme_is_treated_as_no_token() {
    let rec = Recorder::default();
    let req = Request::builder()
        .header(header::AUTHORIZATION, "Basic YWxpY2U6d29uZGVybGFuZA==")
        .body(Full::default())
        .unwrap();
    let res = send(&layer(), &rec, req).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.challenge.as_deref(), Some("Bearer realm=\"api\""));
    assert_eq!(rec.calls(), 0);
}

async fn assert_invalid_request(req: Request<Full<Bytes>>) {
    let rec = Recorder::default();
    let res = send(&layer(), &rec, req).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let challenge = res.challenge.clone().unwrap();
    assert!(
        challenge.starts_with("Bearer realm=\"api\", error=\"invalid_request\""),
        "{challenge}"
    );
    assert_eq!(res.json()["error"], "invalid_request");
    assert_eq!(rec.calls(), 0);
}

#[tokio::test]
async fn bare_bearer_is_400_invalid_request() {
    let req = Request::builder()
        .header(header::AUTHORIZATION, "Bearer")
        .body(Full::default())
        .unwrap();
    assert_invalid_request(req).await;
}

#[tokio::test]
async fn two_authorization_headers_are_400() {
    let token = mint(&good_claims());
    let req = Request::builder()
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    assert_invalid_request(req).await;
}

#[tokio::test]
async fn non_ascii_authorization_is_400() {
    let mut req = get(None);
    req.headers_mut().insert(
        header::AUTHORIZATION,
        HeaderValue::from_bytes(b"Bearer \xc3\xa9t\xc3\xa9").unwrap(),
    );
    assert_invalid_request(req).await;
}

/// RFC 6750 section 3.1 lists a malformed token under `invalid_token`: characters outside
/// `b64token` make the token malformed, not the request.
#[tokio::test]
async fn token_outside_b64token_charset_is_401_invalid_token() {
    for token in ["a.b,c", "a.b*c", "a*b.c.d", "==="] {
        assert_invalid_token(&layer(), token, "the token is not a well-formed JWT").await;
    }
}

#[tokio::test]
async fn scheme_is_case_insensitive() {
    let rec = Recorder::default();
    let req = Request::builder()
        .header(
            header::AUTHORIZATION,
            format!("bearer   {}", mint(&good_claims())),
        )
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&layer(), &rec, req).await.status, StatusCode::OK);
}

#[tokio::test]
async fn oversized_token_is_refused_before_decoding() {
    // Not even a JWT: a decoder would say "malformed"; the size check answers first.
    let layer = configured().max_token_len(64).build().unwrap();
    assert_invalid_token(&layer, &"a".repeat(65), "the token is too large").await;
}

#[tokio::test]
async fn garbage_token_is_invalid_token() {
    assert_invalid_token(&layer(), "not.a.jwt", "the token is not a well-formed JWT").await;
    assert_invalid_token(&layer(), "abc", "the token is not a well-formed JWT").await;
}

#[tokio::test]
async fn expired_token_is_rejected() {
    let claims = claims_with(|c| {
        c.insert("exp".into(), json!(now() - 120));
    });
    assert_invalid_token(&layer(), &mint(&claims), "the token has expired").await;
}

#[tokio::test]
async fn leeway_accepts_a_token_just_expired() {
    let claims = claims_with(|c| {
        c.insert("exp".into(), json!(now() - 10));
    });
    let rec = Recorder::default();
    let res = send(
        &configured()
            .leeway(Duration::from_secs(30))
            .build()
            .unwrap(),
        &rec,
        get(Some(&mint(&claims))),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    let res = send(
        &configured().leeway(Duration::ZERO).build().unwrap(),
        &rec,
        get(Some(&mint(&claims))),
    )
    .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn token_without_exp_is_rejected() {
    let claims = claims_with(|c| {
        c.remove("exp");
    });
    assert_invalid_token(
        &layer(),
        &mint(&claims),
        "the token lacks the required claim `exp`",
    )
    .await;
}

#[tokio::test]
async fn token_not_yet_valid_is_rejected() {
    let claims = claims_with(|c| {
        c.insert("nbf".into(), json!(now() + 600));
    });
    assert_invalid_token(&layer(), &mint(&claims), "the token is not valid yet").await;
}

#[tokio::test]
async fn wrong_or_missing_issuer_is_rejected() {
    let wrong = claims_with(|c| {
        c.insert("iss".into(), json!("evil"));
    });
    assert_invalid_token(
        &layer(),
        &mint(&wrong),
        "the token's issuer is not accepted",
    )
    .await;
    let missing = claims_with(|c| {
        c.remove("iss");
    });
    assert_invalid_token(
        &layer(),
        &mint(&missing),
        "the token's issuer is not accepted",
    )
    .await;
}

#[tokio::test]
async fn wrong_or_missing_audience_is_rejected() {
    let wrong = claims_with(|c| {
        c.insert("aud".into(), json!(["other-api"]));
    });
    assert_invalid_token(
        &layer(),
        &mint(&wrong),
        "the token is not intended for this audience",
    )
    .await;
    let missing = claims_with(|c| {
        c.remove("aud");
    });
    assert_invalid_token(
        &layer(),
        &mint(&missing),
        "the token is not intended for this audience",
    )
    .await;
}

#[tokio::test]
async fn audience_list_containing_ours_is_accepted() {
    let claims = claims_with(|c| {
        c.insert("aud".into(), json!(["other-api", AUDIENCE]));
    });
    let rec = Recorder::default();
    assert_eq!(
        send(&layer(), &rec, get(Some(&mint(&claims)))).await.status,
        StatusCode::OK
    );
}

/// RFC 7519 section 4.1.3: a recipient that does not find itself in `aud` must reject the
/// token. A layer without a configured audience accepts only tokens without one, unless it
/// explicitly accepts any (security review, finding 6: `aud: "billing-api"` used to pass).
#[tokio::test]
async fn without_a_configured_audience_a_token_naming_one_is_refused() {
    let for_billing =
        json!({"sub": "alice", "iss": "anyone", "aud": "billing-api", "exp": now() + 60});
    let layer = JwtAuthLayer::builder().hs256(SECRET).build().unwrap();
    assert_invalid_token(
        &layer,
        &mint(&for_billing),
        "the token names an audience and this service is configured with none \
         (configure `audience`, or `any_audience` to accept any)",
    )
    .await;
    let rec = Recorder::default();
    for claims in [
        json!({"sub": "alice", "iss": "anyone", "exp": now() + 60}),
        json!({"sub": "alice", "aud": [], "exp": now() + 60}),
    ] {
        let res = send(&layer, &rec, get(Some(&mint(&claims)))).await;
        assert_eq!(res.status, StatusCode::OK, "{claims}");
    }
    let any = JwtAuthLayer::builder()
        .hs256(SECRET)
        .any_audience()
        .build()
        .unwrap();
    let res = send(&any, &rec, get(Some(&mint(&for_billing)))).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(rec.calls(), 3);
}

#[tokio::test]
async fn wrong_secret_is_invalid_signature() {
    let other = EncodingKey::from_secret(b"another-secret-another-secret-32").unwrap();
    let token = mint_with(&Header::new(Algorithm::HS256), &good_claims(), &other);
    assert_invalid_token(&layer(), &token, "the token's signature is invalid").await;
}

#[tokio::test]
async fn tampered_payload_is_invalid_signature() {
    let token = mint(&good_claims());
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    let forged = claims_with(|c| {
        c.insert("sub".into(), json!("mallory"));
    });
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
    assert_invalid_token(
        &layer(),
        &parts.join("."),
        "the token's signature is invalid",
    )
    .await;
}

#[tokio::test]
async fn alg_none_is_never_accepted() {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&good_claims()).unwrap());
    assert_invalid_token(
        &layer(),
        &format!("{header}.{payload}."),
        "the token is not a well-formed JWT",
    )
    .await;
}

#[tokio::test]
async fn other_hmac_algorithm_is_rejected() {
    let token = mint_with(
        &Header::new(Algorithm::HS512),
        &good_claims(),
        &EncodingKey::from_secret(SECRET).unwrap(),
    );
    assert_invalid_token(
        &layer(),
        &token,
        "the token's signing algorithm is not accepted",
    )
    .await;
}

#[tokio::test]
async fn rsa_public_key_is_never_an_hmac_secret() {
    // The classic algorithm-confusion attack: sign HS256 with the server's public key bytes.
    let public = fixture("rsa.pub.pem");
    let layer = JwtAuthLayer::<StandardClaims>::new(
        VerificationKey::from_pem(Algorithm::RS256, &public).unwrap(),
    );
    let token = mint_with(
        &Header::new(Algorithm::HS256),
        &good_claims(),
        &EncodingKey::from_secret(&public).unwrap(),
    );
    assert_invalid_token(
        &layer,
        &token,
        "the token's signing algorithm is not accepted",
    )
    .await;
}

#[tokio::test]
async fn unknown_crit_extension_is_rejected() {
    let mut header = Header::new(Algorithm::HS256);
    header.crit = Some(vec!["exp-ext".into()]);
    header.extras.insert("exp-ext", true);
    let token = mint_with(
        &header,
        &good_claims(),
        &EncodingKey::from_secret(SECRET).unwrap(),
    );
    assert_invalid_token(&layer(), &token, "the token is not a well-formed JWT").await;
}

#[tokio::test]
async fn keys_embedded_in_the_header_are_never_trusted() {
    // Signed with the attacker's own key and pointing at it with `jku`, `x5u` and `jwk`.
    let attacker = fixture("rsa2.pem");
    let mut header = Header::new(Algorithm::RS256);
    header.jku = Some("https://attacker.example/jwks.json".into());
    header.x5u = Some("https://attacker.example/cert.pem".into());
    let attacker_jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(
        &EncodingKey::from_rsa_pem(&attacker).unwrap(),
        Algorithm::RS256,
    )
    .unwrap();
    header.jwk = Some(attacker_jwk);
    let token = mint_with(
        &header,
        &good_claims(),
        &EncodingKey::from_rsa_pem(&attacker).unwrap(),
    );
    let ours = VerificationKey::from_pem(Algorithm::RS256, &fixture("rsa.pub.pem")).unwrap();
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .key(ours)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    assert_invalid_token(&layer, &token, "the token's signature is invalid").await;
}

#[tokio::test]
async fn required_claims_are_enforced() {
    let layer = configured()
        .require_claim("jti")
        .require_claim("sub")
        .build()
        .unwrap();
    assert_invalid_token(
        &layer,
        &mint(&good_claims()),
        "the token lacks the required claim `jti`",
    )
    .await;
    let claims = claims_with(|c| {
        c.insert("jti".into(), json!("id-1"));
        c.remove("sub");
    });
    assert_invalid_token(
        &layer,
        &mint(&claims),
        "the token lacks the required claim `sub`",
    )
    .await;
    let claims = claims_with(|c| {
        c.insert("jti".into(), json!("id-1"));
    });
    let rec = Recorder::default();
    assert_eq!(
        send(&layer, &rec, get(Some(&mint(&claims)))).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn typ_is_checked_when_configured() {
    let layer = configured().typ("at+jwt").build().unwrap();
    let key = EncodingKey::from_secret(SECRET).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("application/at+jwt".into());
    let rec = Recorder::default();
    let res = send(
        &layer,
        &rec,
        get(Some(&mint_with(&header, &good_claims(), &key))),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    // A plain `JWT` (an ID token, say) is not an access token.
    assert_invalid_token(
        &layer,
        &mint(&good_claims()),
        "the token's type is not accepted",
    )
    .await;
}

#[tokio::test]
async fn claims_of_the_wrong_shape_are_rejected() {
    #[derive(Clone, serde::Deserialize)]
    #[allow(dead_code)]
    struct Strict {
        sub: String,
        tenant: String,
    }
    let layer = JwtAuthLayer::<Strict>::builder()
        .hs256(SECRET)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    let rec = Recorder::default();
    let res = read(
        layer
            .layer(rec.service())
            .oneshot(get(Some(&mint(&good_claims()))))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.json()["error_description"],
        "the token's claims are malformed"
    );
    assert_eq!(rec.calls(), 0);
}

/// RFC 7519 section 2: a NumericDate may carry a fraction; it is compared in whole seconds.
#[tokio::test]
async fn numeric_dates_with_fractions_are_checked() {
    let fresh = mint(&claims_with(|c| {
        c.insert("exp".into(), json!(now() as f64 + 300.75));
        c.insert("nbf".into(), json!(now() as f64 - 10.5));
    }));
    let (res, calls) = through(&layer(), &fresh).await;
    assert_eq!((res.status, calls), (StatusCode::OK, 1));
    let stale = mint(&claims_with(|c| {
        c.insert("exp".into(), json!(now() as f64 - 3600.25));
    }));
    assert_invalid_token(&layer(), &stale, "the token has expired").await;
}

/// The registered claims have types (RFC 7519 section 4.1): another type is malformed claims,
/// whatever the claims type `C` would make of it.
#[tokio::test]
async fn registered_claims_of_the_wrong_type_are_malformed() {
    for (name, value) in [
        ("exp", json!("tomorrow")),
        ("exp", json!(-5)),
        ("nbf", json!({"at": 1})),
        ("iat", json!(true)),
        ("iss", json!(42)),
        ("aud", json!([1, 2])),
        ("sub", json!(["alice"])),
        ("jti", json!(7)),
    ] {
        let token = mint(&claims_with(|c| {
            c.insert(name.into(), value.clone());
        }));
        let loose = JwtAuthLayer::<serde_json::Value>::builder()
            .hs256(SECRET)
            .build()
            .unwrap();
        let rec = Recorder::default();
        let res = read(
            loose
                .layer(rec.service())
                .oneshot(get(Some(&token)))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{name}: {value}");
        assert_eq!(
            res.json()["error_description"],
            "the token's claims are malformed"
        );
        assert_eq!(rec.calls(), 0);
    }
}

/// An `scp` array element is one scope-token: one with a space inside would smuggle a second
/// scope past `RequireScope` (security review, finding 8).
#[tokio::test]
async fn an_scp_element_with_a_space_is_malformed_not_two_scopes() {
    let token = mint(&claims_with(|c| {
        c.remove("scope");
        c.insert("scp".into(), json!(["todos:read todos:write"]));
    }));
    assert_invalid_token(&layer(), &token, "the token's claims are malformed").await;
    let fine = mint(&claims_with(|c| {
        c.remove("scope");
        c.insert("scp".into(), json!(["todos:read", "todos:write"]));
    }));
    let rec = Recorder::default();
    assert_eq!(
        send(&layer(), &rec, get(Some(&fine))).await.status,
        StatusCode::OK
    );
    assert_eq!(rec.last().scopes.unwrap(), ["todos:read", "todos:write"]);
}

#[tokio::test]
async fn a_header_naming_alg_twice_is_malformed() {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","alg":"none"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&good_claims()).unwrap());
    assert_invalid_token(
        &layer(),
        &format!("{header}.{payload}.sig"),
        "the token is not a well-formed JWT",
    )
    .await;
}

#[test]
fn trusting_no_issuer_or_one_twice_is_a_typed_error() {
    use tower_jwt_auth::TrustedIssuer;
    use tower_jwt_auth::jsonwebtoken::Algorithm as Alg;
    let key = || VerificationKey::hmac(Alg::HS256, SECRET).unwrap();
    let err = JwtAuthLayer::<StandardClaims>::builder()
        .trusting([])
        .build()
        .unwrap_err();
    assert_eq!(err, ConfigError::NoIssuers);
    assert!(
        err.to_string()
            .starts_with("no trusted issuer was configured: give `trusting`"),
        "{err}"
    );
    let err = JwtAuthLayer::<StandardClaims>::builder()
        .trusting([
            TrustedIssuer::new("a", key()),
            TrustedIssuer::new("a", key()),
        ])
        .build()
        .unwrap_err();
    assert_eq!(err, ConfigError::DuplicateIssuer("a".into()));
}

/// Every configuration mistake is a typed error from the builder step that made it, with a
/// message that names it; none panics.
#[test]
fn every_configuration_mistake_is_a_typed_error() {
    use tower_jwt_auth::{RequireScope, TrustedIssuer, jsonwebtoken::Algorithm as Alg};
    let key = || VerificationKey::hmac(Alg::HS256, SECRET).unwrap();
    let err = JwtAuthLayer::<StandardClaims>::builder()
        .trusting([TrustedIssuer::new("a", key())])
        .issuer("b")
        .build()
        .unwrap_err();
    assert_eq!(err, ConfigError::IssuersFixed);
    assert!(
        err.to_string()
            .contains("each TrustedIssuer names its issuer"),
        "{err}"
    );

    for bad in ["", "at jwt", "application/", "t\u{fc}p"] {
        let err = configured().typ(bad).build().unwrap_err();
        assert_eq!(err, ConfigError::InvalidType(bad.into()));
        assert!(err.to_string().contains("is not a valid `typ`"), "{err}");
        // A trusted issuer's mistake is reported by the layer that trusts it.
        let err = JwtAuthLayer::<StandardClaims>::builder()
            .trusting([TrustedIssuer::new("a", key()).typ(bad)])
            .build()
            .unwrap_err();
        assert_eq!(err, ConfigError::InvalidType(bad.into()));
    }
    assert!(configured().typ("application/at+jwt").build().is_ok());

    let err = configured().algorithms([]).build().unwrap_err();
    assert_eq!(err, ConfigError::NoAlgorithms);
    assert_eq!(
        err.to_string(),
        "the algorithm list is empty: no token could pass; name at least one algorithm, or leave `algorithms` unset"
    );
    let err = JwtAuthLayer::<StandardClaims>::builder()
        .trusting([TrustedIssuer::new("a", key()).algorithms([])])
        .build()
        .unwrap_err();
    assert_eq!(err, ConfigError::NoAlgorithms);

    // Keys given by two steps: one would silently replace the other.
    let err = configured().key(key()).build().unwrap_err();
    assert_eq!(err, ConfigError::KeysTwice);
    assert!(err.to_string().contains("keys([...])"), "{err}");
    let err = JwtAuthLayer::<StandardClaims>::builder()
        .build()
        .unwrap_err();
    assert_eq!(err, ConfigError::NoKeys);

    assert_eq!(
        RequireScope::try_all([""; 0]).unwrap_err(),
        ConfigError::NoScopes
    );
    assert_eq!(
        RequireScope::try_any(["read", "wr ite"]).unwrap_err(),
        ConfigError::InvalidScope("wr ite".into())
    );
    assert!(matches!(
        configured().realm("").build(),
        Err(ConfigError::InvalidValue(_))
    ));
}

/// Security review, finding 10: settings that would break the clock arithmetic (a leeway of
/// `Duration::MAX` used to panic every request) are refused when the layer is built.
#[test]
fn leeway_ttl_and_max_age_are_bounded_at_build_time() {
    let err = |r: Result<JwtAuthLayer<StandardClaims>, ConfigError>| r.err();
    assert!(matches!(
        err(configured().leeway(Duration::MAX).build()),
        Some(ConfigError::OutOfRange(_))
    ));
    assert!(err(configured().leeway(tower_jwt_auth::MAX_LEEWAY).build()).is_none());
    assert!(matches!(
        err(configured().max_age(Duration::ZERO).build()),
        Some(ConfigError::OutOfRange(_))
    ));
    let issuer = || tower_jwt_auth::TokenIssuer::builder().hs256(SECRET);
    for ttl in [Duration::ZERO, Duration::from_secs(u64::MAX), Duration::MAX] {
        assert!(matches!(
            issuer().ttl(ttl).build(),
            Err(ConfigError::OutOfRange(_))
        ));
    }
    assert!(issuer().ttl(tower_jwt_auth::MAX_TTL).build().is_ok());
}

/// The optional maximum age: `iat` required, not in the future beyond the leeway, not older
/// than the bound.
#[tokio::test]
async fn max_age_refuses_old_future_and_undated_tokens() {
    let strict = configured()
        .leeway(Duration::ZERO)
        .max_age(Duration::from_secs(60))
        .build()
        .unwrap();
    let at = |iat: Option<u64>| {
        mint(&claims_with(|c| match iat {
            Some(iat) => {
                c.insert("iat".into(), json!(iat));
            }
            None => {
                c.remove("iat");
            }
        }))
    };
    assert_invalid_token(
        &strict,
        &at(Some(now() - 120)),
        "the token was issued too long ago",
    )
    .await;
    assert_invalid_token(
        &strict,
        &at(Some(now() + 120)),
        "the token is not valid yet",
    )
    .await;
    assert_invalid_token(
        &strict,
        &at(None),
        "the token lacks the required claim `iat`",
    )
    .await;
    let (res, calls) = through(&strict, &at(Some(now() - 5))).await;
    assert_eq!((res.status, calls), (StatusCode::OK, 1));
}

/// Security review, finding 5: each trusted issuer has its own `typ` requirement.
#[tokio::test]
async fn each_trusted_issuer_checks_its_own_typ() {
    use tower_jwt_auth::TrustedIssuer;
    use tower_jwt_auth::jsonwebtoken::Algorithm as Alg;
    let other_secret = [9u8; 32];
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .trusting([
            TrustedIssuer::new(ISSUER, VerificationKey::hmac(Alg::HS256, SECRET).unwrap())
                .audience(AUDIENCE)
                .typ("at+jwt"),
            TrustedIssuer::new(
                "partner",
                VerificationKey::hmac(Alg::HS256, &other_secret).unwrap(),
            )
            .audience(AUDIENCE),
        ])
        .build()
        .unwrap();
    let typed = |typ: Option<&str>, iss: &str, secret: &[u8]| {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = typ.map(String::from);
        let claims = claims_with(|c| {
            c.insert("iss".into(), json!(iss));
        });
        mint_with(&header, &claims, &EncodingKey::from_secret(secret).unwrap())
    };
    // Ours: `at+jwt` only.
    assert_invalid_token(
        &layer,
        &typed(Some("JWT"), ISSUER, SECRET),
        "the token's type is not accepted",
    )
    .await;
    let (res, _) = through(&layer, &typed(Some("application/at+jwt"), ISSUER, SECRET)).await;
    assert_eq!(res.status, StatusCode::OK);
    // The partner's: no `typ` requirement.
    let (res, _) = through(&layer, &typed(Some("JWT"), "partner", &other_secret)).await;
    assert_eq!(res.status, StatusCode::OK);
}

#[tokio::test]
async fn optional_mode_lets_anonymous_requests_through_without_claims() {
    let layer = configured().optional().build().unwrap();
    let rec = Recorder::default();
    let res = send(&layer, &rec, get(None)).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(rec.last().claims.is_none());
    // A bad token is still rejected, and so is a malformed request.
    assert_invalid_token(&layer, "not.a.jwt", "the token is not a well-formed JWT").await;
    let req = Request::builder()
        .header(header::AUTHORIZATION, "Bearer")
        .body(Full::default())
        .unwrap();
    assert_eq!(
        send(&layer, &rec, req).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(rec.calls(), 1);
}

#[tokio::test]
async fn token_from_cookie() {
    let layer = configured()
        .token_from_cookie("access_token")
        .build()
        .unwrap();
    let rec = Recorder::default();
    let req = Request::builder()
        .header(
            header::COOKIE,
            format!("theme=dark; access_token={}", mint(&good_claims())),
        )
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&layer, &rec, req).await.status, StatusCode::OK);
    assert_eq!(rec.last().claims.unwrap().sub.as_deref(), Some("alice"));
    // The Authorization header is not consulted any more.
    assert_eq!(
        send(&layer, &rec, get(Some(&mint(&good_claims()))))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn token_from_custom_header_and_closure() {
    let rec = Recorder::default();
    let layer1 = configured()
        .token_from_header(http::HeaderName::from_static("x-access-token"))
        .build()
        .unwrap();
    let req = Request::builder()
        .header("x-access-token", mint(&good_claims()))
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&layer1, &rec, req).await.status, StatusCode::OK);

    let layer2 = configured()
        .token_from_fn(|_, uri| {
            uri.query()?
                .split('&')
                .find_map(|kv| kv.strip_prefix("access_token="))
                .map(String::from)
        })
        .build()
        .unwrap();
    let req = Request::builder()
        .uri(format!("/x?access_token={}", mint(&good_claims())))
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&layer2, &rec, req).await.status, StatusCode::OK);
    assert_eq!(rec.calls(), 2);
}

#[tokio::test]
async fn realm_is_configurable_and_escaped() {
    let rec = Recorder::default();
    let res = send(
        &configured().realm("todo \"app\"").build().unwrap(),
        &rec,
        get(None),
    )
    .await;
    assert_eq!(
        res.challenge.as_deref(),
        Some(r#"Bearer realm="todo \"app\"""#)
    );
}

/// A realm that could not appear in a header, or none at all, is a build-time error, on both
/// layers, instead of a panic.
#[test]
fn an_empty_or_invalid_realm_is_a_config_error() {
    for realm in ["", "   ", "caf\u{e9}", "line\nbreak"] {
        assert!(
            matches!(
                configured().realm(realm).build(),
                Err(ConfigError::InvalidValue(_))
            ),
            "{realm:?}"
        );
        assert!(
            tower_jwt_auth::RequireScope::all(["a"])
                .try_realm(realm)
                .is_err(),
            "{realm:?}"
        );
    }
}

#[tokio::test]
async fn custom_rejection_keeps_the_typed_reason() {
    let layer = configured()
        .on_rejection(|error: &AuthError, _realm: &str| {
            let code = if matches!(error, AuthError::Expired) {
                StatusCode::IM_A_TEAPOT
            } else {
                error.status()
            };
            http::Response::builder()
                .status(code)
                .body(Bytes::from(format!("custom: {error}")))
                .unwrap()
        })
        .build()
        .unwrap();
    let expired = claims_with(|c| {
        c.insert("exp".into(), json!(now() - 600));
    });
    let rec = Recorder::default();
    let res = send(&layer, &rec, get(Some(&mint(&expired)))).await;
    assert_eq!(res.status, StatusCode::IM_A_TEAPOT);
    assert_eq!(res.body, "custom: the token has expired");
    assert_eq!(rec.calls(), 0);
}

#[test]
fn weak_secret_is_a_build_time_error() {
    let err = JwtAuthLayer::<StandardClaims>::builder()
        .hs256(b"0123456789")
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        ConfigError::WeakSecret {
            min_len: 32,
            len: 10
        }
    );
    assert_eq!(
        err.to_string(),
        "the HMAC secret is 10 bytes long; this algorithm needs at least 32: use a random secret of 32 bytes or more"
    );
}

#[test]
fn accepted_algorithms_follow_the_keys() {
    assert_eq!(layer().accepted_algorithms(), [Algorithm::HS256]);
    let rsa = VerificationKey::from_pem(Algorithm::PS256, &fixture("rsa.pub.pem")).unwrap();
    let hmac = VerificationKey::hmac(Algorithm::HS512, &[1; 64]).unwrap();
    let layer = JwtAuthLayer::<StandardClaims>::builder()
        .keys([rsa.clone().with_kid("a"), hmac.clone().with_kid("b")])
        .build()
        .unwrap();
    assert_eq!(
        layer.accepted_algorithms(),
        [Algorithm::HS512, Algorithm::PS256]
    );
    let narrowed = JwtAuthLayer::<StandardClaims>::builder()
        .keys([rsa.with_kid("a"), hmac.with_kid("b")])
        .algorithms([Algorithm::PS256])
        .build()
        .unwrap();
    assert_eq!(narrowed.accepted_algorithms(), [Algorithm::PS256]);
}

#[test]
fn layer_debug_never_prints_the_secret() {
    let debug = format!("{:?}", layer());
    assert!(!debug.contains("test-secret"), "{debug}");
    assert!(debug.contains("todo-server"), "{debug}");
}

// ---- Security review 3 ----

/// A token signed with the test secret over exactly these header and payload bytes.
fn signed(header: &[u8], payload: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let key = EncodingKey::from_secret(SECRET).unwrap();
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).unwrap();
    format!("{input}.{signature}")
}

/// Finding 6: the header must be a JSON object and `alg` a string (RFC 7515 section 4), as
/// every strict JOSE library reads it; serde's array and enum-map forms used to pass.
#[tokio::test]
async fn a_header_that_is_not_an_object_or_an_alg_that_is_not_a_string_is_malformed() {
    let payload = serde_json::to_vec(&good_claims()).unwrap();
    // The same claims with a proper header pass: the refusals below are the header's.
    let rec = Recorder::default();
    let ok = signed(br#"{"alg":"HS256"}"#, &payload);
    assert_eq!(
        send(&layer(), &rec, get(Some(&ok))).await.status,
        StatusCode::OK
    );
    for header in [
        &br#"["HS256"]"#[..],
        br#"["HS256", null, null, null, null]"#,
        br#"{"alg":{"HS256":null}}"#,
        br#"{"alg":["HS256"]}"#,
        br#"{"alg":"none"}"#,
    ] {
        assert_invalid_token(
            &layer(),
            &signed(header, &payload),
            "the token is not a well-formed JWT",
        )
        .await;
    }
    assert_eq!(rec.calls(), 1);
}

/// Finding 7: a required claim given twice satisfied `require_claim` with its first value
/// while a map-shaped claims type saw the last one (`null`).
#[tokio::test]
async fn a_required_claim_given_twice_is_refused() {
    let layer = configured().require_claim("tenant").build().unwrap();
    let claims = good_claims().to_string();
    let body = claims.trim_end_matches('}');
    let rec = Recorder::default();
    let once = signed(
        br#"{"alg":"HS256"}"#,
        format!(r#"{body},"tenant":"acme"}}"#).as_bytes(),
    );
    assert_eq!(
        send(&layer, &rec, get(Some(&once))).await.status,
        StatusCode::OK
    );
    for twice in [
        format!(r#"{body},"tenant":"acme","tenant":null}}"#),
        format!(r#"{body},"tenant":null,"tenant":"acme"}}"#),
        format!(r#"{body},"tenant":"acme","tenant":"other"}}"#),
    ] {
        let token = signed(br#"{"alg":"HS256"}"#, twice.as_bytes());
        let res = send(&layer, &rec, get(Some(&token))).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{twice}");
        assert_eq!(res.json()["error"], "invalid_token", "{twice}");
    }
    assert_eq!(rec.calls(), 1);
}

/// Finding 5: with revocations and no `max_age`, a token whose `iat` lies in the future
/// escaped `revoke_subject` (which covers tokens issued until now). Such a token is refused
/// whenever revocations are configured; without them nothing changes.
#[cfg(feature = "revocation")]
#[tokio::test]
async fn with_revocations_an_iat_in_the_future_is_refused() {
    let revocations = tower_jwt_auth::Revocations::in_memory();
    let checked = configured()
        .revocations(revocations.clone())
        .build()
        .unwrap();
    let future = mint(&claims_with(|c| {
        c.insert("iat".into(), json!(now() + 3600));
    }));
    assert_invalid_token(&checked, &future, "the token is not valid yet").await;
    // Within the leeway, and without revocations, it is accepted as before.
    let rec = Recorder::default();
    let skewed = mint(&claims_with(|c| {
        c.insert("iat".into(), json!(now() + 10));
    }));
    assert_eq!(
        send(&checked, &rec, get(Some(&skewed))).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(&layer(), &rec, get(Some(&future))).await.status,
        StatusCode::OK
    );
}
