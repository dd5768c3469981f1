use std::{fmt, marker::PhantomData, sync::Arc, time::Duration};

use http::{HeaderMap, HeaderName, Uri};
use jsonwebtoken::Algorithm;

use super::{config::Config, layer::JwtAuthLayer};
use crate::{
    ConfigError, Dpop, DpopMode, KeySet, KeySource, OnRejection, StandardClaims, TrustedIssuer,
    VerificationKey,
    rejection::{Rejecter, Schemes},
    sender::Senders,
    token::TokenSource,
    validate::Validator,
};

/// Configures a [`JwtAuthLayer`]; made by [`JwtAuthLayer::builder`].
///
/// Every setting is an infallible `self -> Self` step; every mistake (a short secret, an
/// empty algorithm list, a leeway over the maximum, keys set twice, ...) is reported once,
/// by [`build`](Self::build), as a [`ConfigError`] that names the setting. The first mistake
/// wins.
///
/// ```
/// use std::time::Duration;
///
/// use tower_jwt_auth::{ConfigError, JwtAuthLayer, StandardClaims};
///
/// # fn main() -> Result<(), ConfigError> {
/// let auth = JwtAuthLayer::<StandardClaims>::builder()
///     .hs256(b"an example secret of at least 32 bytes")
///     .issuer("todo-server")
///     .audience("todo-api")
///     .leeway(Duration::from_secs(30))
///     .build()?;
/// # let _ = auth;
///
/// // A 10-byte secret is refused when the layer is built, not when it is used.
/// let err = JwtAuthLayer::<StandardClaims>::builder().hs256(b"0123456789").build().unwrap_err();
/// assert_eq!(err, ConfigError::WeakSecret { min_len: 32, len: 10 });
/// # Ok(())
/// # }
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct JwtAuthLayerBuilder<C = StandardClaims> {
    keys: KeyChoice,
    issuers: Vec<String>,
    audiences: Vec<String>,
    algorithms: Option<Vec<Algorithm>>,
    leeway: Option<Duration>,
    max_age: Option<Duration>,
    any_audience: bool,
    required: Vec<String>,
    typ: Option<String>,
    max_token_len: Option<usize>,
    realm: Option<String>,
    optional: bool,
    source: TokenSource,
    on_rejection: Option<Arc<dyn OnRejection>>,
    #[cfg(feature = "cache")]
    cache: usize,
    #[cfg(feature = "revocation")]
    revocations: Option<crate::Revocations>,
    dpop: Option<Dpop>,
    resource_metadata: Option<String>,
    #[cfg(feature = "jwks")]
    introspection: Option<crate::introspect::Introspection>,
    #[cfg(feature = "jwks")]
    discovered: Option<crate::DiscoveredIssuers>,
    _claims: PhantomData<fn() -> C>,
}

impl<C> Clone for JwtAuthLayerBuilder<C> {
    fn clone(&self) -> Self {
        Self {
            keys: self.keys.clone(),
            issuers: self.issuers.clone(),
            audiences: self.audiences.clone(),
            algorithms: self.algorithms.clone(),
            leeway: self.leeway,
            max_age: self.max_age,
            any_audience: self.any_audience,
            required: self.required.clone(),
            typ: self.typ.clone(),
            max_token_len: self.max_token_len,
            realm: self.realm.clone(),
            optional: self.optional,
            source: self.source.clone(),
            on_rejection: self.on_rejection.clone(),
            #[cfg(feature = "cache")]
            cache: self.cache,
            #[cfg(feature = "revocation")]
            revocations: self.revocations.clone(),
            dpop: self.dpop.clone(),
            resource_metadata: self.resource_metadata.clone(),
            #[cfg(feature = "jwks")]
            introspection: self.introspection.clone(),
            #[cfg(feature = "jwks")]
            discovered: self.discovered.clone(),
            _claims: PhantomData,
        }
    }
}

