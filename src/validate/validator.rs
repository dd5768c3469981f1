use std::{collections::HashMap, fmt, marker::PhantomData, sync::Arc, time::Duration};

use jsonwebtoken::Algorithm;
use serde::de::DeserializeOwned;

use super::{
    cache::Entry,
    jws::{Jws, Payload},
    policy::{ALL_ALGORITHMS, MAX_LEEWAY, Policy, valid_typ},
    registered::Registered,
    tap,
};
use crate::{
    AuthError, ConfigError, DpopMode, Scopes, TrustedIssuer,
    claims::Confirmation,
    keys::{Keys, RefreshWait},
    ready::{Check, Readiness},
    sender::Admission,
    token::DEFAULT_MAX_TOKEN_LEN,
};

/// What a valid token yields: its claims, decoded once and shared, its scopes, what it is
/// bound to; and, once the sender check passed, how the request proved it may use it.
pub(crate) struct Validated<C> {
    pub(crate) claims: Arc<C>,
    pub(crate) scopes: Scopes,
    /// `cnf`: the key or certificate the token is bound to.
    pub(crate) confirmation: Option<Confirmation>,
    /// The issuer's own DPoP mode, when it overrides the layer's.
    pub(crate) dpop: Option<DpopMode>,
    /// Filled by the sender check ([`Senders::check`](crate::sender::Senders)).
    pub(crate) admission: Admission,
}

impl<C> Validated<C> {
    /// What passed: the claims, and the scopes and binding read with the registered claims.
    pub(crate) fn new(claims: C, registered: Registered<'_>, dpop: Option<DpopMode>) -> Self {
        Self {
            claims: Arc::new(claims),
            scopes: registered.scopes,
            confirmation: registered.cnf,
            dpop,
            admission: Admission::default(),
        }
    }
}

impl<C> Clone for Validated<C> {
    fn clone(&self) -> Self {
        Self {
            claims: self.claims.clone(),
            scopes: self.scopes.clone(),
            confirmation: self.confirmation.clone(),
            dpop: self.dpop,
            admission: self.admission.clone(),
        }
    }
}

/// What the validator says of one token (and the sender check of the request).
pub(crate) enum Verdict<C> {
    Valid(Validated<C>),
    Invalid(AuthError),
    /// The answer is on its way from the network: the token's key, with a refresh of a
    /// remote key set that has started, or the introspection of an opaque token. Wait for
    /// it, then ask again; the error is the verdict if it does not come.
    WaitForRemote(RefreshWait, AuthError),
    /// Valid if the last check, which finishes on the network, says so: the DPoP proof's
    /// claim in the replay store shared through Redis.
    WaitForReplay(Pending, Validated<C>),
}

/// A check that finishes on the network; an error is the request's rejection.
pub(crate) type Pending =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), AuthError>> + Send>>;

/// Why a token failed, and whether new keys could change that.
enum Failure {
    Invalid(AuthError),
    /// The key is unknown (or no keys are loaded): `keys` may be refreshed.
    KeyMissing(Keys, AuthError),
}

impl From<AuthError> for Failure {
    fn from(error: AuthError) -> Self {
        Self::Invalid(error)
    }
}

/// Validated, precomputed token-checking configuration: one [`Policy`] per trusted issuer
/// (exactly one unless the layer was built with `trusting`), the checks that apply to every
/// issuer, and the optional cache of tokens that passed.
pub(crate) struct Validator<C> {
    policies: Vec<Policy>,
    /// With several trusted issuers: each one's policy, by exact `iss`.
    by_issuer: Option<HashMap<String, usize>>,
    /// Claims that must be present (and not `null`).
    required: Vec<Arc<str>>,
    pub(crate) max_token_len: usize,
    #[cfg(feature = "cache")]
    cache: Option<super::cache::TokenCache<C>>,
    /// Consulted after every other check, on cache hits too.
    #[cfg(feature = "revocation")]
    revocations: Option<crate::Revocations>,
    /// Opaque tokens (not a JWS) go to their authorization server.
    #[cfg(feature = "jwks")]
    introspector: Option<crate::introspect::Introspector<C>>,
    /// Issuers trusted by rule, beside the fixed ones.
    #[cfg(feature = "jwks")]
    discovered: Option<crate::discover::Discovered>,
    /// What tokens are decoded into (named by the cache and introspection when they are on).
    claims: PhantomData<fn() -> C>,
}

