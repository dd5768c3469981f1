//! Keys: each bound to the one algorithm it may verify, grouped in sets picked by `kid`,
//! static and rotatable ([`KeySet`]) or fetched from a JWKS endpoint
//! ([`JwksSource`](crate::jwks::JwksSource), feature `jwks`).
//!
//! A [`VerificationKey`] pairs a `jsonwebtoken` `DecodingKey` with an
//! [`Algorithm`](crate::Algorithm) and an optional `kid`. The layer's algorithm allow-list is
//! derived from its keys, so a key is never used with an algorithm of another family (an RSA
//! public key is never an HMAC secret), and `none` is never accepted: it is no key's algorithm.
//!
//! ```
//! use tower_jwt_auth::{Algorithm, KeySet, VerificationKey};
//!
//! let key = VerificationKey::hmac(Algorithm::HS256, &[7; 32]).unwrap().with_kid("2026-11");
//! assert_eq!(key.algorithm(), Algorithm::HS256);
//! assert_eq!(key.kid(), Some("2026-11"));
//!
//! // A 10-byte secret is refused when the key is built, not when the first token arrives.
//! assert!(VerificationKey::hmac(Algorithm::HS256, b"0123456789").is_err());
//!
//! // Rotation: add the next key, later retire the old one; layers built from the set see
//! // each change at once, and the request path takes no lock.
//! let keys = KeySet::new([key]).unwrap();
//! keys.insert(VerificationKey::hmac(Algorithm::HS256, &[8; 32]).unwrap().with_kid("2026-12")).unwrap();
//! assert!(keys.remove("2026-11"));
//! assert_eq!(keys.kids(), ["2026-12"]);
//! ```

mod key;
mod set;

pub(crate) use key::check_hmac_secret;
pub use key::{MIN_RSA_BITS, VerificationKey};
#[cfg(feature = "jwks")]
pub(crate) use set::KeyProvider;
#[cfg(any(feature = "jwks", test, fuzzing))]
pub(crate) use set::KeySnapshot;
pub use set::{KeySet, KeySource};
pub(crate) use set::{Keys, RefreshWait};
