//! The claims the middleware injects into request extensions.
//!
//! After a token is validated, [`JwtAuth`](crate::JwtAuth) inserts two extensions:
//!
//! - [`Claims<C>`]: the token's claims, decoded into the type `C` you chose for the layer
//!   (for example [`StandardClaims`]). `Claims<C>` dereferences to `C`.
//! - [`Scopes`]: the scopes the token grants, read from the RFC 8693 `scope` claim (a
//!   space-separated string) or the `scp` claim (a string or an array) that several identity
//!   providers use instead. [`RequireScope`](crate::RequireScope) reads it, whatever `C` is.

use std::{ops::Deref, sync::Arc};

use std::{borrow::Cow, fmt};

use crate::validate::OneOrMany;

use serde::{
    Deserialize, Deserializer, Serialize,
    de::{self, MapAccess, Visitor},
};

/// The validated claims of the request's token, as inserted by [`JwtAuth`](crate::JwtAuth).
///
/// Read it from the request extensions (`req.extensions().get::<Claims<C>>()`) or, with the
/// `axum` feature, take it as a handler argument. It dereferences to `C`. The claims are
/// decoded once per token and shared: cloning `Claims` (and a hit in the layer's token
/// cache) copies a pointer, not the claims. In an axum handler, `Claims(claims): Claims<C>`
/// binds the shared `Arc<C>`.
#[derive(Debug, PartialEq, Eq)]
pub struct Claims<C>(pub Arc<C>);

impl<C> Claims<C> {
    /// Wraps claims, for tests and for middleware of your own that authenticates otherwise.
    pub fn new(claims: C) -> Self {
        Self(Arc::new(claims))
    }

    /// The claims, copied only when another `Claims` still shares them.
    pub fn into_inner(self) -> C
    where
        C: Clone,
    {
        Arc::unwrap_or_clone(self.0)
    }
}

impl<C> Clone for Claims<C> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<C> Deref for Claims<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.0
    }
}

impl<C> From<C> for Claims<C> {
    fn from(claims: C) -> Self {
        Self::new(claims)
    }
}

/// The registered JWT claims (RFC 7519 section 4.1) plus the RFC 8693 `scope` claim.
///
/// Every other member of the token's payload is kept in [`extra`](Self::extra).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StandardClaims {
    /// Subject: who the token is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience: one string or a list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// Expiration time, seconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Not before, seconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at, seconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// JWT ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Space-separated scopes (RFC 8693 section 4.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// All other members of the payload.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl StandardClaims {
    /// Iterates the granted scopes as the [`Scopes`] extension reads them: the `scope`
    /// claim (space-separated), or without it `scp` (a space-separated string, or an array of
    /// strings, as several identity providers send it).
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        let (text, list) = match (&self.scope, self.extra.get("scp")) {
            (Some(scope), _) => (Some(scope.as_str()), None),
            (None, Some(serde_json::Value::String(scp))) => (Some(scp.as_str()), None),
            (None, Some(serde_json::Value::Array(scp))) => (None, Some(scp)),
            _ => (None, None),
        };
        let text = text.into_iter().flat_map(str::split_ascii_whitespace);
        let list = list
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str);
        text.chain(list)
    }

    /// Who the token is about: the pair (`iss`, `sub`), `None` without either. `sub` is unique
    /// only within its issuer (OpenID Connect Core 5.7): a service that trusts several issuers
    /// must key users by the pair, or one provider's `alice` is another's.
    pub fn principal(&self) -> Option<(&str, &str)> {
        Some((self.iss.as_deref()?, self.sub.as_deref()?))
    }

    /// Whether the token's audience includes `aud`.
    pub fn has_audience(&self, aud: &str) -> bool {
        match &self.aud {
            Some(Audience::One(a)) => a == aud,
            Some(Audience::Many(list)) => list.iter().any(|a| a == aud),
            None => false,
        }
    }
}

