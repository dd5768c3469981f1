use std::{borrow::Cow, collections::HashMap, fmt, sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, AlgorithmFamily, Validation, errors::ErrorKind};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::value::RawValue;

use super::payload::PayloadFacts;
use crate::{
    AuthError, ConfigError, Scopes, TrustedIssuer,
    keys::{Keys, RefreshWait},
    token::DEFAULT_MAX_TOKEN_LEN,
};

/// The default clock-skew allowance for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// Every signature algorithm `jsonwebtoken` implements.
const ALL_ALGORITHMS: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The registered claims `jsonwebtoken` itself checks for presence.
const SPEC_CLAIMS: [&str; 5] = ["exp", "nbf", "iss", "aud", "sub"];

/// What a valid token yields.
pub(crate) struct Validated<C> {
    pub(crate) claims: C,
    pub(crate) scopes: Scopes,
}

impl<C: Clone + Send + Sync + 'static> Validated<C> {
    /// Hands the claims to the inner service: [`Claims<C>`](crate::Claims) and [`Scopes`].
    pub(crate) fn insert_into(self, extensions: &mut http::Extensions) {
        extensions.insert(crate::Claims(self.claims));
        extensions.insert(self.scopes);
    }
}

/// The result of checking a token: final, or waiting for a key refresh first.
pub(crate) enum Check<C> {
    Done(Result<Validated<C>, AuthError>),
    Refresh(RefreshWait),
}

/// How one issuer's tokens are checked.
#[derive(Clone)]
struct Policy {
    keys: Keys,
    issuers: Vec<String>,
    audiences: Vec<String>,
    /// `None`: whatever algorithm each key is bound to (asymmetric only for remote keys).
    algorithms: Option<Vec<Algorithm>>,
    leeway: Duration,
    required: Vec<String>,
    /// One precomputed `Validation` per allowed algorithm.
    validations: Vec<(Algorithm, Validation)>,
}

impl Policy {
    fn new(keys: Keys) -> Self {
        let mut policy = Self {
            keys,
            issuers: Vec::new(),
            audiences: Vec::new(),
            algorithms: None,
            leeway: DEFAULT_LEEWAY,
            required: Vec::new(),
            validations: Vec::new(),
        };
        policy.rebuild();
        policy
    }

    fn allows(&self, alg: Algorithm) -> bool {
        match &self.algorithms {
            Some(list) => list.contains(&alg),
            None => !self.keys.is_remote() || alg.family() != AlgorithmFamily::Hmac,
        }
    }

    /// Recomputes the per-algorithm validations after a setting changed (build time only).
    fn rebuild(&mut self) {
        let validations = ALL_ALGORITHMS
            .into_iter()
            .filter(|&alg| self.allows(alg))
            .map(|alg| {
                let mut v = Validation::new(alg);
                v.validate_nbf = true;
                v.leeway = self.leeway.as_secs();
                if !self.issuers.is_empty() {
                    v.set_issuer(&self.issuers);
                    v.required_spec_claims.insert("iss".into());
                }
                v.validate_aud = !self.audiences.is_empty();
                if v.validate_aud {
                    v.set_audience(&self.audiences);
                    v.required_spec_claims.insert("aud".into());
                }
                v.required_spec_claims.extend(self.required.iter().cloned());
                (alg, v)
            })
            .collect();
        self.validations = validations;
    }

    fn validation(&self, alg: Algorithm) -> Option<&Validation> {
        self.validations
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, v)| v)
    }
}

enum Trust {
    One(Policy),
    /// Several issuers, each with its own policy, chosen by the token's exact `iss`.
    Many(HashMap<String, Policy>),
}

/// Validated, precomputed token-checking configuration.
pub(crate) struct Validator {
    trust: Trust,
    /// Claims beyond [`SPEC_CLAIMS`] that must be present.
    required: Vec<Arc<str>>,
    typ: Option<Box<str>>,
    pub(crate) max_token_len: usize,
}

impl Validator {
    pub(crate) fn new(keys: Keys) -> Self {
        Self::with_trust(Trust::One(Policy::new(keys)))
    }

    pub(crate) fn trusting(issuers: Vec<TrustedIssuer>) -> Result<Self, ConfigError> {
        if issuers.is_empty() {
            return Err(ConfigError::NoKeys);
        }
        let mut map = HashMap::new();
        for trusted in issuers {
            let mut policy = Policy::new(trusted.keys.0);
            policy.issuers = vec![trusted.issuer.clone()];
            policy.audiences = trusted.audiences;
            policy.algorithms = trusted.algorithms;
            policy.rebuild();
            if map.insert(trusted.issuer, policy).is_some() {
                return Err(ConfigError::InvalidValue("an issuer is trusted twice"));
            }
        }
        Ok(Self::with_trust(Trust::Many(map)))
    }

