//! OAuth 2.0 Protected Resource Metadata (RFC 9728): the document, where it is published
//! (section 3.1), the service that serves it, and the `resource_metadata` parameter of the
//! layer's challenges (section 5.1), read back by an independent challenge parser.

mod common;

use bytes::Bytes;
use common::*;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tower::{Layer, ServiceExt};
use tower_jwt_auth::{
    ConfigError, Dpop, DpopMode, JwtAuthLayer, JwtAuthLayerBuilder, ProtectedResourceMetadata,
    RequireScope, StandardClaims, WELL_KNOWN,
};

const METADATA_URL: &str = "https://api.example.com/.well-known/oauth-protected-resource/todos";

fn metadata(resource: &str) -> Result<ProtectedResourceMetadata, ConfigError> {
    ProtectedResourceMetadata::builder(resource).build()
}

#[test]
fn the_document_has_the_rfc_members_and_leaves_out_what_is_unset() {
    let dpop = Dpop::new("https://api.example.com")
        .mode(DpopMode::Required)
        .algorithms(["ES256", "EdDSA"]);
    let full = ProtectedResourceMetadata::builder("https://api.example.com/todos")
        .authorization_server("https://login.example.com")
        .authorization_server("https://login.example.com/tenant-a")
        .scopes_supported(["todos:read", "todos:write"])
        .resource_name("Todo API")
        .resource_documentation("https://docs.example.com/todos")
        .resource_policy_uri("https://example.com/policy")
        .resource_tos_uri("https://example.com/tos")
        .jwks_uri("https://api.example.com/jwks.json")
        .certificate_bound_tokens()
        .dpop(&dpop)
        .build()
        .unwrap();
    let json: Value = serde_json::from_slice(&full.to_json()).unwrap();
    assert_eq!(
        json,
        json!({
            "resource": "https://api.example.com/todos",
            "authorization_servers": ["https://login.example.com", "https://login.example.com/tenant-a"],
            "jwks_uri": "https://api.example.com/jwks.json",
            "scopes_supported": ["todos:read", "todos:write"],
            "bearer_methods_supported": ["header"],
            "resource_name": "Todo API",
            "resource_documentation": "https://docs.example.com/todos",
            "resource_policy_uri": "https://example.com/policy",
            "resource_tos_uri": "https://example.com/tos",
            "tls_client_certificate_bound_access_tokens": true,
            "dpop_signing_alg_values_supported": ["ES256", "EdDSA"],
            "dpop_bound_access_tokens_required": true,
        })
    );
    assert_eq!(full.resource(), "https://api.example.com/todos");

    // Only `resource` is required (section 2); the layer reads tokens from the header only.
    let bare = metadata("https://api.example.com").unwrap();
    let json: Value = serde_json::from_slice(&bare.to_json()).unwrap();
    assert_eq!(
        json,
        json!({"resource": "https://api.example.com", "bearer_methods_supported": ["header"]})
    );

    // DPoP allowed beside bearer: the algorithms, and no requirement.
    let allowed = ProtectedResourceMetadata::builder("https://api.example.com")
        .dpop(&Dpop::new("https://api.example.com"))
        .build()
        .unwrap();
    let json: Value = serde_json::from_slice(&allowed.to_json()).unwrap();
    assert!(
        json["dpop_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .len()
            >= 5
    );
    assert!(json.get("dpop_bound_access_tokens_required").is_none());
}

#[test]
fn the_document_is_published_where_section_3_1_puts_it() {
    for (resource, url, path) in [
        (
            "https://api.example.com",
            "https://api.example.com/.well-known/oauth-protected-resource",
            WELL_KNOWN,
        ),
        (
            "https://api.example.com/",
            "https://api.example.com/.well-known/oauth-protected-resource",
            WELL_KNOWN,
        ),
        (
            "https://api.example.com/todos",
            METADATA_URL,
            "/.well-known/oauth-protected-resource/todos",
        ),
        // Only the slash right after the host goes; a path's own trailing slash stays.
        (
            "https://api.example.com/todos/",
            "https://api.example.com/.well-known/oauth-protected-resource/todos/",
            "/.well-known/oauth-protected-resource/todos/",
        ),
        (
            "https://api.example.com/?tenant=a",
            "https://api.example.com/.well-known/oauth-protected-resource?tenant=a",
            WELL_KNOWN,
        ),
        (
            "https://api.example.com:8443/v1/todos?tenant=a",
            "https://api.example.com:8443/.well-known/oauth-protected-resource/v1/todos?tenant=a",
            "/.well-known/oauth-protected-resource/v1/todos",
        ),
        // `http` for a loopback host, for development.
        (
            "http://127.0.0.1:8000",
            "http://127.0.0.1:8000/.well-known/oauth-protected-resource",
            WELL_KNOWN,
        ),
        (
            "http://localhost:8000/api",
            "http://localhost:8000/.well-known/oauth-protected-resource/api",
            "/.well-known/oauth-protected-resource/api",
        ),
    ] {
        let metadata = metadata(resource).unwrap();
        assert_eq!(metadata.url(), url, "for {resource}");
        assert_eq!(metadata.path(), path, "for {resource}");
    }
}

#[test]
fn a_resource_that_is_not_an_https_url_without_a_fragment_is_refused() {
    for resource in [
        "",
        "api.example.com",
        "/todos",
        "http://api.example.com",
        "ftp://api.example.com",
        "https://api.example.com/todos#part",
        "https://",
        "not a url",
    ] {
        assert!(
            matches!(metadata(resource), Err(ConfigError::InvalidValue(_))),
            "{resource:?} was accepted"
        );
    }
}

async fn serve(method: Method) -> (StatusCode, HeaderMap, Bytes) {
    let service = ProtectedResourceMetadata::builder("https://api.example.com/todos")
        .authorization_server("https://login.example.com")
        .build()
        .unwrap()
        .service();
    let req = Request::builder()
        .method(method)
        .uri("/.well-known/oauth-protected-resource/todos")
        .body(Full::<Bytes>::default())
        .unwrap();
    let res = service.oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test]
async fn the_service_answers_get_and_head_and_refuses_other_methods() {
    let (status, headers, body) = serve(Method::GET).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=3600");
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["resource"], "https://api.example.com/todos");
    assert_eq!(
        json["authorization_servers"],
        json!(["https://login.example.com"])
    );

    let (status, headers, head_body) = serve(Method::HEAD).await;
    assert_eq!(status, StatusCode::OK);
    assert!(head_body.is_empty());
    assert_eq!(headers[header::CONTENT_LENGTH], body.len().to_string());

    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let (status, headers, body) = serve(method).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers[header::ALLOW], "GET, HEAD");
        assert!(body.is_empty());
    }
}

