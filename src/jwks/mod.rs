//! Remote key sets: JWKS documents and OpenID Connect discovery (feature `jwks`).
//!
//! A [`JwksSource`] fetches an identity provider's JWKS, caches it, and keeps it fresh:
//!
//! - it honours `Cache-Control: max-age` within configurable bounds and refreshes in the
//!   background before the keys expire;
//! - a token with an unknown `kid` triggers at most one refresh at a time (concurrent requests
//!   wait for the same fetch), and no more than one per cooldown, so a flood of random `kid`s
//!   cannot become a flood of fetches;
//! - when the provider is down or slow (fetches time out), the last good keys keep serving up
//!   to a configurable staleness; the service can start while the provider is unreachable and
//!   accepts tokens as soon as keys arrive. Every failure is logged with `tracing`.
//!
//! [`JwksSource::discover`] starts from an issuer URL: it reads
//! `/.well-known/openid-configuration`, requires its `issuer` to match exactly, and uses its
//! `jwks_uri`. The built-in client speaks plain HTTP, and HTTPS with the `jwks-rustls`
//! feature; [`JwksBuilder::client`] takes any tower HTTP client instead (a proxy, a custom CA).
//!
//! ```no_run
//! use tower_jwt_auth::{JwtAuthLayer, StandardClaims, jwks::JwksSource};
//!
//! # #[tokio::main] async fn main() -> Result<(), tower_jwt_auth::ConfigError> {
//! let keys = JwksSource::discover("https://idp.example.com/realms/acme").build()?;
//! let layer = JwtAuthLayer::<StandardClaims>::builder()
//!     .key_source(keys)
//!     .issuer("https://idp.example.com/realms/acme")
//!     .audience("todo-api")
//!     .build()?;
//! # Ok(())
//! # }
//! ```

mod client;
mod document;
mod source;

pub use client::HttpClient;
pub(crate) use client::{Connector, hyper_client};
#[cfg(any(test, fuzzing))]
pub(crate) use document::{parse_discovery, parse_jwks};
pub(crate) use source::check_transport;
pub use source::{JwksBuilder, JwksSource};
