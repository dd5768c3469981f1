//! Opaque access tokens, validated by asking their authorization server (OAuth 2.0 Token
//! Introspection, RFC 7662; feature `jwks`).
//!
//! Many identity providers issue access tokens that only they can read. A layer given an
//! [`Introspection`] sends every token that is not a JWS (not three dot-separated parts) to
//! the introspection endpoint of that issuer, and treats the answer as it treats a JWT's
//! payload:
//!
//! - `active` must be `true`, or the token is refused (`401 invalid_token`, "the token is not
//!   active");
//! - `exp`, `nbf` and `iat` are checked with the layer's leeway (and `max_age`), `iss` (when
//!   present) must be the issuer, and `aud` (when present) must name one of the layer's
//!   audiences;
//! - `cnf` and a `token_type` of `DPoP` make the token sender-constrained exactly as a JWT's
//!   `cnf` would (a `DPoP` token without `cnf.jkt` is refused);
//! - the same `Claims<C>` and `Scopes` extensions are filled from the response. An answer
//!   without `iss` gets the issuer's identifier, and one without `sub` but with `client_id`
//!   (a client's own token, from the client-credentials grant) gets `sub` = `client_id`, as
//!   RFC 9068 section 2.2 writes it into JWT access tokens: `StandardClaims::principal()`
//!   reads the same for both kinds of token.
//! - the layer's [`Revocations`](crate::Revocations) apply, on every request.
//!
//! Results are cached by the SHA-256 of the token (never the token itself): an active one
//! until the earlier of its `exp` and [`cache_ttl`](IntrospectionBuilder::cache_ttl)
//! (default 60 s: a revocation at the provider takes effect within it), an inactive one for
//! [`inactive_ttl`](IntrospectionBuilder::inactive_ttl); bounded in entries. Concurrent
//! requests with one new token make one introspection. When the provider is unreachable,
//! slow or answers with anything but a JSON object, tokens not in the cache get `503` with
//! `Retry-After` (never `401`, never `200`), and after
//! [`breaker`](IntrospectionBuilder::breaker) consecutive failures no request is sent for a
//! while.
//!
//! ```no_run
//! use tower_jwt_auth::{JwtAuthLayer, StandardClaims, introspect::Introspection, jwks::JwksSource};
//!
//! # #[tokio::main] async fn main() -> Result<(), tower_jwt_auth::ConfigError> {
//! let issuer = "https://login.example.com";
//! let opaque = Introspection::discover(issuer)
//!     .client_secret_basic("todo-api", "its-secret")
//!     .build()?;
//! let layer = JwtAuthLayer::<StandardClaims>::builder()
//!     .key_source(JwksSource::discover(issuer).build()?) // its JWTs, if it issues any
//!     .issuer(issuer)
//!     .audience("https://api.example.com")
//!     .introspection(opaque)
//!     .build()?;
//! # Ok(()) }
//! ```

mod cache;
mod remote;
#[cfg(feature = "redis")]
mod shared;

use std::{fmt, sync::Arc, time::Duration};

use http::Uri;

pub(crate) use cache::{Introspector, Revocable};
use remote::{Endpoint, Remote};

use crate::ConfigError;

/// How a layer introspects opaque tokens: the authorization server, its endpoint, the
/// client credentials, the cache bounds. Cheap to clone; clones share the HTTP client, the
/// breaker and the counters (each layer keeps its own result cache).
#[derive(Clone)]
pub struct Introspection {
    pub(crate) remote: Arc<Remote>,
    pub(crate) settings: Settings,
    #[cfg(feature = "redis")]
    pub(crate) shared: Option<Arc<shared::SharedResults>>,
}

#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) cache_ttl: Duration,
    pub(crate) inactive_ttl: Duration,
    pub(crate) capacity: usize,
    pub(crate) max_in_flight: usize,
}

