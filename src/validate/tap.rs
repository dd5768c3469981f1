//! One pass over a verified payload: the claims type `C` is decoded, and the registered
//! claims ([`Registered`]) are read from the members as they go by to `C`.
//!
//! Written by hand because no crate does it: serde cannot read one JSON text into two types
//! at once. [`decode`] hands `C`'s `Deserialize` a map whose members come from
//! `serde_json`'s own. A member this crate reads (`iss`, `exp`, `aud`...) is parsed once,
//! kept, and given to `C` from the parsed value; every other member goes to `C` untouched.
//!
//! Anything unusual (a `C` that does not read the payload as a map to its end, a member of
//! the wrong type, a claim `C` refuses) makes [`decode`] give up; the validator then reads
//! the payload in two passes, which also reports the error in the usual order.

use std::{borrow::Cow, fmt, marker::PhantomData, sync::Arc};

use serde::{
    Deserializer,
    de::{
        DeserializeOwned, DeserializeSeed, Error as _, MapAccess, Visitor,
        value::CowStrDeserializer,
    },
    forward_to_deserialize_any,
};
use serde_json::{de::SliceRead, value::RawValue};

use super::registered::{Member, Reading, Registered};
use crate::claims::Str;

/// The brackets a member read twice may hold (`serde_json` allows 128 levels in all).
const MAX_NESTING: usize = 64;

/// `C` and the registered claims of `payload`, in one pass; `None` when that pass could not
/// be taken and the caller must take two.
pub(crate) fn decode<'p, C: DeserializeOwned>(
    payload: &'p [u8],
    required: &[Arc<str>],
) -> Option<(C, Registered<'p>)> {
    let mut state = State {
        reading: Some(Reading::new(required)),
        done: None,
    };
    let mut de = serde_json::Deserializer::from_slice(payload);
    let claims = C::deserialize(Tap {
        de: &mut de,
        state: &mut state,
    })
    .ok()?;
    de.end().ok()?;
    // Set once the last member went by: without it `C` stopped early or read no map.
    Some((claims, state.done?))
}

struct State<'p, 'r> {
    /// Until the payload's last member has gone by.
    reading: Option<Reading<'p, 'r>>,
    done: Option<Registered<'p>>,
}

/// The payload's deserializer as `C` sees it: a map is tapped, anything else is
/// `serde_json`'s own (and leaves the reading unfinished).
struct Tap<'a, 'p, 'r> {
    de: &'a mut serde_json::Deserializer<SliceRead<'p>>,
    state: &'a mut State<'p, 'r>,
}

macro_rules! forward_to_json {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'p>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            self.de.$method(visitor)
        }
    )*};
}

impl<'p> Deserializer<'p> for Tap<'_, 'p, '_> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'p>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.de.deserialize_map(Tapped {
            visitor,
            state: self.state,
        })
    }

    fn deserialize_map<V: Visitor<'p>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'p>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_any(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'p>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_unit_struct<V: Visitor<'p>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.de.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_tuple<V: Visitor<'p>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.de.deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'p>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.de.deserialize_tuple_struct(name, len, visitor)
    }

    fn deserialize_enum<V: Visitor<'p>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.de.deserialize_enum(name, variants, visitor)
    }

    forward_to_json! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_option
        deserialize_unit deserialize_seq deserialize_identifier deserialize_ignored_any
    }
}

/// `C`'s visitor, given the tapped map.
struct Tapped<'a, 'p, 'r, V> {
    visitor: V,
    state: &'a mut State<'p, 'r>,
}

impl<'p, V: Visitor<'p>> Visitor<'p> for Tapped<'_, 'p, '_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    fn visit_map<A: MapAccess<'p>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(Members {
            map,
            state: self.state,
            member: Member::Other,
            required: None,
        })
    }
}

/// The payload's members on their way to `C`.
struct Members<'a, 'p, 'r, A> {
    map: A,
    state: &'a mut State<'p, 'r>,
    /// The member whose value comes next, and which required claim it is.
    member: Member,
    required: Option<usize>,
}

