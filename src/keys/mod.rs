//! Keys: each bound to the one algorithm it may verify, grouped in sets picked by `kid`,
//! static and rotatable ([`KeySet`]) or fetched from a JWKS endpoint
//! ([`JwksSource`](crate::jwks::JwksSource), feature `jwks`).

mod key;
mod set;

pub(crate) use key::check_hmac_secret;
pub use key::{MIN_RSA_BITS, VerificationKey};
#[cfg(feature = "jwks")]
pub(crate) use set::KeyProvider;
#[cfg(feature = "jwks")]
pub(crate) use set::KeySnapshot;
pub use set::{KeySet, KeySource};
pub(crate) use set::{Keys, RefreshWait};
