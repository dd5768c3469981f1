//! Tower middleware that answers "who is calling, and may they do this?" for HTTP services
//! with bearer JWTs.
//!
//! - [`JwtAuthLayer`] validates `Authorization: Bearer` JWTs (RFC 6750) and injects the
//!   typed claims, as [`Claims<C>`], into the request extensions. It wraps any tower service
//!   over `http::Request`: a `service_fn`, an axum `Router`, a hyper server, a tonic server.
//!   Failures are RFC 6750 responses (`401`, `400`) with a `WWW-Authenticate` challenge.
//! - [`RequireScope`] and [`require`] add authorization on top and answer
//!   `403 insufficient_scope`.
//! - [`VerificationKey`] binds each key to the one algorithm it may verify: HMAC, RSA, RSA-PSS,
//!   ECDSA and EdDSA, from secrets, PEM, DER or JWK. [`KeySet`] picks keys by `kid` and rotates
//!   without locks; `jwks::JwksSource` (feature `jwks`) fetches and caches an identity
//!   provider's keys; [`TrustedIssuer`] lets one layer trust several issuers.
//! - `Revocations` (feature `revocation`) refuses tokens before they expire (logout, "log out
//!   everywhere"), in one process or, with the `redis` feature, on every instance within milliseconds, from a local
//!   replica the request path reads without waiting on the network.
//! - [`Dpop`] checks DPoP-bound tokens and their proofs (RFC 9449), and
//!   [`ClientCertificate`] certificate-bound ones (RFC 8705): a token bound to a key is never
//!   accepted as a plain bearer token.
//! - `introspect::Introspection` (feature `jwks`) validates opaque tokens at their
//!   authorization server (RFC 7662), cached; [`ProtectedResourceMetadata`] publishes the
//!   resource's RFC 9728 metadata, and the layer's challenges point to it.
//! - For upstreams that do not read JWTs, [`ForwardClaimsLayer`] copies chosen claims into
//!   request headers, and [`OriginalRequest`] reads the request a proxy (nginx
//!   `auth_request`, Traefik, Caddy) asks a forward-auth server about.
//! - [`JwtAuthLayer::readiness`] says whether the layer can serve (keys, revocations,
//!   introspection), and the [`metrics`] module lists what it records (feature `metrics`).
//! - [`TokenIssuer`] signs tokens the layer accepts, and (feature `password`)
//!   `password::Passwords` hashes with argon2id off the async executor and
//!   `throttle::LoginThrottle` bounds password guessing.
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//!
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode, header};
//! use http_body_util::Full;
//! use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_jwt_auth::{Claims, JwtAuthLayer, RequireScope, StandardClaims};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let secret = b"an example secret of at least 32 bytes";
//! let auth = JwtAuthLayer::<StandardClaims>::builder()
//!     .hs256(secret) // a weak secret is an error, reported by `build`
//!     .issuer("todo-server")
//!     .audience("todo-api")
//!     .leeway(Duration::from_secs(30))
//!     .build()?;
//! let app = ServiceBuilder::new()
//!     .layer(auth)
//!     .layer(RequireScope::all(["todos:read"]))
//!     .service(service_fn(|req: Request<Full<Bytes>>| async move {
//!         let claims = req.extensions().get::<Claims<StandardClaims>>().unwrap();
//!         let body = Bytes::from(claims.sub.clone().unwrap_or_default());
//!         Ok::<_, Infallible>(Response::new(Full::new(body)))
//!     }));
//!
//! let claims = serde_json::json!({
//!     "sub": "alice", "iss": "todo-server", "aud": "todo-api",
//!     "scope": "todos:read", "exp": get_current_timestamp() + 300,
//! });
//! let token = encode(&Header::default(), &claims, &EncodingKey::from_secret(secret)?)?;
//! let req = Request::builder()
//!     .header(header::AUTHORIZATION, format!("Bearer {token}"))
//!     .body(Full::default())?;
//! let res = app.oneshot(req).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `cache` | no | [`JwtAuthLayerBuilder::cache`]: the validated-token cache (quick_cache) |
//! | `revocation` | no | `Revocations`: tokens and subjects refused before they expire, from a lock-free local replica (papaya) |
//! | `password` | no | [`password::Passwords`]: argon2id hashing on tokio's blocking pool; [`throttle::LoginThrottle`]: the OWASP login throttle |
//! | `jwks` | no | [`jwks::JwksSource`]: cached, self-refreshing JWKS and OIDC discovery over HTTP (hyper-util client); [`introspect::Introspection`] of opaque tokens |
//! | `jwks-rustls` | no | `jwks` over HTTPS through rustls with the webpki roots |
//! | `redis` | no | (implies `revocation`) `RevocationsBuilder::redis`: revocations shared by every instance through Redis; with `password`, a login throttle shared likewise |
//! | `axum` | no | [`Claims<C>`] as an axum extractor, [`AuthError`] as an axum response |
//! | `metrics` | no | counters, gauges and histograms on the `metrics` facade, listed in [`metrics`] |
//! | `aws-lc-rs` | no | verify with `aws-lc-rs` instead of the pure-Rust RustCrypto crates: faster RSA and ECDSA, slower HMAC (figures in the README), and it needs a C compiler |

