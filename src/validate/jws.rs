//! The JWS compact serialization (RFC 7515 section 7.1): split the token, read the protected
//! header, verify the signature with `jsonwebtoken`'s crypto provider.
//!
//! Nothing here is cryptography of our own: signatures are checked by the `JwtVerifier` that
//! `jsonwebtoken`'s process-wide `CryptoProvider` builds for a key. What this module adds is
//! doing each step once:
//! - the verifier built for a key is kept per thread instead of being rebuilt for every token
//!   (building one parses the key: an EC point decompression, an RSA modulus);
//! - the header of a token that verified is remembered per thread by its exact text, so the
//!   next token of the same issuer and key (the same header, byte for byte) skips its base64
//!   and JSON. Only verified tokens' headers are remembered: a client sending made-up headers
//!   cannot push out the real ones, and a refusal never pays for remembering;
//! - the buffers a token is decoded into are reused per thread instead of allocated.

use std::{
    borrow::Cow,
    cell::{Cell, RefCell},
    fmt,
    marker::PhantomData,
    ops::Deref,
    rc::Rc,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{
    Algorithm,
    crypto::{CryptoProvider, JwtVerifier},
};
use serde::{
    Deserialize, Deserializer,
    de::{Error as _, MapAccess, Visitor, value::MapAccessDeserializer},
};

use crate::{AuthError, VerificationKey, claims::Str};

/// A token split into its three parts; nothing of it is trusted yet.
pub(crate) struct Jws<'t> {
    header: &'t str,
    /// `header "." payload`: the bytes the signature covers.
    signing_input: &'t str,
    payload: &'t str,
    signature: &'t str,
}

/// The protected-header members the validator uses, from a header that passed [`RawHeader`]'s
/// checks.
#[derive(Debug, PartialEq)]
pub(crate) struct Header {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<Box<str>>,
    pub(crate) typ: Option<Box<str>>,
}

/// The protected-header members this crate reads. `jsonwebtoken::Header` would also parse
/// (and allocate) `jwk`, `x5c` and the rest, which are never trusted here: keys come only
/// from the layer's configuration. Duplicate members are refused by serde; the header must be
/// a JSON object (RFC 7515 section 4), read through [`Object`].
#[derive(Deserialize)]
struct RawHeader<'h> {
    /// A string naming a known algorithm: `none`, unknown names and anything but a string
    /// (serde's enum forms such as `{"HS256":null}`) fail to parse, a malformed token.
    #[serde(deserialize_with = "alg_name")]
    alg: Algorithm,
    #[serde(borrow, default)]
    kid: Option<Cow<'h, str>>,
    #[serde(borrow, default)]
    typ: Option<Cow<'h, str>>,
    #[serde(borrow, default)]
    crit: Option<Vec<Cow<'h, str>>>,
    #[serde(default)]
    b64: Option<bool>,
}

/// How many verified headers one thread remembers (one per issuer and key in use), and the
/// longest remembered; a longer header is read every time.
const HEADERS_PER_THREAD: usize = 4;
const MAX_REMEMBERED_HEADER: usize = 512;

/// Reused decoding buffers keep at most this capacity, so one large token does not pin memory.
const MAX_KEPT_BUFFER: usize = 16 * 1024;