    fn with_trust(trust: Trust) -> Self {
        Self {
            trust,
            required: Vec::new(),
            typ: None,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
        }
    }

    fn policies_mut(&mut self) -> Box<dyn Iterator<Item = &mut Policy> + '_> {
        match &mut self.trust {
            Trust::One(policy) => Box::new(std::iter::once(policy)),
            Trust::Many(map) => Box::new(map.values_mut()),
        }
    }

    fn update(&mut self, f: impl Fn(&mut Policy)) {
        for policy in self.policies_mut() {
            f(policy);
            policy.rebuild();
        }
    }

    /// # Panics
    ///
    /// On a layer that trusts several issuers: each names its own.
    pub(crate) fn add_issuer(&mut self, issuer: String) {
        let Trust::One(policy) = &mut self.trust else {
            panic!(
                "`issuer` does not apply to a layer built with `trusting`: each TrustedIssuer names its issuer"
            );
        };
        policy.issuers.push(issuer);
        policy.rebuild();
    }

    pub(crate) fn add_audience(&mut self, audience: String) {
        self.update(|p| p.audiences.push(audience.clone()));
    }

    pub(crate) fn set_algorithms(&mut self, algorithms: &[Algorithm]) {
        self.update(|p| p.algorithms = Some(algorithms.to_vec()));
    }

    pub(crate) fn set_leeway(&mut self, leeway: Duration) {
        self.update(|p| p.leeway = leeway);
    }

    pub(crate) fn require_claim(&mut self, name: &str) {
        if SPEC_CLAIMS.contains(&name) {
            self.update(|p| p.required.push(name.into()));
        } else if !self.required.iter().any(|r| &**r == name) {
            self.required.push(name.into());
        }
    }

    pub(crate) fn set_typ(&mut self, typ: &str) {
        self.typ = Some(strip_media_prefix(typ).into());
    }

    /// Validates `token` and decodes its claims into `C`. When the key it needs may arrive
    /// with a refresh of a remote key set and `may_refresh` is set, asks for that refresh.
    pub(crate) fn check<C: DeserializeOwned>(&self, token: &str, may_refresh: bool) -> Check<C> {
        let policy = match &self.trust {
            Trust::One(policy) => policy,
            Trust::Many(policies) => match peek_issuer(token).map(|iss| policies.get(&*iss)) {
                Ok(Some(policy)) => policy,
                Ok(None) => return Check::Done(Err(AuthError::InvalidIssuer)),
                Err(e) => return Check::Done(Err(e)),
            },
        };
        let refresh_or =
            |error: AuthError| match may_refresh.then(|| policy.keys.refresh()).flatten() {
                Some(wait) => Check::Refresh(wait),
                None => Check::Done(Err(error)),
            };
        let snapshot = match policy.keys.load() {
            Ok(snapshot) => snapshot,
            Err(e) => return refresh_or(e),
        };
        let key = match snapshot.only_unkeyed() {
            Some(key) => key,
            None => {
                let header = match jsonwebtoken::decode_header(token) {
                    Ok(header) => header,
                    Err(e) => return Check::Done(Err(map_jwt_error(e.kind()))),
                };
                match snapshot.select(header.kid.as_deref(), header.alg) {
                    Ok(key) => key,
                    Err(AuthError::UnknownKey) => return refresh_or(AuthError::UnknownKey),
                    Err(e) => return Check::Done(Err(e)),
                }
            }
        };
        Check::Done(self.verify(policy, key, token))
    }

    fn verify<C: DeserializeOwned>(
        &self,
        policy: &Policy,
        key: &crate::VerificationKey,
        token: &str,
    ) -> Result<Validated<C>, AuthError> {
        let validation = policy
            .validation(key.algorithm)
            .ok_or(AuthError::UnsupportedAlgorithm)?;
        // Decoding into `RawValue` keeps the payload as JSON text, so the typed claims and the
        // scopes are each read from it once without knowing anything about `C`.
        let data = jsonwebtoken::decode::<Box<RawValue>>(token, &key.key, validation)
            .map_err(|e| map_jwt_error(e.kind()))?;
        if let Some(expected) = &self.typ {
            let typ = data.header.typ.as_deref().map(strip_media_prefix);
            if !typ.is_some_and(|t| t.eq_ignore_ascii_case(expected)) {
                return Err(AuthError::InvalidType);
            }
        }
        let payload = data.claims.get();
        let facts = PayloadFacts::read(payload, &self.required)?;
        if let Some(missing) = facts.missing {
            return Err(AuthError::MissingClaim(missing));
        }
        let claims = serde_json::from_str(payload).map_err(|_| AuthError::InvalidClaims)?;
        Ok(Validated {
            claims,
            scopes: facts.scopes,
        })
    }

    /// The algorithms accepted, over every policy (for introspection).
    pub(crate) fn algorithms(&self) -> Vec<Algorithm> {
        let policies: Vec<&Policy> = match &self.trust {
            Trust::One(p) => vec![p],
            Trust::Many(map) => map.values().collect(),
        };
        // A static key set accepts its keys' algorithms; a remote one whatever it allows.
        let accepts = |p: &Policy, alg: Algorithm| {
            p.validation(alg).is_some()
                && (p.keys.is_remote()
                    || p.keys
                        .load()
                        .is_ok_and(|s| s.keys().iter().any(|k| k.algorithm == alg)))
        };
        ALL_ALGORITHMS
            .into_iter()
            .filter(|&alg| policies.iter().any(|p| accepts(p, alg)))
            .collect()
    }
}