/// Deserialized by hand rather than derived: serde's `flatten` (for `extra`) and untagged
/// enums (for `aud` and fractional dates) buffer the whole payload and copy every string,
/// and this type is decoded on the request path.
impl<'de> Deserialize<'de> for StandardClaims {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StandardClaims;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object of claims")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StandardClaims, A::Error> {
                fn set<T, E: de::Error>(
                    slot: &mut Option<T>,
                    value: Option<T>,
                    name: &'static str,
                ) -> Result<(), E> {
                    if slot.is_some() {
                        return Err(E::duplicate_field(name));
                    }
                    *slot = value;
                    Ok(())
                }
                let mut c = StandardClaims::default();
                while let Some(Str(key)) = map.next_key()? {
                    match &*key {
                        "sub" => set(&mut c.sub, map.next_value()?, "sub")?,
                        "iss" => set(&mut c.iss, map.next_value()?, "iss")?,
                        "aud" => set(&mut c.aud, map.next_value()?, "aud")?,
                        "jti" => set(&mut c.jti, map.next_value()?, "jti")?,
                        "scope" => set(&mut c.scope, map.next_value()?, "scope")?,
                        "exp" => set(
                            &mut c.exp,
                            map.next_value::<Option<NumericDate>>()?.map(|d| d.0),
                            "exp",
                        )?,
                        "nbf" => set(
                            &mut c.nbf,
                            map.next_value::<Option<NumericDate>>()?.map(|d| d.0),
                            "nbf",
                        )?,
                        "iat" => set(
                            &mut c.iat,
                            map.next_value::<Option<NumericDate>>()?.map(|d| d.0),
                            "iat",
                        )?,
                        _ => {
                            c.extra.insert(key.into_owned(), map.next_value()?);
                        }
                    }
                }
                Ok(c)
            }
        }
        deserializer.deserialize_map(V)
    }
}

/// A string borrowed from the JSON text when it has no escapes, copied otherwise.
#[derive(Deserialize)]
#[serde(transparent)]
pub(crate) struct Str<'a>(#[serde(borrow)] pub(crate) Cow<'a, str>);

/// A NumericDate (RFC 7519 section 2): seconds since the epoch, possibly with a fraction;
/// whole seconds are kept. Negative, non-finite and non-numeric values are refused.
pub(crate) struct NumericDate(pub(crate) u64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NumericDate;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a NumericDate: a non-negative number of seconds")
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<NumericDate, E> {
                Ok(NumericDate(n))
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<NumericDate, E> {
                u64::try_from(n)
                    .map(NumericDate)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(n), &self))
            }

            fn visit_f64<E: de::Error>(self, f: f64) -> Result<NumericDate, E> {
                if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 {
                    Ok(NumericDate(f as u64))
                } else {
                    Err(E::invalid_value(de::Unexpected::Float(f), &self))
                }
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// The confirmation claim `cnf` (RFC 7800): what the token is bound to, which its sender
/// must prove it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Confirmation {
    /// `cnf.jkt`: the RFC 7638 SHA-256 thumbprint of a DPoP key (RFC 9449 section 6.1).
    Jkt(Arc<str>),
    /// `cnf.x5t#S256`: the SHA-256 thumbprint of a client certificate (RFC 8705 section 3.1).
    CertificateThumbprint(Arc<str>),
    /// A `cnf` that names no method this crate checks (or two at once): the token is bound
    /// to something no request here can prove, so it is never accepted.
    Unsupported,
}

impl<'de> Deserialize<'de> for Confirmation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Confirmation;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a confirmation object (RFC 7800)")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Confirmation, A::Error> {
                let (mut jkt, mut x5t, mut other) = (None, None, false);
                while let Some(Str(key)) = map.next_key()? {
                    let slot = match &*key {
                        "jkt" => &mut jkt,
                        "x5t#S256" => &mut x5t,
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                            other = true;
                            continue;
                        }
                    };
                    if slot.is_some() {
                        return Err(de::Error::custom("duplicate confirmation method"));
                    }
                    let Str(value) = map.next_value()?;
                    *slot = Some(Arc::<str>::from(value));
                }
                Ok(match (jkt, x5t, other) {
                    (Some(jkt), None, false) => Confirmation::Jkt(jkt),
                    (None, Some(x5t), false) => Confirmation::CertificateThumbprint(x5t),
                    _ => Confirmation::Unsupported,
                })
            }
        }
        deserializer.deserialize_map(V)
    }
}

/// The `aud` claim: a single string or a list of strings (RFC 7519 section 4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