impl<C> Validator<C> {
    pub(crate) fn new(keys: Keys) -> Self {
        Self::with_policies(vec![Policy::new(keys)], None)
    }

    pub(crate) fn trusting(issuers: Vec<TrustedIssuer>) -> Result<Self, ConfigError> {
        if issuers.is_empty() {
            return Err(ConfigError::NoIssuers);
        }
        let mut policies = Vec::with_capacity(issuers.len());
        let mut by_issuer = HashMap::with_capacity(issuers.len());
        for trusted in issuers {
            let mut policy = Policy::new(trusted.keys.0);
            policy.issuers = vec![trusted.issuer.clone()];
            policy.audiences = trusted.audiences;
            policy.any_audience = trusted.any_audience;
            if trusted.algorithms.as_ref().is_some_and(Vec::is_empty) {
                return Err(ConfigError::NoAlgorithms);
            }
            policy.algorithms = trusted.algorithms;
            policy.dpop = trusted.dpop;
            policy.typ = match &trusted.typ {
                Some(typ) => Some(valid_typ(typ)?.into()),
                None => None,
            };
            if by_issuer.contains_key(&trusted.issuer) {
                return Err(ConfigError::DuplicateIssuer(trusted.issuer));
            }
            by_issuer.insert(trusted.issuer, policies.len());
            policies.push(policy);
        }
        Ok(Self::with_policies(policies, Some(by_issuer)))
    }

    /// No fixed issuer: only discovered ones (`set_discovered`, feature `jwks`).
    #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
    pub(crate) fn discovering() -> Self {
        Self::with_policies(Vec::new(), Some(HashMap::new()))
    }

    fn with_policies(policies: Vec<Policy>, by_issuer: Option<HashMap<String, usize>>) -> Self {
        Self {
            policies,
            by_issuer,
            required: Vec::new(),
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
            #[cfg(feature = "cache")]
            cache: None,
            #[cfg(feature = "revocation")]
            revocations: None,
            #[cfg(feature = "jwks")]
            introspector: None,
            #[cfg(feature = "jwks")]
            discovered: None,
            claims: PhantomData,
        }
    }

    /// Every policy a setting applies to: each trusted issuer's, and the one discovered
    /// issuers start from.
    fn each_policy(&mut self) -> impl Iterator<Item = &mut Policy> {
        #[cfg(feature = "jwks")]
        let template = self.discovered.as_mut().map(|d| &mut d.template);
        #[cfg(not(feature = "jwks"))]
        let template = None;
        self.policies.iter_mut().chain(template)
    }

    /// Not on a layer that trusts several issuers: each names its own.
    pub(crate) fn add_issuer(&mut self, issuer: String) -> Result<(), ConfigError> {
        if self.by_issuer.is_some() {
            return Err(ConfigError::IssuersFixed);
        }
        self.policies[0].issuers.push(issuer);
        Ok(())
    }

    pub(crate) fn add_audience(&mut self, audience: String) {
        for policy in self.each_policy() {
            policy.audiences.push(audience.clone());
        }
    }

    pub(crate) fn set_algorithms(&mut self, algorithms: &[Algorithm]) -> Result<(), ConfigError> {
        if algorithms.is_empty() {
            return Err(ConfigError::NoAlgorithms);
        }
        for policy in self.each_policy() {
            policy.algorithms = Some(algorithms.to_vec());
        }
        Ok(())
    }

    pub(crate) fn set_leeway(&mut self, leeway: Duration) -> Result<(), ConfigError> {
        if leeway > MAX_LEEWAY {
            return Err(ConfigError::OutOfRange(
                "the leeway must be at most 10 minutes",
            ));
        }
        for policy in self.each_policy() {
            policy.leeway = leeway.as_secs();
        }
        Ok(())
    }