/// What verifies the tokens, as the builder was told.
#[derive(Clone)]
enum KeyChoice {
    None,
    One(Result<KeySource, ConfigError>),
    Trusting(Vec<TrustedIssuer>),
    /// Keys were set by two different steps: a mistake `build` reports.
    Twice,
}

impl<C> JwtAuthLayerBuilder<C> {
    pub(super) fn new() -> Self {
        Self {
            keys: KeyChoice::None,
            issuers: Vec::new(),
            audiences: Vec::new(),
            algorithms: None,
            leeway: None,
            max_age: None,
            any_audience: false,
            required: Vec::new(),
            typ: None,
            max_token_len: None,
            realm: None,
            optional: false,
            source: TokenSource::default(),
            on_rejection: None,
            #[cfg(feature = "cache")]
            cache: 0,
            #[cfg(feature = "revocation")]
            revocations: None,
            dpop: None,
            resource_metadata: None,
            #[cfg(feature = "jwks")]
            introspection: None,
            #[cfg(feature = "jwks")]
            discovered: None,
            _claims: PhantomData,
        }
    }

    fn set_keys(mut self, keys: KeyChoice) -> Self {
        self.keys = match self.keys {
            KeyChoice::None => keys,
            _ => KeyChoice::Twice,
        };
        self
    }

    /// Validates `HS256` tokens; the secret must be at least 32 bytes long.
    pub fn hs256(self, secret: impl AsRef<[u8]>) -> Self {
        self.hmac(Algorithm::HS256, secret)
    }

    /// Validates `HS384` tokens; the secret must be at least 48 bytes long.
    pub fn hs384(self, secret: impl AsRef<[u8]>) -> Self {
        self.hmac(Algorithm::HS384, secret)
    }

    /// Validates `HS512` tokens; the secret must be at least 64 bytes long.
    pub fn hs512(self, secret: impl AsRef<[u8]>) -> Self {
        self.hmac(Algorithm::HS512, secret)
    }

    fn hmac(self, algorithm: Algorithm, secret: impl AsRef<[u8]>) -> Self {
        let key = VerificationKey::hmac(algorithm, secret.as_ref()).map(KeySource::from);
        self.set_keys(KeyChoice::One(key))
    }

    /// Validates tokens signed with `key`.
    pub fn key(self, key: VerificationKey) -> Self {
        self.set_keys(KeyChoice::One(Ok(key.into())))
    }

    /// Validates tokens signed with any of `keys`, picked by `kid` (or, for a token without
    /// `kid`, by `alg`). No key, or two keys sharing a `kid`, is a [`build`](Self::build)
    /// error.
    pub fn keys(self, keys: impl IntoIterator<Item = VerificationKey>) -> Self {
        let set = KeySet::new(keys).and_then(|set| {
            if set.is_empty() {
                Err(ConfigError::NoKeys)
            } else {
                Ok(KeySource::from(set))
            }
        });
        self.set_keys(KeyChoice::One(set))
    }

    /// Validates tokens with keys from `source`: a rotatable [`KeySet`] shared with the
    /// code that rotates it, or a [`JwksSource`](crate::jwks::JwksSource) (feature `jwks`).
    pub fn key_source(self, source: impl Into<KeySource>) -> Self {
        self.set_keys(KeyChoice::One(Ok(source.into())))
    }

    /// Trusts several issuers, each with its own keys, audiences, algorithms and `typ`; the
    /// token's `iss` picks one before any key is used. See [`TrustedIssuer`].
    ///
    /// No issuer, an issuer named twice, or [`issuer`](Self::issuer) on the same builder is a
    /// [`build`](Self::build) error.
    pub fn trusting(self, issuers: impl IntoIterator<Item = TrustedIssuer>) -> Self {
        self.set_keys(KeyChoice::Trusting(issuers.into_iter().collect()))
    }

