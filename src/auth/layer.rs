use std::{fmt, sync::Arc, time::Duration};

use http::{HeaderMap, HeaderName, Uri};
use jsonwebtoken::Algorithm;
use tower_layer::Layer;

use super::{config::Config, service::JwtAuth};
use crate::{
    ConfigError, KeySet, KeySource, OnRejection, Revocations, StandardClaims, TrustedIssuer,
    VerificationKey, rejection::Rejecter, token::TokenSource, validate::Validator,
};

/// A [`Layer`] that authenticates requests with bearer JWTs; see the [module docs](crate::auth).
///
/// `C` is the type the token's claims are decoded into and injected as
/// [`Claims<C>`](crate::Claims). The layer is an `Arc` of configuration that was checked and
/// precomputed when it was built: cloning it, and applying it to many services, is cheap.
pub struct JwtAuthLayer<C = StandardClaims> {
    config: Arc<Config<C>>,
}

impl<C> JwtAuthLayer<C> {
    /// Validates tokens signed with one key.
    pub fn new(key: VerificationKey) -> Self {
        Self::from_keys(key)
    }

    /// Validates tokens signed with any of `keys`, picked by `kid` (or, for a token without
    /// `kid`, by `alg`).
    ///
    /// Fails when `keys` is empty or two keys share a `kid`.
    pub fn with_keys(keys: impl IntoIterator<Item = VerificationKey>) -> Result<Self, ConfigError> {
        let set = KeySet::new(keys)?;
        if set.is_empty() {
            return Err(ConfigError::NoKeys);
        }
        Ok(Self::from_keys(set))
    }

    /// Validates tokens with keys from `source`: one key, a rotatable [`KeySet`], or a
    /// [`JwksSource`](crate::jwks::JwksSource) (feature `jwks`).
    pub fn from_keys(source: impl Into<KeySource>) -> Self {
        Self::from_validator(Validator::new(source.into().0))
    }

    /// Trusts several issuers, each with its own keys, audiences and algorithms; the token's
    /// `iss` picks one before any key is used. See [`TrustedIssuer`].
    ///
    /// Fails when `issuers` is empty or names an issuer twice.
    pub fn trusting(issuers: impl IntoIterator<Item = TrustedIssuer>) -> Result<Self, ConfigError> {
        Validator::trusting(issuers.into_iter().collect()).map(Self::from_validator)
    }

