//! Authentication: validate the bearer JWT and inject its claims.
//!
//! [`JwtAuthLayer`](crate::JwtAuthLayer) wraps any service taking `http::Request`s. For each request its
//! [`JwtAuth`](crate::JwtAuth) service
//!
//! 1. finds the token (by default in `Authorization: Bearer`, RFC 6750 section 2.1) and
//!    refuses one that is too long or malformed before decoding it;
//! 2. picks the configured key by the token's `kid` (or `alg`; with several trusted issuers,
//!    the issuer's keys by `iss` first), waiting for a JWKS refresh only when the `kid` is
//!    new; verifies the signature with that key's single algorithm, and checks `exp`, `nbf`, `iss`, `aud`, `typ` and the
//!    required claims;
//! 3. inserts [`Claims<C>`](crate::Claims) and [`Scopes`](crate::Scopes) into the request
//!    extensions and calls the inner service.
//!
//! Any failure becomes an RFC 6750 response (`401`, or `400` for a malformed request) with a
//! `WWW-Authenticate` challenge; the inner service is not called. Authentication failures are
//! never service errors, so `JwtAuth<S, C>` has the same `Error` type as `S`.
//!
//! # Example
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//!
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode, header};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_jwt_auth::{Claims, JwtAuthLayer, StandardClaims};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let secret = b"an example secret of at least 32 bytes";
//! let auth = JwtAuthLayer::<StandardClaims>::builder()
//!     .hs256(secret)
//!     .issuer("todo-server")
//!     .audience("todo-api")
//!     .leeway(Duration::from_secs(30))
//!     .build()?;
//!
//! let svc = ServiceBuilder::new().layer(auth).service(service_fn(|req: Request<Full<Bytes>>| async move {
//!     let claims = req.extensions().get::<Claims<StandardClaims>>().expect("set by JwtAuth");
//!     let body = format!("hello {}", claims.sub.as_deref().unwrap_or("?"));
//!     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
//! }));
//!
//! // No token: 401 with a challenge and no error code.
//! let res = svc.clone().oneshot(Request::new(Full::default())).await?;
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(res.headers()[header::WWW_AUTHENTICATE], "Bearer realm=\"api\"");
//!
//! // A token that is not a JWT: 401 invalid_token.
//! let req = Request::builder()
//!     .header(header::AUTHORIZATION, "Bearer not.a.jwt")
//!     .body(Full::default())?;
//! let res = svc.oneshot(req).await?;
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! # Ok(())
//! # }
//! ```

pub(crate) mod builder;
mod config;
pub mod future;
pub(crate) mod layer;
pub(crate) mod service;