    pub(crate) fn set_max_age(&mut self, max_age: Duration) -> Result<(), ConfigError> {
        if max_age.is_zero() {
            return Err(ConfigError::OutOfRange(
                "the maximum token age must be positive",
            ));
        }
        for policy in self.each_policy() {
            policy.max_age = Some(max_age.as_secs().max(1));
        }
        Ok(())
    }

    pub(crate) fn accept_any_audience(&mut self) {
        for policy in self.each_policy() {
            policy.any_audience = true;
        }
    }

    pub(crate) fn require_claim(&mut self, name: &str) {
        if !self.required.iter().any(|r| &**r == name) {
            self.required.push(name.into());
        }
    }

    pub(crate) fn set_typ(&mut self, typ: &str) -> Result<(), ConfigError> {
        let typ = valid_typ(typ)?;
        for policy in self.each_policy() {
            policy.typ = Some(typ.into());
        }
        Ok(())
    }

    #[cfg(feature = "cache")]
    pub(crate) fn set_cache(&mut self, capacity: usize) {
        self.cache = (capacity > 0).then(|| super::cache::TokenCache::new(capacity));
    }

    /// Whether the layer checks revocations.
    #[cfg(feature = "jwks")]
    fn revokes(&self) -> bool {
        #[cfg(feature = "revocation")]
        return self.revocations.is_some();
        #[cfg(not(feature = "revocation"))]
        false
    }

    /// An introspection's verdict, refused if its token has been revoked since.
    #[cfg(feature = "jwks")]
    fn revoked(
        &self,
        verdict: (Verdict<C>, Option<crate::introspect::Revocable>),
        now: u64,
    ) -> Verdict<C> {
        match verdict {
            #[cfg(feature = "revocation")]
            (Verdict::Valid(validated), Some(id)) => match &self.revocations {
                Some(revocations) => match revocations.check(id.token_ref(), now) {
                    Ok(()) => Verdict::Valid(validated),
                    Err(error) => Verdict::Invalid(error),
                },
                None => Verdict::Valid(validated),
            },
            (verdict, _) => {
                let _ = now;
                verdict
            }
        }
    }

    #[cfg(feature = "revocation")]
    pub(crate) fn set_revocations(&mut self, revocations: crate::Revocations) {
        for policy in self.each_policy() {
            policy.refuse_future_iat = true;
        }
        self.revocations = Some(revocations);
    }

    /// Trusts `issuers` besides any fixed ones, discovered on demand.
    #[cfg(feature = "jwks")]
    pub(crate) fn set_discovered(
        &mut self,
        issuers: crate::discover::DiscoveredIssuers,
    ) -> Result<(), ConfigError> {
        if self.by_issuer.is_none() {
            // One layer-wide policy becomes the policy of its issuers: the token's `iss`
            // chooses between them and the discovered ones. Keys without a named issuer
            // would never be used.
            let issuers = self.policies[0].issuers.clone();
            if issuers.is_empty() {
                return Err(ConfigError::InvalidValue(
                    "beside discover_issuers, name the issuer of the layer's own keys with \
                     `issuer`, or use `trusting`",
                ));
            }
            self.by_issuer = Some(issuers.into_iter().map(|iss| (iss, 0)).collect());
        }
        let template = issuers.template_policy();
        self.discovered = Some(crate::discover::Discovered::new(issuers, template));
        Ok(())
    }

    /// The policy of an issuer no fixed policy names: a discovered one, or `InvalidIssuer`.
    fn discovered_policy(&self, iss: Option<&str>) -> Result<Arc<Policy>, AuthError> {
        #[cfg(feature = "jwks")]
        if let (Some(discovered), Some(iss)) = (&self.discovered, iss) {
            return discovered.policy(iss);
        }
        let _ = iss;
        Err(AuthError::InvalidIssuer)
    }