    /// Accepts tokens from this issuer (`iss`). Call it again to accept several. Once an
    /// issuer is configured, a token without `iss` is rejected.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Accepts tokens for this audience (`aud`). Call it again to accept several. Once an
    /// audience is configured, a token without `aud` is rejected; without one, a token that
    /// names any audience is rejected unless [`any_audience`](Self::any_audience) is set.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Restricts the accepted algorithms further than the keys do (for a JWKS, whose keys
    /// the identity provider chooses: by default its asymmetric algorithms are accepted).
    /// An empty list is [`ConfigError::NoAlgorithms`].
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// The clock skew allowed when checking `exp`, `nbf` and `iat` (default 30 seconds, at
    /// most [`MAX_LEEWAY`](crate::MAX_LEEWAY)).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = Some(leeway);
        self
    }

    /// Refuses tokens issued more than `max_age` ago, or in the future (beyond the leeway):
    /// `iat` becomes required. For services that want a bound on how long a token lives,
    /// whatever `exp` its issuer chose. Zero is [`ConfigError::OutOfRange`].
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// Accepts tokens whatever audience they name, when no [`audience`](Self::audience) is
    /// configured. Without this, such a layer refuses every token that carries `aud` (RFC 7519
    /// section 4.1.3: a recipient must find itself in the audience).
    pub fn any_audience(mut self) -> Self {
        self.any_audience = true;
        self
    }

    /// Rejects tokens that lack this claim (or carry it as `null`, or more than once).
    /// `exp` is always required.
    pub fn require_claim(mut self, name: impl Into<String>) -> Self {
        self.required.push(name.into());
        self
    }

    /// Rejects tokens whose `typ` header is not `typ` (compared case-insensitively, with or
    /// without the `application/` prefix), e.g. `at+jwt` for RFC 9068 access tokens. With
    /// [`trusting`](Self::trusting), this applies to every issuer; set it per issuer with
    /// [`TrustedIssuer::typ`] instead. An empty `typ`, or one with spaces or non-ASCII
    /// characters, is [`ConfigError::InvalidType`].
    pub fn typ(mut self, typ: impl Into<String>) -> Self {
        self.typ = Some(typ.into());
        self
    }

    /// Refuses tokens longer than `max_len` bytes before decoding them (default
    /// [`DEFAULT_MAX_TOKEN_LEN`](crate::DEFAULT_MAX_TOKEN_LEN), 8 KiB).
    pub fn max_token_len(mut self, max_len: usize) -> Self {
        self.max_token_len = Some(max_len);
        self
    }

    /// The realm sent in `WWW-Authenticate` challenges (default `"api"`); an empty one, or
    /// one that is not visible ASCII, is [`ConfigError::InvalidValue`]. A
    /// [`RequireScope`](crate::RequireScope) behind this layer answers its own `403`s: give it
    /// the same realm with [`AuthorizeLayer::realm`](crate::AuthorizeLayer::realm).
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// Lets requests without a token through, without claims. A request with a token that is
    /// invalid, or a malformed request, is still rejected. Pair it with per-route
    /// [`RequireScope`](crate::RequireScope) or [`require`](crate::require) layers, which
    /// answer `401` when there are no claims.
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// Reads the token from the cookie `name` instead of the `Authorization` header.
    pub fn token_from_cookie(mut self, name: &str) -> Self {
        self.source = TokenSource::Cookie(name.into());
        self
    }

    /// Reads the token from the header `name`, whose whole value is the token.
    pub fn token_from_header(mut self, name: HeaderName) -> Self {
        self.source = TokenSource::Header(name);
        self
    }

    /// Reads the token with `f`, which returns `None` when the request has no token. The
    /// length limit still applies to what it returns.
    pub fn token_from_fn<F>(mut self, f: F) -> Self
    where
        F: Fn(&HeaderMap, &Uri) -> Option<String> + Send + Sync + 'static,
    {
        self.source = TokenSource::custom(f);
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
    /// let auth = JwtAuthLayer::<StandardClaims>::builder()
    ///     .hs256(b"an example secret of at least 32 bytes")
    ///     .realm(REALM)
    ///     .on_rejection(rejection)
    ///     .build()?;
    /// let writers = RequireScope::all(["todos:write"]).realm(REALM).on_rejection(rejection);
    /// # let _ = (auth, writers);
    /// # Ok(())
    /// # }
    /// ```
    pub fn on_rejection(mut self, handler: impl OnRejection) -> Self {
        self.on_rejection = Some(Arc::new(handler));
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
    #[cfg(feature = "cache")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
    pub fn cache(mut self, capacity: usize) -> Self {
        self.cache = capacity;
        self
    }

    /// Refuses tokens in `revocations` (`401 invalid_token`, "the token has been revoked"),
    /// checked after every other check, and on every cache hit: a token revoked after it
    /// was cached is refused too. The check reads a local replica and costs a hash lookup or
    /// two; it never waits on the network, even with a [Redis-shared
    /// set](crate::RevocationsBuilder::redis).
    ///
    /// With revocations, a token whose `iat` lies in the future (beyond the leeway) is
    /// refused: a "log out everywhere" covers the tokens issued until it, and a token
    /// claiming to be issued later would escape it.
    #[cfg(feature = "revocation")]
    #[cfg_attr(docsrs, doc(cfg(feature = "revocation")))]
    pub fn revocations(mut self, revocations: crate::Revocations) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// Accepts DPoP-bound tokens (RFC 9449): `Authorization: DPoP <token>` with a `DPoP`
    /// proof header, checked as [`Dpop`] says. Challenges then offer the `DPoP` scheme too.
    ///
    /// Without it the `DPoP` scheme is unsupported (answered like no token), and a token
    /// bound to a DPoP key (`cnf.jkt`) is refused whatever scheme it comes with: a bound
    /// token is never accepted as a bearer token.
    pub fn dpop(mut self, dpop: Dpop) -> Self {
        self.dpop = Some(dpop);
        self
    }

    /// The URL of this resource's metadata document (RFC 9728 section 5.1), sent as
    /// `resource_metadata="..."` in every challenge, so that a client can discover which
    /// authorization servers to ask; typically
    /// [`ProtectedResourceMetadata::url`](crate::ProtectedResourceMetadata::url). One that is
    /// not an absolute http(s) URL is [`ConfigError::InvalidValue`].
    pub fn resource_metadata(mut self, url: impl Into<String>) -> Self {
        self.resource_metadata = Some(url.into());
        self
    }

    /// Also trusts the issuers `issuers` accepts, each discovered (OpenID Connect discovery
    /// and its JWKS) when a token first names it; see [`DiscoveredIssuers`](crate::DiscoveredIssuers).
    /// Beside [`trusting`](Self::trusting), or beside keys for the issuers named with
    /// [`issuer`](Self::issuer) (keys without a named issuer would never be used:
    /// [`ConfigError::InvalidValue`]), or alone (no keys needed). A token whose `iss` is neither
    /// fixed nor accepted by the rule is refused before any request is made.
    #[cfg(feature = "jwks")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
    pub fn discover_issuers(mut self, issuers: crate::DiscoveredIssuers) -> Self {
        self.discovered = Some(issuers);
        self
    }

    /// Validates opaque tokens (any that is not a JWS) by introspection at their
    /// authorization server (RFC 7662), with this layer's checks (leeway, audiences,
    /// `max_age`, required claims, revocations, DPoP). JWTs are validated with the keys as
    /// before. See [`introspect`](crate::introspect).
    #[cfg(feature = "jwks")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
    pub fn introspection(mut self, introspection: crate::introspect::Introspection) -> Self {
        self.introspection = Some(introspection);
        self
    }

    /// The layer, or the first configuration mistake.
    ///
    /// # Errors
    ///
    /// - no keys: [`ConfigError::NoKeys`]; keys set by two steps:
    ///   [`ConfigError::KeysTwice`];
    /// - the key mistakes of [`VerificationKey`] and [`KeySet`] (a weak secret, two keys
    ///   sharing a `kid`);
    /// - with [`trusting`](Self::trusting): [`ConfigError::NoIssuers`],
    ///   [`ConfigError::DuplicateIssuer`], [`ConfigError::IssuersFixed`] when
    ///   [`issuer`](Self::issuer) was set too, and each [`TrustedIssuer`]'s own mistakes;
    /// - [`ConfigError::NoAlgorithms`], [`ConfigError::OutOfRange`] (leeway, `max_age`),
    ///   [`ConfigError::InvalidType`], [`ConfigError::InvalidValue`] (realm);
    /// - the mistakes of [`Dpop`] (an origin that is not an http(s) URL, an unknown proof
    ///   algorithm, a lifetime over 10 minutes, a nonce secret under 32 bytes), and
    ///   [`ConfigError::DpopNotConfigured`] when an issuer requires DPoP without it.
    pub fn build(self) -> Result<JwtAuthLayer<C>, ConfigError> {
        #[cfg(feature = "jwks")]
        let discovering = self.discovered.is_some();
        #[cfg(not(feature = "jwks"))]
        let discovering = false;
        let mut validator = match self.keys {
            KeyChoice::None if discovering => Validator::discovering(),
            KeyChoice::None => return Err(ConfigError::NoKeys),
            KeyChoice::Twice => return Err(ConfigError::KeysTwice),
            KeyChoice::One(keys) => Validator::new(keys?.0),
            KeyChoice::Trusting(issuers) => Validator::trusting(issuers)?,
        };
        for issuer in self.issuers {
            validator.add_issuer(issuer)?;
        }
        #[cfg(feature = "jwks")]
        if let Some(issuers) = self.discovered {
            issuers.check()?;
            validator.set_discovered(issuers)?;
        }
        for audience in self.audiences {
            validator.add_audience(audience);
        }
        if let Some(algorithms) = &self.algorithms {
            validator.set_algorithms(algorithms)?;
        }
        if let Some(leeway) = self.leeway {
            validator.set_leeway(leeway)?;
        }
        if let Some(max_age) = self.max_age {
            validator.set_max_age(max_age)?;
        }
        if self.any_audience {
            validator.accept_any_audience();
        }
        for name in &self.required {
            validator.require_claim(name);
        }
        if let Some(typ) = &self.typ {
            validator.set_typ(typ)?;
        }
        if let Some(max_len) = self.max_token_len {
            validator.max_token_len = max_len;
        }
        #[cfg(feature = "cache")]
        validator.set_cache(self.cache);
        #[cfg(feature = "revocation")]
        if let Some(revocations) = self.revocations {
            validator.set_revocations(revocations);
        }
        #[cfg(feature = "jwks")]
        if let Some(introspection) = self.introspection {
            validator.set_introspection(introspection)?;
        }
        let senders = Senders {
            dpop: self.dpop.map(Dpop::build).transpose()?.map(Arc::new),
        };
        if senders.dpop.is_none() && validator.requires_dpop() {
            return Err(ConfigError::DpopNotConfigured);
        }
        let mut rejecter = Rejecter::default();
        rejecter.set_schemes(Schemes {
            bearer: senders.mode() != DpopMode::Required,
            dpop: senders.dpop.as_ref().map(|d| d.algs.clone()),
        });
        if let Some(realm) = &self.realm {
            rejecter.set_realm(realm)?;
        }
        if let Some(url) = &self.resource_metadata {
            rejecter.set_resource_metadata(url)?;
        }
        if let Some(handler) = self.on_rejection {
            rejecter.set_handler(handler);
        }
        Ok(JwtAuthLayer::from_config(Config {
            validator,
            source: self.source,
            optional: self.optional,
            rejecter,
            senders,
        }))
    }
}

impl<C> fmt::Debug for JwtAuthLayerBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the keys: an HMAC secret is in there.
        let mut f = f.debug_struct("JwtAuthLayerBuilder");
        f.field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("algorithms", &self.algorithms)
            .field("leeway", &self.leeway)
            .field("max_age", &self.max_age)
            .field("typ", &self.typ);
        #[cfg(feature = "cache")]
        f.field("cache", &self.cache);
        f.field("dpop", &self.dpop).finish_non_exhaustive()
    }
}
