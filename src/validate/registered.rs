//! One pass over the payload for what every claims type shares: the registered claims this
//! crate checks (RFC 7519 section 4.1), the granted scopes, and which required claims are
//! present. Strings are borrowed from the decoded payload; every other member is skipped
//! without allocating.

use std::{borrow::Cow, fmt, sync::Arc};

use serde::{
    Deserialize, Deserializer,
    de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor},
};

use crate::{
    AuthError, Scopes,
    claims::is_scope_token,
    claims::{Confirmation, NumericDate, Str},
};

/// The registered claims of one payload, each `None` when absent or `null`.
#[derive(Debug, Default)]
pub(crate) struct Registered<'p> {
    pub(crate) iss: Option<Cow<'p, str>>,
    pub(crate) sub: Option<Cow<'p, str>>,
    /// One string or an array of strings.
    pub(crate) aud: Option<OneOrMany<'p>>,
    pub(crate) exp: Option<u64>,
    pub(crate) nbf: Option<u64>,
    pub(crate) iat: Option<u64>,
    pub(crate) jti: Option<Cow<'p, str>>,
    /// `cnf` (RFC 7800): the key or certificate the token is bound to.
    pub(crate) cnf: Option<Confirmation>,
    pub(crate) scopes: Scopes,
    /// The first configured claim (beyond the registered ones) that is absent or `null`.
    pub(crate) missing: Option<Arc<str>>,
}

/// A string or an array of strings (`aud`, `scope` and `scp`), borrowed from the payload
/// where no escape forces a copy. [`Audience`](crate::Audience) is its owned form.
///
/// Written by hand instead of an untagged enum: serde's untagged enums buffer the value and
/// copy every string, on the request path.
#[derive(Debug)]
pub(crate) enum OneOrMany<'p> {
    One(Cow<'p, str>),
    Many(Vec<Cow<'p, str>>),
}

impl OneOrMany<'_> {
    pub(crate) fn is_empty(&self) -> bool {
        matches!(self, Self::Many(list) if list.is_empty())
    }

    pub(crate) fn contains_any(&self, accepted: &[String]) -> bool {
        self.iter().any(|item| accepted.iter().any(|a| a == item))
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        let (one, many) = match self {
            Self::One(s) => (Some(&**s), &[][..]),
            Self::Many(list) => (None, &list[..]),
        };
        one.into_iter().chain(many.iter().map(|s| &**s))
    }
}