/// Read as the validator reads `aud` (one JSON shape, one reader), then owned.
impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match OneOrMany::deserialize(deserializer)? {
            OneOrMany::One(one) => Audience::One(one.into_owned()),
            OneOrMany::Many(many) => {
                Audience::Many(many.into_iter().map(Cow::into_owned).collect())
            }
        })
    }
}

/// The scopes a validated token grants, inserted by [`JwtAuth`](crate::JwtAuth) next to
/// [`Claims`].
///
/// Kept as one space-separated string (one allocation per request): tokens carry a handful
/// of scopes, and a linear scan of those beats building a set.
#[derive(Debug, Clone, Default)]
pub struct Scopes(Option<Arc<str>>);

impl PartialEq for Scopes {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Scopes {}

/// Whether `s` is one RFC 6749 section 3.3 `scope-token`:
/// `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`
pub(crate) fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

impl Scopes {
    /// From an RFC 8693 `scope` string, kept as it is (one allocation).
    pub(crate) fn from_text(scopes: &str) -> Self {
        Self((!scopes.trim_ascii().is_empty()).then(|| scopes.into()))
    }

    pub(crate) fn from_iter<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Self {
        let mut joined = String::new();
        for scope in scopes.into_iter().filter(|s| !s.is_empty()) {
            if !joined.is_empty() {
                joined.push(' ');
            }
            joined.push_str(scope);
        }
        Self((!joined.is_empty()).then(|| joined.into()))
    }

    /// Whether the token grants `scope`.
    pub fn contains(&self, scope: &str) -> bool {
        self.iter().any(|s| s == scope)
    }

    /// Iterates the granted scopes in the token's order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0
            .as_deref()
            .unwrap_or_default()
            .split_ascii_whitespace()
    }

    /// Whether the token grants no scope at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `StandardClaims::scopes` reads what the `Scopes` extension reads: `scope`, else `scp`
    /// as a string or an array.
    #[test]
    fn standard_claims_scopes_read_scp_like_the_extension() {
        for (json, expected) in [
            (r#"{"scope":"a b","scp":["c"]}"#, &["a", "b"][..]),
            (r#"{"scp":"c d"}"#, &["c", "d"][..]),
            (r#"{"scp":["e","f"]}"#, &["e", "f"][..]),
            (r#"{}"#, &[][..]),
        ] {
            let c: StandardClaims = serde_json::from_str(json).unwrap();
            assert_eq!(c.scopes().collect::<Vec<_>>(), expected, "{json}");
        }
    }

    /// `Audience` reads `aud` with the validator's reader: borrowed or owned input, one
    /// string or several, escapes, and the same refusals.
    #[test]
    fn audience_reads_one_or_many_like_the_validator() {
        let one: Audience = serde_json::from_str(r#""a\"b""#).unwrap();
        assert_eq!(one, Audience::One("a\"b".into()));
        let many: Audience = serde_json::from_value(serde_json::json!(["x", "y"])).unwrap();
        assert_eq!(many, Audience::Many(vec!["x".into(), "y".into()]));
        for bad in ["1", "[1]", "[null]", "{}"] {
            assert!(serde_json::from_str::<Audience>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn standard_claims_keep_unknown_members() {
        let c: StandardClaims = serde_json::from_str(
            r#"{"sub":"alice","aud":["a","b"],"exp":10,"scope":"x y","tenant":"acme"}"#,
        )
        .unwrap();
        assert_eq!(c.sub.as_deref(), Some("alice"));
        assert!(c.has_audience("b"));
        assert!(!c.has_audience("c"));
        assert_eq!(c.scopes().collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(c.extra["tenant"], "acme");
    }

    #[test]
    fn numeric_dates_may_have_fractions() {
        let c: StandardClaims =
            serde_json::from_str(r#"{"exp":1700000000.75,"iat":1699999999}"#).unwrap();
        assert_eq!(
            (c.exp, c.iat, c.nbf),
            (Some(1700000000), Some(1699999999), None)
        );
        assert!(serde_json::from_str::<StandardClaims>(r#"{"exp":-1.5}"#).is_err());
        assert!(serde_json::from_str::<StandardClaims>(r#"{"exp":"soon"}"#).is_err());
    }

    #[test]
    fn single_audience_is_a_string() {
        let c: StandardClaims = serde_json::from_str(r#"{"aud":"a"}"#).unwrap();
        assert_eq!(c.aud, Some(Audience::One("a".into())));
    }
}
