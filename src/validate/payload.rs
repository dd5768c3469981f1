//! One pass over the verified payload for what every claims type shares: the granted scopes
//! and the presence of the required claims.

use std::{borrow::Cow, fmt, sync::Arc};

use serde::{
    Deserialize, Deserializer,
    de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor},
};

use crate::{AuthError, Scopes};

/// What one pass over the payload tells besides the typed claims: the granted scopes and
/// the first configured claim that is missing.
pub(crate) struct PayloadFacts {
    pub(crate) scopes: Scopes,
    pub(crate) missing: Option<Arc<str>>,
}

impl PayloadFacts {
    pub(crate) fn read(payload: &str, required: &[Arc<str>]) -> Result<Self, AuthError> {
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
}
