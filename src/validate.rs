//! Token validation: pick the key, verify the signature, check the claims.
//!
//! Everything here is computed once when the layer is built: each key carries its own
//! `jsonwebtoken::Validation` (one algorithm, the issuers, audiences, leeway and required
//! claims), so the request path only looks a key up and calls `jsonwebtoken::decode`.

use std::{borrow::Cow, collections::HashMap, fmt, sync::Arc, time::Duration};

use jsonwebtoken::{Validation, errors::ErrorKind};
use serde::{
    Deserialize, Deserializer,
    de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor},
};
use serde_json::value::RawValue;

use crate::{AuthError, ConfigError, Scopes, VerificationKey, token::DEFAULT_MAX_TOKEN_LEN};

/// The default clock-skew allowance for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// The registered claims `jsonwebtoken` itself checks for presence.
const SPEC_CLAIMS: [&str; 5] = ["exp", "nbf", "iss", "aud", "sub"];

/// What a valid token yields.
pub(crate) struct Validated<C> {
    pub(crate) claims: C,
    pub(crate) scopes: Scopes,
}

#[derive(Clone)]
struct KeyEntry {
    key: VerificationKey,
    validation: Validation,
}

/// Validated, precomputed token-checking configuration.
#[derive(Clone)]
pub(crate) struct Validator {
    keys: Vec<KeyEntry>,
    by_kid: HashMap<Arc<str>, usize>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    /// Claims beyond [`SPEC_CLAIMS`] that must be present.
    required: Vec<Arc<str>>,
    typ: Option<Box<str>>,
    pub(crate) max_token_len: usize,
}

impl Validator {
    pub(crate) fn new(keys: Vec<VerificationKey>) -> Result<Self, ConfigError> {
        if keys.is_empty() {
            return Err(ConfigError::NoKeys);
        }
        let mut by_kid = HashMap::new();
        for (i, key) in keys.iter().enumerate() {
            if let Some(kid) = &key.kid
                && by_kid.insert(kid.clone(), i).is_some()
            {
                return Err(ConfigError::DuplicateKeyId);
            }
        }
        let keys = keys
            .into_iter()
            .map(|key| {
                let mut validation = Validation::new(key.algorithm);
                validation.validate_nbf = true;
                validation.validate_aud = false;
                validation.leeway = DEFAULT_LEEWAY.as_secs();
                KeyEntry { key, validation }
            })
            .collect();
        Ok(Self {
            keys,
            by_kid,
            issuers: Vec::new(),
            audiences: Vec::new(),
            required: Vec::new(),
            typ: None,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
        })
    }

    fn each_validation(&mut self, f: impl Fn(&mut Validation)) {
        self.keys
            .iter_mut()
            .for_each(|entry| f(&mut entry.validation));
    }

    pub(crate) fn add_issuer(&mut self, issuer: String) {
        self.issuers.push(issuer);
        let issuers = self.issuers.clone();
        self.each_validation(|v| {
            v.set_issuer(&issuers);
            v.required_spec_claims.insert("iss".into());
        });
    }

    pub(crate) fn add_audience(&mut self, audience: String) {
        self.audiences.push(audience);
        let audiences = self.audiences.clone();
        self.each_validation(|v| {
            v.set_audience(&audiences);
            v.validate_aud = true;
            v.required_spec_claims.insert("aud".into());
        });
    }

    pub(crate) fn set_leeway(&mut self, leeway: Duration) {
        self.each_validation(|v| v.leeway = leeway.as_secs());
    }

    pub(crate) fn require_claim(&mut self, name: &str) {
        if SPEC_CLAIMS.contains(&name) {
            self.each_validation(|v| {
                v.required_spec_claims.insert(name.into());
            });
        } else if !self.required.iter().any(|r| &**r == name) {
            self.required.push(name.into());
        }
    }

    pub(crate) fn set_typ(&mut self, typ: &str) {
        self.typ = Some(strip_media_prefix(typ).into());
    }

    pub(crate) fn algorithms(&self) -> impl Iterator<Item = jsonwebtoken::Algorithm> + '_ {
        self.keys.iter().map(|e| e.key.algorithm)
    }

    /// Validates `token` and decodes its claims into `C`.
    pub(crate) fn validate<C: DeserializeOwned>(
        &self,
        token: &str,
    ) -> Result<Validated<C>, AuthError> {
        let entry = self.select_key(token)?;
        // Decoding into `RawValue` keeps the payload as JSON text, so the typed claims and the
        // scopes are each read from it once without knowing anything about `C`.
        let data = jsonwebtoken::decode::<Box<RawValue>>(token, &entry.key.key, &entry.validation)
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

    /// Picks the key by exact `kid`; a token without `kid` uses the first key of its `alg`.
    /// With a single key and no `kid` configured there is nothing to choose, and the header
    /// is parsed only once, by `decode`.
    fn select_key(&self, token: &str) -> Result<&KeyEntry, AuthError> {
        if let [only] = self.keys.as_slice()
            && only.key.kid.is_none()
        {
            return Ok(only);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| map_jwt_error(e.kind()))?;
        match header.kid {
            Some(kid) => self
                .by_kid
                .get(kid.as_str())
                .map(|&i| &self.keys[i])
                .ok_or(AuthError::UnknownKey),
            None => self
                .keys
                .iter()
                .find(|e| e.key.algorithm == header.alg)
                .ok_or(AuthError::UnsupportedAlgorithm),
        }
    }
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<_> = self.keys.iter().map(|e| &e.key).collect();
        f.debug_struct("Validator")
            .field("keys", &keys)
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("required", &self.required)
            .field("typ", &self.typ)
            .field("max_token_len", &self.max_token_len)
            .finish()
    }
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

