//! Authorization: requirements on a validated token that answer `403 insufficient_scope`.
//!
//! Put these layers inside (after) [`JwtAuthLayer`](crate::JwtAuthLayer), for a whole service
//! or per route. They read what `JwtAuth` injected; a request without claims (no
//! `JwtAuthLayer` in front, or one in [`optional`](crate::JwtAuthLayerBuilder::optional) mode that
//! saw no token) is answered `401` as unauthenticated.
//!
//! - [`RequireScope::all`](crate::RequireScope::all) / [`RequireScope::any`](crate::RequireScope::any): scopes from the `scope` or `scp` claim,
//!   whatever the claims type.
//! - [`require`](crate::require): any predicate on the typed claims.
//! - [`AuthorizeLayer::new`](crate::AuthorizeLayer::new) with your own [`Requirement`](crate::Requirement).
//!
//! ```
//! use std::convert::Infallible;
//!
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode, header};
//! use http_body_util::Full;
//! use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_jwt_auth::{JwtAuthLayer, RequireScope, StandardClaims, require};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let secret = b"an example secret of at least 32 bytes";
//! let svc = ServiceBuilder::new()
//!     .layer(JwtAuthLayer::<StandardClaims>::builder().hs256(secret).build()?)
//!     .layer(RequireScope::all(["todos:write"]))
//!     .layer(require(|claims: &StandardClaims| claims.sub.is_some()))
//!     .service(service_fn(|_req: Request<Full<Bytes>>| async {
//!         Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
//!     }));
//!
//! // bob may read but not write.
//! let claims = serde_json::json!({
//!     "sub": "bob", "scope": "todos:read", "exp": get_current_timestamp() + 60,
//! });
//! let token = encode(&Header::default(), &claims, &EncodingKey::from_secret(secret)?)?;
//! let req = Request::builder()
//!     .header(header::AUTHORIZATION, format!("Bearer {token}"))
//!     .body(Full::default())?;
//! let res = svc.oneshot(req).await?;
//! assert_eq!(res.status(), StatusCode::FORBIDDEN);
//! assert!(res.headers()[header::WWW_AUTHENTICATE]
//!     .to_str()?
//!     .contains("error=\"insufficient_scope\""));
//! # Ok(())
//! # }
//! ```

pub mod future;
pub(crate) mod layer;
pub(crate) mod requirement;
pub(crate) mod service;