#![warn(missing_docs)]
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[macro_use]
mod macros;

// The middleware's types are at the root; these two modules hold only their futures.
pub mod auth;
pub mod authorize;
pub mod body;
mod claims;
mod crypto;
#[cfg(feature = "jwks")]
mod discover;
mod error;
mod forward;
#[cfg(feature = "jwks")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
pub mod introspect;
mod issuer;
#[cfg(feature = "jwks")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
pub mod jwks;
mod keys;
mod metadata;
pub mod metrics;
mod original;
#[cfg(feature = "password")]
#[cfg_attr(docsrs, doc(cfg(feature = "password")))]
pub mod password;
mod ready;
#[cfg(feature = "redis")]
mod redis_conn;
mod rejection;
#[cfg(feature = "revocation")]
mod revoke;
mod sender;
#[cfg(feature = "password")]
#[cfg_attr(docsrs, doc(cfg(feature = "password")))]
pub mod throttle;
mod token;
mod trust;
mod validate;

#[cfg(feature = "axum")]
mod axum;

#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzz_harness;

/// Private parts that `benches/` measure on their own. Not part of the public API: no
/// semver promise, hidden from the docs.
#[doc(hidden)]
pub mod __bench {
    pub use crate::sender::ReplayStore;
}

// One public path per type: the root, except the futures (`auth::future`,
// `authorize::future`), the response body (`body`) and the feature-gated `jwks`, `password`
// and `throttle` namespaces.
pub use auth::{builder::JwtAuthLayerBuilder, layer::JwtAuthLayer, service::JwtAuth};
pub use authorize::{
    layer::{AuthorizeLayer, require},
    requirement::{RequireClaims, RequireScope, Requirement},
    service::Authorize,
};
pub use claims::{Audience, Claims, Scopes, StandardClaims};
pub use error::{AuthError, ConfigError};
pub use forward::{ForwardClaims, ForwardClaimsLayer, ForwardClaimsLayerBuilder};
pub use issuer::{
    ACCESS_TOKEN_TYPE, IssueError, IssuedToken, MAX_TTL, TokenIssuer, TokenIssuerBuilder,
};
// `jsonwebtoken` stays public on purpose: keys come in as its `DecodingKey`/`Jwk` types and
// its `Algorithm` names them, so users need the very version this crate links. It makes
// jsonwebtoken's major version part of this crate's API: a jsonwebtoken major release is a
// major release here.
#[cfg(feature = "jwks")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
pub use discover::DiscoveredIssuers;
pub use jsonwebtoken;
pub use keys::{KeySet, KeySource, MIN_RSA_BITS, VerificationKey};
pub use metadata::{
    MetadataService, ProtectedResourceMetadata, ProtectedResourceMetadataBuilder, WELL_KNOWN,
};
pub use original::{OriginalRequest, OriginalRequestError};
pub use ready::{Check, Readiness};
pub use rejection::{DEFAULT_REALM, OnRejection};
#[cfg(feature = "revocation")]
#[cfg_attr(docsrs, doc(cfg(feature = "revocation")))]
pub use revoke::{OutOfSync, Revocations, RevocationsBuilder};
#[cfg(feature = "redis")]
pub use sender::ReplayFallback;
pub use sender::{
    CLIENT_CERT, CLIENT_CERT_CHAIN, ClientCertificate, DEFAULT_DPOP_ALGORITHMS, Dpop, DpopMode,
    DpopVerifier, ForwardedCertificates, SenderConstraint,
};
pub use token::DEFAULT_MAX_TOKEN_LEN;
pub use trust::TrustedIssuer;
pub use validate::{DEFAULT_LEEWAY, MAX_LEEWAY};
