//! Issuing tokens that a [`JwtAuthLayer`] built from the same issuer
//! accepts.

use std::{fmt, time::Duration};

use jsonwebtoken::{
    Algorithm, AlgorithmFamily, EncodingKey, Header, encode, get_current_timestamp, jwk::Jwk,
};
use serde::Serialize;

use crate::{
    ConfigError, JwtAuthLayer, JwtAuthLayerBuilder, TrustedIssuer, VerificationKey,
    keys::check_hmac_secret,
};

/// The longest lifetime [`TokenIssuerBuilder::ttl`] accepts.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The `typ` of issued tokens: JWT access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Signs access tokens. `Debug` never prints key material.
///
/// # Overview
///
/// Issuing tokens that a [`JwtAuthLayer`] built from the same issuer
/// accepts.
///
/// A [`TokenIssuer`] holds the signing key, its algorithm, the issuer, audience and lifetime.
/// [`TokenIssuer::layer`] derives the validating layer from that same configuration, so the
/// two can never disagree on key, algorithm, `iss`, `aud` or `typ`.
///
/// ```
/// use std::time::Duration;
/// use tower_jwt_auth::{StandardClaims, TokenIssuer};
///
/// let issuer = TokenIssuer::builder()
///     .hs256([7; 32])
///     .issuer("todo-server")
///     .audience("todo-api")
///     .ttl(Duration::from_secs(1800))
///     .build()
///     .unwrap();
/// let token = issuer.issue("alice", "todos:read").unwrap();
/// assert_eq!(token.expires_in, 1800);
/// // Checks exactly what `issue` produces; more settings can follow before `build`.
/// let layer = issuer.layer::<StandardClaims>().leeway(Duration::from_secs(5)).build().unwrap();
/// ```
#[derive(Clone)]
pub struct TokenIssuer {
    key: EncodingKey,
    algorithm: Algorithm,
    verification: VerificationKey,
    public_jwk: Option<Jwk>,
    issuer: String,
    audience: String,
    ttl: Duration,
}

/// A freshly issued token. `Debug` redacts the token itself.
#[derive(Clone, Serialize)]
pub struct IssuedToken {
    /// The signed JWT.
    pub access_token: String,
    /// `"bearer"`, or `"DPoP"` for a token bound to a proof key
    /// ([`issue_bound`](TokenIssuer::issue_bound)).
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: u64,
    /// The space-separated scopes the token grants.
    pub scope: String,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

/// The token could not be signed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IssueError {
    /// The signing backend failed.
    Signing,
    /// No randomness was available for the `jti`.
    Random,
}

impl fmt::Display for IssueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Signing => "the token could not be signed",
            Self::Random => "no randomness available for the token id",
        })
    }
}

impl std::error::Error for IssueError {}

#[derive(Serialize)]
struct AccessClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    scope: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cnf: Option<Cnf<'a>>,
}

/// `cnf` with the thumbprint of the key a DPoP-bound token is bound to (RFC 9449 section 6.1).
#[derive(Serialize)]
struct Cnf<'a> {
    jkt: &'a str,
}

/// What signs: the private key, its algorithm, and the public half for validating.
#[derive(Clone)]
struct Signer {
    key: EncodingKey,
    algorithm: Algorithm,
    verification: VerificationKey,
    public_jwk: Option<Jwk>,
}

impl Signer {
    fn hmac(algorithm: Algorithm, secret: &[u8]) -> Result<Self, ConfigError> {
        check_hmac_secret(algorithm, secret)?;
        let key = EncodingKey::from_secret(secret)
            .map_err(|_| ConfigError::InvalidKey("empty secret"))?;
        let verification = VerificationKey::hmac(algorithm, secret)?;
        Ok(Self {
            key,
            algorithm,
            verification,
            public_jwk: None,
        })
    }