impl Clone for Validator {
    fn clone(&self) -> Self {
        let trust = match &self.trust {
            Trust::One(p) => Trust::One(p.clone()),
            Trust::Many(map) => Trust::Many(map.clone()),
        };
        Self {
            trust,
            required: self.required.clone(),
            typ: self.typ.clone(),
            max_token_len: self.max_token_len,
        }
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("keys", &self.keys)
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field(
                "algorithms",
                &self.validations.iter().map(|(a, _)| a).collect::<Vec<_>>(),
            )
            .field("leeway", &self.leeway)
            .finish()
    }
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Validator");
        match &self.trust {
            Trust::One(p) => d.field("policy", p),
            Trust::Many(map) => d.field("issuers", map),
        };
        d.field("required", &self.required)
            .field("typ", &self.typ)
            .field("max_token_len", &self.max_token_len)
            .finish()
    }
}

/// Reads the unverified `iss` to choose the issuer's policy. Nothing else of the token is
/// trusted before the signature is verified with that issuer's keys.
fn peek_issuer(token: &str) -> Result<Cow<'static, str>, AuthError> {
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let payload = token.split('.').nth(1).ok_or(AuthError::MalformedToken)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| AuthError::MalformedToken)?;
    let iss: Iss = serde_json::from_slice(&bytes).map_err(|_| AuthError::MalformedToken)?;
    iss.iss.map(Cow::Owned).ok_or(AuthError::InvalidIssuer)
}

/// `application/at+jwt` and `at+jwt` name the same type (RFC 7515 section 4.1.9).
fn strip_media_prefix(typ: &str) -> &str {
    match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    }
}

fn map_jwt_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature => AuthError::InvalidSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::InvalidIssuer,
        ErrorKind::InvalidAudience => AuthError::InvalidAudience,
        ErrorKind::MissingRequiredClaim(name) => match name.as_str() {
            "iss" => AuthError::InvalidIssuer,
            "aud" => AuthError::InvalidAudience,
            other => AuthError::MissingClaim(other.into()),
        },
        ErrorKind::InvalidClaimFormat(_) | ErrorKind::InvalidSubject => AuthError::InvalidClaims,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName => AuthError::UnsupportedAlgorithm,
        // A signature of the wrong length or encoding for its key.
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidEddsaKey | ErrorKind::InvalidRsaKey(_) => {
            AuthError::InvalidSignature
        }
        // Not three parts, bad base64, a header that is not JSON (including `"alg":"none"`),
        // an unsupported `crit`.
        _ => AuthError::MalformedToken,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_prefix_is_ignored() {
        assert_eq!(strip_media_prefix("application/at+jwt"), "at+jwt");
        assert_eq!(strip_media_prefix("Application/AT+JWT"), "AT+JWT");
        assert_eq!(strip_media_prefix("JWT"), "JWT");
    }

    #[test]
    fn issuer_is_peeked_from_the_payload() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"iss":"https://idp.example"}"#);
        assert_eq!(
            peek_issuer(&format!("e30.{payload}.sig")).unwrap(),
            "https://idp.example"
        );
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"x"}"#);
        assert_eq!(
            peek_issuer(&format!("e30.{payload}.sig")),
            Err(AuthError::InvalidIssuer)
        );
        assert_eq!(peek_issuer("nodots"), Err(AuthError::MalformedToken));
    }
}