thread_local! {
    /// Verified headers by their base64url text, most recently remembered first.
    static HEADERS: RefCell<Vec<(Box<str>, Rc<Header>)>> = const { RefCell::new(Vec::new()) };
    /// The payload buffer, lent out by [`Jws::payload`] and given back when it drops.
    static PAYLOAD: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    /// The signature buffer (`JwtVerifier` takes a `&Vec<u8>`).
    static SIGNATURE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

impl<'t> Jws<'t> {
    /// Splits `header.payload.signature`; nothing is decoded yet.
    pub(crate) fn split(token: &'t str) -> Result<Self, AuthError> {
        let (signing_input, signature) = token.rsplit_once('.').ok_or(AuthError::MalformedToken)?;
        let (header, payload) = signing_input
            .split_once('.')
            .ok_or(AuthError::MalformedToken)?;
        if payload.contains('.') {
            return Err(AuthError::MalformedToken);
        }
        Ok(Self {
            header,
            signing_input,
            payload,
            signature,
        })
    }

    /// The protected header, with RFC 7515's `crit` rules applied: the only extension
    /// understood is `b64` (RFC 7797), and only with its default value `true`. Read from
    /// this thread's verified headers when it is one of them.
    pub(crate) fn header(&self) -> Result<Rc<Header>, AuthError> {
        let remembered = HEADERS.with_borrow(|headers| {
            let found = headers.iter().find(|(text, _)| **text == *self.header);
            found.map(|(_, header)| header.clone())
        });
        if let Some(header) = remembered {
            return Ok(header);
        }
        with_decoded(self.header, |bytes| {
            let Object::<RawHeader<'_>>(header) =
                serde_json::from_slice(bytes).map_err(|_| AuthError::MalformedToken)?;
            if header.b64 == Some(false) {
                return Err(AuthError::MalformedToken);
            }
            if let Some(crit) = &header.crit
                && !(crit.len() == 1 && crit[0] == "b64" && header.b64.is_some())
            {
                return Err(AuthError::MalformedToken);
            }
            Ok(Rc::new(Header {
                alg: header.alg,
                kid: header.kid.map(Into::into),
                typ: header.typ.map(Into::into),
            }))
        })?
    }

    /// Remembers `header`, read from this token, once its signature has verified.
    pub(crate) fn remember(&self, header: &Rc<Header>) {
        if self.header.len() > MAX_REMEMBERED_HEADER {
            return;
        }
        HEADERS.with_borrow_mut(|headers| {
            if headers.iter().any(|(text, _)| **text == *self.header) {
                return;
            }
            headers.truncate(HEADERS_PER_THREAD - 1);
            headers.insert(0, (self.header.into(), header.clone()));
        });
    }

    /// The decoded protected header, for a caller that reads other members (a DPoP proof).
    pub(crate) fn header_bytes(&self) -> Result<Vec<u8>, AuthError> {
        decode_part(self.header)
    }

    /// `header "." payload`, the bytes the signature covers.
    pub(crate) fn signing_input(&self) -> &'t str {
        self.signing_input
    }

    /// The signature part, still base64url.
    pub(crate) fn signature(&self) -> &'t str {
        self.signature
    }

    /// The decoded payload bytes (not verified by themselves), in this thread's buffer.
    pub(crate) fn payload(&self) -> Result<Payload, AuthError> {
        let mut buffer = Payload(PAYLOAD.take());
        buffer.0.clear();
        URL_SAFE_NO_PAD
            .decode_vec(self.payload, &mut buffer.0)
            .map_err(|_| AuthError::MalformedToken)?;
        Ok(buffer)
    }

    /// Checks the signature with `key`, which must be bound to the header's `alg`.
    pub(crate) fn verify(&self, alg: Algorithm, key: &VerificationKey) -> Result<(), AuthError> {
        if alg != key.algorithm {
            return Err(AuthError::UnsupportedAlgorithm);
        }
        let mut signature = SIGNATURE.take();
        signature.clear();
        let decoded = URL_SAFE_NO_PAD.decode_vec(self.signature, &mut signature);
        let message = self.signing_input.as_bytes();
        let verified = decoded.is_ok()
            && with_verifier(key, |verifier| verifier.verify(message, &signature).is_ok())?;
        keep(&SIGNATURE, signature);
        match (decoded, verified) {
            (Err(_), _) => Err(AuthError::MalformedToken),
            (Ok(_), true) => Ok(()),
            (Ok(_), false) => Err(AuthError::InvalidSignature),
        }
    }
}

/// A decoded payload in the thread's reused buffer, given back when dropped.
pub(crate) struct Payload(Vec<u8>);

impl Deref for Payload {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        keep(&PAYLOAD, std::mem::take(&mut self.0));
    }
}

/// Gives `buffer` back to its thread-local slot, zeroed (with the header, a payload and its
/// signature would re-encode the token), unless it grew past [`MAX_KEPT_BUFFER`] or the
/// thread is exiting.
fn keep(slot: &'static std::thread::LocalKey<Cell<Vec<u8>>>, mut buffer: Vec<u8>) {
    buffer.fill(0);
    if buffer.capacity() <= MAX_KEPT_BUFFER {
        let _ = slot.try_with(|slot| slot.set(buffer));
    }
}

/// Runs `f` on `part` base64url-decoded, on the stack when it is short (a header is).
fn with_decoded<R>(part: &str, f: impl FnOnce(&[u8]) -> R) -> Result<R, AuthError> {
    let mut stack = [0; 384];
    if part.len() / 4 * 3 + 3 <= stack.len() {
        let len = URL_SAFE_NO_PAD
            .decode_slice(part, &mut stack)
            .map_err(|_| AuthError::MalformedToken)?;
        Ok(f(&stack[..len]))
    } else {
        Ok(f(&decode_part(part)?))
    }
}

/// The `iss` and `kid` a token claims, for a log line about its rejection: unverified, and
/// cut to 128 characters so that an attacker's value cannot fill the log (subscribers escape
/// string fields). Nothing else of the token is read.
pub(crate) fn claimed_iss_kid(token: &str) -> (Option<String>, Option<String>) {
    fn shown(value: &str) -> String {
        value.chars().take(128).collect()
    }
    #[derive(Deserialize)]
    struct Iss<'a> {
        #[serde(borrow)]
        iss: Option<Cow<'a, str>>,
    }
    let Ok(jws) = Jws::split(token) else {
        return (None, None);
    };
    let kid = jws.header().ok().and_then(|h| h.kid.as_deref().map(shown));
    let payload = jws.payload().ok();
    let iss = payload
        .as_deref()
        .and_then(|p| serde_json::from_slice::<Iss<'_>>(p).ok())
        .and_then(|p| p.iss.as_deref().map(shown));
    (iss, kid)
}