    /// Validates `HS256` tokens; the secret must be at least 32 bytes long.
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        VerificationKey::hmac(Algorithm::HS256, secret.as_ref()).map(Self::new)
    }

    /// Validates `HS384` tokens; the secret must be at least 48 bytes long.
    pub fn hs384(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        VerificationKey::hmac(Algorithm::HS384, secret.as_ref()).map(Self::new)
    }

    /// Validates `HS512` tokens; the secret must be at least 64 bytes long.
    pub fn hs512(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        VerificationKey::hmac(Algorithm::HS512, secret.as_ref()).map(Self::new)
    }

    fn from_validator(validator: Validator<C>) -> Self {
        let config = Config {
            validator,
            source: TokenSource::default(),
            optional: false,
            rejecter: Rejecter::default(),
        };
        Self {
            config: Arc::new(config),
        }
    }

    /// The configuration, for a builder step to change. Every change starts an empty token
    /// cache: another layer cloned before the change keeps its own, so nothing one
    /// configuration accepted is ever served by another.
    fn config_mut(&mut self) -> &mut Config<C> {
        let config = Arc::make_mut(&mut self.config);
        config.validator.reset_cache();
        config
    }

    /// Accepts tokens from this issuer (`iss`). Call it again to accept several. Once an
    /// issuer is configured, a token without `iss` is rejected.
    ///
    /// On a layer built with [`trusting`](Self::trusting), whose issuers are fixed, this is
    /// [`ConfigError::IssuersFixed`].
    pub fn issuer(mut self, issuer: impl Into<String>) -> Result<Self, ConfigError> {
        self.config_mut().validator.add_issuer(issuer.into())?;
        Ok(self)
    }

    /// Accepts tokens for this audience (`aud`). Call it again to accept several. Once an
    /// audience is configured, a token without `aud` is rejected; without one, a token that
    /// names any audience is rejected unless [`any_audience`](Self::any_audience) is set.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.config_mut().validator.add_audience(audience.into());
        self
    }

    /// Restricts the accepted algorithms further than the keys do (for a JWKS, whose keys
    /// the identity provider chooses: by default its asymmetric algorithms are accepted).
    ///
    /// An empty list is [`ConfigError::NoAlgorithms`].
    pub fn algorithms(mut self, algorithms: &[Algorithm]) -> Result<Self, ConfigError> {
        self.config_mut().validator.set_algorithms(algorithms)?;
        Ok(self)
    }

    /// The clock skew allowed when checking `exp`, `nbf` and `iat` (default 30 seconds, at
    /// most [`MAX_LEEWAY`](crate::MAX_LEEWAY)).
    pub fn leeway(mut self, leeway: Duration) -> Result<Self, ConfigError> {
        self.config_mut().validator.set_leeway(leeway)?;
        Ok(self)
    }

    /// Refuses tokens issued more than `max_age` ago, or in the future (beyond the leeway):
    /// `iat` becomes required. For services that want a bound on how long a token lives,
    /// whatever `exp` its issuer chose.
    pub fn max_age(mut self, max_age: Duration) -> Result<Self, ConfigError> {
        self.config_mut().validator.set_max_age(max_age)?;
        Ok(self)
    }

    /// Accepts tokens whatever audience they name, when no [`audience`](Self::audience) is
    /// configured. Without this, such a layer refuses every token that carries `aud` (RFC 7519
    /// section 4.1.3: a recipient must find itself in the audience).
    pub fn any_audience(mut self) -> Self {
        self.config_mut().validator.accept_any_audience();
        self
    }

    /// Rejects tokens that lack this claim (or carry it as `null`). `exp` is always required.
    pub fn require_claim(mut self, name: &str) -> Self {
        self.config_mut().validator.require_claim(name);
        self
    }

    /// Rejects tokens whose `typ` header is not `typ` (compared case-insensitively, with or
    /// without the `application/` prefix), e.g. `at+jwt` for RFC 9068 access tokens. On a
    /// layer built with [`trusting`](Self::trusting), this applies to every issuer; set it per
    /// issuer with [`TrustedIssuer::typ`] instead.
    ///
    /// An empty `typ`, or one with spaces or non-ASCII characters, is
    /// [`ConfigError::InvalidType`].
    pub fn typ(mut self, typ: &str) -> Result<Self, ConfigError> {
        self.config_mut().validator.set_typ(typ)?;
        Ok(self)
    }

    /// Refuses tokens longer than `max_len` bytes before decoding them (default 8 KiB).
    pub fn max_token_len(mut self, max_len: usize) -> Self {
        self.config_mut().validator.max_token_len = max_len;
        self
    }

    /// The realm sent in `WWW-Authenticate` challenges (default `"api"`). Fails when it is
    /// empty or not visible ASCII. A [`RequireScope`](crate::RequireScope) behind this layer
    /// answers its own `403`s: give it the same realm with
    /// [`AuthorizeLayer::realm`](crate::AuthorizeLayer::realm).
    pub fn realm(mut self, realm: &str) -> Result<Self, ConfigError> {
        self.config_mut().rejecter.set_realm(realm)?;
        Ok(self)
    }

    /// Lets requests without a token through, without claims. A request with a token that is
    /// invalid, or a malformed request, is still rejected. Pair it with per-route
    /// [`RequireScope`](crate::RequireScope) or [`require`](crate::require) layers, which
    /// answer `401` when there are no claims.
    pub fn optional(mut self) -> Self {
        self.config_mut().optional = true;
        self
    }

    /// Reads the token from the cookie `name` instead of the `Authorization` header.
    pub fn token_from_cookie(mut self, name: &str) -> Self {
        self.config_mut().source = TokenSource::Cookie(name.into());
        self
    }

    /// Reads the token from the header `name`, whose whole value is the token.
    pub fn token_from_header(mut self, name: HeaderName) -> Self {
        self.config_mut().source = TokenSource::Header(name);
        self
    }

    /// Reads the token with `f`, which returns `None` when the request has no token. The
    /// length limit still applies to what it returns.
    pub fn token_from_fn<F>(mut self, f: F) -> Self
    where
        F: Fn(&HeaderMap, &Uri) -> Option<String> + Send + Sync + 'static,
    {
        self.config_mut().source = TokenSource::custom(f);
        self
    }

    /// Replaces the RFC 6750 rejection response; the handler still receives the typed
    /// [`AuthError`](crate::AuthError).
    ///
    /// A [`RequireScope`](crate::RequireScope) or [`require`](crate::require) layer behind
    /// this one answers its own `403`s (and, after an [`optional`](Self::optional) layer,
    /// `401`s): the realm and the responder are set on each layer, and one place to keep them
    /// in step is a function that configures both:
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http::Response;
    /// use tower_jwt_auth::{AuthError, ConfigError, JwtAuthLayer, RequireScope, StandardClaims};
    ///
    /// const REALM: &str = "todos";
    ///
    /// /// Every rejection of this service, whichever layer makes it.
    /// fn rejection(error: &AuthError, realm: &str) -> Response<Bytes> {
    ///     let mut res = error.response(realm);
    ///     *res.body_mut() = Bytes::from(format!(r#"{{"detail":"{}"}}"#, error.description()));
    ///     res
    /// }
    ///
    /// # fn main() -> Result<(), ConfigError> {
    /// let auth = JwtAuthLayer::<StandardClaims>::hs256(b"an example secret of at least 32 bytes")?
    ///     .realm(REALM)?
    ///     .on_rejection(rejection);
    /// let writers = RequireScope::all(["todos:write"])?.realm(REALM)?.on_rejection(rejection);
    /// # let _ = (auth, writers);
    /// # Ok(())
    /// # }
    /// ```
    pub fn on_rejection(mut self, handler: impl OnRejection) -> Self {
        self.config_mut().rejecter.set_handler(handler);
        self
    }

    /// Remembers up to `capacity` tokens that passed every check (0, the default, turns the
    /// cache off). A token presented again is then accepted with one hash lookup instead of
    /// a signature check and a JSON parse, and its claims are shared, not decoded again.
    ///
    /// An entry is keyed by the whole token, is used only until the token's `exp` (plus the
    /// leeway), and only while the key that verified it is still in its key set: rotating a
    /// key out, or a JWKS refresh that drops it, ends its cached tokens. Checks that are not
    /// a function of the token alone, such as [`RequireScope`](crate::RequireScope), still
    /// run on every request. Memory is bounded by `capacity` times the size of a token and
    /// its decoded claims (with the default 8 KiB token limit, at most about 10 KiB each).
    pub fn cache(mut self, capacity: usize) -> Self {
        self.config_mut().validator.set_cache(capacity);
        self
    }

    /// Refuses tokens in `revocations` (`401 invalid_token`, "the token has been revoked"),
    /// checked after every other check, and on every cache hit: a token revoked after it
    /// was cached is refused too. The check reads a local replica and costs a hash lookup or
    /// two; it never waits on the network, even with a [Redis-shared
    /// set](crate::RevocationsBuilder::redis).
    pub fn revocations(mut self, revocations: Revocations) -> Self {
        self.config_mut().validator.set_revocations(revocations);
        self
    }

    /// The algorithms this layer accepts (a token must also name a key bound to its `alg`).
    pub fn accepted_algorithms(&self) -> Vec<Algorithm> {
        self.config.validator.algorithms()
    }
}

impl<C> Clone for JwtAuthLayer<C> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
        }
    }
}

impl<C> fmt::Debug for JwtAuthLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthLayer")
            .field("claims", &std::any::type_name::<C>())
            .field("config", &self.config)
            .finish()
    }
}

impl<S, C> Layer<S> for JwtAuthLayer<C> {
    type Service = JwtAuth<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        JwtAuth::new(inner, self.config.clone())
    }
}