/// Every challenge of a response, as the `http-auth` crate parses them: scheme and
/// unescaped parameters.
fn challenges(headers: &HeaderMap) -> Vec<(String, Vec<(String, String)>)> {
    let joined: Vec<&str> = headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    let joined = joined.join(", ");
    http_auth::parse_challenges(&joined)
        .unwrap_or_else(|e| panic!("{joined:?} does not parse: {e}"))
        .into_iter()
        .map(|c| {
            let params = c.params.iter();
            let params = params.map(|(k, v)| ((*k).to_owned(), v.to_unescaped()));
            (c.scheme.to_owned(), params.collect())
        })
        .collect()
}

fn param<'a>(challenge: &'a (String, Vec<(String, String)>), name: &str) -> Option<&'a str> {
    challenge
        .1
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn reject(
    layer: &JwtAuthLayer<StandardClaims>,
    token: Option<&str>,
) -> (StatusCode, HeaderMap) {
    let rec = Recorder::default();
    let res = layer
        .layer(rec.service())
        .oneshot(get(token))
        .await
        .unwrap();
    assert_eq!(rec.calls(), 0, "the inner service was reached");
    (res.status(), res.headers().clone())
}

/// A layer whose challenges point to [`METADATA_URL`].
fn pointing() -> JwtAuthLayerBuilder<StandardClaims> {
    JwtAuthLayer::builder()
        .hs256(SECRET)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .resource_metadata(METADATA_URL)
}

#[tokio::test]
async fn every_401_challenge_points_to_the_metadata() {
    let layer = pointing().build().unwrap();
    // No token: the bare challenge (section 5.1's example) still carries the pointer.
    let (status, headers) = reject(&layer, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenges(&headers),
        [(
            "Bearer".to_owned(),
            vec![
                ("realm".to_owned(), "api".to_owned()),
                ("resource_metadata".to_owned(), METADATA_URL.to_owned()),
            ]
        )]
    );
    // A bad token: the error and the pointer.
    let (status, headers) = reject(&layer, Some("not.a.token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let parsed = challenges(&headers);
    assert_eq!(param(&parsed[0], "error"), Some("invalid_token"));
    assert_eq!(param(&parsed[0], "resource_metadata"), Some(METADATA_URL));

    // With DPoP, both challenges carry it.
    let layer = pointing()
        .dpop(Dpop::new("https://api.example.com"))
        .build()
        .unwrap();
    let (_, headers) = reject(&layer, None).await;
    let parsed = challenges(&headers);
    let schemes: Vec<&str> = parsed.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(schemes, ["Bearer", "DPoP"]);
    for challenge in &parsed {
        assert_eq!(param(challenge, "resource_metadata"), Some(METADATA_URL));
    }
    assert!(param(&parsed[1], "algs").is_some());

    // Without the setting there is no pointer.
    let plain = JwtAuthLayer::<StandardClaims>::builder()
        .hs256(SECRET)
        .build()
        .unwrap();
    let (_, headers) = reject(&plain, None).await;
    assert_eq!(param(&challenges(&headers)[0], "resource_metadata"), None);
}

#[tokio::test]
async fn a_403_names_the_scope_needed_and_points_to_the_metadata() {
    let auth = pointing().build().unwrap();
    let require = RequireScope::all(["todos:admin"]).resource_metadata(METADATA_URL);
    let rec = Recorder::default();
    let service = auth.layer(require.layer(rec.service()));
    let res = service
        .oneshot(get(Some(&mint(&good_claims()))))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(rec.calls(), 0);
    let parsed = challenges(res.headers());
    assert_eq!(parsed.len(), 1);
    assert_eq!(param(&parsed[0], "error"), Some("insufficient_scope"));
    assert_eq!(param(&parsed[0], "scope"), Some("todos:admin"));
    assert_eq!(param(&parsed[0], "resource_metadata"), Some(METADATA_URL));
}

#[test]
fn a_metadata_url_that_is_not_an_absolute_http_url_is_a_configuration_error() {
    for url in [
        "",
        "/.well-known/oauth-protected-resource",
        "ftp://api.example.com/x",
        "https://api.example.com/x#frag",
        "https://api.example.com/\"quoted\"",
        "https://api.example.com/\nx",
        "https:///x",
    ] {
        let built = JwtAuthLayer::<StandardClaims>::builder()
            .hs256(SECRET)
            .resource_metadata(url)
            .build();
        assert!(
            matches!(built, Err(ConfigError::InvalidValue(_))),
            "{url:?} was accepted"
        );
        assert!(
            RequireScope::all(["a"]).try_resource_metadata(url).is_err(),
            "{url:?}"
        );
    }
}