    fn pem(algorithm: Algorithm, pem: &[u8]) -> Result<Self, ConfigError> {
        crate::crypto::ensure_provider();
        let key = match algorithm.family() {
            AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(pem),
            AlgorithmFamily::Ec => EncodingKey::from_ec_pem(pem),
            AlgorithmFamily::Ed => EncodingKey::from_ed_pem(pem),
            AlgorithmFamily::Hmac => {
                return Err(ConfigError::InvalidKey(
                    "an HMAC algorithm takes a secret (`hs256`, `hmac`), not a PEM key",
                ));
            }
        }
        .map_err(|_| {
            ConfigError::InvalidKey(
                "the PEM does not hold a private key of this algorithm's family",
            )
        })?;
        let mut jwk = Jwk::from_encoding_key(&key, algorithm).map_err(|_| {
            ConfigError::InvalidKey("the public key cannot be derived from this private key")
        })?;
        let kid = jwk
            .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
            .map_err(|_| ConfigError::InvalidKey("the public key cannot be thumbprinted"))?;
        jwk.common.key_id = Some(kid);
        let verification = VerificationKey::from_jwk(&jwk)?;
        Ok(Self {
            key,
            algorithm,
            verification,
            public_jwk: Some(jwk),
        })
    }
}

/// Configures a [`TokenIssuer`]; made by [`TokenIssuer::builder`]. Every setting is
/// infallible; [`build`](Self::build) reports the first mistake.
#[must_use = "a builder does nothing until `build` is called"]
#[derive(Clone)]
pub struct TokenIssuerBuilder {
    signer: Option<Result<Signer, ConfigError>>,
    keys_twice: bool,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl TokenIssuerBuilder {
    fn signer(mut self, signer: Result<Signer, ConfigError>) -> Self {
        self.keys_twice |= self.signer.is_some();
        self.signer = Some(signer);
        self
    }

    /// Signs with `HS256`; the secret must be at least 32 bytes long.
    pub fn hs256(self, secret: impl AsRef<[u8]>) -> Self {
        self.hmac(Algorithm::HS256, secret)
    }

    /// Signs with an HMAC algorithm; the secret must be at least as long as its hash.
    pub fn hmac(self, algorithm: Algorithm, secret: impl AsRef<[u8]>) -> Self {
        let signer = Signer::hmac(algorithm, secret.as_ref());
        self.signer(signer)
    }

    /// Signs with a PEM private key (PKCS#8, or PKCS#1 for RSA) of an RSA, ECDSA or EdDSA
    /// algorithm. The public half is derived for the validating layer and for
    /// [`TokenIssuer::public_jwk`], with its RFC 7638 thumbprint as `kid`.
    pub fn pem(self, algorithm: Algorithm, pem: impl AsRef<[u8]>) -> Self {
        let signer = Signer::pem(algorithm, pem.as_ref());
        self.signer(signer)
    }

    /// Signs with a PEM private key whose type picks the algorithm: Ed25519 signs `EdDSA`,
    /// a P-256 key `ES256`, a P-384 key `ES384`, an RSA key `RS256`. For a key file whose
    /// type the operator chose, as `JWT_SIGNING_KEY` in the todo example.
    pub fn private_key_pem(self, pem: impl AsRef<[u8]>) -> Self {
        let pem = pem.as_ref();
        let signer = [
            Algorithm::EdDSA,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::RS256,
        ]
        .into_iter()
        .find_map(|alg| Signer::pem(alg, pem).ok())
        .ok_or(ConfigError::InvalidKey(
            "TokenIssuerBuilder::private_key_pem: not an Ed25519, P-256, P-384 or RSA private key",
        ));
        self.signer(signer)
    }

    /// The `iss` of issued tokens.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = issuer.into();
        self
    }

    /// The `aud` of issued tokens.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// How long issued tokens live (default 30 minutes): at least a second, at most
    /// [`MAX_TTL`] (an access token that outlives a day is a credential, not a session).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The issuer, or the first mistake: no key ([`ConfigError::NoKeys`]), keys set twice
    /// ([`ConfigError::KeysTwice`]), a weak secret or unusable PEM, or a lifetime outside 1
    /// second to [`MAX_TTL`] ([`ConfigError::OutOfRange`]).
    pub fn build(self) -> Result<TokenIssuer, ConfigError> {
        if self.keys_twice {
            return Err(ConfigError::KeysTwice);
        }
        let signer = self.signer.ok_or(ConfigError::NoKeys)??;
        if self.ttl < Duration::from_secs(1) || self.ttl > MAX_TTL {
            return Err(ConfigError::OutOfRange(
                "TokenIssuerBuilder::ttl must be between 1 second and 24 hours (MAX_TTL)",
            ));
        }
        crate::crypto::ensure_provider();
        Ok(TokenIssuer {
            key: signer.key,
            algorithm: signer.algorithm,
            verification: signer.verification,
            public_jwk: signer.public_jwk,
            issuer: self.issuer,
            audience: self.audience,
            ttl: self.ttl,
        })
    }
}

