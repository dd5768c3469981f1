//! The DPoP settings of a layer ([`Dpop`]) and what they are checked with once built.

use std::{fmt, time::Duration};

use http::{HeaderMap, HeaderValue, Method, Uri};

use super::{
    htu::Origin,
    nonce::Nonces,
    proof::{self, ProofAlg},
    replay::ReplayCache,
};
use crate::{AuthError, ConfigError, validate::Pending};

/// The proof algorithms a layer accepts unless told otherwise: every asymmetric algorithm
/// RFC 9449 implementations use, with EdDSA under both its RFC 8037 name `EdDSA` and its
/// fully specified RFC 9864 name `Ed25519`.
pub const DEFAULT_DPOP_ALGORITHMS: &[&str] =
    &["ES256", "ES384", "PS256", "RS256", "EdDSA", "Ed25519"];

/// Whether tokens may, or must, be DPoP-bound: for a whole layer ([`Dpop::mode`]) or one
/// trusted issuer ([`TrustedIssuer::dpop`](crate::TrustedIssuer::dpop)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DpopMode {
    /// The `DPoP` scheme is refused; a token bound to a DPoP key can never be used.
    Off,
    /// Bearer tokens with the `Bearer` scheme, DPoP-bound tokens with the `DPoP` scheme.
    #[default]
    Allowed,
    /// Only DPoP-bound tokens, with the `DPoP` scheme and a proof.
    Required,
}

/// DPoP (RFC 9449) for a [`JwtAuthLayer`](crate::JwtAuthLayer): how proofs are checked.
///
/// A proof names the URI it was made for (`htu`), and behind a proxy or a load balancer the
/// server cannot know the URI its clients see, so the public origin is configured, never
/// taken from the request: [`Dpop::new`] with a fixed origin, or [`Dpop::for_hosts`] to
/// accept the `Host` of the request only when it is one of a list.
///
/// Every setting is infallible; mistakes are reported by
/// [`JwtAuthLayerBuilder::build`](crate::JwtAuthLayerBuilder::build).
///
/// ```
/// use std::time::Duration;
/// use tower_jwt_auth::{Dpop, DpopMode, JwtAuthLayer, StandardClaims};
///
/// let layer = JwtAuthLayer::<StandardClaims>::builder()
///     .hs256(b"an example secret of at least 32 bytes")
///     .dpop(
///         Dpop::new("https://api.example.com")
///             .mode(DpopMode::Required)
///             .proof_lifetime(Duration::from_secs(30)),
///     )
///     .build()
///     .unwrap();
/// # let _ = layer;
/// ```
#[derive(Clone)]
#[must_use = "a `Dpop` does nothing until it is given to `JwtAuthLayerBuilder::dpop`"]
pub struct Dpop {
    origin: OriginSetting,
    mode: DpopMode,
    algorithms: Option<Vec<String>>,
    proof_lifetime: Duration,
    clock_skew: Duration,
    /// `Err` when [`random_nonces`](Dpop::random_nonces) found no randomness: reported by
    /// `build`. Drawn when set, so that every verifier built from these settings (a layer's,
    /// a token endpoint's) shares it.
    nonce_secret: Option<Result<Vec<u8>, getrandom::Error>>,
    nonce_rotation: Duration,
    replay_capacity: usize,
    #[cfg(feature = "redis")]
    redis: Option<(redis::Client, String, super::ReplayFallback)>,
}

#[derive(Clone, Debug)]
enum OriginSetting {
    Fixed(String),
    Hosts { scheme: String, hosts: Vec<String> },
}

impl Dpop {
    /// DPoP for a resource served at `public_origin`, as its clients write it: a scheme and
    /// authority (`https://api.example.com`), optionally with a path prefix that a proxy
    /// strips (`https://example.com/api`). A proof's `htu` must be this origin followed by
    /// the request's path.
    pub fn new(public_origin: impl Into<String>) -> Self {
        Self::with_origin(OriginSetting::Fixed(public_origin.into()))
    }

    /// DPoP for a resource served under several host names: the request's `Host` (or
    /// HTTP/2 `:authority`) is believed only when it is one of `hosts` (`host` or
    /// `host:port`, compared case-insensitively), and a request naming another host cannot
    /// pass with a proof. `scheme` is `https` or `http`.
    pub fn for_hosts(
        scheme: impl Into<String>,
        hosts: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self::with_origin(OriginSetting::Hosts {
            scheme: scheme.into(),
            hosts: hosts.into_iter().map(Into::into).collect(),
        })
    }