    /// Opaque tokens of `introspection`'s issuer are introspected, with the checks of that
    /// issuer's policy (or the only one). Set after every other setting: it copies them.
    #[cfg(feature = "jwks")]
    pub(crate) fn set_introspection(
        &mut self,
        introspection: crate::introspect::Introspection,
    ) -> Result<(), ConfigError> {
        let index = self
            .by_issuer
            .as_ref()
            .and_then(|by| by.get(introspection.issuer()).copied())
            .unwrap_or(0);
        let policy = match (self.policies.get(index), &self.discovered) {
            (Some(policy), _) => policy,
            (None, Some(discovered)) => &discovered.template,
            (None, None) => return Err(ConfigError::NoKeys),
        };
        let introspector =
            crate::introspect::Introspector::new(introspection, policy, &self.required);
        self.introspector = Some(introspector);
        Ok(())
    }

    /// Whether some trusted issuer requires DPoP (the layer must then be configured for it).
    pub(crate) fn requires_dpop(&self) -> bool {
        self.policies
            .iter()
            .any(|p| p.dpop == Some(DpopMode::Required))
    }

    /// Whether every part this validator depends on can serve: the keys of each fixed
    /// issuer (discovered ones are fetched on demand), the revocation replica, the
    /// introspection endpoint.
    pub(crate) fn readiness(&self) -> Readiness {
        let mut checks = Vec::new();
        for policy in &self.policies {
            let check = Check::new("keys", policy.issuers.first().map(String::as_str));
            checks.push(match policy.keys.load() {
                Ok(keys) if keys.len() > 0 => check,
                Ok(_) => check.failing("no keys loaded yet"),
                Err(error) => check.failing(error.description()),
            });
        }
        #[cfg(feature = "revocation")]
        if let Some(revocations) = &self.revocations {
            let check = Check::new("revocations", None);
            checks.push(match revocations.out_of_sync_for() {
                Duration::MAX => check.failing("not loaded from the shared backend yet"),
                lag if lag > crate::ready::IN_SYNC_WITHIN => check.failing(format!(
                    "out of sync with the shared backend for {} s",
                    lag.as_secs()
                )),
                _ => check,
            });
        }
        #[cfg(feature = "jwks")]
        if let Some(introspector) = &self.introspector {
            checks.push(introspector.readiness());
        }
        Readiness::new(checks)
    }

    /// The algorithms accepted, over every policy (for introspection).
    pub(crate) fn algorithms(&self) -> Vec<Algorithm> {
        // A static key set accepts its keys' algorithms; a remote one whatever it allows.
        let accepts = |p: &Policy, alg: Algorithm| {
            p.allows(alg)
                && (p.keys.is_remote()
                    || p.keys
                        .load()
                        .is_ok_and(|s| s.keys().iter().any(|k| k.algorithm == alg)))
        };
        ALL_ALGORITHMS
            .into_iter()
            .filter(|&alg| self.policies.iter().any(|p| accepts(p, alg)))
            .collect()
    }
}