/// Configures an [`Introspection`]; every setting is infallible and
/// [`build`](Self::build) reports a mistake.
pub struct IntrospectionBuilder {
    issuer: String,
    endpoint: Result<EndpointSetting, ConfigError>,
    client: Option<(String, String)>,
    timeout: Duration,
    breaker: (u32, Duration),
    allow_http: bool,
    /// Set explicitly; by default 5 s, or the cache TTL when that is shorter.
    inactive_ttl: Option<Duration>,
    #[cfg(feature = "redis")]
    redis: Option<(redis::Client, String)>,
    settings: Settings,
}

enum EndpointSetting {
    Fixed(Uri),
    Discover(Uri),
}

/// The default bound on how long an active result is trusted.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);

impl Introspection {
    /// Introspects at `endpoint` the opaque tokens of `issuer` (its identifier, which an
    /// answer's `iss` must equal).
    pub fn builder(issuer: impl Into<String>, endpoint: &str) -> IntrospectionBuilder {
        let endpoint = endpoint
            .parse()
            .map(EndpointSetting::Fixed)
            .map_err(|_| ConfigError::InvalidValue("the introspection endpoint does not parse"));
        IntrospectionBuilder::new(issuer.into(), endpoint)
    }

    /// Finds the endpoint (`introspection_endpoint`) through OpenID Connect discovery at
    /// `{issuer}/.well-known/openid-configuration` on first use; the document's `issuer`
    /// must be exactly `issuer` (OpenID Connect Discovery section 4.3), or nothing is sent.
    pub fn discover(issuer: &str) -> IntrospectionBuilder {
        let config = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let endpoint = config
            .parse()
            .map(EndpointSetting::Discover)
            .map_err(|_| ConfigError::InvalidValue("the issuer URL does not parse"));
        IntrospectionBuilder::new(issuer.to_owned(), endpoint)
    }

    /// The issuer whose tokens this introspects.
    pub fn issuer(&self) -> &str {
        &self.remote.issuer
    }

    /// How many introspection requests have been sent (and discovery documents fetched
    /// not counted): for metrics and tests.
    pub fn introspections(&self) -> u64 {
        self.remote.calls()
    }
}

impl IntrospectionBuilder {
    fn new(issuer: String, endpoint: Result<EndpointSetting, ConfigError>) -> Self {
        Self {
            issuer,
            endpoint,
            client: None,
            timeout: Duration::from_secs(5),
            breaker: (5, Duration::from_secs(30)),
            allow_http: false,
            inactive_ttl: None,
            #[cfg(feature = "redis")]
            redis: None,
            settings: Settings {
                cache_ttl: DEFAULT_CACHE_TTL,
                inactive_ttl: Duration::from_secs(5),
                capacity: 10_000,
                max_in_flight: 64,
            },
        }
    }

    /// Authenticates to the endpoint with HTTP Basic (`client_secret_basic`, RFC 6749
    /// section 2.3.1: both parts form-urlencoded first). Most providers require client
    /// authentication for introspection.
    pub fn client_secret_basic(
        mut self,
        client_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        self.client = Some((client_id.into(), secret.into()));
        self
    }