impl fmt::Debug for TokenIssuerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuerBuilder")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// Starts configuring an issuer: a key, then `iss`, `aud` and the lifetime.
    pub fn builder() -> TokenIssuerBuilder {
        TokenIssuerBuilder {
            signer: None,
            keys_twice: false,
            issuer: String::new(),
            audience: String::new(),
            ttl: Duration::from_secs(1800),
        }
    }

    /// The public key as a JWK with its RFC 7638 thumbprint as `kid`, for publishing in a JWKS;
    /// `None` for HMAC, whose key must stay secret.
    pub fn public_jwk(&self) -> Option<&Jwk> {
        self.public_jwk.as_ref()
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Issues a token for `subject` granting `scope` (space-separated), with `iss`, `aud`,
    /// `iat`, `exp` and a random `jti`.
    pub fn issue(&self, subject: &str, scope: &str) -> Result<IssuedToken, IssueError> {
        self.sign(subject, scope, None)
    }

    /// Issues a token bound to the DPoP key whose RFC 7638 thumbprint is `jkt` (its
    /// `cnf.jkt`, RFC 9449 section 6.1), with `token_type` `DPoP`: the layer accepts it only
    /// with the `DPoP` scheme and a proof signed by that key. `jkt` comes from the proof of
    /// the token request, checked by [`DpopVerifier::check_token_request`](crate::DpopVerifier::check_token_request).
    pub fn issue_bound(
        &self,
        subject: &str,
        scope: &str,
        jkt: &str,
    ) -> Result<IssuedToken, IssueError> {
        self.sign(subject, scope, Some(jkt))
    }

    fn sign(
        &self,
        subject: &str,
        scope: &str,
        jkt: Option<&str>,
    ) -> Result<IssuedToken, IssueError> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|_| IssueError::Random)?;
        let iat = get_current_timestamp();
        let claims = AccessClaims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: subject,
            iat,
            exp: iat.saturating_add(self.ttl.as_secs()),
            jti: id.iter().map(|b| format!("{b:02x}")).collect(),
            scope,
            cnf: jkt.map(|jkt| Cnf { jkt }),
        };
        let mut header = Header::new(self.algorithm);
        header.typ = Some(ACCESS_TOKEN_TYPE.into());
        header.kid = self.verification.kid().map(String::from);
        let access_token = encode(&header, &claims, &self.key).map_err(|_| IssueError::Signing)?;
        Ok(IssuedToken {
            access_token,
            token_type: if jkt.is_some() { "DPoP" } else { "bearer" },
            expires_in: self.ttl.as_secs(),
            scope: scope.to_owned(),
        })
    }

    /// The key that verifies this issuer's tokens.
    pub fn verification_key(&self) -> &VerificationKey {
        &self.verification
    }

    /// This issuer as one of several a layer trusts
    /// ([`JwtAuthLayerBuilder::trusting`](crate::JwtAuthLayerBuilder::trusting)), with the same checks as
    /// [`layer`](Self::layer): key, `iss`, `aud` and `typ` = `at+jwt`.
    pub fn trusted(&self) -> TrustedIssuer {
        let mut trusted = TrustedIssuer::new(self.issuer.clone(), self.verification.clone())
            .typ(ACCESS_TOKEN_TYPE);
        if !self.audience.is_empty() {
            trusted = trusted.audience(self.audience.clone());
        }
        trusted
    }

    /// A layer builder that accepts exactly this issuer's tokens: same key and algorithm,
    /// `iss`, `aud`, `typ` = `at+jwt`, and a required `sub`. Add settings (a cache,
    /// revocations, a realm) before [`build`](crate::JwtAuthLayerBuilder::build).
    pub fn layer<C>(&self) -> JwtAuthLayerBuilder<C> {
        let mut layer = JwtAuthLayer::builder()
            .key(self.verification.clone())
            .typ(ACCESS_TOKEN_TYPE)
            .require_claim("sub");
        if !self.issuer.is_empty() {
            layer = layer.issuer(self.issuer.clone());
        }
        if !self.audience.is_empty() {
            layer = layer.audience(self.audience.clone());
        }
        layer
    }
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.verification.kid())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}