impl<C: DeserializeOwned + Send + Sync + 'static> Validator<C> {
    /// The verdict on `token`: from the cache when it holds the token, else by validating
    /// it (and caching it when it passes). A token whose key may come with a refresh of a
    /// remote key set starts that refresh and is told to wait for it. With introspection, a
    /// token that is not a JWS (three dot-separated parts) goes to its authorization server.
    pub(crate) fn check(&self, token: &str) -> Verdict<C> {
        let now = jsonwebtoken::get_current_timestamp();
        #[cfg(feature = "jwks")]
        if let Some(introspector) = &self.introspector
            && token.bytes().filter(|&b| b == b'.').count() != 2
        {
            return self.revoked(introspector.check(token, now, self.revokes()), now);
        }
        #[cfg(feature = "cache")]
        if let Some(cache) = &self.cache
            && let Some(hit) = cache.get(token, now)
        {
            // Revocations are checked on every hit: a token revoked after it was cached is
            // refused like any other.
            #[cfg(feature = "revocation")]
            if let (Some(revocations), Some(id)) = (&self.revocations, &hit.revocable)
                && let Err(error) = revocations.check(id.token_ref(), now)
            {
                return Verdict::Invalid(error);
            }
            return Verdict::Valid(hit.validated.clone());
        }
        match self.validate(token, now) {
            Ok(entry) => {
                #[cfg(feature = "cache")]
                if let Some(cache) = &self.cache {
                    let validated = entry.validated.clone();
                    cache.insert(token, entry);
                    return Verdict::Valid(validated);
                }
                Verdict::Valid(entry.validated)
            }
            Err(Failure::Invalid(error)) => Verdict::Invalid(error),
            Err(Failure::KeyMissing(keys, error)) => match keys.refresh() {
                Some(wait) => Verdict::WaitForRemote(wait, error),
                None => Verdict::Invalid(error),
            },
        }
    }

    /// Every check, in order: the JWS structure and header; the issuer's policy (by `iss`
    /// when several are trusted); the key by `kid` (or `alg`); the signature; `typ`; the
    /// registered and required claims; then `C`. With one issuer nothing of the payload is
    /// read before the signature verifies, and then `C` and the registered claims are read
    /// in one pass ([`tap`]).
    fn validate(&self, token: &str, now: u64) -> Result<Entry<C>, Failure> {
        let jws = Jws::split(token)?;
        let header = jws.header()?;
        // With several issuers, `iss` chooses whose keys verify the token: the registered
        // claims are read before the signature is checked, but nothing else of them is used
        // before then.
        let (mut early_payload, mut early) = (None::<Payload>, None);
        let discovered;
        let policy = match &self.by_issuer {
            None => &self.policies[0],
            Some(by_issuer) => {
                early_payload = Some(jws.payload()?);
                let payload = early_payload.as_deref().unwrap_or_default();
                let registered = Registered::read(payload, &self.required);
                let iss = registered.as_ref().map_err(Clone::clone)?.iss.as_deref();
                let policy = match iss.and_then(|iss| by_issuer.get(iss)) {
                    Some(index) => &self.policies[*index],
                    None => {
                        discovered = self.discovered_policy(iss)?;
                        &*discovered
                    }
                };
                early = Some(registered);
                policy
            }
        };
        if !policy.allows(header.alg) {
            return Err(AuthError::UnsupportedAlgorithm.into());
        }
        let keys = policy
            .keys
            .load()
            .map_err(|e| Failure::KeyMissing(policy.keys.clone(), e))?;
        // One key without a `kid`: nothing to choose, whatever `kid` the token names.
        let selected = match keys.only_unkeyed() {
            Some(key) => Ok(key),
            None => keys.select(header.kid.as_deref(), header.alg),
        };
        let key = match selected {
            Ok(key) => key,
            Err(AuthError::UnknownKey) => {
                return Err(Failure::KeyMissing(
                    policy.keys.clone(),
                    AuthError::UnknownKey,
                ));
            }
            Err(e) => return Err(e.into()),
        };
        jws.verify(header.alg, key)?;
        jws.remember(&header);

        policy.check_typ(header.typ.as_deref())?;
        // Signed by the issuer now: the payload is read, in one pass where it can be.
        let late_payload;
        let (claims, registered, payload) = match (early, early_payload.as_deref()) {
            (Some(registered), Some(payload)) => (None, registered?, payload),
            _ => {
                late_payload = jws.payload()?;
                match tap::decode::<C>(&late_payload, &self.required) {
                    Some((claims, registered)) => (Some(claims), registered, &*late_payload),
                    None => {
                        let registered = Registered::read(&late_payload, &self.required)?;
                        (None, registered, &*late_payload)
                    }
                }
            }
        };
        if let Some(missing) = registered.missing.clone() {
            return Err(match &*missing {
                "iss" => AuthError::InvalidIssuer,
                "aud" => AuthError::InvalidAudience,
                _ => AuthError::MissingClaim(missing),
            }
            .into());
        }
        let valid_until = policy.check_claims(&registered, now)?;
        let claims: C = match claims {
            Some(claims) => claims,
            None => serde_json::from_slice(payload).map_err(|_| AuthError::InvalidClaims)?,
        };
        // Last: whether a token that passed everything else has been revoked.
        #[cfg(feature = "revocation")]
        if let Some(revocations) = &self.revocations {
            revocations.check(registered.token_ref(), now)?;
        }
        // What a cache hit needs to check revocations again.
        #[cfg(all(feature = "cache", feature = "revocation"))]
        let revocable = match (&self.revocations, &self.cache) {
            (Some(_), Some(_)) => Some(Arc::new(registered.token_ref().into())),
            _ => None,
        };
        Ok(Entry {
            validated: Validated::new(claims, registered, policy.dpop),
            valid_until,
            keys: policy.keys.clone(),
            key_serial: key.serial,
            #[cfg(all(feature = "cache", feature = "revocation"))]
            revocable,
        })
    }
}