    fn with_origin(origin: OriginSetting) -> Self {
        Self {
            origin,
            mode: DpopMode::Allowed,
            algorithms: None,
            proof_lifetime: Duration::from_secs(60),
            clock_skew: Duration::from_secs(5),
            nonce_secret: None,
            nonce_rotation: Duration::from_secs(60),
            replay_capacity: 1 << 20,
            #[cfg(feature = "redis")]
            redis: None,
        }
    }

    /// Whether DPoP-bound tokens are allowed beside bearer tokens (the default) or
    /// required; [`TrustedIssuer::dpop`](crate::TrustedIssuer::dpop) overrides it for one
    /// issuer.
    pub fn mode(mut self, mode: DpopMode) -> Self {
        self.mode = mode;
        self
    }

    /// The proof algorithms accepted (default [`DEFAULT_DPOP_ALGORITHMS`]), a subset of
    /// them. They are advertised in the challenge's `algs` parameter.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.algorithms = Some(algorithms.into_iter().map(Into::into).collect());
        self
    }

    /// How long after its `iat` a proof is accepted (default 60 s, at most 10 minutes).
    /// Every proof's `jti` is remembered this long (plus the clock skew) to refuse replays.
    pub fn proof_lifetime(mut self, lifetime: Duration) -> Self {
        self.proof_lifetime = lifetime;
        self
    }

    /// How far in the future a proof's `iat` may lie, for clients whose clock is ahead
    /// (default 5 s, at most the proof lifetime).
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// Server-provided nonces (RFC 9449 section 9): a proof must carry a nonce this server
    /// gave, or it is answered `401 use_dpop_nonce` with a fresh one in `DPoP-Nonce`.
    ///
    /// Nonces are stateless: derived from `secret` (at least 32 bytes) and the current time
    /// step, so every instance given the same secret accepts every other's nonces. A nonce
    /// is good for the step it was made in and the next; a response to a proof with the
    /// previous step's nonce carries the current one.
    pub fn nonces(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.nonce_secret = Some(Ok(secret.as_ref().to_vec()));
        self
    }

    /// Server-provided nonces as [`nonces`](Self::nonces) makes them, from a random secret
    /// drawn now: good on this process only. A client that reaches another instance is
    /// answered `use_dpop_nonce` once more (one extra round trip); give every instance the
    /// same secret with [`nonces`](Self::nonces) instead. Every verifier built from these
    /// settings, and from their clones, shares the secret.
    pub fn random_nonces(mut self) -> Self {
        let mut secret = vec![0; 32];
        self.nonce_secret = Some(getrandom::fill(&mut secret).map(|()| secret));
        self
    }

    /// How often the server nonce changes (default 60 s); a nonce is accepted for up to
    /// twice this long.
    pub fn nonce_rotation(mut self, rotation: Duration) -> Self {
        self.nonce_rotation = rotation;
        self
    }

    /// How many proofs the in-memory replay store remembers per window of proof lifetime
    /// plus clock skew (by `iat`; default 1,048,576, about 16 MiB per window, and up to
    /// three windows stay allocated). Past it, DPoP requests are answered `503` until
    /// their window passes: a replay is never let through for want of room.
    pub fn replay_capacity(mut self, capacity: usize) -> Self {
        self.replay_capacity = capacity;
        self
    }

    /// A verifier of proofs on their own, for a token endpoint that issues DPoP-bound
    /// tokens (RFC 9449 section 5); the layer builds its own from the same settings.
    ///
    /// # Errors
    ///
    /// The mistakes [`JwtAuthLayerBuilder::build`](crate::JwtAuthLayerBuilder::build)
    /// reports for these settings.
    pub fn verifier(self) -> Result<DpopVerifier, ConfigError> {
        self.build()
    }

    /// Shares the replay store with every instance through this Redis: a proof used on one
    /// instance is refused on all others. Each DPoP request then waits for one `SET NX` (a
    /// loopback round trip); while Redis is unreachable, see
    /// [`when_redis_unavailable`](Self::when_redis_unavailable).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(mut self, client: redis::Client) -> Self {
        let (prefix, fallback) = match self.redis.take() {
            Some((_, prefix, fallback)) => (prefix, fallback),
            None => (
                "tower-jwt-auth:dpop".to_owned(),
                super::ReplayFallback::default(),
            ),
        };
        self.redis = Some((client, prefix, fallback));
        self
    }

    /// The prefix of the shared replay store's keys (default `tower-jwt-auth:dpop`).
    /// Without [`redis`](Self::redis), it does nothing.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        if let Some((_, p, _)) = &mut self.redis {
            *p = prefix.into();
        }
        self
    }

    /// What DPoP requests get while Redis cannot be asked: refused with `503` (the
    /// default), or checked on this instance only. Without [`redis`](Self::redis), it does
    /// nothing.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn when_redis_unavailable(mut self, fallback: super::ReplayFallback) -> Self {
        if let Some((_, _, f)) = &mut self.redis {
            *f = fallback;
        }
        self
    }

    /// The proof algorithms accepted, by name (for RFC 9728 metadata).
    pub(crate) fn algorithm_names(&self) -> Vec<String> {
        match &self.algorithms {
            Some(names) => names.clone(),
            None => DEFAULT_DPOP_ALGORITHMS
                .iter()
                .map(|&n| n.to_owned())
                .collect(),
        }
    }

    /// Whether every token must be DPoP-bound.
    pub(crate) fn requires_dpop(&self) -> bool {
        self.mode == DpopMode::Required
    }

    pub(crate) fn build(self) -> Result<DpopVerifier, ConfigError> {
        let origin = match &self.origin {
            OriginSetting::Fixed(origin) => Origin::fixed(origin)?,
            OriginSetting::Hosts { scheme, hosts } => Origin::hosts(scheme, hosts)?,
        };
        let names: Vec<String> = match self.algorithms {
            Some(names) => names,
            None => DEFAULT_DPOP_ALGORITHMS
                .iter()
                .map(|&n| n.to_owned())
                .collect(),
        };
        if names.is_empty() {
            return Err(ConfigError::NoAlgorithms);
        }
        let mut algorithms = Vec::with_capacity(names.len());
        for name in &names {
            let alg = ProofAlg::parse(name).ok_or(ConfigError::InvalidValue(
                "a DPoP algorithm must be one of ES256, ES384, PS256, RS256, EdDSA, Ed25519",
            ))?;
            algorithms.push((name.clone(), alg));
        }
        let max = Duration::from_secs(600);
        if self.proof_lifetime.as_secs() == 0 || self.proof_lifetime > max {
            return Err(ConfigError::OutOfRange(
                "the DPoP proof lifetime must be 1 second to 10 minutes",
            ));
        }
        if self.clock_skew > self.proof_lifetime {
            return Err(ConfigError::OutOfRange(
                "the DPoP clock skew must be at most the proof lifetime",
            ));
        }
        if self.replay_capacity == 0 {
            return Err(ConfigError::OutOfRange(
                "the DPoP replay capacity must be positive",
            ));
        }
        let nonces = match &self.nonce_secret {
            Some(Ok(secret)) => Some(Nonces::new(secret, self.nonce_rotation)?),
            Some(Err(_)) => {
                return Err(ConfigError::InvalidValue(
                    "random_nonces found no randomness: pass a secret to nonces",
                ));
            }
            None => None,
        };
        let challenge = HeaderValue::try_from(names.join(" "))
            .map_err(|_| ConfigError::InvalidValue("a DPoP algorithm name is not visible ASCII"))?;
        let window = self.proof_lifetime + self.clock_skew;
        Ok(DpopVerifier {
            origin,
            mode: self.mode,
            algorithms,
            algs: challenge,
            lifetime: self.proof_lifetime.as_secs(),
            skew: self.clock_skew.as_secs(),
            nonces,
            replay: ReplayCache::new(self.replay_capacity, window),
            #[cfg(feature = "redis")]
            shared: match self.redis {
                Some((client, prefix, fallback)) => Some(super::shared_replay::SharedReplay::new(
                    client, prefix, window, fallback,
                )?),
                None => None,
            },
        })
    }
}