impl<'p, A: MapAccess<'p>> MapAccess<'p> for Members<'_, 'p, '_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'p>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let Some(Str(key)) = self.map.next_key()? else {
            if let Some(reading) = self.state.reading.take() {
                self.state.done = Some(reading.finish()?);
            }
            return Ok(None);
        };
        self.member = Member::of(&key);
        self.required = match &self.state.reading {
            Some(reading) => reading.required_index(&key),
            None => None,
        };
        seed.deserialize(Scalar::<A::Error>::key(key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'p>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        let Some(reading) = &mut self.state.reading else {
            return self.map.next_value_seed(seed);
        };
        let (present, value) = match (self.member, self.required) {
            (Member::Other, None) => return self.map.next_value_seed(seed),
            (member @ (Member::Iss | Member::Sub | Member::Jti), _) => {
                let value = self.map.next_value::<Option<Str<'p>>>()?.map(|s| s.0);
                let present = reading.string(member, value.clone())?;
                (present, Scalar::string(value))
            }
            // A whole number of seconds, as every issuer writes one. A fraction or a sign
            // is left to the two passes, which read it exactly as `C` would from the text.
            (member @ (Member::Exp | Member::Nbf | Member::Iat), _) => {
                let value = self.map.next_value::<Option<u64>>()?;
                let present = reading.date(member, value)?;
                (present, Scalar::number(value))
            }
            // The rest (`aud`, `cnf`, `scope`, `scp`, a required claim): short, and read
            // from its JSON text twice. Read again on its own, a value would get the whole
            // nesting limit instead of what is left of it: a deep one is left to two passes.
            (member, _) => {
                let raw: &'p RawValue = self.map.next_value()?;
                let nesting = raw
                    .get()
                    .bytes()
                    .filter(|b| matches!(b, b'[' | b'{'))
                    .count();
                if nesting > MAX_NESTING {
                    return Err(A::Error::custom("deeply nested; read in two passes"));
                }
                let json = || serde_json::Deserializer::from_str(raw.get());
                let present = reading
                    .value(member, &mut json())
                    .map_err(A::Error::custom)?;
                if let Some(i) = self.required {
                    reading.occurred(i, present)?;
                }
                return seed.deserialize(&mut json()).map_err(A::Error::custom);
            }
        };
        if let Some(i) = self.required {
            reading.occurred(i, present)?;
        }
        seed.deserialize(value)
    }
}

/// A key or a scalar value, already parsed, as `C` would have read it from the JSON text.
struct Scalar<'p, E>(Parsed<'p>, PhantomData<E>);

enum Parsed<'p> {
    Null,
    /// A member's name: `serde_json` also reads one as a number or boolean.
    Key(Cow<'p, str>),
    Str(Cow<'p, str>),
    Number(u64),
}

impl<'p, E> Scalar<'p, E> {
    fn key(key: Cow<'p, str>) -> Self {
        Self(Parsed::Key(key), PhantomData)
    }

    fn string(value: Option<Cow<'p, str>>) -> Self {
        Self(value.map_or(Parsed::Null, Parsed::Str), PhantomData)
    }

    fn number(value: Option<u64>) -> Self {
        Self(value.map_or(Parsed::Null, Parsed::Number), PhantomData)
    }
}

macro_rules! not_a_string {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'p>>(self, visitor: V) -> Result<V::Value, E> {
            match self.0 {
                // `serde_json` reads a member name asked for as a number or boolean from its
                // text, by JSON's grammar: left to the two passes rather than imitated.
                Parsed::Key(_) => Err(E::custom("a member name read as a number or boolean")),
                _ => self.deserialize_any(visitor),
            }
        }
    )*};
}