impl<'de> Deserialize<'de> for OneOrMany<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(OneOrMany::One(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(OneOrMany::One(Cow::Owned(s.to_owned())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut list = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
                while let Some(Str(item)) = seq.next_element()? {
                    list.push(item);
                }
                Ok(OneOrMany::Many(list))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'p> Registered<'p> {
    /// What a revocation check reads of these claims.
    #[cfg(feature = "revocation")]
    pub(crate) fn token_ref(&self) -> crate::revoke::TokenRef<'_> {
        crate::revoke::TokenRef {
            iss: self.iss.as_deref().unwrap_or(""),
            jti: self.jti.as_deref(),
            sub: self.sub.as_deref(),
            iat: self.iat,
        }
    }

    /// Reads `payload`, a JSON object. Any registered claim of the wrong type, and any
    /// payload that is not an object, is [`AuthError::InvalidClaims`].
    pub(crate) fn read(payload: &'p [u8], required: &[Arc<str>]) -> Result<Self, AuthError> {
        let mut de = serde_json::Deserializer::from_slice(payload);
        let registered = Seed { required }
            .deserialize(&mut de)
            .map_err(|_| AuthError::InvalidClaims)?;
        de.end().map_err(|_| AuthError::InvalidClaims)?;
        Ok(registered)
    }
}

/// The members this crate reads, by name.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Member {
    Iss,
    Sub,
    Jti,
    Aud,
    Exp,
    Nbf,
    Iat,
    Cnf,
    Scope,
    Scp,
    Other,
}

impl Member {
    pub(super) fn of(key: &str) -> Self {
        match key {
            "iss" => Self::Iss,
            "sub" => Self::Sub,
            "jti" => Self::Jti,
            "aud" => Self::Aud,
            "exp" => Self::Exp,
            "nbf" => Self::Nbf,
            "iat" => Self::Iat,
            "cnf" => Self::Cnf,
            "scope" => Self::Scope,
            "scp" => Self::Scp,
            _ => Self::Other,
        }
    }
}

/// The registered claims of one payload while its members go by, in whatever pass reads
/// them: [`Registered::read`]'s own, or the claims type's ([`super::tap`]).
pub(super) struct Reading<'p, 'r> {
    r: Registered<'p>,
    // `scope` is a space-separated string (RFC 8693); `scp`, which several identity
    // providers use instead, a string or an array of strings.
    scope: Option<OneOrMany<'p>>,
    scp: Option<OneOrMany<'p>>,
    required: &'r [Arc<str>],
    /// Per required claim: present (and not `null`), and seen at all; on the stack for the
    /// usual few.
    flags: Flags,
}

enum Flags {
    Few([(bool, bool); 16]),
    Many(Vec<(bool, bool)>),
}

impl<'p, 'r> Reading<'p, 'r> {
    pub(super) fn new(required: &'r [Arc<str>]) -> Self {
        let flags = match required.len() {
            0..=16 => Flags::Few([(false, false); 16]),
            n => Flags::Many(vec![(false, false); n]),
        };
        Self {
            r: Registered::default(),
            scope: None,
            scp: None,
            required,
            flags,
        }
    }

    /// Which required claim `key` is, if one.
    pub(super) fn required_index(&self, key: &str) -> Option<usize> {
        self.required.iter().position(|name| **name == *key)
    }

    /// Records that required claim `i` occurred, `present` if not `null`. A required claim
    /// given twice would satisfy the check with one value while the application's claims
    /// type reads the other.
    pub(super) fn occurred<E: serde::de::Error>(
        &mut self,
        i: usize,
        present: bool,
    ) -> Result<(), E> {
        let flags = match &mut self.flags {
            Flags::Few(flags) => &mut flags[i],
            Flags::Many(flags) => &mut flags[i],
        };
        if flags.1 {
            return Err(E::custom("a required claim appears twice"));
        }
        *flags = (present, true);
        Ok(())
    }

    /// Stores a string member (`iss`, `sub`, `jti`); whether it is present.
    pub(super) fn string<E: serde::de::Error>(
        &mut self,
        member: Member,
        value: Option<Cow<'p, str>>,
    ) -> Result<bool, E> {
        let slot = match member {
            Member::Iss => &mut self.r.iss,
            Member::Sub => &mut self.r.sub,
            _ => &mut self.r.jti,
        };
        once(slot, value)
    }

    /// Stores a NumericDate member (`exp`, `nbf`, `iat`); whether it is present.
    pub(super) fn date<E: serde::de::Error>(
        &mut self,
        member: Member,
        value: Option<u64>,
    ) -> Result<bool, E> {
        let slot = match member {
            Member::Exp => &mut self.r.exp,
            Member::Nbf => &mut self.r.nbf,
            _ => &mut self.r.iat,
        };
        once(slot, value)
    }

    /// Reads any member this crate reads from `de`; whether it is present (not `null`).
    pub(super) fn value<D: Deserializer<'p>>(
        &mut self,
        member: Member,
        de: D,
    ) -> Result<bool, D::Error> {
        match member {
            Member::Iss | Member::Sub | Member::Jti => {
                let value = Option::<Str<'p>>::deserialize(de)?;
                self.string(member, value.map(|s| s.0))
            }
            Member::Exp | Member::Nbf | Member::Iat => {
                let value = Option::<NumericDate>::deserialize(de)?;
                self.date(member, value.map(|d| d.0))
            }
            Member::Aud => once(&mut self.r.aud, Deserialize::deserialize(de)?),
            Member::Cnf => once(&mut self.r.cnf, Deserialize::deserialize(de)?),
            Member::Scope => once(&mut self.scope, Deserialize::deserialize(de)?),
            Member::Scp => once(&mut self.scp, Deserialize::deserialize(de)?),
            Member::Other => Ok(Option::<IgnoredAny>::deserialize(de)?.is_some()),
        }
    }

    /// The registered claims, once every member has gone by.
    pub(super) fn finish<E: serde::de::Error>(self) -> Result<Registered<'p>, E> {
        let mut r = self.r;
        r.scopes = match self.scope.or(self.scp) {
            Some(OneOrMany::One(s)) => Scopes::from_text(&s),
            Some(OneOrMany::Many(list)) => {
                // Each element is one scope-token (RFC 6749 section 3.3): one with a space
                // inside would smuggle in a second scope.
                if list.iter().any(|s| !is_scope_token(s)) {
                    return Err(E::custom("an scp element is not one scope"));
                }
                Scopes::from_iter(list.iter().map(|s| &**s))
            }
            None => Scopes::default(),
        };
        let flags = match &self.flags {
            Flags::Few(flags) => &flags[..],
            Flags::Many(flags) => &flags[..],
        };
        r.missing = self
            .required
            .iter()
            .zip(flags)
            .find(|(_, (present, _))| !present)
            .map(|(name, _)| name.clone());
        Ok(r)
    }
}