impl fmt::Debug for Dpop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the nonce secret.
        f.debug_struct("Dpop")
            .field("origin", &self.origin)
            .field("mode", &self.mode)
            .field("algorithms", &self.algorithms)
            .field("proof_lifetime", &self.proof_lifetime)
            .field("clock_skew", &self.clock_skew)
            .field("nonces", &self.nonce_secret.is_some())
            .field("replay_capacity", &self.replay_capacity)
            .finish()
    }
}

/// A proof that passed: the thumbprint of its key, and a fresher nonce to hand the client
/// when its nonce is about to expire.
pub(crate) struct CheckedProof {
    pub(crate) jkt: String,
    pub(crate) next_nonce: Option<HeaderValue>,
    /// With a shared replay store: the claim of the proof there, still to be awaited.
    pub(crate) claim: Option<Pending>,
}

/// Built [`Dpop`] settings: checks the proof of one request (RFC 9449 section 4.3).
///
/// A layer builds its own; [`Dpop::verifier`] makes one for a token endpoint.
pub struct DpopVerifier {
    origin: Origin,
    pub(crate) mode: DpopMode,
    algorithms: Vec<(String, ProofAlg)>,
    /// The `algs` challenge parameter.
    pub(crate) algs: HeaderValue,
    lifetime: u64,
    skew: u64,
    nonces: Option<Nonces>,
    replay: ReplayCache,
    #[cfg(feature = "redis")]
    shared: Option<super::shared_replay::SharedReplay>,
}