impl<'p, E: serde::de::Error> Deserializer<'p> for Scalar<'p, E> {
    type Error = E;

    fn deserialize_any<V: Visitor<'p>>(self, visitor: V) -> Result<V::Value, E> {
        match self.0 {
            Parsed::Null => visitor.visit_unit(),
            Parsed::Key(Cow::Borrowed(s)) | Parsed::Str(Cow::Borrowed(s)) => {
                visitor.visit_borrowed_str(s)
            }
            Parsed::Key(Cow::Owned(s)) | Parsed::Str(Cow::Owned(s)) => visitor.visit_string(s),
            Parsed::Number(n) => visitor.visit_u64(n),
        }
    }

    fn deserialize_option<V: Visitor<'p>>(self, visitor: V) -> Result<V::Value, E> {
        match self.0 {
            Parsed::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'p>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, E> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'p>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, E> {
        match self.0 {
            Parsed::Key(s) | Parsed::Str(s) => visitor.visit_enum(CowStrDeserializer::new(s)),
            _ => self.deserialize_any(visitor),
        }
    }

    not_a_string! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64
    }

    forward_to_deserialize_any! {
        <W: Visitor<'p>>
        char str string bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use proptest::prelude::*;
    use serde::{Deserialize, de::IgnoredAny};
    use serde_json::{Value, json};

    use super::*;
    use crate::StandardClaims;

    /// Checks the one pass against the two it replaces: when it is taken, both read the
    /// same; when either of the two passes fails, it is not taken. Whether it was taken.
    fn one_pass<C>(json: &str, required: &[&str]) -> bool
    where
        C: DeserializeOwned + PartialEq + fmt::Debug,
    {
        let required: Vec<Arc<str>> = required.iter().map(|&r| r.into()).collect();
        let claims = serde_json::from_str::<C>(json).ok();
        let registered = Registered::read(json.as_bytes(), &required).ok();
        match decode::<C>(json.as_bytes(), &required) {
            Some((tapped, tapped_registered)) => {
                assert_eq!(Some(&tapped), claims.as_ref(), "{json}");
                let registered = registered.unwrap_or_else(|| panic!("read fails: {json}"));
                assert_eq!(
                    format!("{tapped_registered:?}"),
                    format!("{registered:?}"),
                    "{json}"
                );
                true
            }
            // Not taken when one of the two passes fails, or for what is left to them.
            None => {
                let left = left_to_two_passes(json);
                assert!(
                    claims.is_none() || registered.is_none() || left,
                    "not taken: {json}"
                );
                false
            }
        }
    }

    /// Whether `json` has a date with a fraction or a sign (the cases the property meets
    /// among those [`decode`] leaves to two passes).
    fn left_to_two_passes(json: &str) -> bool {
        let Ok(Value::Object(members)) = serde_json::from_str::<Value>(json) else {
            return false;
        };
        ["exp", "nbf", "iat"]
            .iter()
            .filter_map(|date| members.get(*date))
            .any(|v| v.is_number() && !v.is_u64())
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct UserId(String);

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Role {
        Admin,
        Reader,
    }

    /// A claims type that asks for its members in every way serde's derive does.
    #[derive(Debug, PartialEq, Deserialize)]
    struct Custom {
        sub: UserId,
        iss: Option<String>,
        exp: f64,
        iat: Option<u64>,
        aud: Vec<String>,
        role: Role,
        #[serde(flatten)]
        rest: BTreeMap<String, Value>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Strict {
        sub: String,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Numeric {
        iss: u64,
    }

    const TOKEN: &str = r#"{"sub":"alice","iss":"todo-server","aud":"todo-api","iat":1700000000,
        "exp":1700003600,"nbf":1700000000,"scope":"todos:read todos:write","jti":"0123",
        "cnf":{"jkt":"abc"},"x":{"iss":"inner","exp":"nested"}}"#;

    #[test]
    fn every_usual_claims_type_reads_in_one_pass() {
        assert!(one_pass::<StandardClaims>(TOKEN, &["iss", "aud", "sub"]));
        assert!(one_pass::<Value>(TOKEN, &[]));
        assert!(one_pass::<HashMap<String, Value>>(TOKEN, &["x"]));
        assert!(one_pass::<BTreeMap<String, Value>>(
            r#"{"a\"b":"\u00e9\n","iss":"\u0041"}"#,
            &[]
        ));
        let custom = r#"{"sub":"alice","iss":null,"exp":1500000000,"iat":7,"aud":["a","b"],
            "role":"admin","scp":["x","y"],"tenant":{"id":3}}"#;
        assert!(one_pass::<Custom>(custom, &["tenant"]));
        // Nested members are not the token's: only the top level is read.
        let (_, r) = decode::<Value>(TOKEN.as_bytes(), &[]).unwrap();
        assert_eq!(r.iss.as_deref(), Some("todo-server"));
        assert_eq!(
            r.scopes.iter().collect::<Vec<_>>(),
            ["todos:read", "todos:write"]
        );
        assert_eq!((r.exp, r.nbf), (Some(1700003600), Some(1700000000)));
    }

    #[test]
    fn what_two_passes_refuse_is_not_taken_in_one() {
        for json in [
            r#"{"iss":1}"#,
            r#"{"exp":-1}"#,
            r#"{"exp":"soon"}"#,
            r#"{"exp":1,"exp":2}"#,
            r#"{"aud":[1]}"#,
            r#"{"scp":["a b"]}"#,
            r#"{"cnf":"abc"}"#,
            "[1,2]",
            r#"{"a":1} {"b":2}"#,
            "",
        ] {
            assert!(!one_pass::<Value>(json, &[]), "{json}");
        }
        // `C` refuses what it refuses from the JSON text, from a parsed member too.
        assert!(!one_pass::<Numeric>(r#"{"iss":"123"}"#, &[]));
        assert!(!one_pass::<Strict>(r#"{"sub":"a","other":1}"#, &[]));
        assert!(!one_pass::<Custom>(
            r#"{"sub":"a","exp":1,"aud":[],"role":"root"}"#,
            &[]
        ));
        assert!(!one_pass::<StandardClaims>(r#"{"exp":"1"}"#, &[]));
        // Left to two passes though both succeed: a claims type that reads no map, member
        // names read as numbers, dates with a fraction, a value nested deeper than a
        // bracket limit (read again on its own it would get a fresh nesting limit).
        let deep = format!(r#"{{"tenant":{}{}}}"#, "[".repeat(65), "]".repeat(65));
        for (json, taken) in [
            (TOKEN, decode::<IgnoredAny>(TOKEN.as_bytes(), &[]).is_some()),
            (
                r#"{"1":2}"#,
                decode::<HashMap<u32, Value>>(b"{\"1\":2}", &[]).is_some(),
            ),
            (
                r#"{"exp":1.5}"#,
                decode::<Value>(br#"{"exp":1.5}"#, &[]).is_some(),
            ),
            (
                &deep,
                decode::<Value>(deep.as_bytes(), &["tenant".into()]).is_some(),
            ),
        ] {
            assert!(!taken, "{json}");
            assert!(Registered::read(json.as_bytes(), &[]).is_ok(), "{json}");
        }
    }

    #[test]
    fn required_claims_are_counted_in_one_pass() {
        let required = ["jti".into(), "tenant".into()];
        let missing = |json: &str| decode::<Value>(json.as_bytes(), &required).map(|r| r.1.missing);
        assert_eq!(missing(r#"{"jti":"1"}"#), Some(Some("tenant".into())));
        assert_eq!(
            missing(r#"{"tenant":null,"jti":"1"}"#),
            Some(Some("tenant".into()))
        );
        assert_eq!(missing(r#"{"tenant":"acme","jti":"1"}"#), Some(None));
        assert_eq!(missing(r#"{"tenant":"a","tenant":"b","jti":"1"}"#), None);
        let json = json!({"jti": "1", "tenant": {"id": [1, 2]}}).to_string();
        assert!(one_pass::<StandardClaims>(&json, &["jti", "tenant"]));
    }

    fn member() -> impl Strategy<Value = (String, Value)> {
        let key = prop_oneof![
            prop::sample::select(vec![
                "iss", "sub", "jti", "aud", "exp", "nbf", "iat", "cnf", "scope", "scp", "x",
                "tenant",
            ])
            .prop_map(str::to_owned),
            "[a-z\"\\\\é]{0,4}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (0.0..2e9f64).prop_map(Value::from),
            "[a-z :\"\\\\é\n]{0,8}".prop_map(Value::from),
        ];
        let value = leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
                prop::collection::btree_map("[a-z]{1,3}|jkt|x5t#S256", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        });
        (key, value)
    }

    proptest! {
        /// Any payload, any of these claims types: one pass reads what two read.
        #[test]
        fn one_pass_reads_what_two_passes_read(
            members in prop::collection::vec(member(), 0..8),
        ) {
            // Written by hand so that a member may appear twice.
            let json = format!("{{{}}}", members
                .iter()
                .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
                .collect::<Vec<_>>()
                .join(","));
            one_pass::<StandardClaims>(&json, &["tenant"]);
            one_pass::<Value>(&json, &["sub"]);
            one_pass::<BTreeMap<String, Value>>(&json, &[]);
        }
    }
}
