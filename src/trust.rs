//! Trusting several issuers with one layer.
//!
//! Each [`TrustedIssuer`] names an issuer (`iss`, matched exactly), its keys, its audiences
//! and optionally its algorithms. [`JwtAuthLayer::trusting`](crate::JwtAuthLayer::trusting)
//! reads the token's `iss` first and checks the token only against that issuer's
//! configuration: a token from one issuer is never verified with another issuer's keys.
//!
//! ```
//! use tower_jwt_auth::{Algorithm, JwtAuthLayer, StandardClaims, TrustedIssuer, VerificationKey};
//!
//! let ours = VerificationKey::hmac(Algorithm::HS256, &[7; 32]).unwrap();
//! let partner = VerificationKey::hmac(Algorithm::HS512, &[9; 64]).unwrap();
//! let layer = JwtAuthLayer::<StandardClaims>::trusting([
//!     TrustedIssuer::new("todo-server", ours).audience("todo-api"),
//!     TrustedIssuer::new("https://partner.example", partner).audience("todo-api"),
//! ])
//! .unwrap();
//! ```

use jsonwebtoken::Algorithm;

use crate::KeySource;

/// One issuer a layer trusts, with its own keys, audiences and algorithms.
#[derive(Clone, Debug)]
pub struct TrustedIssuer {
    pub(crate) issuer: String,
    pub(crate) keys: KeySource,
    pub(crate) audiences: Vec<String>,
    pub(crate) algorithms: Option<Vec<Algorithm>>,
}

impl TrustedIssuer {
    /// Trusts tokens whose `iss` is exactly `issuer`, verified with `keys`.
    pub fn new(issuer: impl Into<String>, keys: impl Into<KeySource>) -> Self {
        Self {
            issuer: issuer.into(),
            keys: keys.into(),
            audiences: Vec::new(),
            algorithms: None,
        }
    }

    /// Requires this audience (call again to accept several). Without one, any `aud` passes.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Restricts the algorithms (default: each key's own; for JWKS, the asymmetric ones).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = Some(algorithms.into_iter().collect());
        self
    }
}