/// What one pass over the payload tells besides the typed claims: the granted scopes and
/// the first configured claim that is missing.
struct PayloadFacts {
    scopes: Scopes,
    missing: Option<Arc<str>>,
}

impl PayloadFacts {
    fn read(payload: &str, required: &[Arc<str>]) -> Result<Self, AuthError> {
        let mut de = serde_json::Deserializer::from_str(payload);
        FactsSeed { required }
            .deserialize(&mut de)
            .map_err(|_| AuthError::InvalidClaims)
    }
}

/// Visits the payload's members once, keeping `scope`/`scp` and noting required names,
/// skipping every other value without allocating.
struct FactsSeed<'r> {
    required: &'r [Arc<str>],
}

/// `scope` is a space-separated string (RFC 8693); `scp` is a string or an array of strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum ScopeValue<'a> {
    #[serde(borrow)]
    Text(Cow<'a, str>),
    #[serde(borrow)]
    List(Vec<Cow<'a, str>>),
}

impl<'de> DeserializeSeed<'de> for FactsSeed<'_> {
    type Value = PayloadFacts;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<PayloadFacts, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FactsSeed<'_> {
    type Value = PayloadFacts;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PayloadFacts, A::Error> {
        let mut scope: Option<ScopeValue<'de>> = None;
        let mut scp: Option<ScopeValue<'de>> = None;
        let mut seen = vec![false; self.required.len()];
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            // A member whose value is `null` counts as absent, as `jsonwebtoken` counts it.
            let present = match &*key {
                "scope" => {
                    scope = map.next_value()?;
                    scope.is_some()
                }
                "scp" => {
                    scp = map.next_value()?;
                    scp.is_some()
                }
                _ => map.next_value::<Option<IgnoredAny>>()?.is_some(),
            };
            if present && let Some(i) = self.required.iter().position(|r| **r == *key) {
                seen[i] = true;
            }
        }
        let scopes = match scope.or(scp) {
            Some(ScopeValue::Text(s)) => Scopes::from_iter(s.split_ascii_whitespace()),
            Some(ScopeValue::List(list)) => Scopes::from_iter(list.iter().map(|s| &**s)),
            None => Scopes::default(),
        };
        let missing = self
            .required
            .iter()
            .zip(&seen)
            .find(|(_, seen)| !**seen)
            .map(|(r, _)| r.clone());
        Ok(PayloadFacts { scopes, missing })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_string_and_scp_list_are_both_read() {
        let f = PayloadFacts::read(r#"{"scope":"a b  c","x":{"y":[1]}}"#, &[]).unwrap();
        assert_eq!(f.scopes.iter().collect::<Vec<_>>(), ["a", "b", "c"]);
        let f = PayloadFacts::read(r#"{"scp":["a","b"]}"#, &[]).unwrap();
        assert_eq!(f.scopes.iter().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn scope_wins_over_scp() {
        let f = PayloadFacts::read(r#"{"scp":["x"],"scope":"a"}"#, &[]).unwrap();
        assert_eq!(f.scopes.iter().collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn missing_required_claim_is_named() {
        let required: Vec<Arc<str>> = vec!["jti".into(), "tenant".into()];
        let f = PayloadFacts::read(r#"{"jti":"1"}"#, &required).unwrap();
        assert_eq!(f.missing.as_deref(), Some("tenant"));
        let f = PayloadFacts::read(r#"{"tenant":null,"jti":"1"}"#, &required).unwrap();
        assert_eq!(f.missing.as_deref(), Some("tenant"));
        let f = PayloadFacts::read(r#"{"tenant":"acme","jti":"1"}"#, &required).unwrap();
        assert_eq!(f.missing, None);
    }

    #[test]
    fn scope_of_the_wrong_type_is_invalid_claims() {
        assert!(PayloadFacts::read(r#"{"scope":42}"#, &[]).is_err());
        assert!(PayloadFacts::read(r#"[1,2]"#, &[]).is_err());
    }

    #[test]
    fn media_type_prefix_is_ignored() {
        assert_eq!(strip_media_prefix("application/at+jwt"), "at+jwt");
        assert_eq!(strip_media_prefix("Application/AT+JWT"), "AT+JWT");
        assert_eq!(strip_media_prefix("JWT"), "JWT");
    }
}
