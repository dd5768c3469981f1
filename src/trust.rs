//! Trusting several issuers with one layer.

use jsonwebtoken::Algorithm;

use crate::{DpopMode, KeySource};

/// One issuer a layer trusts, with its own keys, audiences and algorithms.
///
/// # Overview
///
/// Trusting several issuers with one layer.
///
/// Each [`TrustedIssuer`] names an issuer (`iss`, matched exactly), its keys, its audiences
/// and optionally its algorithms and `typ`. Its settings are infallible: their mistakes (an
/// empty algorithm list, an invalid `typ`) are reported by the
/// [`JwtAuthLayerBuilder::build`](crate::JwtAuthLayerBuilder::build) that trusts it. [`JwtAuthLayerBuilder::trusting`](crate::JwtAuthLayerBuilder::trusting)
/// reads the token's `iss` first and checks the token only against that issuer's
/// configuration: a token from one issuer is never verified with another issuer's keys.
///
/// ```
/// use tower_jwt_auth::{JwtAuthLayer, StandardClaims, TrustedIssuer, VerificationKey, jsonwebtoken::Algorithm};
///
/// let ours = VerificationKey::hmac(Algorithm::HS256, &[7; 32]).unwrap();
/// let partner = VerificationKey::hmac(Algorithm::HS512, &[9; 64]).unwrap();
/// let layer = JwtAuthLayer::<StandardClaims>::builder()
///     .trusting([
///         TrustedIssuer::new("todo-server", ours).audience("todo-api").typ("at+jwt"),
///         TrustedIssuer::new("https://partner.example", partner).audience("todo-api"),
///     ])
///     .build()
///     .unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct TrustedIssuer {
    pub(crate) issuer: String,
    pub(crate) keys: KeySource,
    pub(crate) audiences: Vec<String>,
    pub(crate) any_audience: bool,
    pub(crate) algorithms: Option<Vec<Algorithm>>,
    pub(crate) typ: Option<String>,
    pub(crate) dpop: Option<DpopMode>,
}

impl TrustedIssuer {
    /// Trusts tokens whose `iss` is exactly `issuer`, verified with `keys`.
    pub fn new(issuer: impl Into<String>, keys: impl Into<KeySource>) -> Self {
        Self {
            issuer: issuer.into(),
            keys: keys.into(),
            audiences: Vec::new(),
            any_audience: false,
            algorithms: None,
            typ: None,
            dpop: None,
        }
    }

    /// Requires this audience (call again to accept several). Without one, a token that
    /// names an audience is refused, unless [`any_audience`](Self::any_audience) is set.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Accepts this issuer's tokens whatever audience they name (when no
    /// [`audience`](Self::audience) is configured).
    pub fn any_audience(mut self) -> Self {
        self.any_audience = true;
        self
    }

    /// Requires this `typ` header of this issuer's tokens, e.g. `at+jwt` (RFC 9068) for
    /// access tokens. Each issuer has its own: many identity providers type their access
    /// tokens `JWT`, and then the audience is what keeps their ID tokens out.
    ///
    /// An empty `typ`, or one with spaces or non-ASCII characters, is
    /// [`ConfigError::InvalidType`](crate::ConfigError::InvalidType) when the layer is built.
    pub fn typ(mut self, typ: impl Into<String>) -> Self {
        self.typ = Some(typ.into());
        self
    }

    /// This issuer's DPoP mode, overriding the layer's [`Dpop::mode`](crate::Dpop::mode):
    /// for instance [`DpopMode::Required`] for an identity provider that binds every token
    /// it issues. `Required` needs the layer to be configured with
    /// [`dpop`](crate::JwtAuthLayerBuilder::dpop), or `build` fails with
    /// [`ConfigError::DpopNotConfigured`](crate::ConfigError::DpopNotConfigured).
    pub fn dpop(mut self, mode: DpopMode) -> Self {
        self.dpop = Some(mode);
        self
    }

    /// Restricts the algorithms (default: each key's own; for JWKS, the asymmetric ones).
    ///
    /// An empty list is [`ConfigError::NoAlgorithms`](crate::ConfigError::NoAlgorithms) when
    /// the layer is built.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = Some(algorithms.into_iter().collect());
        self
    }
}
