//! OAuth 2.0 Protected Resource Metadata (RFC 9728): the document that tells a client which
//! authorization servers protect this resource, which scopes it knows and how tokens are
//! presented, and the service that publishes it at `/.well-known/oauth-protected-resource`.
//!
//! The layer points at it from its challenges with
//! [`JwtAuthLayerBuilder::resource_metadata`](crate::JwtAuthLayerBuilder::resource_metadata)
//! (section 5.1), which is how a client (an MCP client, for one) that was refused finds where
//! to get a token.

use std::{
    convert::Infallible,
    future::{Ready, ready},
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use serde::Serialize;
use tower_service::Service;

use http_body_util::Full;

use crate::{ConfigError, Dpop};

/// The well-known path segment of section 3.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// A protected resource's metadata (RFC 9728 section 2), built with
/// [`ProtectedResourceMetadata::builder`].
///
/// ```
/// use tower_jwt_auth::{JwtAuthLayer, ProtectedResourceMetadata, StandardClaims};
///
/// # fn main() -> Result<(), tower_jwt_auth::ConfigError> {
/// let metadata = ProtectedResourceMetadata::builder("https://api.example.com/todos")
///     .authorization_server("https://login.example.com")
///     .scopes_supported(["todos:read", "todos:write"])
///     .resource_name("Todo API")
///     .build()?;
/// assert_eq!(
///     metadata.url(),
///     "https://api.example.com/.well-known/oauth-protected-resource/todos"
/// );
/// assert_eq!(metadata.path(), "/.well-known/oauth-protected-resource/todos");
/// let auth = JwtAuthLayer::<StandardClaims>::builder()
///     .hs256(b"a-secret-of-at-least-thirty-two-bytes!!")
///     .resource_metadata(metadata.url())
///     .build()?;
/// // Serve `metadata.service()` at `metadata.path()`, outside `auth`.
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ProtectedResourceMetadata {
    document: Arc<Document>,
    url: Arc<str>,
    path: Arc<str>,
    json: Bytes,
}

/// The JSON members of section 2; empty lists and unset values are left out.
#[derive(Debug, Clone, Default, Serialize)]
struct Document {
    resource: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    authorization_servers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jwks_uri: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    scopes_supported: Vec<String>,
    bearer_methods_supported: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_documentation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_policy_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_tos_uri: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    tls_client_certificate_bound_access_tokens: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dpop_signing_alg_values_supported: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    dpop_bound_access_tokens_required: bool,
}

/// The settings of a [`ProtectedResourceMetadata`]; each is infallible, and
/// [`build`](Self::build) reports a mistake.
#[derive(Debug, Clone)]
pub struct ProtectedResourceMetadataBuilder {
    document: Document,
}

impl ProtectedResourceMetadata {
    /// The metadata of the resource identified by `resource` (section 2: an `https` URL
    /// without a fragment; `http` is accepted for loopback hosts, for development).
    pub fn builder(resource: impl Into<String>) -> ProtectedResourceMetadataBuilder {
        ProtectedResourceMetadataBuilder {
            document: Document {
                resource: resource.into(),
                // The layer reads tokens from the `Authorization` header (RFC 6750 section
                // 2.1) only.
                bearer_methods_supported: vec!["header"],
                ..Document::default()
            },
        }
    }

    /// Where the document is published (section 3.1): the well-known segment inserted
    /// between the resource's host and its path (`https://api.example.com/todos` publishes
    /// at `https://api.example.com/.well-known/oauth-protected-resource/todos`), the query
    /// kept.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The path part of [`url`](Self::url), to route the [`service`](Self::service) at.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The resource identifier.
    pub fn resource(&self) -> &str {
        &self.document.resource
    }

    /// The document as JSON.
    pub fn to_json(&self) -> Bytes {
        self.json.clone()
    }

    /// A service that answers `GET` and `HEAD` with the document (`200`,
    /// `application/json`), and any other method with `405`. Route it at
    /// [`path`](Self::path), outside the authentication layer: the document is public.
    pub fn service(&self) -> MetadataService {
        MetadataService {
            json: self.json.clone(),
        }
    }
}

impl ProtectedResourceMetadataBuilder {
    /// An authorization server (its issuer identifier, RFC 8414) whose tokens this resource
    /// accepts; call once per server.
    pub fn authorization_server(mut self, issuer: impl Into<String>) -> Self {
        self.document.authorization_servers.push(issuer.into());
        self
    }

    /// The resource's own JWK Set, if it signs responses (`jwks_uri`).
    pub fn jwks_uri(mut self, url: impl Into<String>) -> Self {
        self.document.jwks_uri = Some(url.into());
        self
    }

    /// The scopes clients may ask for to reach this resource (`scopes_supported`).
    pub fn scopes_supported(mut self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.document.scopes_supported = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// A name for people (`resource_name`).
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.document.resource_name = Some(name.into());
        self
    }

    /// A page for developers (`resource_documentation`).
    pub fn resource_documentation(mut self, url: impl Into<String>) -> Self {
        self.document.resource_documentation = Some(url.into());
        self
    }

    /// The data-use policy (`resource_policy_uri`).
    pub fn resource_policy_uri(mut self, url: impl Into<String>) -> Self {
        self.document.resource_policy_uri = Some(url.into());
        self
    }

    /// The terms of service (`resource_tos_uri`).
    pub fn resource_tos_uri(mut self, url: impl Into<String>) -> Self {
        self.document.resource_tos_uri = Some(url.into());
        self
    }

    /// Says the resource accepts certificate-bound tokens (RFC 8705):
    /// `tls_client_certificate_bound_access_tokens: true`.
    pub fn certificate_bound_tokens(mut self) -> Self {
        self.document.tls_client_certificate_bound_access_tokens = true;
        self
    }

    /// Describes the layer's DPoP settings: `dpop_signing_alg_values_supported` (the proof
    /// algorithms `dpop` accepts) and `dpop_bound_access_tokens_required` (its mode is
    /// `Required`).
    pub fn dpop(mut self, dpop: &Dpop) -> Self {
        self.document.dpop_signing_alg_values_supported = dpop.algorithm_names();
        self.document.dpop_bound_access_tokens_required = dpop.requires_dpop();
        self
    }

    /// The metadata, or [`ConfigError::InvalidValue`] when the resource identifier is not an
    /// `https` URL without a fragment (or `http` on a loopback host).
    pub fn build(self) -> Result<ProtectedResourceMetadata, ConfigError> {
        let invalid = ConfigError::InvalidValue(
            "the resource identifier must be an https URL without a fragment",
        );
        let resource = &self.document.resource;
        let uri = fluent_uri::Uri::parse(resource.as_str()).map_err(|_| invalid.clone())?;
        let authority = uri.authority().ok_or(invalid.clone())?;
        let host = authority.host();
        if host.is_empty() {
            return Err(invalid);
        }
        let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
        let scheme = uri.scheme().as_str().to_ascii_lowercase();
        if uri.fragment().is_some() || !(scheme == "https" || (scheme == "http" && loopback)) {
            return Err(invalid);
        }
        // Section 3.1: the well-known segment goes between the host and the path; "any
        // terminating slash (/) following the host component" is removed, so a path of just
        // "/" goes, and one that ends in a slash keeps it (as oauth4webapi reads it too). The
        // query stays.
        let path = match uri.path().as_str() {
            "/" => "",
            path => path,
        };
        let query = uri
            .query()
            .map(|q| format!("?{}", q.as_str()))
            .unwrap_or_default();
        let path = format!("{WELL_KNOWN}{path}");
        let url = format!("{scheme}://{}{path}{query}", authority.as_str());
        let json = serde_json::to_vec(&self.document).expect("the document serializes");
        Ok(ProtectedResourceMetadata {
            document: Arc::new(self.document),
            url: url.into(),
            path: path.into(),
            json: json.into(),
        })
    }
}

/// Serves a [`ProtectedResourceMetadata`] document; see
/// [`ProtectedResourceMetadata::service`].
#[derive(Debug, Clone)]
pub struct MetadataService {
    json: Bytes,
}

impl<B> Service<Request<B>> for MetadataService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut res = Response::new(Full::new(Bytes::new()));
        if req.method() == Method::GET || req.method() == Method::HEAD {
            let headers = res.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            // Public and the same for everyone; clients may keep it for an hour.
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            if req.method() == Method::GET {
                *res.body_mut() = Full::new(self.json.clone());
            } else if let Ok(len) = HeaderValue::try_from(self.json.len().to_string()) {
                headers.insert(header::CONTENT_LENGTH, len);
            }
        } else {
            *res.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        ready(Ok(res))
    }
}
