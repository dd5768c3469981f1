//! Why a request was refused, and why a configuration was refused.
//!
//! [`AuthError`] is the typed reason behind every rejection the middleware produces. It knows
//! its HTTP status, its RFC 6750 error code and the `WWW-Authenticate` challenge it answers
//! with, so a custom [`OnRejection`](crate::OnRejection) can change the response without losing
//! the reason. [`ConfigError`] is returned when a layer is built from keys or settings that
//! could never validate a token safely.

use std::{borrow::Cow, fmt, sync::Arc};

use http::StatusCode;

/// Why a request was not authenticated or not authorized.
///
/// Every variant maps to one of the three RFC 6750 outcomes: `401` without an error code when
/// the request carries no token, `400 invalid_request` when the request itself is malformed,
/// `401 invalid_token` when the token is not acceptable, and `403 insufficient_scope` when
/// the token is valid but does not grant what the route requires.
///
/// Descriptions never contain the token or any part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// The request carries no bearer token (or uses another authentication scheme).
    MissingToken,
    /// The request is malformed: duplicated `Authorization` headers, a value that is not
    /// visible ASCII, or a bare `Bearer`.
    InvalidRequest(&'static str),
    /// The token is longer than the configured limit; it was refused before decoding.
    TokenTooLarge,
    /// The token is not a well-formed JWS compact serialization: not three base64url parts
    /// (RFC 6750's `b64token` syntax included), a header that is not JSON, or an unsupported
    /// `crit` extension.
    MalformedToken,
    /// The token's `alg` is not one the configured keys allow (`none` never is).
    UnsupportedAlgorithm,
    /// The token names a `kid` that no configured key has.
    UnknownKey,
    /// The signature does not verify with the selected key.
    InvalidSignature,
    /// The token's `exp` is in the past (beyond the leeway).
    Expired,
    /// The token's `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// The token's `iss` is missing or is not a configured issuer.
    InvalidIssuer,
    /// The token's `aud` is missing or names none of the configured audiences.
    InvalidAudience,
    /// The token names an audience and the layer has none configured (nor accepts any).
    UnexpectedAudience,
    /// The token was issued longer ago than the layer's maximum age (or has no `iat`).
    TooOld,
    /// The token's `typ` header is missing or is not the configured one.
    InvalidType,
    /// A claim the configuration requires is missing.
    MissingClaim(Arc<str>),
    /// The claims are not valid JSON of the expected shape (or a registered claim has the
    /// wrong type).
    InvalidClaims,
    /// The token is valid but lacks the scopes the route requires.
    InsufficientScope {
        /// The space-separated scopes the route requires, as sent in the challenge.
        required: Arc<str>,
    },
    /// The token is valid but a claim requirement of the route rejected it.
    Forbidden,
    /// The keys to verify the token could not be obtained (the identity provider has been
    /// unreachable for longer than the allowed staleness): `503`, the token may be fine.
    KeysUnavailable,
    /// The token was revoked (a logout, or every token of its subject up to some time).
    Revoked,
    /// Whether the token was revoked cannot be known: the shared revocation list has been
    /// out of sync for longer than allowed ([`OutOfSync::Refuse`](crate::OutOfSync)): `503`.
    RevocationsUnavailable,
    /// The token is valid but this request may not use it: a token bound to a DPoP key
    /// sent with the `Bearer` scheme, an unbound one with the `DPoP` scheme, a
    /// certificate-bound one without its certificate, a bearer token where DPoP is
    /// required (`401 invalid_token`, RFC 9449 section 7, RFC 8705 section 3).
    Binding(&'static str),
    /// The request's DPoP proof is missing, duplicated, malformed, or fails one of the
    /// checks of RFC 9449 section 4.3 (`401 invalid_dpop_proof`).
    InvalidDpopProof(&'static str),
    /// The DPoP proof lacks the server nonce, or carries a stale one: retry with `nonce`,
    /// sent in the `DPoP-Nonce` header (`401 use_dpop_nonce`, RFC 9449 section 9).
    UseDpopNonce {
        /// The nonce to put in the next proof.
        nonce: Arc<str>,
    },
    /// Whether the DPoP proof was used before cannot be checked now (the replay store is
    /// full or unreachable): `503`, the proof may be fine.
    DpopUnavailable,
    /// The authorization server says the opaque token is not active (RFC 7662 section 2.2:
    /// expired, revoked, or never issued): `401 invalid_token`.
    Inactive,
    /// The opaque token cannot be introspected now (the authorization server is unreachable,
    /// slow, or answered with an error or garbage): `503`, the token may be fine.
    IntrospectionUnavailable,
}

impl AuthError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingToken => StatusCode::UNAUTHORIZED,
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::InsufficientScope { .. } | Self::Forbidden => StatusCode::FORBIDDEN,
            Self::KeysUnavailable
            | Self::RevocationsUnavailable
            | Self::DpopUnavailable
            | Self::IntrospectionUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The RFC 6750 `error` code, or `None` when the request had no credentials at all (or
    /// the failure is the server's, [`KeysUnavailable`](Self::KeysUnavailable)).
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            Self::MissingToken
            | Self::KeysUnavailable
            | Self::RevocationsUnavailable
            | Self::DpopUnavailable
            | Self::IntrospectionUnavailable => None,
            Self::InvalidRequest(_) => Some("invalid_request"),
            Self::InvalidDpopProof(_) => Some("invalid_dpop_proof"),
            Self::UseDpopNonce { .. } => Some("use_dpop_nonce"),
            Self::InsufficientScope { .. } | Self::Forbidden => Some("insufficient_scope"),
            _ => Some("invalid_token"),
        }
    }

    /// Why, in one word of the closed set that metrics and logs use (the
    /// [`metrics`](crate::metrics) module's table): `expired`, `bad_signature`,
    /// `insufficient_scope`... Two variants share one reason when a client cannot tell
    /// them apart (`InvalidAudience` and `UnexpectedAudience` are both `wrong_audience`).
    pub fn reason(&self) -> &'static str {
        crate::metrics::REASONS[self.reason_index()]
    }

    /// The position of [`reason`](Self::reason) in [`REASONS`](crate::metrics::REASONS).
    pub(crate) fn reason_index(&self) -> usize {
        match self {
            Self::MissingToken => 0,
            Self::InvalidRequest(_) => 1,
            Self::TokenTooLarge => 2,
            Self::MalformedToken => 3,
            Self::UnsupportedAlgorithm => 4,
            Self::UnknownKey => 5,
            Self::InvalidSignature => 6,
            Self::Expired => 7,
            Self::NotYetValid => 8,
            Self::InvalidIssuer => 9,
            Self::InvalidAudience | Self::UnexpectedAudience => 10,
            Self::TooOld => 11,
            Self::InvalidType => 12,
            Self::MissingClaim(_) => 13,
            Self::InvalidClaims => 14,
            Self::InsufficientScope { .. } => 15,
            Self::Forbidden => 16,
            Self::KeysUnavailable => 17,
            Self::Revoked => 18,
            Self::RevocationsUnavailable => 19,
            Self::Binding(_) => 20,
            Self::InvalidDpopProof(_) => 21,
            Self::UseDpopNonce { .. } => 22,
            Self::DpopUnavailable => 23,
            Self::Inactive => 24,
            Self::IntrospectionUnavailable => 25,
        }
    }

    /// A description that helps the client; it never contains the token.
    pub fn description(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Self::MissingToken => "a bearer token is required",
            Self::InvalidRequest(reason) => reason,
            Self::TokenTooLarge => "the token is too large",
            Self::MalformedToken => "the token is not a well-formed JWT",
            Self::UnsupportedAlgorithm => "the token's signing algorithm is not accepted",
            Self::UnknownKey => "the token's key id is not known",
            Self::InvalidSignature => "the token's signature is invalid",
            Self::Expired => "the token has expired",
            Self::NotYetValid => "the token is not valid yet",
            Self::InvalidIssuer => "the token's issuer is not accepted",
            Self::InvalidAudience => "the token is not intended for this audience",
            Self::UnexpectedAudience => {
                "the token names an audience and this service is configured with none \
                 (configure `audience`, or `any_audience` to accept any)"
            }
            Self::TooOld => "the token was issued too long ago",
            Self::InvalidType => "the token's type is not accepted",
            Self::MissingClaim(name) => {
                return Cow::Owned(format!("the token lacks the required claim `{name}`"));
            }
            Self::InvalidClaims => "the token's claims are malformed",
            Self::InsufficientScope { .. } => "the token does not grant the required scope",
            Self::Forbidden => "the token does not grant access to this resource",
            Self::KeysUnavailable => {
                "the keys to verify the token are unavailable; try again later"
            }
            Self::Revoked => "the token has been revoked",
            Self::RevocationsUnavailable => {
                "whether the token was revoked cannot be checked now; try again later"
            }
            Self::Binding(reason) | Self::InvalidDpopProof(reason) => reason,
            Self::UseDpopNonce { .. } => "the DPoP proof must carry the server's nonce",
            Self::DpopUnavailable => {
                "whether the DPoP proof was used before cannot be checked now; try again later"
            }
            Self::Inactive => "the token is not active",
            Self::IntrospectionUnavailable => {
                "the token cannot be checked with its issuer now; try again later"
            }
        })
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description())
    }
}