/// A `T` read only from a JSON object: serde's derive also reads a struct from an array
/// (`["HS256"]`), which no JOSE implementation accepts as a header.
pub(crate) struct Object<T>(pub(crate) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        deserializer.deserialize_map(V(PhantomData)).map(Object)
    }
}

/// `alg` as the string RFC 7518 names it.
fn alg_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Algorithm, D::Error> {
    let Str(name) = Str::deserialize(deserializer)?;
    name.parse()
        .map_err(|_| D::Error::custom("not a known algorithm"))
}

fn decode_part(part: &str) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthError::MalformedToken)
}

/// How many keys' verifiers one thread keeps; past it the least recently used is dropped.
const VERIFIERS_PER_THREAD: usize = 8;

thread_local! {
    /// Verifiers by [`VerificationKey::serial`], most recently used first.
    ///
    /// Per thread because `jsonwebtoken` returns `Box<dyn JwtVerifier>`, which is neither
    /// `Send` nor `Sync`; serials are never reused, so a rotated-out key's verifier can only age
    /// out, never be picked for another key.
    static VERIFIERS: RefCell<Vec<(u64, Box<dyn JwtVerifier>)>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with the verifier for `key`, building it with the process's `CryptoProvider` on
/// this thread's first use of the key.
fn with_verifier<R>(
    key: &VerificationKey,
    f: impl FnOnce(&dyn JwtVerifier) -> R,
) -> Result<R, AuthError> {
    VERIFIERS.with_borrow_mut(|verifiers| {
        match verifiers
            .iter()
            .position(|(serial, _)| *serial == key.serial)
        {
            Some(0) => {}
            Some(i) => verifiers[..=i].rotate_right(1),
            None => {
                let provider =
                    CryptoProvider::try_get_default().ok_or(AuthError::InvalidSignature)?;
                // Fails only when the key does not fit its algorithm, which key
                // construction already rules out.
                let verifier = (provider.verifier_factory)(&key.algorithm, &key.key)
                    .map_err(|_| AuthError::InvalidSignature)?;
                verifiers.truncate(VERIFIERS_PER_THREAD - 1);
                verifiers.insert(0, (key.serial, verifier));
            }
        }
        Ok(f(&*verifiers[0].1))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn header_of(json: &str) -> Result<Algorithm, AuthError> {
        let token = format!("{}.{}.sig", b64(json), b64("{}"));
        let jws = Jws::split(&token)?;
        jws.header().map(|h| h.alg)
    }

    #[test]
    fn a_token_has_exactly_three_parts() {
        assert!(Jws::split("a.b").is_err());
        assert!(Jws::split("e30.e30.x.y").is_err());
        assert!(Jws::split("e30.e30.").is_ok());
        assert!(Jws::split("!!.e30.x").unwrap().header().is_err());
    }

    #[test]
    fn alg_none_and_unknown_algorithms_are_malformed() {
        assert_eq!(header_of(r#"{"alg":"HS256"}"#), Ok(Algorithm::HS256));
        assert_eq!(
            header_of(r#"{"alg":"none"}"#),
            Err(AuthError::MalformedToken)
        );
        assert_eq!(
            header_of(r#"{"alg":"HS257"}"#),
            Err(AuthError::MalformedToken)
        );
        assert_eq!(
            header_of(r#"{"typ":"JWT"}"#),
            Err(AuthError::MalformedToken)
        );
    }

    #[test]
    fn duplicate_header_members_are_malformed() {
        assert_eq!(
            header_of(r#"{"alg":"HS256","alg":"RS256"}"#),
            Err(AuthError::MalformedToken)
        );
    }

    #[test]
    fn crit_allows_only_b64_true() {
        assert!(header_of(r#"{"alg":"HS256","crit":["b64"],"b64":true}"#).is_ok());
        assert!(header_of(r#"{"alg":"HS256","crit":["b64"]}"#).is_err());
        assert!(header_of(r#"{"alg":"HS256","crit":[]}"#).is_err());
        assert!(header_of(r#"{"alg":"HS256","crit":["exp"],"exp":1}"#).is_err());
        assert!(header_of(r#"{"alg":"HS256","crit":["b64","b64"],"b64":true}"#).is_err());
        assert!(header_of(r#"{"alg":"HS256","b64":false}"#).is_err());
    }

    #[test]
    fn embedded_keys_are_ignored_not_parsed() {
        // Keys in the header are never used, so their shape does not matter.
        assert!(header_of(r#"{"alg":"HS256","jwk":{"kty":"nonsense"},"jku":"x"}"#).is_ok());
    }

    #[test]
    fn a_thread_keeps_a_bounded_number_of_verifiers() {
        let keys: Vec<_> = (0..VERIFIERS_PER_THREAD + 3)
            .map(|i| VerificationKey::hmac(Algorithm::HS256, &[i as u8; 32]).unwrap())
            .collect();
        for key in &keys {
            with_verifier(key, |_| ()).unwrap();
        }
        VERIFIERS.with_borrow(|v| {
            assert_eq!(v.len(), VERIFIERS_PER_THREAD);
            assert_eq!(v[0].0, keys.last().unwrap().serial);
        });
    }
}