    /// The longest an active result is used before the provider is asked again (default 60
    /// s): a token revoked at the provider is refused within it. At most one hour.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.settings.cache_ttl = ttl;
        self
    }

    /// How long an inactive result (or one that failed this layer's checks) is remembered
    /// (default 5 s, or the cache TTL when that is shorter); at most the cache TTL.
    pub fn inactive_ttl(mut self, ttl: Duration) -> Self {
        self.inactive_ttl = Some(ttl);
        self
    }

    /// The results kept (default 10,000).
    pub fn capacity(mut self, entries: usize) -> Self {
        self.settings.capacity = entries;
        self
    }

    /// The most introspections in flight at once (default 64): a flood of new tokens beyond
    /// it is answered `503` without a request.
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.settings.max_in_flight = requests;
        self
    }

    /// How long one introspection (connection included) may take (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// After `failures` consecutive failed introspections, none is sent for `open_for`
    /// (default 5 failures, 30 s); then one is tried again.
    pub fn breaker(mut self, failures: u32, open_for: Duration) -> Self {
        self.breaker = (failures, open_for);
        self
    }

    /// Accepts a plain `http://` endpoint that is not a loopback address. Without it such an
    /// endpoint is refused: anyone on the path could read the tokens and forge the answers.
    pub fn allow_http(mut self) -> Self {
        self.allow_http = true;
        self
    }

    /// Shares results with every instance using this Redis (feature `redis`): an instance
    /// that has not seen a token asks Redis before the authorization server. Keys are the
    /// SHA-256 of the token under [`redis_key_prefix`](Self::redis_key_prefix); values the
    /// server's answers, checked again by each instance, expiring with their bound. While
    /// Redis is unreachable, instances introspect on their own.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(mut self, client: redis::Client) -> Self {
        let prefix = self.redis.take().map(|(_, prefix)| prefix);
        let prefix = prefix.unwrap_or_else(|| "tower-jwt-auth:introspection".to_owned());
        self.redis = Some((client, prefix));
        self
    }

    /// The prefix of the shared results' keys (default `tower-jwt-auth:introspection`).
    /// Without [`redis`](Self::redis), it does nothing.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        if let Some((_, p)) = &mut self.redis {
            *p = prefix.into();
        }
        self
    }

    /// The introspection client, or the first mistake.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] for an endpoint or issuer URL that does not parse,
    /// [`ConfigError::InsecureUrl`] for a plain-HTTP one that is not loopback (without
    /// [`allow_http`](Self::allow_http)), [`ConfigError::OutOfRange`] for a cache TTL of
    /// zero or over an hour, an inactive TTL over the cache TTL, a zero capacity, in-flight
    /// limit, timeout or breaker threshold. Needs a Tokio runtime when requests arrive, not
    /// here.
    pub fn build(mut self) -> Result<Introspection, ConfigError> {
        self.settings.inactive_ttl = self
            .inactive_ttl
            .unwrap_or(self.settings.inactive_ttl.min(self.settings.cache_ttl));
        let s = &self.settings;
        if s.cache_ttl.is_zero() || s.cache_ttl > Duration::from_secs(3600) {
            return Err(ConfigError::OutOfRange(
                "the introspection cache TTL must be between 1 second and 1 hour",
            ));
        }
        if s.inactive_ttl > s.cache_ttl {
            return Err(ConfigError::OutOfRange(
                "the inactive-result TTL must not exceed the cache TTL",
            ));
        }
        if s.capacity == 0 || s.max_in_flight == 0 || self.timeout.is_zero() || self.breaker.0 == 0
        {
            return Err(ConfigError::OutOfRange(
                "the introspection capacity, in-flight limit, timeout and breaker threshold \
                 must be positive",
            ));
        }
        let endpoint = match self.endpoint? {
            EndpointSetting::Fixed(uri) => {
                crate::jwks::check_transport(&uri, self.allow_http)
                    .map_err(ConfigError::InsecureUrl)?;
                Endpoint::Fixed(uri)
            }
            EndpointSetting::Discover(config) => {
                crate::jwks::check_transport(&config, self.allow_http)
                    .map_err(ConfigError::InsecureUrl)?;
                Endpoint::discover(config)
            }
        };
        let remote = Remote::new(
            self.issuer,
            endpoint,
            self.client
                .as_ref()
                .map(|(id, secret)| (id.as_str(), secret.as_str())),
            self.timeout,
            self.breaker,
            self.allow_http,
        );
        Ok(Introspection {
            remote: Arc::new(remote),
            settings: self.settings,
            #[cfg(feature = "redis")]
            shared: self
                .redis
                .map(|(client, prefix)| shared::SharedResults::new(client, prefix))
                .transpose()?
                .map(Arc::new),
        })
    }
}

impl fmt::Debug for Introspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the client secret.
        f.debug_struct("Introspection")
            .field("issuer", &self.remote.issuer)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for IntrospectionBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionBuilder")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client.as_ref().map(|(id, _)| id))
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