/// Fills `slot` with `value`, refusing a member given twice; whether it is present.
fn once<T, E: serde::de::Error>(slot: &mut Option<T>, value: Option<T>) -> Result<bool, E> {
    if slot.is_some() {
        return Err(E::custom("duplicate registered claim"));
    }
    *slot = value;
    Ok(slot.is_some())
}

struct Seed<'r> {
    required: &'r [Arc<str>],
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Registered<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Registered<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut reading = Reading::new(self.required);
        while let Some(Str(key)) = map.next_key()? {
            let member = Member::of(&key);
            let present = map.next_value_seed(Value(&mut reading, member))?;
            if let Some(i) = reading.required_index(&key) {
                reading.occurred(i, present)?;
            }
        }
        reading.finish()
    }
}

/// One member's value, read into a [`Reading`].
struct Value<'a, 'p, 'r>(&'a mut Reading<'p, 'r>, Member);

impl<'p> DeserializeSeed<'p> for Value<'_, 'p, '_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'p>>(self, de: D) -> Result<bool, D::Error> {
        self.0.value(self.1, de)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Result<Registered<'_>, AuthError> {
        Registered::read(json.as_bytes(), &[])
    }

    #[test]
    fn registered_claims_are_read() {
        let r = read(
            r#"{"iss":"i","sub":"s","aud":["a","b"],"exp":10,"nbf":5,"iat":4,"jti":"j","x":{"y":[1]}}"#,
        )
        .unwrap();
        assert_eq!(r.iss.as_deref(), Some("i"));
        assert_eq!(r.sub.as_deref(), Some("s"));
        assert!(r.aud.as_ref().unwrap().contains_any(&["b".into()]));
        assert!(!r.aud.as_ref().unwrap().contains_any(&["c".into()]));
        assert_eq!((r.exp, r.nbf, r.iat), (Some(10), Some(5), Some(4)));
        assert_eq!(r.jti.as_deref(), Some("j"));
    }

    #[test]
    fn numeric_dates_may_have_fractions_but_not_signs_or_strings() {
        let r = read(r#"{"exp":1700000000.75,"nbf":1e3}"#).unwrap();
        assert_eq!((r.exp, r.nbf), (Some(1_700_000_000), Some(1000)));
        assert!(read(r#"{"exp":-1}"#).is_err());
        assert!(read(r#"{"exp":-1.5}"#).is_err());
        assert!(read(r#"{"exp":"soon"}"#).is_err());
        assert!(read(r#"{"iat":1e400}"#).is_err());
    }

    #[test]
    fn null_counts_as_absent() {
        let r = read(r#"{"exp":null,"iss":null,"aud":null}"#).unwrap();
        assert!(r.exp.is_none() && r.iss.is_none() && r.aud.is_none());
    }

    #[test]
    fn registered_claims_of_the_wrong_type_are_invalid() {
        for json in [
            r#"{"iss":1}"#,
            r#"{"sub":["a"]}"#,
            r#"{"aud":[1]}"#,
            r#"{"jti":{}}"#,
            r#"{"scope":42}"#,
        ] {
            assert_eq!(read(json).unwrap_err(), AuthError::InvalidClaims, "{json}");
        }
    }

    #[test]
    fn duplicate_registered_claims_are_invalid() {
        assert!(read(r#"{"exp":1,"exp":2}"#).is_err());
        assert!(read(r#"{"iss":"a","iss":"b"}"#).is_err());
    }

    #[test]
    fn only_an_object_is_a_payload() {
        assert!(read("[1,2]").is_err());
        assert!(read(r#"{"a":1} {"b":2}"#).is_err());
        assert!(read("").is_err());
    }

    #[test]
    fn scope_string_and_scp_list_are_both_read() {
        let r = read(r#"{"scope":"a b  c"}"#).unwrap();
        assert_eq!(r.scopes.iter().collect::<Vec<_>>(), ["a", "b", "c"]);
        let r = read(r#"{"scp":["a","b"]}"#).unwrap();
        assert_eq!(r.scopes.iter().collect::<Vec<_>>(), ["a", "b"]);
        let r = read(r#"{"scp":"a b"}"#).unwrap();
        assert_eq!(r.scopes.iter().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn scope_wins_over_scp() {
        let r = read(r#"{"scp":["x"],"scope":"a"}"#).unwrap();
        assert_eq!(r.scopes.iter().collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn an_scp_element_is_one_scope_token() {
        assert!(read(r#"{"scp":["todos:read todos:write"]}"#).is_err());
        assert!(read(r#"{"scp":[""]}"#).is_err());
        assert!(read(r#"{"scp":["a\"b"]}"#).is_err());
    }

    #[test]
    fn the_confirmation_names_one_method_or_is_unsupported() {
        let cnf = |json: &str| read(json).unwrap().cnf;
        assert_eq!(
            cnf(r#"{"cnf":{"jkt":"abc"}}"#),
            Some(Confirmation::Jkt("abc".into()))
        );
        assert_eq!(
            cnf(r#"{"cnf":{"x5t#S256":"xyz"}}"#),
            Some(Confirmation::CertificateThumbprint("xyz".into()))
        );
        for bound_otherwise in [
            r#"{"cnf":{"jwk":{"kty":"EC"}}}"#,
            r#"{"cnf":{"jkt":"a","x5t#S256":"b"}}"#,
            r#"{"cnf":{"jkt":"a","kid":"k"}}"#,
            r#"{"cnf":{}}"#,
        ] {
            assert_eq!(
                cnf(bound_otherwise),
                Some(Confirmation::Unsupported),
                "{bound_otherwise}"
            );
        }
        assert_eq!(cnf(r#"{"cnf":null}"#), None);
        for malformed in [
            r#"{"cnf":"abc"}"#,
            r#"{"cnf":{"jkt":1}}"#,
            r#"{"cnf":{"jkt":"a","jkt":"b"}}"#,
            r#"{"cnf":{"jkt":"a"},"cnf":{"jkt":"b"}}"#,
        ] {
            assert_eq!(
                read(malformed).unwrap_err(),
                AuthError::InvalidClaims,
                "{malformed}"
            );
        }
    }

    #[test]
    fn missing_required_claim_is_named() {
        let required: Vec<Arc<str>> = vec!["jti".into(), "tenant".into()];
        let r = Registered::read(br#"{"jti":"1"}"#, &required).unwrap();
        assert_eq!(r.missing.as_deref(), Some("tenant"));
        let r = Registered::read(br#"{"tenant":null,"jti":"1"}"#, &required).unwrap();
        assert_eq!(r.missing.as_deref(), Some("tenant"));
        let r = Registered::read(br#"{"tenant":"acme","jti":"1"}"#, &required).unwrap();
        assert_eq!(r.missing, None);
    }
}