impl<C> Clone for Validator<C> {
    fn clone(&self) -> Self {
        Self {
            policies: self.policies.clone(),
            by_issuer: self.by_issuer.clone(),
            required: self.required.clone(),
            max_token_len: self.max_token_len,
            #[cfg(feature = "cache")]
            cache: self.cache.clone(),
            #[cfg(feature = "revocation")]
            revocations: self.revocations.clone(),
            #[cfg(feature = "jwks")]
            introspector: self.introspector.clone(),
            #[cfg(feature = "jwks")]
            discovered: self.discovered.clone(),
            claims: PhantomData,
        }
    }
}

impl<C> fmt::Debug for Validator<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("Validator");
        f.field("policies", &self.policies)
            .field("required", &self.required)
            .field("max_token_len", &self.max_token_len);
        #[cfg(feature = "cache")]
        f.field("cache", &self.cache);
        #[cfg(feature = "revocation")]
        f.field("revocations", &self.revocations);
        f.finish_non_exhaustive()
    }
}

#[cfg(all(test, feature = "cache"))]
mod tests {
    use super::*;
    use crate::{KeySource, StandardClaims, VerificationKey};

    fn validator(capacity: usize) -> Validator<StandardClaims> {
        let key = VerificationKey::hmac(Algorithm::HS256, &[7; 32]).unwrap();
        let mut v = Validator::new(KeySource::from(key).0);
        v.set_cache(capacity);
        v
    }

    fn token(claims: serde_json::Value) -> String {
        let key = jsonwebtoken::EncodingKey::from_secret(&[7; 32]).unwrap();
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    }

    fn cache_len(v: &Validator<StandardClaims>) -> usize {
        v.cache.as_ref().unwrap().len()
    }

    #[test]
    fn only_tokens_that_pass_are_cached() {
        let v = validator(100);
        let exp = jsonwebtoken::get_current_timestamp() + 60;
        for bad in [
            token(serde_json::json!({"sub": "a"})), // no exp
            token(serde_json::json!({"exp": 1})),   // expired
            token(serde_json::json!({"exp": exp, "nbf": exp + 3600})), // not yet valid
            token(serde_json::json!({"exp": exp})) + "x", // bad signature
        ] {
            assert!(matches!(v.check(&bad), Verdict::Invalid(_)));
        }
        assert_eq!(cache_len(&v), 0);
        assert!(matches!(
            v.check(&token(serde_json::json!({"exp": exp}))),
            Verdict::Valid(_)
        ));
        assert_eq!(cache_len(&v), 1);
    }

    #[test]
    fn the_cache_holds_at_most_its_capacity() {
        let v = validator(64);
        let exp = jsonwebtoken::get_current_timestamp() + 60;
        for i in 0..1000 {
            let t = token(serde_json::json!({"exp": exp, "jti": i.to_string()}));
            assert!(matches!(v.check(&t), Verdict::Valid(_)));
        }
        assert!(cache_len(&v) <= 64, "{}", cache_len(&v));
    }
}