impl std::error::Error for AuthError {}

/// A layer could not be built from the given keys or settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// An HMAC secret is shorter than the hash output of its algorithm (RFC 7518 3.2).
    WeakSecret {
        /// The minimum length in bytes.
        min_len: usize,
        /// The length that was given.
        len: usize,
    },
    /// A key could not be parsed, or does not belong to the algorithm it was given for.
    InvalidKey(&'static str),
    /// No key was configured.
    NoKeys,
    /// A builder was given keys by two steps (`hs256`, `key`, `keys`, `key_source`,
    /// `trusting`): one would silently replace the other.
    KeysTwice,
    /// Two keys share one `kid`.
    DuplicateKeyId,
    /// A realm, scope or type is not visible ASCII, or a scope contains a space.
    InvalidValue(&'static str),
    /// A duration or size outside what the setting allows.
    OutOfRange(&'static str),
    /// Keys or introspection results would travel over a transport an attacker could tamper
    /// with.
    InsecureUrl(&'static str),
    /// [`JwtAuthLayerBuilder::trusting`](crate::JwtAuthLayerBuilder::trusting) was given no issuer.
    NoIssuers,
    /// [`JwtAuthLayerBuilder::trusting`](crate::JwtAuthLayerBuilder::trusting) was given this issuer twice.
    DuplicateIssuer(String),
    /// [`JwtAuthLayerBuilder::issuer`](crate::JwtAuthLayerBuilder::issuer) on a layer built with
    /// `trusting`, whose [`TrustedIssuer`](crate::TrustedIssuer)s each name their issuer.
    IssuersFixed,
    /// A [`RequireScope`](crate::RequireScope) with no scope: it would require nothing.
    NoScopes,
    /// This is not an RFC 6749 `scope-token` (one or more visible ASCII characters other
    /// than `"` and `\`, no space).
    InvalidScope(String),
    /// This is not a `typ` a token can carry (one or more visible ASCII characters, no space).
    InvalidType(String),
    /// An empty algorithm allow-list: no token could ever be accepted.
    NoAlgorithms,
    /// A [`TrustedIssuer`](crate::TrustedIssuer) requires DPoP and the layer has no
    /// [`Dpop`](crate::Dpop) configuration to check proofs with.
    DpopNotConfigured,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WeakSecret { min_len, len } => write!(
                f,
                "the HMAC secret is {len} bytes long; this algorithm needs at least {min_len}: use a random secret of {min_len} bytes or more"
            ),
            Self::InvalidKey(reason) => write!(
                f,
                "invalid key: {reason}; give a key of the algorithm it is configured for"
            ),
            Self::NoKeys => f.write_str(
                "no verification key was configured: set one with `hs256`, `key`, `keys`, `key_source` or `trusting`",
            ),
            Self::KeysTwice => f.write_str(
                "keys were configured twice: give every key in one `keys([...])` step, or several issuers in one `trusting([...])`",
            ),
            Self::DuplicateKeyId => {
                f.write_str("two keys share one `kid`: give each key of a set its own (`with_kid`)")
            }
            Self::InvalidValue(what) => write!(f, "invalid configuration value: {what}"),
            Self::OutOfRange(what) => write!(f, "configuration value out of range: {what}"),
            Self::InsecureUrl(why) => write!(f, "insecure URL: {why}"),
            Self::NoIssuers => f.write_str(
                "no trusted issuer was configured: give `trusting` at least one TrustedIssuer",
            ),
            Self::DuplicateIssuer(iss) => write!(
                f,
                "the issuer {iss:?} is trusted twice: give `trusting` one TrustedIssuer per issuer, with all its audiences"
            ),
            Self::IssuersFixed => f.write_str(
                "`issuer` does not apply to a layer built with `trusting`: each TrustedIssuer names its issuer",
            ),
            Self::NoScopes => f.write_str(
                "RequireScope needs at least one scope: without one it would require nothing",
            ),
            Self::InvalidScope(scope) => {
                write!(
                    f,
                    "{scope:?} is not a valid scope (RFC 6749 scope-token): one or more visible ASCII characters, no space, `\"` or `\\`"
                )
            }
            Self::InvalidType(typ) => write!(
                f,
                "{typ:?} is not a valid `typ` value: give a media type such as `at+jwt`, visible ASCII with no space"
            ),
            Self::NoAlgorithms => f.write_str(
                "the algorithm list is empty: no token could pass; name at least one algorithm, or leave `algorithms` unset",
            ),
            Self::DpopNotConfigured => f.write_str(
                "a trusted issuer requires DPoP but the layer checks no proofs: configure it with `dpop(Dpop::new(public_origin))`",
            ),
        }
    }
}

impl std::error::Error for ConfigError {}