impl DpopVerifier {
    /// Checks the `DPoP` proof of a token request (RFC 9449 section 5): every check of
    /// section 4.3 but those about an access token, which the request does not carry yet.
    /// The answer is the RFC 7638 thumbprint of the proof's key, for
    /// [`TokenIssuer::issue_bound`](crate::TokenIssuer::issue_bound); an error is the
    /// reason, for a `400 invalid_dpop_proof` (or `use_dpop_nonce`) answer.
    ///
    /// # Errors
    ///
    /// [`AuthError::InvalidDpopProof`], [`AuthError::UseDpopNonce`] or
    /// [`AuthError::DpopUnavailable`].
    pub async fn check_token_request<B>(
        &self,
        req: &http::Request<B>,
    ) -> Result<String, AuthError> {
        let now = jsonwebtoken::get_current_timestamp();
        let proof = self.check(req.method(), req.uri(), req.headers(), None, now)?;
        if let Some(claim) = proof.claim {
            claim.await?;
        }
        Ok(proof.jkt)
    }

    /// Checks the request's one `DPoP` proof against the request and the access `token`,
    /// in the order of RFC 9449 section 4.3, then records its `jti`. The binding of the
    /// token to the proof's key (`cnf.jkt`) is the caller's last check.
    pub(crate) fn check(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        token: Option<&str>,
        now: u64,
    ) -> Result<CheckedProof, AuthError> {
        // 1, 2. Exactly one proof, a well-formed JWT.
        let mut values = headers.get_all(DPOP).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(AuthError::InvalidDpopProof(
                "a DPoP request carries exactly one DPoP header",
            ));
        };
        let value = value
            .to_str()
            .map_err(|_| AuthError::InvalidDpopProof("the DPoP proof is not a JWT"))?;
        // 3-7. Header, claims, algorithm, key, signature.
        let proof = proof::verify(value, &self.algorithms)?;
        // 8. The method.
        if proof.htm != method.as_str() {
            return Err(AuthError::InvalidDpopProof(
                "the proof was made for another HTTP method",
            ));
        }
        // 9. The URI, without query and fragment, normalized.
        if !self.origin.matches(&proof.htu, uri, headers) {
            return Err(AuthError::InvalidDpopProof(
                "the proof was made for another URI",
            ));
        }
        // 10. The nonce, when this server hands them out.
        let next_nonce = match &self.nonces {
            None => None,
            Some(nonces) => nonces.check(proof.nonce.as_deref(), now)?,
        };
        // 11. Its age.
        if proof.iat + self.lifetime < now {
            return Err(AuthError::InvalidDpopProof("the proof is too old"));
        }
        if proof.iat > now + self.skew {
            return Err(AuthError::InvalidDpopProof(
                "the proof is issued in the future",
            ));
        }
        // 12. The access token hash, when there is one.
        if let Some(token) = token
            && proof.ath.as_deref() != Some(&*proof::token_hash(token))
        {
            return Err(AuthError::InvalidDpopProof(
                "the proof's ath is not the hash of this access token",
            ));
        }
        // Last, once the proof is known to be good: never seen before (section 11.1).
        self.replay.first_use(&proof.jkt, &proof.jti, proof.iat)?;
        #[cfg(feature = "redis")]
        let claim = self
            .shared
            .as_ref()
            .map(|s| s.claim(&proof.jkt, &proof.jti));
        #[cfg(not(feature = "redis"))]
        let claim = None;
        Ok(CheckedProof {
            jkt: proof.jkt,
            next_nonce,
            claim,
        })
    }
}

impl fmt::Debug for DpopVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopVerifier")
            .field("origin", &self.origin)
            .field("mode", &self.mode)
            .field("algs", &self.algs)
            .field("lifetime", &self.lifetime)
            .field("nonces", &self.nonces.is_some())
            .finish_non_exhaustive()
    }
}

/// The `DPoP` request header (RFC 9449 section 4.1).
pub(crate) const DPOP: http::HeaderName = http::HeaderName::from_static("dpop");
/// The `DPoP-Nonce` response header (RFC 9449 section 8.1).
pub(crate) const DPOP_NONCE: http::HeaderName = http::HeaderName::from_static("dpop-nonce");
